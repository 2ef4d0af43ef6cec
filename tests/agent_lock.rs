//! One agent per root: a second agent on the same root exits at once, naming the lock, and
//! leaves the first one (and what it runs) alone.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, TestHost, wait_for};

#[test]
fn a_second_agent_on_the_same_root_exits_naming_the_lock() {
    let mut host = TestHost::new();
    host.start();
    let first = host.status()["agent"]["pid"].clone();

    let mut second = Command::new(BIN)
        .arg("--root")
        .arg(host.root.path())
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the second agent");
    let status = wait_for("the second agent to exit", Duration::from_secs(10), || {
        second.try_wait().expect("try_wait")
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(70), "{stderr}");
    let root = host.root.path().display();
    assert!(
        stderr.contains(&format!(
            "another hostmanager agent already runs on root {root} (it holds {root}/var/lib/hostmanager/agent.lock)"
        )),
        "{stderr}"
    );
    // The first agent still owns the root and its socket.
    assert_eq!(host.status()["agent"]["pid"], first);
}
