//! `hostmanager health` (from the agent) and `hostmanager metrics aggregate` (no agent).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::MetricsCommand;
use super::commands::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use super::render_health;
use crate::local_api::{ClientError, ControlClient, HealthView};

const REFRESH: Duration = Duration::from_secs(1);

pub async fn health(client: &ControlClient, watch: bool, json: bool) -> Result<i32, ClientError> {
    let terminal = std::io::stdout().is_terminal();
    loop {
        let view: HealthView = client.get("/v1/health").await?;
        let text = if json {
            // One document per line when watching, so the output can be piped.
            let body = if watch {
                serde_json::to_string(&view)
            } else {
                serde_json::to_string_pretty(&view)
            };
            format!("{}\n", body.unwrap_or_default())
        } else {
            render_health::health(&view, terminal)
        };
        let mut stdout = std::io::stdout().lock();
        if watch && terminal && !json {
            // Redraw in place: home, clear screen.
            let _ = write!(stdout, "\x1b[H\x1b[2J");
        } else if watch && !json {
            let _ = writeln!(stdout);
        }
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
        if !watch {
            return Ok(EXIT_OK);
        }
        tokio::time::sleep(REFRESH).await;
    }
}

pub fn metrics(command: &MetricsCommand) -> i32 {
    match command {
        MetricsCommand::Aggregate {
            file,
            window,
            json,
            quiet,
        } => {
            let window = match humantime::parse_duration(window) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    eprintln!(
                        "hostmanager metrics aggregate: --window {window:?} is not a duration like \"10s\""
                    );
                    return EXIT_USAGE;
                }
            };
            let started = std::time::Instant::now();
            let mut result = match crate::metrics::aggregate_file(file, window.as_millis() as i64) {
                Ok(result) => result,
                Err(error) => {
                    eprintln!("hostmanager metrics aggregate: {}: {error}", file.display());
                    return EXIT_FAILED;
                }
            };
            let elapsed = started.elapsed().as_secs_f64();
            let mut stdout = std::io::stdout().lock();
            let mut malformed = result.windows.malformed;
            let mut windows = 0;
            for (start, window) in result.windows.windows() {
                windows += 1;
                malformed += window.malformed;
                if *quiet {
                    continue;
                }
                let line = if *json {
                    serde_json::json!({ "start_ms": start, "stats": window.stats() }).to_string()
                } else {
                    render_health::aggregate_window(start, window)
                };
                let _ = writeln!(stdout, "{line}");
            }
            let _ = writeln!(
                stdout,
                "{} lines ({} malformed) in {windows} windows, {} bytes, {elapsed:.3} s, {:.0} lines/s",
                result.lines,
                malformed,
                result.bytes,
                result.lines as f64 / elapsed.max(1e-9)
            );
            EXIT_OK
        }
    }
}
