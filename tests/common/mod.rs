//! Test harness: a temporary root with its own config on free loopback ports, the real agent
//! binary, real nginx and real app processes. Everything a test starts is stopped on drop.
#![allow(dead_code)]

pub mod apps;
pub mod attack;
pub mod bundles;
pub mod cloudwatch;
pub mod controller;
pub mod crash;
pub mod fleet;
pub mod http;
pub mod imds;
pub mod keepalive;
pub mod lb;
pub mod live;
pub mod load;
pub mod moto;
pub mod platforms;
/// The controller crate's PostgreSQL harness, shared rather than copied.
#[path = "../../crates/controller/tests/support/postgres.rs"]
pub mod postgres;
pub mod procs;
pub mod provision;
pub mod rolling;
pub mod sqs;
pub mod systemd;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_hostmanager");

/// Polls `probe` every 25 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Free loopback ports, reserved for this test process's life. They are picked below the
/// kernel's ephemeral range (32768+), so no outgoing connection takes one meanwhile, and each
/// is held by a lock file, so parallel tests (one process each under nextest) never pick the
/// same one between choosing it and the agent binding it.
pub fn free_ports(count: usize) -> Vec<u16> {
    static HELD: std::sync::Mutex<Vec<nix::fcntl::Flock<std::fs::File>>> =
        std::sync::Mutex::new(Vec::new());
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    let mut chosen = Vec::new();
    while chosen.len() < count {
        let port = fastrand::u16(20_000..32_000);
        if chosen.contains(&port) {
            continue;
        }
        let Ok(lock) = nix::fcntl::Flock::lock(
            port_lock_file(port),
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        ) else {
            continue; // Another test process holds it.
        };
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue; // Something outside the tests uses it.
        }
        held.push(lock);
        chosen.push(port);
    }
    chosen
}

/// Holds a fixed port (an Elastic Beanstalk platform's default, which bundles hard-code) for
/// this test, waiting while another test process holds it; the port must be free.
pub fn reserve_port(port: u16) -> nix::fcntl::Flock<std::fs::File> {
    let lock = nix::fcntl::Flock::lock(port_lock_file(port), nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, error)| panic!("cannot lock port {port}: {error}"));
    if let Err(error) = TcpListener::bind(("127.0.0.1", port)) {
        panic!("this test needs port {port} on 127.0.0.1, which something else uses: {error}");
    }
    lock
}

/// The lock file that says a test process holds `port`.
fn port_lock_file(port: u16) -> std::fs::File {
    let dir =
        std::env::temp_dir().join(format!("hostmanager-test-ports-{}", nix::unistd::geteuid()));
    std::fs::create_dir_all(&dir).expect("port lock dir");
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
        .expect("port lock file")
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The user apps run as in tests: `webapp` when root (created if missing), else ourselves.
pub fn app_user() -> String {
    if is_root() {
        ensure_system_user("webapp");
        "webapp".to_string()
    } else {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .expect("lookup")
            .expect("user")
            .name
    }
}

/// Creates the system user `name` (no home, no shell) unless it exists; needs root.
pub fn ensure_system_user(name: &str) -> nix::unistd::User {
    if let Some(user) = nix::unistd::User::from_name(name).ok().flatten() {
        return user;
    }
    let status = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ])
        .status()
        .expect("useradd");
    // 9: created meanwhile by a parallel test.
    assert!(
        status.success() || status.code() == Some(9),
        "useradd {name} failed: {status}"
    );
    nix::unistd::User::from_name(name)
        .expect("lookup")
        .unwrap_or_else(|| panic!("user {name} after useradd"))
}

/// Runs `script` with /bin/sh as `user` (its uid and gid, no supplementary groups) with the
/// extra environment `env`; asserts it succeeded. For what an app user can do on a host.
pub fn run_as(user: &str, script: &str, env: &[(&str, &str)]) -> Output {
    use std::os::unix::process::CommandExt;
    assert!(
        is_root(),
        "acting as {user} needs root: run the suite as root"
    );
    let account = nix::unistd::User::from_name(user)
        .expect("lookup")
        .unwrap_or_else(|| panic!("user {user}"));
    // std drops root's supplementary groups when it switches uid.
    let output = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .envs(env.iter().copied())
        .uid(account.uid.as_raw())
        .gid(account.gid.as_raw())
        .current_dir("/")
        .output()
        .expect("spawn as user");
    assert!(
        output.status.success(),
        "as {user}: {script}\nfailed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[derive(Debug)]
pub struct TestHost {
    pub root: tempfile::TempDir,
    pub proxy_port: u16,
    pub app_port: u16,
    pub alternate_port: u16,
    config: toml::Table,
    agent: Option<Child>,
}

impl TestHost {
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("hm-test-")
            .tempdir()
            .expect("tempdir");
        // The app user and nginx's workers must be able to reach into the root.
        std::fs::set_permissions(
            root.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let ports = free_ports(3);
        let config: toml::Table = format!(
            r#"
            [environment]
            instance_id = "i-test"
            [app]
            user = "{user}"
            port = {app}
            alternate_port = {alt}
            [proxy]
            listen = "127.0.0.1:{proxy}"
            worker_processes = 1
            [health]
            path = "/health"
            interval = "200ms"
            timeout = "150ms"
            failures_before_unhealthy = 1
            # The CPU and disk rules would judge the shared test machine, not the app under
            # test (their logic has unit tests in src/health/rules.rs).
            cpu = {{}}
            root_filesystem = {{}}
            [deploy]
            health_gate_successes = 2
            health_gate_interval = "100ms"
            health_gate_timeout = "20s"
            drain_timeout = "5s"
            [supervise]
            stop_timeout = "3s"
            restart_backoff_initial = "100ms"
            restart_backoff_max = "2s"
            [agent]
            shutdown_timeout = "5s"
            "#,
            user = app_user(),
            app = ports[1],
            alt = ports[2],
            proxy = ports[0],
        )
        .parse()
        .expect("test config");
        Self {
            root,
            proxy_port: ports[0],
            app_port: ports[1],
            alternate_port: ports[2],
            config,
            agent: None,
        }
    }

    /// Overrides one config key, e.g. `set("supervise", "restart_backoff_initial", "2s")`;
    /// a dotted section names a sub-table (`set("logs.publish", "enabled", true)`).
    pub fn set(mut self, section: &str, key: &str, value: impl Into<toml::Value>) -> Self {
        self.change(section, key, value);
        self
    }

    /// Removes one config key (back to its default).
    pub fn unset(mut self, section: &str, key: &str) -> Self {
        if let Some(toml::Value::Table(table)) = self.config.get_mut(section) {
            table.remove(key);
        }
        self
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.path().join(relative)
    }

    pub fn write_config(&self) {
        let path = self.path("etc/hostmanager/agent.toml");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, toml::to_string(&self.config).expect("toml")).expect("write config");
    }

    /// Starts the agent and waits until its control socket answers.
    pub fn start(&mut self) {
        self.start_with_env(&[]);
    }

    /// `start`, with extra environment variables for the agent.
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) {
        self.start_with_env_unchecked(env);
        wait_for(
            "the agent's control socket",
            Duration::from_secs(20),
            || {
                self.assert_agent_alive();
                self.cli(&["status", "--json"])
                    .status
                    .success()
                    .then_some(())
            },
        );
    }

    /// Starts the agent without waiting for it (it may be meant to exit at once).
    pub fn start_with_env_unchecked(&mut self, env: &[(&str, &str)]) {
        self.write_config();
        let log = std::fs::File::create(self.path("agent.log")).ok();
        let stderr = log.map(Stdio::from).unwrap_or_else(Stdio::null);
        let child = Command::new(BIN)
            .arg("--root")
            .arg(self.root.path())
            .arg("run")
            .env("HOSTMANAGER_LOG", "debug")
            // moto accepts any credentials; IMDS must never be asked from a test.
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn agent");
        self.agent = Some(child);
    }

    fn assert_agent_alive(&mut self) {
        if let Some(child) = self.agent.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("agent exited with {status}; log:\n{}", self.agent_log());
        }
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.path("agent.log")).unwrap_or_default()
    }

    pub fn agent_pid(&self) -> Option<i32> {
        self.agent.as_ref().map(|child| child.id() as i32)
    }

    /// Sends `signal` to the agent and waits (up to `timeout`) for it to exit.
    pub fn stop_agent(
        &mut self,
        signal: nix::sys::signal::Signal,
        timeout: Duration,
    ) -> std::process::ExitStatus {
        let mut child = self.agent.take().expect("agent running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
            .expect("signal agent");
        wait_for("the agent to exit", timeout, || {
            child.try_wait().expect("try_wait")
        })
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .output()
            .expect("run cli")
    }

    /// Runs the CLI and asserts success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "hostmanager {args:?} failed ({}):\nstdout: {}\nstderr: {}\nagent log tail:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            tail(&self.agent_log(), 40)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn status(&self) -> Value {
        serde_json::from_str(&self.cli_ok(&["status", "--json"])).expect("status json")
    }

    /// `[environment] instance_id` of this host's config.
    pub fn instance_id(&self) -> String {
        self.config
            .get("environment")
            .and_then(|e| e.get("instance_id"))
            .and_then(|i| i.as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// `hostmanager health --json`: status, causes, the last window's metrics, CloudWatch.
    pub fn health(&self) -> Value {
        serde_json::from_str(&self.cli_ok(&["health", "--json"])).expect("health json")
    }

    pub fn events(&self) -> Vec<Value> {
        serde_json::from_str(&self.cli_ok(&["events", "--json", "--limit", "1000"]))
            .expect("events json")
    }

    /// Deploys and waits for the outcome; returns the final deployment record.
    pub fn deploy(&self, bundle: &Path, extra: &[&str]) -> Value {
        let mut args = vec![
            "deploy",
            bundle.to_str().expect("utf-8 path"),
            "--wait",
            "--json",
        ];
        args.extend_from_slice(extra);
        let output = self.cli(&args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(&stdout).unwrap_or_else(|error| {
            panic!(
                "deploy output is not JSON ({error}):\n{stdout}\nstderr: {}\nagent log:\n{}",
                String::from_utf8_lossy(&output.stderr),
                tail(&self.agent_log(), 40)
            )
        })
    }

    /// Deploys and asserts success.
    pub fn deploy_ok(&self, bundle: &Path) -> Value {
        let record = self.deploy(bundle, &[]);
        assert_eq!(
            record["status"],
            "succeeded",
            "deployment failed: {record:#}\nagent log:\n{}",
            tail(&self.agent_log(), 40)
        );
        record
    }

    /// Rotates every log now and waits until no rotated file is still being staged
    /// (`var/log/rotated/.name.part` and the like).
    pub fn rotate_logs_and_settle(&self) {
        self.cli_ok(&["logs", "rotate"]);
        wait_for("compression to finish", Duration::from_secs(20), || {
            let staging = std::fs::read_dir(self.path("var/log/rotated"))
                .ok()?
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with('.'));
            (!staging).then_some(())
        });
    }

    /// GET through nginx.
    pub fn get(&self, path: &str) -> std::io::Result<http::Response> {
        http::get(self.proxy_port, path)
    }

    /// The body of GET through nginx, panicking on errors.
    pub fn body(&self, path: &str) -> String {
        let response = self
            .get(path)
            .unwrap_or_else(|e| panic!("GET {path} through nginx: {e}"));
        response.body
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Apps and nginx outlive the agent by design: stop them directly.
        let _ = self.cli(&["stop-apps"]);
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
