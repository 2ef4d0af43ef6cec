//! `hostmanager-controller logs NAME [--bundle] [--out DIR]`: RequestEnvironmentInfo, then
//! RetrieveEnvironmentInfo until every instance asked has answered (or `--timeout`), then the
//! samples: tails printed one after the other as `eb logs` prints them (or saved under
//! `--out`), bundles saved under `--out` (default: the current directory).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::client::{Client, ClientError};
use super::commands::out as print_out;
use super::{EXIT_FAILED, EXIT_OK, Remote};

#[derive(Debug, Clone)]
pub struct LogsRequest {
    pub name: String,
    pub bundle: bool,
    pub out: Option<PathBuf>,
    pub timeout: Duration,
}

/// The samples that answer this request: newer than it, from the instances it asked, sorted.
pub fn fresh_samples(retrieved: &Value, asked: &[String], requested_at: &str) -> Vec<Value> {
    let mut fresh: Vec<Value> = retrieved["EnvironmentInfo"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| {
            let instance = entry["Ec2InstanceId"].as_str().unwrap_or("");
            // Both are EB's fixed-width UTC dates: text order is time order.
            let sampled = entry["SampleTimestamp"].as_str().unwrap_or("");
            asked.iter().any(|a| a == instance) && sampled >= requested_at
        })
        .cloned()
        .collect();
    fresh.sort_by(|a, b| {
        a["Ec2InstanceId"]
            .as_str()
            .cmp(&b["Ec2InstanceId"].as_str())
    });
    fresh
}

pub async fn run(
    client: &Client,
    remote: &Remote,
    request: LogsRequest,
) -> Result<i32, ClientError> {
    let kind = if request.bundle { "bundle" } else { "tail" };
    let path = format!(
        "/v1/environments/{}/info",
        super::commands::path_part(&request.name)
    );
    let requested: Value = client.post(&path, &json!({ "InfoType": kind })).await?;
    let asked: Vec<String> = requested["Instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.as_str().map(str::to_string))
        .collect();
    if asked.is_empty() {
        eprintln!(
            "hostmanager-controller: environment {} has no enrolled instances to ask",
            request.name
        );
        return Ok(EXIT_FAILED);
    }
    let requested_at = requested["RequestedAt"].as_str().unwrap_or("").to_string();
    let deadline = tokio::time::Instant::now() + request.timeout;
    let fresh = loop {
        let retrieved: Value = client.get(&format!("{path}?InfoType={kind}")).await?;
        let fresh = fresh_samples(&retrieved, &asked, &requested_at);
        if fresh.len() == asked.len() || tokio::time::Instant::now() >= deadline {
            break fresh;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let out = request
        .out
        .clone()
        .or_else(|| request.bundle.then(|| PathBuf::from(".")));
    let mut saved = Vec::new();
    for entry in &fresh {
        let instance = entry["Ec2InstanceId"].as_str().unwrap_or("instance");
        let url = entry["Message"].as_str().unwrap_or("");
        let bytes = client.download(url).await?;
        match &out {
            Some(dir) => saved.push(save(dir, instance, kind, &bytes)?),
            None if !remote.json => {
                print_out(&format!(
                    "============= {instance} ==============\n{}",
                    String::from_utf8_lossy(&bytes)
                ));
            }
            None => {}
        }
    }
    let missing: Vec<&String> = asked
        .iter()
        .filter(|a| !fresh.iter().any(|f| f["Ec2InstanceId"].as_str() == Some(a)))
        .collect();
    if remote.json {
        let answer = json!({"EnvironmentInfo": fresh, "Saved": saved, "Missing": missing});
        print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        ));
    } else {
        for path in &saved {
            eprintln!("Saved {}", path.display());
        }
    }
    if missing.is_empty() {
        return Ok(EXIT_OK);
    }
    let names: Vec<&str> = missing.iter().map(|m| m.as_str()).collect();
    eprintln!(
        "hostmanager-controller: no {kind} from {} within {}s (their events may say why: env events {})",
        names.join(", "),
        request.timeout.as_secs(),
        request.name
    );
    Ok(EXIT_FAILED)
}

fn save(dir: &Path, instance: &str, kind: &str, bytes: &[u8]) -> Result<PathBuf, ClientError> {
    let extension = if kind == "bundle" { "zip" } else { "txt" };
    // The instance id comes from the controller: keep only what is safe in a file name.
    let safe: String = instance
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{safe}-{kind}.{extension}"));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, bytes))
        .map_err(|e| ClientError::Unavailable(format!("{}: {e}", path.display())))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_samples_newer_than_the_request_from_instances_asked_count() {
        let retrieved = json!({"EnvironmentInfo": [
            {"Ec2InstanceId": "i-2", "SampleTimestamp": "2026-12-04T10:00:05.000Z", "Message": "u2"},
            {"Ec2InstanceId": "i-1", "SampleTimestamp": "2026-12-04T10:00:01.000Z", "Message": "u1"},
            {"Ec2InstanceId": "i-3", "SampleTimestamp": "2026-12-04T09:59:59.999Z", "Message": "old"},
            {"Ec2InstanceId": "i-9", "SampleTimestamp": "2026-12-04T10:00:09.000Z", "Message": "not asked"}
        ]});
        let asked = vec!["i-1".to_string(), "i-2".to_string(), "i-3".to_string()];
        let fresh = fresh_samples(&retrieved, &asked, "2026-12-04T10:00:00.000Z");
        let urls: Vec<&str> = fresh.iter().filter_map(|f| f["Message"].as_str()).collect();
        assert_eq!(urls, vec!["u1", "u2"]);
    }
}
