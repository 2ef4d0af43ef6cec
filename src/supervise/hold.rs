//! The stop hold: after `hostmanager stop-apps` the apps and nginx stay down until the next job
//! starts a process (a deployment, a configure, a rollback, or `hostmanager start`, which
//! queues a restart). Without it the proxy task would start nginx again a second later and a
//! restarted agent would start the apps again.
//!
//! The hold is a file in the state directory (`var/lib/hostmanager/apps-stopped`), written
//! atomically, so it survives an agent restart and is seen by `stop-apps` without an agent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

use crate::paths::Paths;

/// Name of the hold file under the state directory.
pub const HOLD_FILE: &str = "apps-stopped";

/// Cheap to clone; every clone sees the same hold.
#[derive(Debug, Clone)]
pub struct StopHold {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// A watch, so a waiter that subscribed before a change never misses it.
    held: watch::Sender<bool>,
}

impl StopHold {
    /// Reads the persisted hold of `paths`' root.
    pub fn load(paths: &Paths) -> Self {
        let path = hold_path(paths);
        let held = path.exists();
        Self {
            inner: Arc::new(Inner {
                path,
                held: watch::Sender::new(held),
            }),
        }
    }

    pub fn is_held(&self) -> bool {
        *self.inner.held.borrow()
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Holds the apps and nginx down; persisted before it returns.
    pub fn hold(&self) -> std::io::Result<()> {
        set_hold_file(&self.inner.path)?;
        self.inner.held.send_replace(true);
        Ok(())
    }

    /// Ends the hold (a job starts a process). A hold file that cannot be removed is reported
    /// in the agent's log: the next agent run would keep the apps stopped.
    pub fn release(&self) {
        if !self.inner.held.send_replace(false) {
            return;
        }
        if let Err(error) = clear_hold_file(&self.inner.path) {
            tracing::error!(path = %self.inner.path.display(), %error, "cannot remove the stop hold");
        }
    }

    /// A receiver whose `changed()` resolves on every later `hold` or `release`.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.inner.held.subscribe()
    }
}

pub fn hold_path(paths: &Paths) -> PathBuf {
    paths.state_dir().join(HOLD_FILE)
}

/// Writes the hold file (atomically: a crash leaves it whole or absent).
pub fn set_hold_file(path: &Path) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, b"stopped by hostmanager stop-apps\n", 0o600)
        .map_err(|error| std::io::Error::new(error.kind(), format!("{}: {error}", path.display())))
}

/// Removes the hold file; an absent file is not an error.
pub fn clear_hold_file(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_survives_a_reload_and_a_release_clears_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let paths = Paths::new(root.path());
        let hold = StopHold::load(&paths);
        assert!(!hold.is_held());
        hold.hold().expect("hold");
        assert!(StopHold::load(&paths).is_held(), "persisted");
        hold.release();
        assert!(!hold.is_held());
        assert!(!StopHold::load(&paths).is_held(), "file removed");
    }
}
