//! Which log lines are severe errors, and which following lines belong to the same stack trace.
//! Pure: lines in, closed blocks out; the caller decides when silence closes an open block.

use std::sync::LazyLock;

use regex::Regex;

/// What started a block; decides which lines continue it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    Python,
    Java,
    RustPanic,
    GoPanic,
    /// A single severe line (FATAL, CRITICAL, segfault, a configured pattern) and its indented
    /// continuation lines.
    Line,
}

/// A severe error: the line that matched and the lines of its stack trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SevereBlock {
    pub kind: TraceKind,
    pub lines: Vec<String>,
    /// Lines beyond the cap that were left out.
    pub omitted: usize,
}

impl SevereBlock {
    pub fn text(&self) -> String {
        let mut text = self.lines.join("\n");
        if self.omitted > 0 {
            text.push_str(&format!("\n... {} more lines", self.omitted));
        }
        text
    }
}

/// Built-in single-line patterns: the words and signals that mean a process is in trouble.
const DEFAULT_LINE_PATTERNS: &[&str] = &[
    r"\bFATAL\b",
    r"\bCRITICAL\b",
    r"\bPANIC:",
    r"Segmentation fault",
    r"\bSIGSEGV\b",
    r"\(core dumped\)",
    r"OutOfMemoryError",
    r"Out of memory: Kill",
    r"\[(emerg|alert|crit)\]",
];

static PYTHON_START: LazyLock<Regex> =
    LazyLock::new(|| regex("Traceback \\(most recent call last\\):\\s*$"));
static RUST_START: LazyLock<Regex> =
    LazyLock::new(|| regex(r"thread '[^']*'( \(\d+\))? panicked at "));
static GO_START: LazyLock<Regex> = LazyLock::new(|| regex("^(panic: |fatal error: )"));
static JAVA_START: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"^(Exception in thread "[^"]*" )?([A-Za-z_$][\w$]*\.)+[A-Za-z_$][\w$]*(Exception|Error|Throwable)(: .*)?\s*$"#,
    )
});
static JAVA_CONTINUATION: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"^(\s+at |\s+\.\.\. \d+ (more|common frames omitted)|Caused by: |\s+Suppressed: |\s)")
});
static PYTHON_CHAIN: LazyLock<Regex> = LazyLock::new(|| {
    regex("^(During handling of the above exception|The above exception was the direct cause)")
});

// The patterns are constants covered by the unit tests below: failing to compile is a bug.
fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("built-in pattern compiles")
}

/// The severe-line patterns in force.
#[derive(Debug, Clone)]
pub struct Patterns {
    lines: Vec<Regex>,
}

impl Patterns {
    /// `extra` were validated when the config was read; an invalid one is skipped.
    pub fn new(use_defaults: bool, extra: &[String]) -> Self {
        let defaults: &[&str] = if use_defaults {
            DEFAULT_LINE_PATTERNS
        } else {
            &[]
        };
        let defaults = defaults.iter().map(|p| regex(p));
        let lines = defaults
            .chain(extra.iter().filter_map(|p| Regex::new(p).ok()))
            .collect();
        Self { lines }
    }

    fn start(&self, line: &str) -> Option<TraceKind> {
        if PYTHON_START.is_match(line) {
            Some(TraceKind::Python)
        } else if RUST_START.is_match(line) {
            Some(TraceKind::RustPanic)
        } else if GO_START.is_match(line) {
            Some(TraceKind::GoPanic)
        } else if JAVA_START.is_match(line) {
            Some(TraceKind::Java)
        } else if self.lines.iter().any(|p| p.is_match(line)) {
            Some(TraceKind::Line)
        } else {
            None
        }
    }
}

/// Where a Python traceback is: frames, its closing exception line, or chained exceptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PythonStage {
    Frames,
    Closed,
    Chaining,
}

#[derive(Debug)]
struct Open {
    block: SevereBlock,
    python: PythonStage,
}

/// Groups lines into severe blocks. Feed complete lines; call `flush` after `group_idle` of
/// silence (a trace is only known to be complete when something else follows it).
#[derive(Debug)]
pub struct Grouper {
    patterns: Patterns,
    open: Option<Open>,
    max_lines: usize,
}

const MAX_LINE_CHARS: usize = 4096;

impl Grouper {
    pub fn new(patterns: Patterns) -> Self {
        Self {
            patterns,
            open: None,
            max_lines: 200,
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Takes one line (without its newline); returns the blocks this line closed.
    pub fn push(&mut self, line: &str, closed: &mut Vec<SevereBlock>) {
        let line = cut(line);
        if let Some(open) = self.open.as_mut() {
            if continues(open, line) {
                if open.block.lines.len() < self.max_lines {
                    open.block.lines.push(line.to_string());
                } else {
                    open.block.omitted += 1;
                }
                return;
            }
            closed.extend(self.flush());
        }
        if let Some(kind) = self.patterns.start(line) {
            self.open = Some(Open {
                block: SevereBlock {
                    kind,
                    lines: vec![line.to_string()],
                    omitted: 0,
                },
                python: PythonStage::Frames,
            });
        }
    }

    /// Closes the open block, if any (silence, end of file, shutdown).
    pub fn flush(&mut self) -> Option<SevereBlock> {
        let mut block = self.open.take()?.block;
        while block.lines.len() > 1 && block.lines.last().is_some_and(|l| l.trim().is_empty()) {
            block.lines.pop();
        }
        Some(block)
    }
}

fn cut(line: &str) -> &str {
    if line.len() <= MAX_LINE_CHARS {
        return line;
    }
    let mut end = MAX_LINE_CHARS;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

fn indented(line: &str) -> bool {
    line.starts_with([' ', '\t'])
}

/// Whether `line` belongs to the open block (updating the Python stage).
fn continues(open: &mut Open, line: &str) -> bool {
    let lines = open.block.lines.len();
    match open.block.kind {
        TraceKind::Python => match open.python {
            PythonStage::Frames => {
                if !indented(line) {
                    // The first unindented line names the exception and ends the traceback.
                    open.python = PythonStage::Closed;
                }
                true
            }
            PythonStage::Closed | PythonStage::Chaining => {
                if line.trim().is_empty() || PYTHON_CHAIN.is_match(line) {
                    open.python = PythonStage::Chaining;
                    true
                } else if open.python == PythonStage::Chaining && PYTHON_START.is_match(line) {
                    open.python = PythonStage::Frames;
                    true
                } else {
                    false
                }
            }
        },
        TraceKind::Java => JAVA_CONTINUATION.is_match(line),
        // The line after "panicked at file:line:col:" is the panic message.
        TraceKind::RustPanic => {
            lines == 1
                || indented(line)
                || line.starts_with("stack backtrace:")
                || line.starts_with("note: ")
        }
        TraceKind::GoPanic => {
            line.trim().is_empty()
                || indented(line)
                || line.starts_with("goroutine ")
                || line.starts_with("created by ")
                || line.starts_with("[signal ")
                || line.starts_with("exit status ")
                || line.trim_end().ends_with(')')
        }
        TraceKind::Line => indented(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(text: &str) -> Vec<SevereBlock> {
        let mut grouper = Grouper::new(Patterns::new(true, &[]));
        let mut closed = Vec::new();
        for line in text.lines() {
            grouper.push(line, &mut closed);
        }
        closed.extend(grouper.flush());
        closed
    }

    #[test]
    fn a_python_traceback_is_one_block_ending_with_the_exception() {
        let text = "starting\nTraceback (most recent call last):\n  File \"/app/x.py\", line 3, in <module>\n    main()\n  File \"/app/x.py\", line 2, in main\n    raise ValueError('bad 42')\nValueError: bad 42\nGET / 200\n";
        let blocks = group(text);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].kind, TraceKind::Python);
        assert_eq!(blocks[0].lines.len(), 6);
        assert_eq!(blocks[0].lines[5], "ValueError: bad 42");
    }

    #[test]
    fn chained_python_exceptions_stay_together() {
        let text = "Traceback (most recent call last):\n  File \"a.py\", line 1, in f\nKeyError: 'x'\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"a.py\", line 3, in g\nRuntimeError: wrapped\nnext request\n";
        let blocks = group(text);
        assert_eq!(blocks.len(), 1);
        assert_eq!(
            blocks[0].lines.last().map(String::as_str),
            Some("RuntimeError: wrapped")
        );
    }

    #[test]
    fn java_traces_with_causes() {
        let text = "Exception in thread \"main\" java.lang.IllegalStateException: boom\n\tat com.example.App.run(App.java:10)\n\tat com.example.App.main(App.java:5)\nCaused by: java.io.IOException: disk\n\tat com.example.Disk.read(Disk.java:7)\n\t... 2 more\nINFO next\n";
        let blocks = group(text);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].kind, TraceKind::Java);
        assert_eq!(blocks[0].lines.len(), 6);
        let oom = group("java.lang.OutOfMemoryError: Java heap space\n");
        assert_eq!(oom[0].kind, TraceKind::Java);
    }

    #[test]
    fn rust_panics_with_backtraces() {
        let text = "thread 'main' (4242) panicked at src/main.rs:2:5:\nboom 42\nstack backtrace:\n   0: rust_begin_unwind\n             at /rustc/library/std/src/panicking.rs:665:5\nnote: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.\nafter\n";
        let blocks = group(text);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].kind, TraceKind::RustPanic);
        assert_eq!(blocks[0].lines.len(), 6);
    }

    #[test]
    fn go_panics() {
        let text = "panic: runtime error: index out of range [5] with length 3\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:8 +0x1d\nexit status 2\nother\n";
        let blocks = group(text);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].lines.len(), 6);
    }

    #[test]
    fn single_lines_and_configured_patterns() {
        let blocks = group(
            "ok\n2024-01-01 FATAL db gone\n  detail\nok\nSegmentation fault (core dumped)\nERROR mild\n",
        );
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].lines, ["2024-01-01 FATAL db gone", "  detail"]);
        let mut grouper = Grouper::new(Patterns::new(false, &["^E\\d+ ".to_string()]));
        let mut closed = Vec::new();
        grouper.push("E42 custom failure", &mut closed);
        grouper.push("FATAL ignored without the defaults", &mut closed);
        assert_eq!(closed.len(), 1);
        assert!(grouper.flush().is_none());
    }

    #[test]
    fn huge_traces_are_capped() {
        let mut text = String::from("java.lang.RuntimeException: deep\n");
        for n in 0..500 {
            text.push_str(&format!("\tat f{n}(F.java:1)\n"));
        }
        let blocks = group(&text);
        assert_eq!(blocks[0].lines.len(), 200);
        assert_eq!(blocks[0].omitted, 301);
        assert!(blocks[0].text().ends_with("... 301 more lines"));
    }
}
