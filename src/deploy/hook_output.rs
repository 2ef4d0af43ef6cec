//! What a failed hook or build command said: the tail of its output in hooks.log, read back
//! through the descriptor it wrote to, and the lines of it that go into the failure message.

use std::path::Path;

/// hooks.log, appended to and readable: the failure tail is read back through this descriptor.
pub(super) fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Where a tool says what went wrong when its last lines do not (npm prints its usage and a
/// log path after the error): the two lines after the first that starts with `after`, each
/// without `strip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub after: &'static str,
    pub strip: &'static str,
}

impl Summary {
    pub(super) fn of(self, output: &str) -> Option<String> {
        let mut lines = output.lines().map(str::trim);
        lines.find(|line| line.starts_with(self.after))?;
        let picked: Vec<&str> = lines
            .map(|line| line.strip_prefix(self.strip).unwrap_or(line).trim())
            .filter(|line| !line.is_empty())
            .take(2)
            .collect();
        (!picked.is_empty()).then(|| last_lines(&picked.join("\n"), 2))
    }
}

/// The last `count` non-blank lines of `output`, trimmed, joined by " | ", at most 512 bytes
/// (cut on a character boundary).
pub(super) fn last_lines(output: &str, count: usize) -> String {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut joined = lines[lines.len().saturating_sub(count)..].join(" | ");
    if joined.len() > 512 {
        let mut cut = joined.len() - 512;
        while !joined.is_char_boundary(cut) {
            cut += 1;
        }
        joined = format!("…{}", &joined[cut..]);
    }
    joined
}

/// The last lines a hook wrote: from its header's offset to the end of the file behind `log`
/// (at most its last 64 KiB).
pub(super) fn output_since(log: &std::fs::File, offset: u64) -> String {
    use std::os::unix::fs::FileExt;
    const WINDOW: u64 = 64 * 1024;
    let end = log.metadata().map(|m| m.len()).unwrap_or(offset);
    let start = offset.max(end.saturating_sub(WINDOW));
    let mut bytes = vec![0u8; usize::try_from(end.saturating_sub(start)).unwrap_or(0)];
    let read = log.read_at(&mut bytes, start).unwrap_or(0);
    String::from_utf8_lossy(&bytes[..read]).into_owned()
}

/// The last `count` lines of `text`.
pub(super) fn last_of(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_summary_picks_the_lines_after_the_tools_error_marker() {
        let npm = "npm error code EUSAGE\nnpm error\nnpm error `npm ci` can only install packages when in sync.\nnpm error\nnpm error Invalid: lock file's ms@2.1.3 does not satisfy ms@2.1.2\nnpm error Clean install a project\nnpm error A complete log of this run can be found in: /x.log\n";
        let summary = Summary {
            after: "npm error code",
            strip: "npm error",
        };
        assert_eq!(
            summary.of(npm).as_deref(),
            Some(
                "`npm ci` can only install packages when in sync. | Invalid: lock file's ms@2.1.3 does not satisfy ms@2.1.2"
            )
        );
        assert_eq!(summary.of("no marker here"), None);
    }

    #[test]
    fn the_message_carries_the_last_lines_of_the_output() {
        assert_eq!(last_lines("a\n\n b \nc\nd\n", 3), "b | c | d");
        assert_eq!(last_lines("", 3), "");
        let long = format!("{}é\n", "x".repeat(600));
        let cut = last_lines(&long, 3);
        assert!(cut.starts_with('…') && cut.ends_with('é'), "{cut}");
        assert!(cut.len() <= 515);
    }

    #[test]
    fn the_output_tail_survives_a_rotation_of_hooks_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hooks.log");
        let mut log = open_log(&path).expect("open");
        writeln!(log, "an earlier hook's line").expect("write");
        let offset = log.metadata().expect("meta").len();
        let reader = log.try_clone().expect("dup");
        writeln!(log, "first").expect("write");
        std::fs::rename(&path, dir.path().join("hooks.log.1")).expect("rotate by rename");
        std::fs::write(&path, "a new file\n").expect("recreate");
        writeln!(log, "second").expect("write");
        assert_eq!(last_of(&output_since(&reader, offset), 50), "first\nsecond");
    }
}
