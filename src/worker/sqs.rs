//! The SQS calls the daemon makes, through the real `aws-sdk-sqs` (AWS JSON 1.0), in plain
//! types: receive, delete in batches, change visibility, send (periodic tasks), read the
//! queue's attributes. Errors come back as text naming the call.

use std::collections::BTreeMap;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName,
};

use super::message::Received;

/// SQS's longest long poll.
pub const WAIT_SECONDS: i32 = 20;

#[derive(Debug, Clone)]
pub struct Queue {
    client: Client,
    pub url: String,
}

/// What `GetQueueAttributes` says of the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueAttributes {
    pub visible: u64,
    pub not_visible: u64,
    pub delayed: u64,
    pub redrive_policy: Option<String>,
}

impl QueueAttributes {
    /// The redrive policy's `maxReceiveCount`, when there is one.
    pub fn max_receive_count(&self) -> Option<u64> {
        let policy: serde_json::Value =
            serde_json::from_str(self.redrive_policy.as_deref()?).ok()?;
        match &policy["maxReceiveCount"] {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}

fn describe(call: &str, error: impl std::error::Error) -> String {
    format!("{call}: {}", DisplayErrorContext(error))
}

impl Queue {
    pub async fn connect(config: &crate::config::AwsConfig, url: &str) -> Result<Self, String> {
        let sdk = crate::aws::sdk_config(config, region_of(url))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client: crate::aws::sqs_client(&sdk),
            url: url.to_string(),
        })
    }

    /// Up to `max` (1–10) messages, waiting up to 20 s for the first.
    pub async fn receive(
        &self,
        max: i32,
        visibility_timeout: u64,
    ) -> Result<Vec<Received>, String> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(WAIT_SECONDS)
            .visibility_timeout(visibility_timeout.min(43_200) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| describe("ReceiveMessage", e))?;
        Ok(output
            .messages()
            .iter()
            .map(|m| {
                let attributes = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                let message_attributes: BTreeMap<String, (String, Option<String>)> = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    (
                                        v.data_type().to_string(),
                                        v.string_value().map(str::to_string),
                                    ),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Received {
                    message_id: m.message_id().unwrap_or_default().to_string(),
                    receipt_handle: m.receipt_handle().unwrap_or_default().to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    md5_of_body: m.md5_of_body().map(str::to_string),
                    attributes,
                    message_attributes,
                }
            })
            .collect())
    }

    /// Deletes up to 10 messages: the ids (message id, error) that failed.
    pub async fn delete_batch(
        &self,
        receipts: &[(String, String)],
    ) -> Result<Vec<(String, String)>, String> {
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(index, (_, receipt))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| describe("DeleteMessageBatch", e))?;
        Ok(output
            .failed()
            .iter()
            .map(|f| {
                let id = f
                    .id()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| receipts.get(i))
                    .map(|(id, _)| id.clone());
                (
                    id.unwrap_or_default(),
                    format!("{}: {}", f.code(), f.message().unwrap_or_default()),
                )
            })
            .collect())
    }

    pub async fn change_visibility(&self, receipt: &str, seconds: u64) -> Result<(), String> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds.min(43_200) as i32)
            .send()
            .await
            .map_err(|e| describe("ChangeMessageVisibility", e))?;
        Ok(())
    }

    /// Sends a message with String attributes; its message id.
    pub async fn send(&self, body: &str, attributes: &[(&str, String)]) -> Result<String, String> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        for (name, value) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| e.to_string())?;
            request = request.message_attributes(*name, value);
        }
        let output = request
            .send()
            .await
            .map_err(|e| describe("SendMessage", e))?;
        Ok(output.message_id().unwrap_or_default().to_string())
    }

    pub async fn attributes(&self) -> Result<QueueAttributes, String> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| describe("GetQueueAttributes", e))?;
        let attributes = output.attributes();
        let number = |name: QueueAttributeName| {
            attributes
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(QueueAttributes {
            visible: number(QueueAttributeName::ApproximateNumberOfMessages),
            not_visible: number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: number(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            redrive_policy: attributes
                .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
                .cloned(),
        })
    }
}

/// `https://sqs.eu-west-1.amazonaws.com/…` is in eu-west-1; other hosts (moto, a VPC endpoint)
/// leave the region to `[aws]`.
fn region_of(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let mut parts = host.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("sqs"), Some(region), Some("amazonaws")) => Some(region.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_an_aws_queue_url_only() {
        assert_eq!(
            region_of("https://sqs.eu-west-1.amazonaws.com/1/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(region_of("http://127.0.0.1:5000/1/q"), None);
    }

    #[test]
    fn the_redrive_policy_gives_the_max_receive_count() {
        let attributes = QueueAttributes {
            redrive_policy: Some(
                r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":"3"}"#
                    .into(),
            ),
            ..Default::default()
        };
        assert_eq!(attributes.max_receive_count(), Some(3));
        assert_eq!(QueueAttributes::default().max_receive_count(), None);
    }
}
