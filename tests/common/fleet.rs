//! A real controller process for fleet tests: `hostmanager-controller run` on a loopback port
//! with its own data directory (SQLite, or a PostgreSQL URL), driven through its CLI (`--json`)
//! and its HTTP API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{TestHost, free_ports, wait_for};

/// The controller binary, built next to the agent's by `cargo build --workspace`.
pub fn controller_bin() -> PathBuf {
    let bin = Path::new(super::BIN)
        .parent()
        .expect("target dir")
        .join("hostmanager-controller");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace (`cargo build --workspace`, or `make test`)",
        bin.display()
    );
    bin
}

#[derive(Debug)]
pub struct TestController {
    pub data: tempfile::TempDir,
    pub port: u16,
    pub config: String,
    /// Extra environment for the process (AWS credentials for an S3 object store).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

/// The test timings: hosts report every 300 ms; the health gate is 3 reports over 1 s.
pub fn fast_config(port: u16, database_url: Option<&str>) -> String {
    let database = database_url
        .map(|url| format!("[database]\nurl = \"{url}\"\n"))
        .unwrap_or_default();
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n{database}\
         [hosts]\ninterval = \"300ms\"\nfailover_grace = \"3s\"\n\
         [deploy]\nhealth_gate_reports = 3\nhealth_gate_min = \"1s\"\ntick = \"100ms\"\n\
         lease = \"2s\"\n"
    )
}

impl TestController {
    pub fn start(database_url: Option<&str>) -> Self {
        let port = free_ports(1)[0];
        Self::start_with(fast_config(port, database_url), port)
    }

    pub fn start_with(config: String, port: u16) -> Self {
        Self::start_with_env(config, port, Vec::new())
    }

    pub fn start_with_env(config: String, port: u16, env: Vec<(String, String)>) -> Self {
        let data = tempfile::Builder::new()
            .prefix("hm-controller-")
            .tempdir()
            .expect("tempdir");
        let mut controller = Self {
            data,
            port,
            config,
            env,
            child: None,
        };
        controller.spawn();
        controller
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// (Re)starts the process on the same data directory and waits for `/healthz`.
    pub fn spawn(&mut self) {
        let config_path = self.data.path().join("controller.toml");
        std::fs::write(&config_path, &self.config).expect("write config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("controller.log"))
            .expect("log");
        let child = Command::new(controller_bin())
            .arg("--data")
            .arg(self.data.path())
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env("HOSTMANAGER_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn controller");
        self.child = Some(child);
        let port = self.port;
        wait_for("the controller's /healthz", Duration::from_secs(30), || {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("controller exited with {status}; log:\n{}", self.log());
            }
            super::http::get(port, "/healthz")
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| ())
        });
    }

    /// `kill -9`: nothing is flushed, nothing is shut down.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait: the graceful path.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        child.wait().expect("wait")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("controller.log")).unwrap_or_default()
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data.path().join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_string()
    }

    /// Runs an operator command against this controller.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(controller_bin())
            .arg("--data")
            .arg(self.data.path())
            .arg("--url")
            .arg(self.url())
            .args(args)
            .output()
            .expect("run controller CLI")
    }

    /// An operator command with `--json` that must succeed; its document.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let output = self.cli(&all);
        assert!(
            output.status.success(),
            "hostmanager-controller {args:?} failed ({}):\n{}\ncontroller log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            super::tail(&self.log(), 40)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// `GET` on the operator API with the admin token.
    pub fn api(&self, path: &str) -> Value {
        let response = super::http::request(
            self.port,
            "GET",
            path,
            &[("Authorization", &format!("Bearer {}", self.admin_token()))],
            b"",
        )
        .expect("request");
        assert_eq!(response.status, 200, "GET {path}: {}", response.body);
        serde_json::from_str(&response.body).expect("JSON")
    }

    /// An enrollment token for `environment` with `uses` uses.
    pub fn enrollment_token(&self, environment: &str, uses: u32) -> String {
        let token = self.cli_json(&[
            "enroll-token",
            "create",
            environment,
            "--uses",
            &uses.to_string(),
        ]);
        token["Token"].as_str().expect("Token").to_string()
    }

    /// The environment's health document (DescribeEnvironmentHealth).
    pub fn health(&self, environment: &str) -> Value {
        self.api(&format!("/v1/environments/{environment}/health"))
    }

    /// `deploy ENV BUNDLE --label LABEL --wait`, which must succeed.
    pub fn deploy_wait(&self, environment: &str, bundle: &Path, label: &str) {
        let bundle = bundle.to_str().expect("bundle path");
        let output = self.cli(&["deploy", environment, bundle, "--label", label, "--wait"]);
        assert!(
            output.status.success(),
            "deploy --wait: {}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            super::tail(&self.log(), 30)
        );
    }

    /// The messages of deployment `id`'s events, oldest first.
    pub fn deployment_messages(&self, environment: &str, id: i64) -> Vec<String> {
        self.events(environment)
            .iter()
            .filter(|e| e["DeploymentId"] == id)
            .filter_map(|e| e["Message"].as_str().map(str::to_string))
            .collect()
    }

    /// The environment's events, oldest first.
    pub fn events(&self, environment: &str) -> Vec<Value> {
        let page = self.api(&format!(
            "/v1/events?EnvironmentName={environment}&MaxRecords=1000"
        ));
        let mut events = page["Events"].as_array().cloned().unwrap_or_default();
        events.reverse();
        events
    }
}

impl Drop for TestController {
    fn drop(&mut self) {
        self.kill();
        // The load balancer outlives the controller by design; the test's does not.
        if let Ok(pid) = std::fs::read_to_string(self.data.path().join("haproxy/haproxy.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// An agent enrolled in `environment` of `controller`, reporting every 300 ms.
pub fn enrolled_host(controller: &TestController, instance_id: &str, token: &str) -> TestHost {
    let host = TestHost::new();
    let token_file = host.path("etc/hostmanager/enrollment.token");
    std::fs::create_dir_all(token_file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&token_file, token).expect("token");
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    host.set("environment", "instance_id", instance_id)
        .set("controller", "url", controller.url())
        .set(
            "controller",
            "enrollment_token_file",
            token_file.to_string_lossy().to_string(),
        )
        .set("controller", "interval", "300ms")
        .set("controller", "timeout", "5s")
}

/// One HTTP call to the controller with an optional bearer token and JSON body (none when
/// `body` is null): the status and the JSON document answered (null when it is not JSON).
pub fn call(
    controller: &TestController,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer.as_str()));
    }
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let response =
        super::http::request(controller.port, method, path, &headers, &bytes).expect("request");
    let document = serde_json::from_str(&response.body).unwrap_or(Value::Null);
    (response.status, document)
}

/// The smallest report an agent of environment `web` sends.
pub fn report_body(instance: &str) -> Value {
    serde_json::json!({
        "instance_id": instance, "environment": "web", "agent_version": "test",
        "applied_serial": 0, "status": {}, "events": [], "command_results": []
    })
}

/// `count` enrolled, running hosts of environment `web`.
pub fn fleet(controller: &TestController, count: usize) -> Vec<TestHost> {
    fleet_in(controller, "web", count, &[])
}

/// `count` enrolled, running hosts of a new environment `name` created with `options`
/// (`NAMESPACE:OPTION=VALUE`), with instance ids `<name>-0000`… (`i-0000`… for `web`).
pub fn fleet_in(
    controller: &TestController,
    name: &str,
    count: usize,
    options: &[&str],
) -> Vec<TestHost> {
    let mut create = vec!["env", "create", name];
    for option in options {
        create.extend(["--option", option]);
    }
    controller.cli_json(&create);
    let token = controller.enrollment_token(name, count as u32);
    let prefix = if name == "web" { "i" } else { name };
    let mut hosts: Vec<TestHost> = (0..count)
        .map(|i| {
            enrolled_host(controller, &format!("{prefix}-{i:04}"), &token)
                .set("metrics", "window", "1s")
                .set("health", "min_requests", 5)
        })
        .collect();
    for host in &mut hosts {
        host.start();
    }
    wait_for(
        "every host enrolled and reporting",
        Duration::from_secs(30),
        || {
            let instances = controller.api(&format!("/v1/environments/{name}/instances"));
            let list = instances["InstanceHealthList"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            (list.len() == count).then_some(())
        },
    );
    hosts
}
