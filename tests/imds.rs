//! Instance identity from IMDSv2, against a tiny local stand-in for the EC2 metadata service
//! (the one double the project allows: IMDS cannot run here).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::moto::block_on;
use hostmanager::aws::resolve_identity;
use hostmanager::config::{EnvironmentConfig, default_config};

/// Serves IMDSv2: PUT /latest/api/token gives a token; GETs must carry it. Records requests.
fn fake_imds() -> (String, Arc<Mutex<Vec<String>>>) {
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

#[test]
fn instance_id_and_region_come_from_imdsv2_with_a_token() {
    let (url, seen) = fake_imds();
    let mut config = default_config();
    config.aws.imds_endpoint = url;
    let environment = EnvironmentConfig {
        instance_id: None,
        ..config.environment.clone()
    };
    let identity = block_on(resolve_identity(&environment, &config.aws));
    assert_eq!(identity.instance_id, "i-0abc123def4567890");
    assert_eq!(identity.region.as_deref(), Some("eu-west-3"));
    assert_eq!(identity.source, "imds");
    let requests = seen.lock().expect("log").clone();
    assert_eq!(
        requests.first().map(String::as_str),
        Some("PUT /latest/api/token token=false"),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.starts_with("GET"))
            .all(|r| r.ends_with("token=true")),
        "{requests:?}"
    );
}

#[test]
fn configured_values_win_and_imds_is_not_asked() {
    let (url, seen) = fake_imds();
    let mut config = default_config();
    config.aws.imds_endpoint = url;
    config.aws.region = Some("us-west-2".into());
    let environment = EnvironmentConfig {
        instance_id: Some("i-configured".into()),
        ..config.environment.clone()
    };
    let identity = block_on(resolve_identity(&environment, &config.aws));
    assert_eq!(
        (identity.instance_id.as_str(), identity.region.as_deref()),
        ("i-configured", Some("us-west-2"))
    );
    assert!(seen.lock().expect("log").is_empty());
}

#[test]
fn off_ec2_the_agent_falls_back_to_the_host_name() {
    let port = common::free_ports(1)[0];
    let mut config = default_config();
    config.aws.imds_endpoint = format!("http://127.0.0.1:{port}");
    config.aws.imds_timeout = Duration::from_millis(300);
    let environment = EnvironmentConfig {
        instance_id: None,
        ..config.environment.clone()
    };
    let identity = block_on(resolve_identity(&environment, &config.aws));
    assert_eq!(identity.source, "hostname");
    assert_eq!(
        identity.instance_id,
        nix::unistd::gethostname()
            .expect("hostname")
            .into_string()
            .expect("utf-8")
    );
}
