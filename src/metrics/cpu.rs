//! CPU time split from the first line of `/proc/stat`, and percentages between two readings.
//! Pure. (sysinfo gives one usage figure; Elastic Beanstalk reports user, nice, system, idle,
//! iowait, irq and softirq separately.)

use serde::{Deserialize, Serialize};

/// Cumulative clock ticks since boot, per mode (proc(5), the `cpu` line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    /// Time stolen by the hypervisor; part of the total, not reported on its own.
    pub steal: u64,
}

/// Share of CPU time per mode over an interval, in percent of all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuPercent {
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub idle: f64,
    pub iowait: f64,
    pub irq: f64,
    pub softirq: f64,
}

impl CpuPercent {
    /// What is "in use": everything but idle, as Elastic Beanstalk counts it ("91 % of CPU is in
    /// use. 24 % in I/O wait": I/O wait is part of the use).
    pub fn used(&self) -> f64 {
        (100.0 - self.idle).clamp(0.0, 100.0)
    }
}

/// Parses the aggregate `cpu ` line of `/proc/stat`. Kernels before 2.6.33 lack some columns:
/// missing ones read as 0. `guest` time is already included in `user` and is ignored.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let mut fields = line.split_ascii_whitespace().skip(1).map(str::parse::<u64>);
    let mut next = || fields.next().unwrap_or(Ok(0)).ok();
    Some(CpuTimes {
        user: next()?,
        nice: next()?,
        system: next()?,
        idle: next()?,
        iowait: next()?,
        irq: next()?,
        softirq: next()?,
        steal: next()?,
    })
}

impl CpuTimes {
    fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }

    /// Percentages from `earlier` to `self`; `None` when no tick passed (or counters went back,
    /// which iowait can do on some kernels: that mode then reads 0).
    pub fn percent_since(&self, earlier: &CpuTimes) -> Option<CpuPercent> {
        let total = self
            .total()
            .checked_sub(earlier.total())
            .filter(|t| *t > 0)? as f64;
        let share = |now: u64, then: u64| now.saturating_sub(then) as f64 * 100.0 / total;
        Some(CpuPercent {
            user: share(self.user, earlier.user),
            nice: share(self.nice, earlier.nice),
            system: share(self.system, earlier.system),
            idle: share(self.idle, earlier.idle),
            iowait: share(self.iowait, earlier.iowait),
            irq: share(self.irq, earlier.irq),
            softirq: share(self.softirq, earlier.softirq),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str =
        "cpu  100 10 50 800 20 5 15 0 0 0\ncpu0 50 5 25 400 10 2 8 0 0 0\nintr 1\n";
    const AFTER: &str = "cpu  160 10 80 1000 80 10 20 40 0 0\n";

    #[test]
    fn deltas_become_percentages() {
        let before = parse_proc_stat(BEFORE).expect("parse");
        let after = parse_proc_stat(AFTER).expect("parse");
        assert_eq!(before.iowait, 20);
        // Total delta: 60 + 0 + 30 + 200 + 60 + 5 + 5 + 40 = 400 ticks.
        let percent = after.percent_since(&before).expect("ticks passed");
        assert_eq!(percent.user, 15.0);
        assert_eq!(percent.system, 7.5);
        assert_eq!(percent.idle, 50.0);
        assert_eq!(percent.iowait, 15.0);
        assert_eq!(percent.irq, 1.25);
        assert_eq!(percent.softirq, 1.25);
        assert_eq!(percent.used(), 50.0);
    }

    #[test]
    fn old_kernels_and_garbage() {
        let old = parse_proc_stat("cpu 1 2 3 4\n").expect("four columns");
        assert_eq!((old.idle, old.iowait, old.steal), (4, 0, 0));
        assert_eq!(parse_proc_stat("intr 1\n"), None);
        assert_eq!(parse_proc_stat("cpu 1 x 3 4\n"), None);
        let same = parse_proc_stat(BEFORE).expect("parse");
        assert_eq!(same.percent_since(&same), None);
    }
}
