//! Continuous requests through nginx on kept-alive connections, back to back, each response
//! checked: what a load balancer in front of the host does. A connection the server closes
//! after answering `Connection: close` is reopened; a connection that fails or closes with a
//! request in flight is a failed request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::load::Outcome;

#[derive(Debug)]
pub struct KeepAliveLoad {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<(Vec<Outcome>, usize)>>,
}

impl KeepAliveLoad {
    pub fn start(port: u16, path: &'static str, connections: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..connections)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || run(port, path, &stop))
            })
            .collect();
        Self { stop, workers }
    }

    /// Every outcome, and how many connections were opened in all.
    pub fn finish(self) -> (Vec<Outcome>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let mut outcomes = Vec::new();
        let mut opened = 0;
        for worker in self.workers {
            let (mine, connections) = worker.join().expect("load thread");
            outcomes.extend(mine);
            opened += connections;
        }
        (outcomes, opened)
    }
}

fn run(port: u16, path: &str, stop: &AtomicBool) -> (Vec<Outcome>, usize) {
    let mut outcomes = Vec::new();
    let mut opened = 0;
    let mut connection: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        let reader = match connection.as_mut() {
            Some(reader) => reader,
            None => match TcpStream::connect(("127.0.0.1", port)) {
                Ok(stream) => {
                    opened += 1;
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    connection.insert(BufReader::new(stream))
                }
                Err(error) => {
                    outcomes.push(Err(format!("connect: {error}")));
                    continue;
                }
            },
        };
        match exchange(reader, path) {
            Ok((status, body, keep)) => {
                outcomes.push(Ok((status, body)));
                if !keep {
                    connection = None;
                }
            }
            Err(error) => {
                outcomes.push(Err(error));
                connection = None;
            }
        }
    }
    (outcomes, opened)
}

/// One request on the connection: status, body, and whether the connection stays open.
fn exchange(reader: &mut BufReader<TcpStream>, path: &str) -> Result<(u16, String, bool), String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    reader
        .get_mut()
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut line = String::new();
    let read = reader
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    if read == 0 {
        return Err("the connection closed with a request in flight".into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let (mut length, mut keep) = (0usize, true);
    loop {
        let mut header = String::new();
        reader
            .read_line(&mut header)
            .map_err(|e| format!("read header: {e}"))?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| format!("bad length {value:?}"))?;
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            keep = false;
        }
    }
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| format!("read body: {e}"))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned(), keep))
}
