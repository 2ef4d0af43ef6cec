//! The healthd access-log line nginx writes (Elastic Beanstalk's format):
//! `$msec"$uri"$status"$request_time"$upstream_response_time"$http_x_forwarded_for`,
//! e.g. `1437609879.311"/"200"0.083"0.083"177.72.242.17`. Pure.
//!
//! Parsed straight from the bytes: no allocation, no regex, no UTF-8 check (the URI and the
//! X-Forwarded-For are skipped, not read). nginx escapes `"` inside variables as `\x22`, so
//! splitting on `"` is safe.

/// What one request line says, in integer units so nothing is lost to floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLine {
    /// When nginx finished the request (`$msec`), milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub status: u16,
    /// `$request_time` (nginx's resolution is 1 ms), in microseconds.
    pub request_time_us: u64,
}

/// Why a line was skipped. Carries no text so the hot path never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// Fewer than the five `"` separators the format has.
    MissingFields,
    BadTime,
    BadStatus,
    BadRequestTime,
    /// The file ended (the next hour's file took over) in the middle of this line.
    Partial,
    /// Longer than any healthd line can be.
    TooLong,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::MissingFields => "fewer than 6 fields separated by '\"'",
            Self::BadTime => "$msec is not a time like 1437609879.311",
            Self::BadStatus => "$status is not a 3-digit HTTP status",
            Self::BadRequestTime => "$request_time is not a duration like 0.083",
            Self::Partial => "the line was never completed",
            Self::TooLong => "longer than 16 KiB",
        })
    }
}

/// Parses one line (without its `\n`; a trailing `\r` is tolerated).
pub fn parse_line(line: &[u8]) -> Result<LogLine, LineError> {
    // One pass that reads numbers while it looks for the separators; only a line that fails it
    // is examined again to say what is wrong with it.
    fast(line).ok_or_else(|| diagnose(line))
}

fn fast(line: &[u8]) -> Option<LogLine> {
    let (time_ms, rest) = decimal_field(line, 3)?;
    let rest = &rest[memchr::memchr(b'"', rest)? + 1..];
    let (status, rest) = match rest {
        [
            a @ b'1'..=b'9',
            b @ b'0'..=b'9',
            c @ b'0'..=b'9',
            b'"',
            rest @ ..,
        ] => (
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'),
            rest,
        ),
        _ => return None,
    };
    let (request_time_us, rest) = decimal_field(rest, 6)?;
    // $upstream_response_time must still end with its separator.
    memchr::memchr(b'"', rest)?;
    Some(LogLine {
        time_ms: i64::try_from(time_ms).ok()?,
        status,
        request_time_us,
    })
}

/// A decimal number scaled by 10^`scale` up to the next `"`, and what follows the `"`.
fn decimal_field(bytes: &[u8], scale: u32) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    let mut whole_digits = 0;
    let mut kept = 0;
    let mut in_fraction = false;
    for (i, &byte) in bytes.iter().enumerate() {
        match byte {
            b'0'..=b'9' if !in_fraction => {
                whole_digits += 1;
                if whole_digits > 12 {
                    return None;
                }
                value = value * 10 + u64::from(byte - b'0');
            }
            b'0'..=b'9' => {
                if kept < scale {
                    value = value * 10 + u64::from(byte - b'0');
                    kept += 1;
                }
            }
            b'.' if !in_fraction && whole_digits > 0 => in_fraction = true,
            b'"' if whole_digits > 0 => {
                return Some((value * 10u64.pow(scale - kept), &bytes[i + 1..]));
            }
            _ => return None,
        }
    }
    None
}

/// Why `fast` refused a line.
fn diagnose(line: &[u8]) -> LineError {
    let mut rest = line;
    let mut fields = [&b""[..]; 5];
    for field in &mut fields {
        match next_field(&mut rest) {
            Ok(found) => *field = found,
            Err(error) => return error,
        }
    }
    let [time, _uri, status, _request_time, _upstream] = fields;
    if parse_decimal(time, 3).is_none() {
        LineError::BadTime
    } else if parse_status(status).is_none() {
        LineError::BadStatus
    } else {
        LineError::BadRequestTime
    }
}

/// Splits off the bytes before the next `"`.
fn next_field<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], LineError> {
    let at = memchr::memchr(b'"', rest).ok_or(LineError::MissingFields)?;
    let field = &rest[..at];
    *rest = &rest[at + 1..];
    Ok(field)
}

fn parse_status(field: &[u8]) -> Option<u16> {
    match field {
        [a @ b'1'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// `"12.345"` with `scale` = 3 → 12345. Digits past `scale` are truncated (nginx writes at most
/// 3); an empty integer part, a sign, or anything else than digits and one dot is refused.
fn parse_decimal(field: &[u8], scale: u32) -> Option<u64> {
    let (whole, fraction) = match memchr::memchr(b'.', field) {
        Some(dot) => (&field[..dot], &field[dot + 1..]),
        None => (field, &[][..]),
    };
    if whole.is_empty() || whole.len() > 12 {
        return None;
    }
    let mut value: u64 = 0;
    for &byte in whole {
        value = value * 10 + u64::from(digit(byte)?);
    }
    let mut kept = 0;
    for &byte in fraction {
        let d = digit(byte)?;
        if kept < scale {
            value = value * 10 + u64::from(d);
            kept += 1;
        }
    }
    Some(value * 10u64.pow(scale - kept))
}

fn digit(byte: u8) -> Option<u8> {
    byte.is_ascii_digit().then(|| byte - b'0')
}

/// The hourly files nginx writes: `application.log.YYYY-MM-DD-HH` (UTC).
pub const PREFIX: &str = "application.log.";

/// `application.log.YYYY-MM-DD-HH`: rotated (`.gz`) or odd names are neither followed nor pruned.
pub fn is_hour_file(name: &str) -> bool {
    name.strip_prefix(PREFIX).is_some_and(|hour| {
        hour.len() == 13
            && hour.bytes().enumerate().all(|(i, b)| {
                if [4, 7, 10].contains(&i) {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elastic_beanstalks_example_line_parses() {
        let line = parse_line(b"1437609879.311\"/\"200\"0.083\"0.083\"177.72.242.17").expect("ok");
        assert_eq!(
            line,
            LogLine {
                time_ms: 1_437_609_879_311,
                status: 200,
                request_time_us: 83_000
            }
        );
    }

    #[test]
    fn empty_and_odd_trailing_fields_are_fine() {
        // No X-Forwarded-For, no upstream (nginx answered itself), several upstreams, CR.
        for line in [
            &b"1700000000.000\"/a\"404\"0.000\"-\""[..],
            b"1700000000.5\"/a b\"502\"1.2\"0.001, 0.002\"10.0.0.1, 10.0.0.2\r",
        ] {
            assert!(
                parse_line(line).is_ok(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        let short = parse_line(b"1700000000.5\"/\"200\"1.2\"-\"").expect("ok");
        assert_eq!(
            (short.time_ms, short.request_time_us),
            (1_700_000_000_500, 1_200_000)
        );
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let cases: [(&[u8], LineError); 7] = [
            (b"", LineError::MissingFields),
            (b"1700000000.000\"/\"200\"0.001", LineError::MissingFields),
            (b"17000x0000.000\"/\"200\"0.001\"-\"", LineError::BadTime),
            (b".5\"/\"200\"0.001\"-\"", LineError::BadTime),
            (b"1700000000.000\"/\"20\"0.001\"-\"", LineError::BadStatus),
            (b"1700000000.000\"/\"099\"0.001\"-\"", LineError::BadStatus),
            (
                b"1700000000.000\"/\"200\"-0.001\"-\"",
                LineError::BadRequestTime,
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(
                parse_line(line),
                Err(expected),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn the_fast_path_and_the_diagnosis_agree() {
        let mut rng = fastrand::Rng::with_seed(3);
        let alphabet = b"0123456789.\"/x- ";
        let base = b"1700000000.123\"/a\"200\"0.083\"0.083\"1.2.3.4";
        for _ in 0..20_000 {
            let mut line = base.to_vec();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..line.len());
                line[at] = alphabet[rng.usize(..alphabet.len())];
            }
            if let Some(parsed) = fast(&line) {
                // Whatever the fast path accepts is what the field-by-field reading gives.
                let mut rest = &line[..];
                let time = next_field(&mut rest).expect("time");
                let _ = next_field(&mut rest).expect("uri");
                let status = next_field(&mut rest).expect("status");
                let latency = next_field(&mut rest).expect("latency");
                assert_eq!(parse_decimal(time, 3), Some(parsed.time_ms as u64));
                assert_eq!(parse_status(status), Some(parsed.status));
                assert_eq!(parse_decimal(latency, 6), Some(parsed.request_time_us));
            }
        }
    }

    #[test]
    fn decimals_keep_their_scale() {
        assert_eq!(parse_decimal(b"0.083", 6), Some(83_000));
        assert_eq!(parse_decimal(b"2", 6), Some(2_000_000));
        assert_eq!(parse_decimal(b"1.23456789", 6), Some(1_234_567));
        assert_eq!(parse_decimal(b"1.", 3), Some(1_000));
        assert_eq!(parse_decimal(b"1.2.3", 3), None);
    }
}

#[cfg(test)]
#[path = "healthd_props.rs"]
mod props;
