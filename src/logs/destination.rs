//! Where rotated logs, tails and bundles go: the configured store and the instance id their
//! keys carry.

use std::sync::Arc;

use super::LogsError;
use crate::config::{Config, PublishDestination};
use crate::paths::Paths;
use crate::store::{LocalStore, Multipart, ObjectStore, S3Store};

/// The store rotated logs, tails and bundles go to (None: publishing is off) and the instance
/// id their keys carry.
pub(super) async fn destination(
    config: &Config,
    paths: &Paths,
) -> Result<(Option<Arc<dyn ObjectStore>>, String), LogsError> {
    let publish = &config.logs.publish;
    let destination = publish.destination.as_ref().filter(|_| publish.enabled);
    let Some(destination) = destination else {
        return Ok((None, configured_instance_id(config)));
    };
    match destination {
        PublishDestination::Local(dir) => {
            let dir = paths.root().join(dir.strip_prefix("/").unwrap_or(dir));
            let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir));
            Ok((Some(store), configured_instance_id(config)))
        }
        PublishDestination::S3 { bucket } => {
            let identity = crate::aws::resolve_identity(&config.environment, &config.aws).await;
            let sdk = crate::aws::sdk_config(&config.aws, identity.region.clone())
                .await
                .map_err(|e| LogsError::Destination(e.to_string()))?;
            let client = crate::aws::s3_client(&sdk, &config.aws);
            let store = S3Store::new(client, bucket.clone()).with_multipart(Multipart {
                threshold: publish.multipart_threshold_bytes,
                part_size: publish.part_size_bytes,
                concurrency: publish.concurrency,
            });
            let store: Arc<dyn ObjectStore> = Arc::new(store);
            Ok((Some(store), identity.instance_id))
        }
    }
}

fn configured_instance_id(config: &Config) -> String {
    config.environment.instance_id.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .unwrap_or_else(|| "localhost".to_string())
    })
}
