//! A tiny local stand-in for the EC2 instance metadata service (IMDSv2), the one double the
//! project allows besides the CloudWatch endpoint: IMDS cannot run here.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// Serves IMDSv2: PUT /latest/api/token gives a token; GETs must carry it. Records requests.
pub fn fake_imds() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut token = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("x-aws-ec2-metadata-token")
                {
                    token = Some(value.trim().to_string());
                }
            }
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            log.lock()
                .expect("log")
                .push(format!("{method} {path} token={}", token.is_some()));
            let (status, body) = match (method, path, token.as_deref()) {
                ("PUT", "/latest/api/token", _) => ("200 OK", "TOKEN123"),
                ("GET", "/latest/meta-data/instance-id", Some("TOKEN123")) => {
                    ("200 OK", "i-0abc123def4567890")
                }
                ("GET", "/latest/meta-data/placement/region", Some("TOKEN123")) => {
                    ("200 OK", "eu-west-3")
                }
                ("GET", _, _) => ("401 Unauthorized", ""),
                _ => ("404 Not Found", ""),
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}
