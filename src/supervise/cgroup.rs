//! cgroup v2 limits for app processes (memory.max, cpu.max), used only when `/sys/fs/cgroup` is
//! a writable cgroup v2 hierarchy offering the controllers the config asks for. Hosts with
//! cgroup v1 or a hybrid layout run the processes without these limits (and an event says so).
//!
//! Layout: `/sys/fs/cgroup/<base>/<release>-<process>`, outside the agent's own (systemd)
//! cgroup, so stopping or restarting the agent's unit never touches the apps. A child joins its
//! leaf before it execs: the parent opens the leaf's `cgroup.procs`, and the child writes "0"
//! (itself) to it, so nothing the app forks can start outside the cgroup.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::limits::{cpu_max_value, memory_max_value, missing_controllers, subtree_control_line};
use super::{ProcessSpec, Supervisor};
use crate::config::{ProcessLimits, SuperviseConfig};
use crate::events::{EventSink, NewEvent, Severity};
use crate::paths::Paths;

pub const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

#[derive(Debug)]
pub struct Cgroups {
    base: PathBuf,
}

impl Cgroups {
    /// Prepares `/sys/fs/cgroup/<base_name>` with `controllers` enabled for its children.
    /// `Err` explains, in words for an event, why limits cannot be applied on this host.
    pub fn prepare(base_name: &str, controllers: &[&str]) -> Result<Self, String> {
        let mount = Path::new(CGROUP_MOUNT);
        let fs = nix::sys::statfs::statfs(mount)
            .map_err(|errno| format!("cannot stat {CGROUP_MOUNT}: {errno}"))?;
        if fs.filesystem_type() != nix::sys::statfs::CGROUP2_SUPER_MAGIC {
            return Err(format!(
                "{CGROUP_MOUNT} is not cgroup v2 (a cgroup v1 or hybrid hierarchy)"
            ));
        }
        Self::prepare_in(mount, base_name, controllers)
    }

    /// `prepare` under `mount`, which must be a cgroup v2 hierarchy (a directory that stands
    /// in for one in tests).
    pub fn prepare_in(mount: &Path, base_name: &str, controllers: &[&str]) -> Result<Self, String> {
        let available = read(&mount.join("cgroup.controllers"))?;
        let missing = missing_controllers(&available, controllers);
        if !missing.is_empty() {
            return Err(format!(
                "the {} controller(s) are not available in {CGROUP_MOUNT}/cgroup.controllers ({:?})",
                missing.join(", "),
                available.trim()
            ));
        }
        let base = mount.join(base_name);
        enable_controllers(mount, controllers)?;
        fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
        enable_controllers(&base, controllers)?;
        Ok(Self { base })
    }

    fn leaf(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }

    /// Creates (or reuses) the leaf `name`, writes its limits and opens its `cgroup.procs` for
    /// the child to join.
    pub fn enter(&self, name: &str, limits: &ProcessLimits) -> io::Result<File> {
        let leaf = self.leaf(name);
        fs::create_dir_all(&leaf)?;
        // Both files are written every time: a limit removed from the config must go away.
        if limits.memory_max.is_some() || leaf.join("memory.max").exists() {
            write(
                &leaf.join("memory.max"),
                &memory_max_value(limits.memory_max),
            )?;
        }
        if limits.cpu_quota_percent.is_some() || leaf.join("cpu.max").exists() {
            write(
                &leaf.join("cpu.max"),
                &cpu_max_value(limits.cpu_quota_percent),
            )?;
        }
        OpenOptions::new()
            .write(true)
            .open(leaf.join("cgroup.procs"))
            .map_err(|e| annotate(&leaf.join("cgroup.procs"), e))
    }

    /// Kills every process in the leaf, including those that left the process group.
    pub fn kill(&self, name: &str) {
        let file = self.leaf(name).join("cgroup.kill");
        if file.exists()
            && let Err(error) = write(&file, "1")
        {
            tracing::warn!(%error, "cannot kill the cgroup");
        }
    }

    /// Removes the leaf once its processes are gone (best effort: a busy leaf is reused).
    pub fn remove(&self, name: &str) {
        let _ = fs::remove_dir(self.leaf(name));
    }
}

/// Sets up the agent's cgroup when the config asks for cgroup limits; when this host cannot
/// apply them, an event says why and the processes run without them.
pub(super) fn prepare_for(
    config: &SuperviseConfig,
    paths: &Paths,
    events: &EventSink,
) -> Option<Cgroups> {
    if !config.wants_cgroups() {
        return None;
    }
    let mut needed = super::limits::needed_controllers(&config.limits);
    for overrides in config.processes.values() {
        for controller in super::limits::needed_controllers(&overrides.limits) {
            if !needed.contains(&controller) {
                needed.push(controller);
            }
        }
    }
    let base = super::limits::cgroup_base_name(paths.root());
    match Cgroups::prepare(&base, &needed) {
        Ok(cgroups) => {
            events.info(
                "supervise",
                format!(
                    "cgroup v2 limits apply ({} controller(s)) under {}/{base}",
                    needed.join(", "),
                    CGROUP_MOUNT
                ),
            );
            Some(cgroups)
        }
        Err(reason) => {
            events.warn(
                "supervise",
                format!(
                    "cgroup limits requested (memory_max/cpu_quota) but {} is not writable cgroup v2 with the {} controller(s): {reason}; app processes run without these limits",
                    CGROUP_MOUNT,
                    needed.join(", ")
                ),
            );
            None
        }
    }
}

impl Supervisor {
    /// The `cgroup.procs` of `spec`'s cgroup, for the child to join; `None` without limits.
    pub(super) fn cgroup_for(&self, spec: &ProcessSpec, limits: &ProcessLimits) -> Option<File> {
        if !limits.wants_cgroup() {
            return None;
        }
        // Unavailable on this host: the event at startup said so.
        let cgroups = self.inner.cgroups.as_ref()?;
        let leaf = super::limits::cgroup_leaf_name(spec.release, &spec.name);
        match cgroups.enter(&leaf, limits) {
            Ok(procs) => Some(procs),
            Err(error) => {
                self.inner.events.emit(
                    NewEvent::new(
                        Severity::Warning,
                        "supervise",
                        format!(
                            "Cannot apply the cgroup limits of process {}: {error}; it runs without them",
                            spec.name
                        ),
                    )
                    .deployment(spec.release),
                );
                None
            }
        }
    }
}

/// Removes the (empty) cgroups of the agent on `root`, after its processes were stopped without
/// an agent (`stop-apps`). Best effort: a busy cgroup stays.
pub fn remove_all(root: &Path) {
    let base = Path::new(CGROUP_MOUNT).join(super::limits::cgroup_base_name(root));
    let Ok(leaves) = fs::read_dir(&base) else {
        return;
    };
    for leaf in leaves.flatten() {
        if leaf.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = fs::remove_dir(leaf.path());
        }
    }
    let _ = fs::remove_dir(&base);
}

fn enable_controllers(dir: &Path, controllers: &[&str]) -> Result<(), String> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = read(&file)?;
    if missing_controllers(&enabled, controllers).is_empty() {
        return Ok(());
    }
    write(&file, &subtree_control_line(controllers)).map_err(|error| error.to_string())
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value).map_err(|e| annotate(path, e))
}

fn annotate(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory laid out like a cgroup v2 root (the kernel creates the interface files of
    /// a new cgroup; here the test does).
    fn fake_hierarchy(controllers: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        fs::write(root.path().join("cgroup.controllers"), controllers).expect("controllers");
        fs::write(root.path().join("cgroup.subtree_control"), "").expect("subtree");
        fs::create_dir(root.path().join("hm")).expect("base");
        fs::write(root.path().join("hm/cgroup.subtree_control"), "").expect("subtree");
        fs::create_dir(root.path().join("hm/7-web")).expect("leaf");
        fs::write(root.path().join("hm/7-web/cgroup.procs"), "").expect("procs");
        root
    }

    #[test]
    fn limits_are_written_to_the_leaf_and_controllers_enabled_on_the_way() {
        let root = fake_hierarchy("cpuset cpu io memory pids\n");
        let cgroups = Cgroups::prepare_in(root.path(), "hm", &["memory", "cpu"]).expect("prepare");
        let read = |f: &str| fs::read_to_string(root.path().join(f)).expect(f);
        assert_eq!(read("cgroup.subtree_control"), "+memory +cpu");
        assert_eq!(read("hm/cgroup.subtree_control"), "+memory +cpu");
        let limits = ProcessLimits {
            memory_max: Some(256 << 20),
            cpu_quota_percent: Some(50),
            ..Default::default()
        };
        cgroups.enter("7-web", &limits).expect("enter");
        assert_eq!(read("hm/7-web/memory.max"), "268435456");
        assert_eq!(read("hm/7-web/cpu.max"), "50000 100000");

        // A limit removed from the config goes away on the next start.
        cgroups
            .enter("7-web", &ProcessLimits::default())
            .expect("enter");
        assert_eq!(read("hm/7-web/memory.max"), "max");
        assert_eq!(read("hm/7-web/cpu.max"), "max 100000");
    }

    #[test]
    fn a_missing_controller_is_named() {
        let root = fake_hierarchy("cpuset io pids\n");
        let refused = Cgroups::prepare_in(root.path(), "hm", &["memory", "cpu"]).map(|_| ());
        let expected = format!(
            "the memory, cpu controller(s) are not available in {CGROUP_MOUNT}/cgroup.controllers (\"cpuset io pids\")"
        );
        assert_eq!(refused, Err(expected));
    }
}
