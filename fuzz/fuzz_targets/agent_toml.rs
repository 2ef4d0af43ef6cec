//! agent.toml (`config/parse.rs` over `config/reader.rs`): the whole file, every section.
#![no_main]

use hostmanager::config::parse_config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_config(text) {
        // Reading is deterministic: the agent reads the file again on every reload.
        Ok(config) => assert_eq!(parse_config(text).ok(), Some(config)),
        // A refusal always says why, and where: never an empty list.
        Err(problems) => {
            assert!(!problems.is_empty());
            for problem in problems {
                assert!(!problem.to_string().is_empty());
            }
        }
    }
});
