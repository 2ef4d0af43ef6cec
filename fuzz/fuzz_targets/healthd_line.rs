//! The healthd access-log line (`metrics/healthd.rs`), parsed straight from bytes by a fast
//! path with a slower diagnosis: checked against a plain reading of the documented format.
#![no_main]

use hostmanager::metrics::{LogLine, parse_line};
use libfuzzer_sys::fuzz_target;

/// `12.345` scaled by 10^`scale`: 1–12 whole digits, an optional dot and digits (truncated).
fn decimal(field: &[u8], scale: u32) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || whole.len() > 12 {
        return None;
    }
    if !whole
        .bytes()
        .chain(fraction.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let kept: String = fraction.chars().take(scale as usize).collect();
    let padded = format!("{whole}{kept:0<width$}", width = scale as usize);
    padded.parse().ok()
}

/// `$msec"$uri"$status"$request_time"$upstream_response_time"$http_x_forwarded_for`.
fn reference(line: &[u8]) -> Option<LogLine> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b'"').collect();
    if fields.len() < 6 {
        return None;
    }
    let status = match fields[2] {
        [a @ b'1'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return None,
    };
    Some(LogLine {
        time_ms: i64::try_from(decimal(fields[0], 3)?).ok()?,
        status,
        request_time_us: decimal(fields[3], 6)?,
    })
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_line(data);
    assert_eq!(
        parsed.ok(),
        reference(data),
        "{:?}",
        String::from_utf8_lossy(data)
    );
});
