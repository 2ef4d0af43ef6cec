//! Resource limits of app processes: which rlimits to set, and the cgroup v2 file values and
//! names. Pure; `spawn.rs` and `cgroup.rs` apply them.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::ProcessLimits;

/// `cpu.max` period: the kernel's default, 100 ms.
pub const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RlimitKind {
    /// RLIMIT_NOFILE
    OpenFiles,
    /// RLIMIT_CORE
    CoreSize,
}

/// One rlimit to set in the child before it drops privileges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub kind: RlimitKind,
    pub soft: u64,
    pub hard: u64,
}

/// The rlimits `limits` asks for, each as (kind, requested value).
pub fn requested_rlimits(limits: &ProcessLimits) -> Vec<(RlimitKind, u64)> {
    let mut wanted = Vec::new();
    if let Some(n) = limits.nofile {
        wanted.push((RlimitKind::OpenFiles, n));
    }
    if let Some(bytes) = limits.core {
        wanted.push((RlimitKind::CoreSize, bytes));
    }
    wanted
}

/// Soft and hard limit for a `requested` value. Root sets both (raising the hard limit if
/// needed); anyone else cannot raise its hard limit, so the request is clamped to it.
/// The bool says whether it was clamped.
pub fn plan_rlimit(
    kind: RlimitKind,
    requested: u64,
    current_hard: u64,
    privileged: bool,
) -> (Rlimit, bool) {
    if privileged || requested <= current_hard {
        let hard = if privileged { requested } else { current_hard };
        (
            Rlimit {
                kind,
                soft: requested,
                hard,
            },
            false,
        )
    } else {
        (
            Rlimit {
                kind,
                soft: current_hard,
                hard: current_hard,
            },
            true,
        )
    }
}

/// The controllers `limits` needs.
pub fn needed_controllers(limits: &ProcessLimits) -> Vec<&'static str> {
    let mut needed = Vec::new();
    if limits.memory_max.is_some() {
        needed.push("memory");
    }
    if limits.cpu_quota_percent.is_some() {
        needed.push("cpu");
    }
    needed
}

/// The controllers of `needed` that a `cgroup.controllers` file does not list.
pub fn missing_controllers<'a>(available: &str, needed: &[&'a str]) -> Vec<&'a str> {
    let listed: Vec<&str> = available.split_whitespace().collect();
    needed
        .iter()
        .copied()
        .filter(|c| !listed.contains(c))
        .collect()
}

/// The `cgroup.subtree_control` line enabling `controllers`, e.g. `+memory +cpu`.
pub fn subtree_control_line(controllers: &[&str]) -> String {
    controllers
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `memory.max` value: bytes, or `max` for no limit.
pub fn memory_max_value(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "max".to_string(), |b| b.to_string())
}

/// The `cpu.max` value: `$QUOTA $PERIOD` in microseconds, or `max $PERIOD` for no limit.
pub fn cpu_max_value(percent_of_one_cpu: Option<u32>) -> String {
    match percent_of_one_cpu {
        Some(percent) => {
            let quota = CPU_PERIOD_US * u64::from(percent) / 100;
            format!("{quota} {CPU_PERIOD_US}")
        }
        None => format!("max {CPU_PERIOD_US}"),
    }
}

/// The cgroup (under `/sys/fs/cgroup`) holding this agent's processes. The production root
/// gets the plain name; any other root (tests, demos) a name of its own, so that two agents on
/// one host never share a cgroup.
pub fn cgroup_base_name(root: &Path) -> String {
    if root == Path::new("/") {
        return "hostmanager".to_string();
    }
    let digest = Sha256::digest(root.as_os_str().as_encoded_bytes());
    let short: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("hostmanager-{short}")
}

/// The leaf cgroup of one process: release and Procfile name, both safe as a file name.
pub fn cgroup_leaf_name(release: u64, process: &str) -> String {
    format!("{release}-{process}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_max_renders_bytes_or_max() {
        assert_eq!(memory_max_value(Some(512 << 20)), "536870912");
        assert_eq!(memory_max_value(None), "max");
    }

    #[test]
    fn cpu_max_renders_quota_and_period() {
        assert_eq!(cpu_max_value(Some(50)), "50000 100000");
        assert_eq!(cpu_max_value(Some(250)), "250000 100000");
        assert_eq!(
            cpu_max_value(Some(1)),
            "1000 100000",
            "the kernel's minimum quota"
        );
        assert_eq!(cpu_max_value(None), "max 100000");
    }

    #[test]
    fn controllers_are_checked_and_enabled_by_name() {
        let limits = ProcessLimits {
            memory_max: Some(1 << 30),
            cpu_quota_percent: Some(50),
            ..ProcessLimits::default()
        };
        let needed = needed_controllers(&limits);
        assert_eq!(needed, ["memory", "cpu"]);
        assert_eq!(
            missing_controllers("cpuset cpu io memory pids\n", &needed),
            Vec::<&str>::new()
        );
        assert_eq!(missing_controllers("hugetlb\n", &needed), ["memory", "cpu"]);
        assert_eq!(subtree_control_line(&needed), "+memory +cpu");
        assert!(needed_controllers(&ProcessLimits::default()).is_empty());
    }

    #[test]
    fn root_sets_both_limits_others_are_clamped_to_their_hard_limit() {
        let (as_root, clamped) = plan_rlimit(RlimitKind::OpenFiles, 100_000, 4096, true);
        assert_eq!(
            (as_root.soft, as_root.hard, clamped),
            (100_000, 100_000, false)
        );
        let (lower, clamped) = plan_rlimit(RlimitKind::OpenFiles, 1024, 4096, false);
        assert_eq!((lower.soft, lower.hard, clamped), (1024, 4096, false));
        let (higher, clamped) = plan_rlimit(RlimitKind::CoreSize, 100_000, 4096, false);
        assert_eq!((higher.soft, higher.hard, clamped), (4096, 4096, true));
    }

    #[test]
    fn requested_rlimits_follow_the_config() {
        let limits = ProcessLimits {
            nofile: Some(4096),
            core: Some(0),
            ..ProcessLimits::default()
        };
        assert_eq!(
            requested_rlimits(&limits),
            [(RlimitKind::OpenFiles, 4096), (RlimitKind::CoreSize, 0)]
        );
    }

    #[test]
    fn cgroup_names_are_per_root_and_per_process() {
        assert_eq!(cgroup_base_name(Path::new("/")), "hostmanager");
        let test_root = cgroup_base_name(Path::new("/tmp/hm-test-1"));
        assert!(test_root.starts_with("hostmanager-") && test_root.len() == 20);
        assert_ne!(test_root, cgroup_base_name(Path::new("/tmp/hm-test-2")));
        assert_eq!(cgroup_leaf_name(7, "web"), "7-web");
    }
}
