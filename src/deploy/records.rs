//! Deployment records and the files beside them in `var/lib/hostmanager/deployments/`: one
//! `<id>.json` per deployment (pruned by `retention.rs`), and the 0600 files that hold what a
//! record must not show: properties, a configuration's change, a presigned source.

use std::collections::BTreeMap;

use super::{DeploymentRecord, Engine, RECORDS_IN_MEMORY, retention};
use crate::paths::Paths;

impl Engine {
    /// The requested property change of a configuration deployment (values: 0600).
    pub(super) fn change_file(&self, id: u64) -> std::path::PathBuf {
        self.paths
            .deployments_dir()
            .join(format!("{id}.change.json"))
    }

    /// The full source of a deployment whose record shows it redacted (0600: a presigned URL
    /// lets whoever holds it read the bundle).
    pub(super) fn source_file(&self, id: u64) -> std::path::PathBuf {
        self.paths
            .deployments_dir()
            .join(format!("{id}.source.json"))
    }

    /// The settings deployment `id` runs with (`ebext::ReleaseSettings`), for `get-config`.
    pub(super) fn settings_file(&self, id: u64) -> std::path::PathBuf {
        settings_file(&self.paths, id)
    }

    pub(super) fn env_file(&self, id: u64) -> std::path::PathBuf {
        env_file(&self.paths, id)
    }

    pub(super) fn save_record(&self, record: &DeploymentRecord) {
        let path = self.paths.deployment_record(record.id);
        if let Err(error) = crate::fsutil::write_json_atomic(&path, record, 0o600) {
            tracing::error!(%error, path = %path.display(), "cannot persist deployment record");
        }
        let mut records = self.lock_records();
        records.insert(record.id, record.clone());
        while records.len() > RECORDS_IN_MEMORY {
            records.pop_first();
        }
    }

    pub(super) fn update_record(&self, id: u64, change: impl FnOnce(&mut DeploymentRecord)) {
        let updated = {
            let mut records = self.lock_records();
            let Some(record) = records.get_mut(&id) else {
                return;
            };
            change(record);
            record.clone()
        };
        self.save_record(&updated);
    }
}

pub(super) fn load_records(paths: &Paths) -> std::io::Result<BTreeMap<u64, DeploymentRecord>> {
    let mut records = BTreeMap::new();
    // Bounded: records beyond `deploy.records_keep` are pruned at every start.
    let mut ids = retention::record_ids(&paths.deployments_dir());
    ids.sort_unstable();
    for id in ids.into_iter().rev().take(RECORDS_IN_MEMORY) {
        // Records are history: one the agent cannot read must not keep it from starting.
        match crate::fsutil::read_json::<DeploymentRecord>(&paths.deployment_record(id)) {
            Ok(Some(record)) => {
                records.insert(id, record);
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "skipping an unreadable deployment record"),
        }
    }
    Ok(records)
}

/// `<deployments>/<id>.settings.json` (0600).
pub fn settings_file(paths: &crate::paths::Paths, id: u64) -> std::path::PathBuf {
    paths.deployments_dir().join(format!("{id}.settings.json"))
}

/// `<deployments>/<id>.env.json` (0600).
pub fn env_file(paths: &crate::paths::Paths, id: u64) -> std::path::PathBuf {
    paths.deployments_dir().join(format!("{id}.env.json"))
}
