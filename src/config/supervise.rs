//! `[supervise]` and `[supervise.processes.<name>]`: restart policy, stop signal and deadline,
//! umask, rlimits and cgroup limits. Pure, like the rest of the parser.

use std::collections::BTreeMap;
use std::time::Duration;

use super::model::{ProcessLimits, ProcessOverrides, StopSignal, SuperviseConfig};
use super::parse::positive;
use super::reader::Section;

/// RLIMIT_NOFILE may not exceed the kernel's `fs.nr_open` (1048576 by default).
const MAX_NOFILE: u64 = 1 << 20;
/// Below this a `memory.max` only gets the process OOM-killed at once: surely a typo.
const MIN_MEMORY_MAX: u64 = 1 << 20;
const MAX_CPU_QUOTA_PERCENT: u32 = 100_000;

pub(super) fn supervise(mut s: Section) -> SuperviseConfig {
    let stop_signal = stop_signal(&mut s).unwrap_or(StopSignal::Term);
    let stop_timeout = positive(&mut s, "stop_timeout", Duration::from_secs(10));
    let restart_delay = s.duration("restart_delay", Duration::ZERO);
    let restart_backoff_initial = positive(
        &mut s,
        "restart_backoff_initial",
        Duration::from_millis(100),
    );
    let restart_backoff_max = positive(&mut s, "restart_backoff_max", Duration::from_secs(30));
    if restart_backoff_max < restart_backoff_initial {
        s.problem(
            "restart_backoff_max",
            "must be at least supervise.restart_backoff_initial",
        );
    }
    let stable_after = positive(&mut s, "stable_after", Duration::from_secs(30));
    let crash_loop_exits = s.get("crash_loop_exits", 5u32);
    if crash_loop_exits < 2 {
        s.problem(
            "crash_loop_exits",
            format!("{crash_loop_exits} must be at least 2"),
        );
    }
    let crash_loop_window = positive(&mut s, "crash_loop_window", Duration::from_secs(60));
    let umask = umask(&mut s);
    let stats_interval = positive(&mut s, "stats_interval", Duration::from_secs(5));
    let limits = limits(&mut s);
    let processes = processes(s.section("processes"));
    s.finish();
    SuperviseConfig {
        stop_signal,
        stop_timeout,
        restart_delay,
        restart_backoff_initial,
        restart_backoff_max,
        stable_after,
        crash_loop_exits,
        crash_loop_window,
        umask,
        stats_interval,
        limits,
        processes,
    }
}

fn processes(mut s: Section) -> BTreeMap<String, ProcessOverrides> {
    let mut processes = BTreeMap::new();
    for name in s.keys() {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            s.problem(
                &name,
                "is not a Procfile process name (letters, digits, '_' and '-')",
            );
        }
        let mut p = s.section(&name);
        let stop_signal = stop_signal(&mut p);
        let stop_timeout = optional_positive(&mut p, "stop_timeout");
        let limits = limits(&mut p);
        p.finish();
        processes.insert(
            name,
            ProcessOverrides {
                stop_signal,
                stop_timeout,
                limits,
            },
        );
    }
    s.finish();
    processes
}

fn stop_signal(s: &mut Section) -> Option<StopSignal> {
    let name: String = s.optional("stop_signal")?;
    let signal = StopSignal::parse(&name);
    if signal.is_none() {
        s.problem(
            "stop_signal",
            format!("{name:?} is not one of TERM, INT, QUIT, HUP, USR1, USR2"),
        );
    }
    signal
}

fn optional_positive(s: &mut Section, key: &str) -> Option<Duration> {
    if !s.keys().iter().any(|k| k == key) {
        return None;
    }
    let value = s.duration(key, Duration::ZERO);
    if value.is_zero() {
        s.problem(key, "must be greater than zero");
        return None;
    }
    Some(value)
}

fn limits(s: &mut Section) -> ProcessLimits {
    ProcessLimits {
        nofile: nofile(s),
        core: core(s),
        memory_max: memory_max(s),
        cpu_quota_percent: cpu_quota(s),
    }
}

fn nofile(s: &mut Section) -> Option<u64> {
    let value: i64 = s.optional("nofile")?;
    match u64::try_from(value) {
        Ok(n) if (1..=MAX_NOFILE).contains(&n) => Some(n),
        _ => {
            s.problem(
                "nofile",
                format!("{value} must be between 1 and {MAX_NOFILE}"),
            );
            None
        }
    }
}

fn core(s: &mut Section) -> Option<u64> {
    match s.optional::<toml::Value>("core")? {
        toml::Value::Integer(n) if n >= 0 => u64::try_from(n).ok(),
        toml::Value::String(text) if text == "unlimited" => Some(u64::MAX),
        other => {
            s.problem(
                "core",
                format!("{other} must be a size in bytes (0 disables core dumps) or \"unlimited\""),
            );
            None
        }
    }
}

fn memory_max(s: &mut Section) -> Option<u64> {
    let bytes = match s.optional::<toml::Value>("memory_max")? {
        toml::Value::Integer(n) => u64::try_from(n).ok(),
        toml::Value::String(text) => parse_size(&text),
        _ => None,
    };
    match bytes {
        Some(bytes) if bytes >= MIN_MEMORY_MAX => Some(bytes),
        _ => {
            s.problem(
                "memory_max",
                "must be a size of at least 1M, like \"512M\" or \"2G\" (K, M, G, T: powers of 1024)",
            );
            None
        }
    }
}

fn cpu_quota(s: &mut Section) -> Option<u32> {
    let text: String = s.optional("cpu_quota")?;
    let percent = text
        .strip_suffix('%')
        .and_then(|digits| digits.trim().parse::<u32>().ok())
        .filter(|p| (1..=MAX_CPU_QUOTA_PERCENT).contains(p));
    if percent.is_none() {
        s.problem(
            "cpu_quota",
            format!("{text:?} must be a percentage of one CPU like \"50%\" or \"200%\""),
        );
    }
    percent
}

fn umask(s: &mut Section) -> u32 {
    const DEFAULT: u32 = 0o022;
    let parsed = match s.optional::<toml::Value>("umask") {
        None => return DEFAULT,
        Some(toml::Value::Integer(n)) => u32::try_from(n).ok(),
        Some(toml::Value::String(text)) => u32::from_str_radix(&text, 8).ok(),
        Some(_) => None,
    };
    match parsed {
        Some(mask) if mask <= 0o777 => mask,
        _ => {
            s.problem(
                "umask",
                "must be an octal mode like \"022\" or \"027\" (at most \"777\")",
            );
            DEFAULT
        }
    }
}

/// `"512M"` → 536870912. A number with an optional K, M, G or T suffix (powers of 1024, as
/// systemd's `MemoryMax=` reads them). `None` when malformed or overflowing.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last()? {
        (at, 'k' | 'K') => (&text[..at], 10),
        (at, 'm' | 'M') => (&text[..at], 20),
        (at, 'g' | 'G') => (&text[..at], 30),
        (at, 't' | 'T') => (&text[..at], 40),
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::super::parse::{default_config, parse_config};
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = default_config().supervise;
        assert_eq!(config.restart_delay, Duration::ZERO);
        assert_eq!(config.crash_loop_exits, 5);
        assert_eq!(config.crash_loop_window, Duration::from_secs(60));
        assert_eq!(config.umask, 0o022);
        assert_eq!(config.limits, ProcessLimits::default());
        assert!(config.processes.is_empty());
        assert!(!config.wants_cgroups());
    }

    #[test]
    fn per_process_settings_override_the_defaults() {
        let text = r#"
            [supervise]
            stop_timeout = "5s"
            nofile = 4096
            memory_max = "512M"
            [supervise.processes.worker]
            stop_signal = "INT"
            stop_timeout = "30s"
            core = "unlimited"
            cpu_quota = "50%"
        "#;
        let config = parse_config(text).expect("valid").supervise;
        let web = config.settings("web");
        assert_eq!(web.stop_signal, StopSignal::Term);
        assert_eq!(web.stop_timeout, Duration::from_secs(5));
        assert_eq!(web.limits.nofile, Some(4096));
        assert_eq!(web.limits.memory_max, Some(512 << 20));
        assert_eq!(web.limits.cpu_quota_percent, None);
        let worker = config.settings("worker");
        assert_eq!(worker.stop_signal, StopSignal::Int);
        assert_eq!(worker.stop_timeout, Duration::from_secs(30));
        assert_eq!(worker.limits.nofile, Some(4096), "inherited");
        assert_eq!(worker.limits.core, Some(u64::MAX));
        assert_eq!(worker.limits.cpu_quota_percent, Some(50));
        assert!(config.wants_cgroups());
    }

    #[test]
    fn every_bad_value_is_reported_with_its_key() {
        let text = r#"
            [supervise]
            nofile = 0
            core = "lots"
            memory_max = "12 parsecs"
            cpu_quota = "50"
            umask = "999"
            crash_loop_exits = 1
            [supervise.processes."we b"]
            stop_signal = "KILL"
            stop_timeout = "0s"
            colour = "red"
        "#;
        let problems = parse_config(text).expect_err("invalid");
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "supervise.crash_loop_exits",
                "supervise.umask",
                "supervise.nofile",
                "supervise.core",
                "supervise.memory_max",
                "supervise.cpu_quota",
                "supervise.processes.we b",
                "supervise.processes.we b.stop_signal",
                "supervise.processes.we b.stop_timeout",
                "supervise.processes.we b.colour",
            ]
        );
    }

    #[test]
    fn umask_reads_octal_strings_and_toml_octal_integers() {
        let from_string = parse_config("[supervise]\numask = \"027\"").expect("valid");
        assert_eq!(from_string.supervise.umask, 0o027);
        let from_integer = parse_config("[supervise]\numask = 0o077").expect("valid");
        assert_eq!(from_integer.supervise.umask, 0o077);
    }

    #[test]
    fn sizes_use_powers_of_1024() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        for bad in ["", "M", "1.5G", "-1M", "10MB", "99999999999T"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
