//! A controller with its load balancer (a real HAProxy on loopback) for fleet tests: the
//! config, HAProxy's own view of its servers (its admin socket), and requests through it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::fleet::{TestController, fast_config};
use super::free_ports;

/// The test domain: environment `web` is `web.elb.test`.
pub const DOMAIN: &str = "elb.test";

/// A controller whose HAProxy listens on `lb_port`, checking every 300 ms and asking the
/// controller every 200 ms.
pub fn controller_with_lb() -> (TestController, u16) {
    controller_with_lb_config(|config| config)
}

/// `controller_with_lb`, its config passed through `edit` first.
pub fn controller_with_lb_config(edit: impl FnOnce(String) -> String) -> (TestController, u16) {
    controller_with_lb_env(edit, Vec::new())
}

/// `controller_with_lb_config`, with extra environment for the process (AWS credentials).
pub fn controller_with_lb_env(
    edit: impl FnOnce(String) -> String,
    env: Vec<(String, String)>,
) -> (TestController, u16) {
    let ports = free_ports(3);
    let config = format!(
        "{}[load_balancer]\nlisten = \"127.0.0.1:{}\"\nagent_listen = \"127.0.0.1:{}\"\n\
         domain = \"{DOMAIN}\"\nagent_interval = \"200ms\"\ncheck_interval = \"300ms\"\n",
        fast_config(ports[0], None).replace(
            "lease = \"2s\"\n",
            "lease = \"2s\"\ntimeout_margin = \"0s\"\n"
        ),
        ports[1],
        ports[2],
    );
    (
        TestController::start_with_env(edit(config), ports[0], env),
        ports[1],
    )
}

/// The host name of `environment` before any swap.
pub fn cname(environment: &str) -> String {
    format!("{environment}.{DOMAIN}")
}

/// One runtime API command to the HAProxy of the controller with data directory `data`.
pub fn haproxy_command(data: &Path, command: &str) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(data.join("haproxy/admin.sock"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// HAProxy's status of each server of `environment` (`UP`, `DRAIN (agent)`, `MAINT`, …).
pub fn server_states(data: &Path, environment: &str) -> BTreeMap<String, String> {
    let Ok(csv) = haproxy_command(data, "show stat") else {
        return BTreeMap::new();
    };
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let column = |name: &str| header.iter().position(|c| *c == name).expect("column");
    let (px, sv, status) = (column("pxname"), column("svname"), column("status"));
    let backend = format!("env_{environment}");
    lines
        .map(|line| line.split(',').collect::<Vec<_>>())
        .filter(|f| {
            f.len() > status && f[px] == backend && !matches!(f[sv], "BACKEND" | "FRONTEND")
        })
        .map(|f| (f[sv].to_string(), f[status].to_string()))
        .collect()
}

/// How many of `environment`'s servers take traffic now.
pub fn in_rotation(data: &Path, environment: &str) -> usize {
    server_states(data, environment)
        .values()
        .filter(|s| *s == "UP" || s.starts_with("UP "))
        .count()
}

/// Waits until `count` servers of `environment` take traffic; on timeout, says what HAProxy
/// and the controller saw.
pub fn wait_in_rotation(controller: &TestController, environment: &str, count: usize) {
    let data = controller.data_dir();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while in_rotation(data, environment) != count {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after 60s waiting for {count} servers of {environment} in rotation: {:?}\n\
             instances: {}\ncontroller log:\n{}",
            server_states(data, environment),
            controller.api(&format!("/v1/environments/{environment}/instances")),
            super::tail(&controller.log(), 30)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A GET through the load balancer with `host`'s name.
pub fn get_via(lb_port: u16, host: &str, path: &str) -> std::io::Result<super::http::Response> {
    super::http::request(lb_port, "GET", path, &[("Host", host)], b"")
}

/// The smallest number of `environment`'s servers in rotation, sampled every 20 ms (a
/// sampling rate, not a wait) until it is finished, and every change of their states seen.
pub struct CapacityWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    worker: std::thread::JoinHandle<Capacity>,
}

#[derive(Debug)]
pub struct Capacity {
    pub least: usize,
    pub samples: usize,
    /// (milliseconds since the watch started, the servers' states), at each change.
    pub changes: Vec<(u128, BTreeMap<String, String>)>,
}

impl CapacityWatch {
    pub fn start(controller: &TestController, environment: &str) -> Self {
        let data = controller.data_dir().to_path_buf();
        let environment = environment.to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let worker = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let mut capacity = Capacity {
                least: usize::MAX,
                samples: 0,
                changes: Vec::new(),
            };
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let states = server_states(&data, &environment);
                let up = states
                    .values()
                    .filter(|s| *s == "UP" || s.starts_with("UP "))
                    .count();
                capacity.least = capacity.least.min(up);
                capacity.samples += 1;
                if capacity
                    .changes
                    .last()
                    .is_none_or(|(_, last)| *last != states)
                {
                    capacity
                        .changes
                        .push((started.elapsed().as_millis(), states));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            capacity
        });
        Self { stop, worker }
    }

    pub fn finish(self) -> Capacity {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.worker.join().expect("capacity watch")
    }
}
