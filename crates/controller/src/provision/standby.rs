//! The standby pool: hosts enrolled in a pool environment that runs nothing, kept warm. A
//! launch moves idle ones into the environment that needs them; a release moves them back.
//! Desired-state serials are global (`ops::next_serial`), so a host that served another
//! environment never ignores its new one's deployment.

use super::ProvisionError;
use crate::fleet::{App, now_ms};
use crate::store::Store;

#[derive(Debug)]
pub struct StandbyPool {
    pool: String,
}

impl StandbyPool {
    pub fn new(pool: &str) -> Self {
        Self {
            pool: pool.to_string(),
        }
    }

    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// Moves `count` idle hosts of the pool into `environment`: enrolled, not revoked, and
    /// reporting (seen within three report intervals), oldest enrollment first.
    pub async fn take<S: Store>(
        &self,
        app: &App<S>,
        environment: &str,
        count: usize,
    ) -> Result<Vec<String>, ProvisionError> {
        let store_error = |e: crate::store::StoreError| {
            ProvisionError::new(format!("the standby pool {:?}: {e}", self.pool))
        };
        let fresh_after = now_ms() - 3 * app.config.hosts.interval.as_millis() as i64;
        let idle: Vec<String> = crate::orchestrator::fresh_instances(app, &self.pool)
            .await
            .map_err(store_error)?
            .into_iter()
            .filter(|i| i.revoked_ms.is_none() && i.last_seen_ms.is_some_and(|t| t >= fresh_after))
            .map(|i| i.id)
            .collect();
        if idle.len() < count {
            return Err(ProvisionError::new(format!(
                "the standby pool {:?} has {} idle reporting host(s), {count} needed: enroll more hosts with an enrollment token of environment {:?}",
                self.pool,
                idle.len(),
                self.pool
            )));
        }
        let taken: Vec<String> = idle.into_iter().take(count).collect();
        for (moved, id) in taken.iter().enumerate() {
            if let Err(error) = app.store.move_instance(id, environment).await {
                // All or nothing: the hosts moved so far go back.
                let _ = self.give_back(app, &taken[..moved]).await;
                return Err(store_error(error));
            }
        }
        app.refresh().await.map_err(store_error)?;
        tracing::info!(pool = %self.pool, environment, hosts = ?taken, "standby hosts taken");
        Ok(taken)
    }

    /// Moves the hosts back into the pool (hosts revoked meanwhile stay where they are).
    pub async fn give_back<S: Store>(
        &self,
        app: &App<S>,
        ids: &[String],
    ) -> Result<(), ProvisionError> {
        for id in ids {
            match app.store.move_instance(id, &self.pool).await {
                Ok(()) | Err(crate::store::StoreError::NotFound(_)) => {}
                Err(e) => {
                    return Err(ProvisionError::new(format!(
                        "moving {id} back into the standby pool {:?}: {e}",
                        self.pool
                    )));
                }
            }
        }
        app.refresh()
            .await
            .map_err(|e| ProvisionError::new(format!("the standby pool {:?}: {e}", self.pool)))?;
        tracing::info!(pool = %self.pool, hosts = ?ids, "hosts given back to the standby pool");
        Ok(())
    }
}
