//! Settings a live reconfiguration (SIGHUP) hands the engine: `[health]` for the next
//! deployments, and `[proxy]`, for which the serving release's nginx config is staged again
//! (as recovery does when nginx points elsewhere) and reloaded gracefully, never touching the
//! app processes.

use super::Engine;
use super::model::ReleaseInfo;
use super::runtime::RuntimeInfo;
use crate::config::ProxyConfig;
use crate::proxy::ProxyError;

/// What a live `[proxy]` change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyApplied {
    /// nginx serves a config rendered from the new settings (this generation).
    Reloaded(String),
    /// Nothing serves through nginx now (no release, nginx off or held by `stop-apps`): the
    /// next config staged uses the new settings.
    NextStart,
}

impl Engine {
    /// The health settings the gate and the checks after a switch use from the next
    /// deployment on (SIGHUP).
    pub fn set_health_settings(&self, health: crate::config::HealthConfig) {
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = health;
    }

    pub(super) fn health_settings(&self) -> crate::config::HealthConfig {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Renders the serving release's config from the proxy settings in force, checks it with
    /// `nginx -t`, activates it (a switch when the files are the same, else a graceful reload)
    /// and records its generation in the state.
    pub(super) async fn restage_serving(
        &self,
        current: &ReleaseInfo,
    ) -> Result<String, ProxyError> {
        let overrides = self
            .platform_of(current.deployment_id, current)
            .map(|p| p.join(super::platform::NGINX_OVERRIDES));
        let staged = self
            .proxy
            .stage(
                current.web_port,
                overrides.as_deref(),
                &RuntimeInfo::static_files_of(current.runtime.as_ref()),
            )
            .await?;
        self.proxy
            .activate(&staged, self.config.deploy.drain_timeout)
            .await?;
        let _ = self.persist_state(|state| {
            if let Some(serving) = state.current.as_mut() {
                serving.proxy_generation = Some(staged.generation.clone());
            }
        });
        Ok(staged.generation)
    }

    /// Applies new `[proxy]` settings between deployments (a running one finishes first).
    /// When nginx refuses the config rendered from them, the previous settings come back and
    /// the serving config stays: the error says why.
    pub async fn apply_proxy_settings(&self, next: ProxyConfig) -> Result<ProxyApplied, String> {
        let _alone = self.exclusive.lock().await;
        let previous = self.proxy.reconfigure(next);
        let current = self.current();
        let status = self.proxy.status();
        let Some(current) = current.filter(|_| self.proxy.enabled() && !status.held) else {
            return Ok(ProxyApplied::NextStart);
        };
        match self.restage_serving(&current).await {
            Ok(generation) => Ok(ProxyApplied::Reloaded(generation)),
            Err(error) => {
                self.proxy.reconfigure(previous);
                Err(error.to_string())
            }
        }
    }
}
