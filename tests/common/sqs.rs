//! SQS queues in moto_server for the worker tests, through the real `aws-sdk-sqs`, and the
//! sample worker app's records of what it received.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use serde_json::Value;

use super::moto::{Moto, block_on};

pub fn client(moto: &Moto) -> aws_sdk_sqs::Client {
    let credentials = aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests");
    let config = aws_sdk_sqs::config::Builder::new()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .credentials_provider(credentials)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

#[derive(Debug, Clone)]
pub struct TestQueue {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
    /// The dead-letter queue's URL, when it has one.
    pub dead_letter: Option<String>,
}

/// A standard queue; with `max_receives`, a dead-letter queue behind it (SQS's redrive).
pub fn create_queue(moto: &Moto, name: &str, max_receives: Option<u32>) -> TestQueue {
    let client = client(moto);
    block_on(async {
        let mut dead_letter = None;
        let mut request = client.create_queue().queue_name(name);
        if let Some(max) = max_receives {
            let dlq = client
                .create_queue()
                .queue_name(format!("{name}-dlq"))
                .send()
                .await
                .expect("create dlq");
            let dlq_url = dlq.queue_url().expect("dlq url").to_string();
            let arn = client
                .get_queue_attributes()
                .queue_url(&dlq_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .expect("dlq arn")
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
                .expect("arn");
            request = request.attributes(
                QueueAttributeName::RedrivePolicy,
                format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"{max}"}}"#),
            );
            dead_letter = Some(dlq_url);
        }
        let url = request
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .expect("url")
            .to_string();
        TestQueue {
            client: client.clone(),
            url,
            dead_letter,
        }
    })
}

impl TestQueue {
    /// Sends `body` with String attributes; the message id.
    pub fn send(&self, body: &str, attributes: &[(&str, &str)]) -> String {
        block_on(async {
            let mut request = self
                .client
                .send_message()
                .queue_url(&self.url)
                .message_body(body);
            for (name, value) in attributes {
                let value = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(*value)
                    .build()
                    .expect("attribute");
                request = request.message_attributes(*name, value);
            }
            request
                .send()
                .await
                .expect("send")
                .message_id()
                .expect("id")
                .to_string()
        })
    }

    /// (waiting, in flight) messages of `url`.
    pub fn depth_of(&self, url: &str) -> (u64, u64) {
        block_on(async {
            let output = self
                .client
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .expect("attributes");
            let get = |name: QueueAttributeName| {
                output
                    .attributes()
                    .and_then(|a| a.get(&name))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            (
                get(QueueAttributeName::ApproximateNumberOfMessages),
                get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            )
        })
    }

    pub fn depth(&self) -> (u64, u64) {
        self.depth_of(&self.url)
    }

    /// The bodies waiting in the dead-letter queue (received and left there).
    pub fn dead_letter_bodies(&self) -> Vec<String> {
        let url = self.dead_letter.clone().expect("a dead-letter queue");
        block_on(async {
            let output = self
                .client
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .visibility_timeout(0)
                .send()
                .await
                .expect("receive dlq");
            output
                .messages()
                .iter()
                .map(|m| m.body().unwrap_or_default().to_string())
                .collect()
        })
    }
}

/// What the sample worker app (examples/worker-app) recorded, one JSON object per request.
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// A record's header, by name in any case.
pub fn header<'a>(record: &'a Value, name: &str) -> Option<&'a str> {
    record["headers"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// Message id → the statuses the app answered it with, in order.
pub fn answers_by_id(records: &[Value]) -> HashMap<String, Vec<u64>> {
    let mut out: HashMap<String, Vec<u64>> = HashMap::new();
    for record in records {
        if let Some(id) = header(record, "X-Aws-Sqsd-Msgid") {
            out.entry(id.to_string())
                .or_default()
                .push(record["status"].as_u64().unwrap_or(0));
        }
    }
    out
}

/// The sample worker app's files, for `bundles::zip`.
pub fn worker_app_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/worker-app")
}

/// A directory the app user can write its records to, outside the releases (it survives them).
pub fn records_dir(root: &Path) -> PathBuf {
    let dir = root.join("worker-records");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let user = nix::unistd::User::from_name(&super::app_user())
        .expect("lookup")
        .expect("app user");
    nix::unistd::chown(&dir, Some(user.uid), Some(user.gid)).expect("chown");
    dir
}
