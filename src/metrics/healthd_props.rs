//! Properties of the healthd line parser: what nginx writes reads back as written, and the
//! one-pass fast path accepts exactly the lines the field-by-field reading accepts.

use proptest::prelude::*;

use super::{LogLine, next_field, parse_decimal, parse_line, parse_status};

/// The field-by-field reading `diagnose` uses: five `"`-terminated fields, of which the time,
/// the status and the request time must parse.
fn by_fields(line: &[u8]) -> Option<LogLine> {
    let mut rest = line;
    let mut fields = [&b""[..]; 5];
    for field in &mut fields {
        *field = next_field(&mut rest).ok()?;
    }
    let [time, _uri, status, request_time, _upstream] = fields;
    Some(LogLine {
        time_ms: i64::try_from(parse_decimal(time, 3)?).ok()?,
        status: parse_status(status)?,
        request_time_us: parse_decimal(request_time, 6)?,
    })
}

/// Fields that are right, nearly right (at the limits of the digits accepted), or wrong, so
/// that both paths see every kind; mostly right, so that one wrong field decides.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0..10_000_000_000u64, 0..1000u32).prop_map(|(s, ms)| format!("{s}.{ms:03}")),
        2 => "[0-9]{11,14}(\\.[0-9]{0,8})?",
        1 => "[0-9]{0,3}(\\.[0-9]{0,8})?",
        1 => "[0-9.+e -]{0,6}",
    ]
}

fn status() -> impl Strategy<Value = String> {
    prop_oneof![4 => (100..1000u16).prop_map(|s| s.to_string()), 1 => "[0-9a ]{0,4}"]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-z/?.,-]{0,6}", 1 => "[a-z\"]{0,4}"]
}

proptest! {
    #[test]
    fn a_line_as_nginx_writes_it_reads_back_as_written(
        time_ms in 0..1_000_000_000_000_000i64,
        uri in "[ !#-~]{0,60}",
        status in 100..1000u16,
        request_time_ms in 0..100_000_000u64,
        upstream in prop_oneof![Just("-".to_string()), "[0-9., :]{0,20}"],
        cr in any::<bool>(),
    ) {
        let line = format!(
            "{}.{:03}\"{uri}\"{status}\"{}.{:03}\"{upstream}\"{}",
            time_ms / 1000, time_ms % 1000, request_time_ms / 1000, request_time_ms % 1000,
            if cr { "\r" } else { "" },
        );
        let parsed = parse_line(line.as_bytes());
        prop_assert_eq!(
            parsed,
            Ok(LogLine { time_ms, status, request_time_us: request_time_ms * 1000 })
        );
    }

    #[test]
    fn the_fast_path_accepts_exactly_what_the_fields_say(
        time in number(),
        uri in text(),
        status in status(),
        request_time in number(),
        upstream in text(),
        fields in prop_oneof![4 => Just(5usize), 1 => 1..5usize],
        terminated in prop::bool::weighted(0.8),
    ) {
        // Fewer fields, or the last one unterminated, as a cut or foreign line would be.
        let parts = [time, uri, status, request_time, upstream];
        let mut line = parts[..fields].join("\"");
        if terminated {
            line.push('"');
        }
        let line = line.as_bytes();
        match (parse_line(line), by_fields(line)) {
            (Ok(fast), Some(slow)) => prop_assert_eq!(fast, slow),
            (Err(_), None) => {}
            (fast, slow) => prop_assert!(false, "fast {:?}, by fields {:?}", fast, slow),
        }
    }

    #[test]
    fn no_bytes_make_the_parser_panic(line in prop::collection::vec(any::<u8>(), 0..80)) {
        let _ = parse_line(&line);
    }
}
