//! What an app process runs as and with: the app user and exactly its configured groups, the
//! umask, rlimits, cgroup limits (or an event saying why not), and its CPU/memory in status.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::apps::{find_event, pid_of, running};
use common::bundles::sample;
use common::procs;
use common::{TestHost, wait_for};

#[test]
fn the_app_runs_as_the_app_user_with_the_configured_groups_umask_and_rlimits() {
    let mut host = TestHost::new()
        .set("app", "groups", vec!["nogroup"])
        .set("supervise", "umask", "027")
        .set("supervise", "nofile", 4242)
        .set("supervise", "core", 1_048_576);
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let pid = pid_of(&running(&host, "web"));

    let user = nix::unistd::User::from_name(&common::app_user())
        .expect("lookup")
        .expect("user");
    let ids = |field| {
        procs::status_field(pid, field)
            .expect(field)
            .split_whitespace()
            .map(|id| id.parse::<u32>().expect("id"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids("Uid"),
        [user.uid.as_raw(); 4],
        "real, effective, saved, fs"
    );
    assert_eq!(ids("Gid"), [user.gid.as_raw(); 4]);
    if common::is_root() {
        assert_ne!(user.uid.as_raw(), 0, "never root");
        let nogroup = nix::unistd::Group::from_name("nogroup")
            .expect("lookup")
            .expect("group nogroup");
        assert_eq!(
            ids("Groups"),
            [nogroup.gid.as_raw()],
            "exactly the configured groups, none of root's"
        );
    }
    assert_eq!(procs::status_field(pid, "Umask").as_deref(), Some("0027"));

    let (_, our_hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).expect("rl");
    let nofile = if common::is_root() {
        4242
    } else {
        4242.min(our_hard)
    };
    assert_eq!(
        procs::limit(pid, "Max open files"),
        Some((nofile.to_string(), nofile.to_string()))
    );
    if common::is_root() {
        assert_eq!(
            procs::limit(pid, "Max core file size"),
            Some(("1048576".to_string(), "1048576".to_string()))
        );
    }
}

#[test]
fn cgroup_limits_apply_or_an_event_says_why_not() {
    let mut host =
        TestHost::new()
            .set("supervise", "memory_max", "256M")
            .set("supervise", "cpu_quota", "50%");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    let record = host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let pid = pid_of(&running(&host, "web"));
    let is_cgroup2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    let refused = find_event(&host, |e, m| {
        e["severity"] == "warning" && m.starts_with("cgroup limits requested")
    });
    match refused {
        Some(event) => {
            let message = event["message"].as_str().expect("message");
            assert!(
                message.contains("/sys/fs/cgroup is not writable cgroup v2"),
                "{message}"
            );
            assert!(message.contains("memory, cpu"), "{message}");
            assert_eq!(
                host.body("/"),
                "Hello from v1\n",
                "the app runs without them"
            );
        }
        None => {
            assert!(is_cgroup2, "a cgroup v1/hybrid host cannot apply v2 limits");
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
            let path = cgroup
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("v2 line");
            assert!(path.ends_with(&format!("/{}-web", record["id"])), "{path}");
            let dir = PathBuf::from(format!("/sys/fs/cgroup{path}"));
            let read = |f| std::fs::read_to_string(dir.join(f)).expect(f);
            assert_eq!(read("memory.max").trim(), "268435456");
            assert_eq!(read("cpu.max").trim(), "50000 100000");
        }
    }
}

#[test]
fn status_shows_cpu_and_memory_per_process() {
    let mut host = TestHost::new().set("supervise", "stats_interval", "200ms");
    host.start();
    let dir = tempfile::tempdir().expect("tempdir");
    host.deploy_ok(&sample(dir.path(), "v1", &[]));
    let web = wait_for("a CPU/memory sample", Duration::from_secs(10), || {
        let web = running(&host, "web");
        web["stats"].is_object().then_some(web)
    });
    let pid = pid_of(&web);
    let rss_kib: u64 = procs::status_field(pid, "VmRSS")
        .expect("VmRSS")
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .expect("kB");
    let stats = &web["stats"];
    assert!(stats["rss_bytes"].as_u64().expect("rss") >= rss_kib * 1024 / 2);
    assert!(stats["cpu_percent"].as_f64().expect("cpu") >= 0.0);
    // The app and anything it forked: the session's whole footprint.
    assert!(stats["processes"].as_u64().expect("count") >= 1);
    assert!(web["uptime_secs"].is_u64());
    let text = host.cli_ok(&["status"]);
    assert!(text.contains("CPU%") && text.contains("RSS"), "{text}");
}
