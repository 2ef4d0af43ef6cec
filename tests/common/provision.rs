//! A controller with its load balancer and a provisioner, for the tests of the policies that
//! launch hosts: the local provisioner (agents this machine starts in fresh roots under the
//! controller's data directory, from a template like the suite's own hosts') or a standby pool.

use std::path::Path;

use super::fleet::TestController;
use super::lb::controller_with_lb_config;
use super::{BIN, TestHost, free_ports};

/// The agent.toml the local provisioner's hosts start from: the suite's test host (fast
/// health checks, reports every 300 ms, 1 s metrics windows).
pub fn template(dir: &Path) -> std::path::PathBuf {
    let host = TestHost::new()
        .set("controller", "interval", "300ms")
        .set("controller", "timeout", "5s")
        .set("metrics", "window", "1s")
        .set("health", "min_requests", 5);
    host.write_config();
    let path = dir.join("agent-template.toml");
    std::fs::copy(host.path("etc/hostmanager/agent.toml"), &path).expect("template");
    path
}

/// The local provisioner's directory (template and hosts' roots, searchable by the app
/// user); dropping it stops the hosts still there.
#[derive(Debug)]
pub struct LocalHosts(pub tempfile::TempDir);

impl LocalHosts {
    pub fn roots(&self) -> std::collections::BTreeSet<String> {
        std::fs::read_dir(self.0.path().join("hosts"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for LocalHosts {
    fn drop(&mut self) {
        let roots = std::fs::read_dir(self.0.path().join("hosts"));
        for root in roots.into_iter().flatten().flatten() {
            let _ = std::process::Command::new(BIN)
                .arg("--root")
                .arg(root.path())
                .arg("stop-apps")
                .output();
            if let Ok(pid) = std::fs::read_to_string(root.path().join("agent.pid"))
                && let Ok(pid) = pid.trim().parse::<i32>()
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// A controller with HAProxy and the local provisioner; `evaluation` shortens
/// TrafficSplitting's EvaluationTime. Returns the controller, HAProxy's port, and the
/// provisioner's directory.
pub fn controller_with_local_provisioner(evaluation: &str) -> (TestController, u16, LocalHosts) {
    let dir = tempfile::tempdir().expect("tempdir");
    let template = template(dir.path());
    let base = free_ports(1)[0].min(65_000);
    let hosts = dir.path().join("hosts");
    std::fs::create_dir_all(&hosts).expect("hosts dir");
    for path in [dir.path(), hosts.as_path()] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
    }
    let provisioner = format!(
        "[provisioner]\nkind = \"local\"\nagent = \"{BIN}\"\ntemplate = \"{}\"\ndir = \"{}\"\nports = \"{base}-{}\"\n",
        template.display(),
        hosts.display(),
        base + 500
    );
    let (controller, lb_port) = controller_with_lb_config(|config| {
        format!(
            "{}{provisioner}",
            config.replace(
                "lease = \"2s\"\n",
                &format!("lease = \"2s\"\nevaluation_time = \"{evaluation}\"\n")
            )
        )
    });
    (controller, lb_port, LocalHosts(dir))
}

/// A controller with HAProxy whose provisioner is the standby pool `standby`.
pub fn controller_with_standby_pool() -> (TestController, u16) {
    controller_with_lb_config(|config| {
        format!("{config}[provisioner]\nkind = \"standby\"\npool = \"standby\"\n")
    })
}
