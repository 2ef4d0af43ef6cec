//! Procfile and Buildfile (`deploy/procfile.rs`): both read `name: command` lines with one
//! parser; a Procfile adds unique names and at least one process.
#![no_main]

use hostmanager::deploy::{parse_buildfile, parse_procfile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count();
    let build = parse_buildfile(text);
    match parse_procfile(text) {
        Ok(entries) => {
            assert!(!entries.is_empty());
            for (i, entry) in entries.iter().enumerate() {
                // The name becomes a supervisor unit and a log file name: EB's charset only.
                assert!(!entry.name.is_empty());
                assert!(
                    entry
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                );
                assert!(
                    entries[..i].iter().all(|e| e.name != entry.name),
                    "unique names"
                );
                // The command is run by a shell: one line, no surrounding blanks.
                assert!(!entry.command.is_empty());
                assert_eq!(entry.command, entry.command.trim());
                assert!(!entry.command.contains('\n'));
                assert!(entry.line >= 1 && entry.line <= lines);
                assert!(i == 0 || entries[i - 1].line < entry.line);
            }
            // A valid Procfile is a valid Buildfile with the same entries.
            assert_eq!(build.as_ref().ok(), Some(&entries));
        }
        Err(error) => {
            assert!(error.line >= 1 && error.line <= lines.max(1));
            assert!(error.to_string().starts_with("Procfile line "));
        }
    }
    if let Err(error) = build {
        assert!(error.line >= 1 && error.line <= lines);
    }
});
