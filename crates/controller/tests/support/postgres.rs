//! A real PostgreSQL server for tests: Debian's binaries, a cluster made by `initdb` in a temp
//! dir, listening only on 127.0.0.1 at a free port (its socket dir inside the temp dir), one
//! fresh database per `create_database`, stopped on drop. Missing binaries fail the test: a
//! suite that skips would pass on a machine where it proved nothing.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;

/// PostgreSQL refuses to run as root; as root, the server runs as this system user.
const PG_USER: &str = "hostmanager-pg";
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// Between readiness probes; the deadline above is what bounds the wait.
const POLL: Duration = Duration::from_millis(50);
/// A free port can be taken by another process between probing and binding.
const START_ATTEMPTS: u32 = 5;

#[derive(Debug)]
pub struct PgServer {
    child: Child,
    port: u16,
    // Dropped after the server has stopped (fields drop after `Drop::drop`).
    _dir: tempfile::TempDir,
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

impl PgServer {
    /// Makes a cluster and starts it; panics with the reason (and the server's log) if it can't.
    pub fn start() -> Self {
        let bin = bin_dir();
        let runner = Runner::new();
        let dir = tempfile::Builder::new()
            .prefix("hostmanager-pg-")
            .tempdir()
            .expect("temp dir");
        runner.give(dir.path());
        let data = dir.path().join("data");
        let log = dir.path().join("initdb.log");
        let status = runner
            .command(&bin.join("initdb"), dir.path())
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg("-D")
            .arg(&data)
            .stdout(output(&log))
            .stderr(output(&log))
            .status()
            .expect("run initdb");
        assert!(
            status.success(),
            "initdb failed ({status}):\n{}",
            read(&log)
        );
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            // A log per attempt, so a bind failure of an earlier one is not read as this one's.
            let log = dir.path().join(format!("postgres-{attempt}.log"));
            let mut child = runner
                .command(&bin.join("postgres"), dir.path())
                .arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
                .arg(dir.path())
                // A throwaway cluster: durability costs time and proves nothing here.
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
                .stdin(Stdio::null())
                .stdout(output(&log))
                .stderr(output(&log))
                .spawn()
                .expect("spawn postgres");
            match wait_ready(&mut child, &bin, port, &log) {
                Ok(()) => {
                    return PgServer {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                Err(why) => {
                    stop(&mut child);
                    if attempt < START_ATTEMPTS && why.contains("could not bind") {
                        continue;
                    }
                    panic!("postgres did not start: {why}");
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// A new, empty database on this server; its URL.
    pub async fn create_database(&self) -> String {
        let name = format!(
            "hostmanager_test_{}",
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test server");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Polls until the server accepts connections, it exits, or the deadline passes.
fn wait_ready(child: &mut Child, bin: &Path, port: u16, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("poll postgres") {
            return Err(format!("exited ({status}):\n{}", read(log)));
        }
        let ready = Command::new(bin.join("pg_isready"))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-t",
                "1",
            ])
            .args(["-p", &port.to_string()])
            .status()
            .expect("run pg_isready");
        if ready.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not ready after {READY_DEADLINE:?}:\n{}",
                read(log)
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Immediate shutdown (SIGQUIT): the cluster is thrown away, so nothing needs to be flushed.
fn stop(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-QUIT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The newest installed server's `bin` directory (Debian: `/usr/lib/postgresql/<major>/bin`).
fn bin_dir() -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major);
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): \
             run `scripts/deps.sh test` to install them"
        ),
    }
}

/// Runs the server's programs as the current user, or as [`PG_USER`] when that is root.
#[derive(Debug)]
struct Runner {
    /// `(uid, gid)` to switch to.
    switch_to: Option<(u32, u32)>,
}

impl Runner {
    fn new() -> Self {
        if id(&["-u"]) != Some(0) {
            return Runner { switch_to: None };
        }
        if id(&["-u", PG_USER]).is_none() {
            // Another test process may create it at the same moment; the lookup below decides.
            let _ = Command::new("useradd")
                .args(["--system", "--no-create-home", "--home-dir", "/nonexistent"])
                .args(["--shell", "/usr/sbin/nologin", PG_USER])
                .stderr(Stdio::null())
                .status();
        }
        let uid = id(&["-u", PG_USER]).unwrap_or_else(|| panic!("could not create user {PG_USER}"));
        let gid = id(&["-g", PG_USER]).unwrap_or_else(|| panic!("no group for {PG_USER}"));
        Runner {
            switch_to: Some((uid, gid)),
        }
    }

    /// Makes `dir` the server user's.
    fn give(&self, dir: &Path) {
        if let Some((uid, gid)) = self.switch_to {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).expect("chown the cluster dir");
        }
    }

    fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut command = match self.switch_to {
            // setpriv execs the program itself, so the child's pid is the server's.
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"));
                c.arg("--clear-groups").arg("--").arg(program);
                c
            }
            None => Command::new(program),
        };
        command.current_dir(cwd);
        command
    }
}

fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    listener.local_addr().expect("probe port").port()
}

fn output(log: &Path) -> File {
    File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the server log")
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}
