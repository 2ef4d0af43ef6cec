//! Parses `/proc/<pid>/stat`, the kernel's one-line description of a process. Pure.
//!
//! The start time (field 22, clock ticks since boot) together with the pid identifies a process
//! for its whole life: a reused pid gets a later start time, so a persisted (pid, start time)
//! pair never matches a stranger.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    pub session: i32,
    /// Clock ticks since boot when the process started.
    pub start_time: u64,
    /// CPU time spent in user and kernel mode, in clock ticks.
    pub utime: u64,
    pub stime: u64,
}

impl ProcStat {
    /// Zombies have exited already; only their parent's wait is missing.
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

/// Parses the content of `/proc/<pid>/stat`. `None` when it is malformed.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    // `comm` is in parentheses and may itself contain spaces and ')': split at the LAST ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let fields: Vec<&str> = text.get(close + 1..)?.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state) of proc(5).
    let field = |n: usize| fields.get(n - 3).copied();
    Some(ProcStat {
        pid,
        state: field(3)?.chars().next()?,
        ppid: field(4)?.parse().ok()?,
        pgid: field(5)?.parse().ok()?,
        session: field(6)?.parse().ok()?,
        utime: field(14)?.parse().ok()?,
        stime: field(15)?.parse().ok()?,
        start_time: field(22)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "4242 (python3 a) b) S 1 4242 4242 0 -1 4194560 1234 0 0 0 17 3 0 0 20 0 2 0 98765 25165824 2345 18446744073709551615 1 1 0 0 0 0 0 16781312 2 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn parses_fields_after_a_tricky_comm() {
        let stat = parse_stat(SAMPLE).expect("parses");
        assert_eq!(stat.pid, 4242);
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.pgid, 4242);
        assert_eq!(stat.session, 4242);
        assert_eq!(stat.utime, 17);
        assert_eq!(stat.stime, 3);
        assert_eq!(stat.start_time, 98765);
        assert!(!stat.is_zombie());
    }

    #[test]
    fn malformed_input_is_rejected() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (x) S 1"), None);
        assert_eq!(
            parse_stat("x (y) S 1 2 3 0 0 0 0 0 0 0 1 1 0 0 0 0 0 0 5"),
            None
        );
    }
}
