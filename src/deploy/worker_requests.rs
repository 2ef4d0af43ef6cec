//! A worker's requests in flight outlive the switch: the daemon's jobs may run for its
//! `inactivity_timeout`, far longer than nginx's drain. A release is stopped only once they
//! are done (or that timeout has passed), so a job still running in the old release is not
//! cut and run again by the new one.

use std::time::Duration;

use super::Engine;
use super::model::ReleaseInfo;

impl Engine {
    /// Stops `release`'s processes, after the worker daemon's requests in flight on a worker.
    pub(super) async fn stop_release_after_requests(&self, id: u64, release: &ReleaseInfo) {
        if let Some(sqsd) = crate::worker::effective(&self.config, release.settings.as_ref()) {
            let limit = Duration::from_secs(crate::worker::proxy_timeout(&sqsd));
            let left = self.intake.idle(limit).await;
            if left > 0 {
                self.deploy_log(
                    id,
                    &format!(
                        "{left} worker requests still in flight after {} s (inactivity_timeout + 5 s): stopping release {} anyway",
                        limit.as_secs(),
                        release.deployment_id
                    ),
                );
            }
        }
        self.supervisor.stop_release(release.deployment_id).await;
    }
}
