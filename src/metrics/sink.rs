//! The CloudWatch sink task: folds windows into periods (`cloudwatch.rs`), keeps the datums in
//! a bounded buffer and sends them with `PutMetricData`, one call in flight at a time.
//!
//! Nothing waits on CloudWatch: windows keep arriving while a call is in flight; a failed call
//! puts its datums back and the next try waits (exponential backoff with jitter, 1 s → 60 s);
//! past `cloudwatch.buffer` datums the oldest are dropped and counted. A call CloudWatch rejects
//! as invalid (HTTP 400 other than throttling) is dropped and counted, never retried forever.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::cloudwatch::{Datum, DatumValue, PeriodAggregator, Unit, WindowReport, next_batch_len};
use crate::config::{AwsConfig, CloudWatchConfig, EnvironmentConfig};
use crate::events::EventSink;

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(60);
/// The last flush on shutdown may not use the whole shutdown budget.
const FLUSH_BUDGET: Duration = Duration::from_secs(3);

/// What `GET /v1/health` shows about the publication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkStatus {
    pub enabled: bool,
    pub namespace: String,
    pub instance_id: Option<String>,
    pub region: Option<String>,
    pub calls: u64,
    pub datums_sent: u64,
    pub datums_buffered: usize,
    /// Dropped because the buffer was full (CloudWatch unreachable for long).
    pub datums_dropped: u64,
    /// Dropped because CloudWatch refused them as invalid.
    pub datums_rejected: u64,
    pub last_error: Option<String>,
    pub last_success: Option<String>,
}

type Call = Pin<Box<dyn Future<Output = (Vec<Datum>, Result<(), CallError>)> + Send>>;

#[derive(Debug)]
enum CallError {
    Retry(String),
    Rejected(String),
}

/// Reads the instance's health code when a window arrives (for `InstanceHealth`).
pub type HealthCode = Box<dyn Fn() -> u32 + Send + Sync>;

pub struct CloudWatchSink {
    config: CloudWatchConfig,
    environment: EnvironmentConfig,
    aws: AwsConfig,
    windows: mpsc::Receiver<WindowReport>,
    health_code: HealthCode,
    events: EventSink,
    status: watch::Sender<SinkStatus>,
    /// The config a live reconfiguration (SIGHUP) publishes: `[cloudwatch]` but `enabled`.
    updates: Option<watch::Receiver<Arc<crate::config::Config>>>,
}

impl std::fmt::Debug for CloudWatchSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudWatchSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl CloudWatchSink {
    pub fn new(
        config: CloudWatchConfig,
        environment: EnvironmentConfig,
        aws: AwsConfig,
        windows: mpsc::Receiver<WindowReport>,
        health_code: HealthCode,
        events: EventSink,
    ) -> (Self, watch::Receiver<SinkStatus>) {
        let (status, statuses) = watch::channel(SinkStatus {
            enabled: true,
            namespace: config.namespace.clone(),
            ..SinkStatus::default()
        });
        let sink = Self {
            config,
            environment,
            aws,
            windows,
            health_code,
            events,
            status,
            updates: None,
        };
        (sink, statuses)
    }

    pub fn with_config_updates(
        mut self,
        updates: watch::Receiver<Arc<crate::config::Config>>,
    ) -> Self {
        self.updates = Some(updates);
        self
    }

    /// What to send with, from `self.config`.
    fn sender(
        &self,
        sdk: &aws_config::SdkConfig,
        dimensions: &[Dimension],
    ) -> (Sender, PeriodAggregator) {
        let period_secs = self.config.period.as_secs().max(1);
        let sender = Sender {
            client: crate::aws::cloudwatch_client(sdk, self.config.timeout),
            namespace: self.config.namespace.clone(),
            dimensions: dimensions.to_vec(),
            // Periods under a minute are stored at high resolution (charged more).
            storage_resolution: if period_secs < 60 { 1 } else { 60 },
        };
        (sender, PeriodAggregator::new((period_secs * 1000) as i64))
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let identity = tokio::select! {
            () = cancel.cancelled() => return,
            identity = crate::aws::resolve_identity(&self.environment, &self.aws) => identity,
        };
        self.status.send_modify(|s| {
            s.instance_id = Some(identity.instance_id.clone());
            s.region = identity.region.clone();
        });
        let sdk = match crate::aws::sdk_config(&self.aws, identity.region.clone()).await {
            Ok(sdk) => sdk,
            Err(error) => {
                let message = format!("CloudWatch metrics are off: {error}");
                self.status
                    .send_modify(|s| s.last_error = Some(message.clone()));
                self.events.error("metrics", message);
                return;
            }
        };
        let dimensions = vec![
            Dimension::builder()
                .name("EnvironmentName")
                .value(&self.environment.name)
                .build(),
            Dimension::builder()
                .name("InstanceId")
                .value(&identity.instance_id)
                .build(),
        ];
        let dimensions_bytes = 64 + self.environment.name.len() + identity.instance_id.len();
        let (mut sender, mut aggregator) = self.sender(&sdk, &dimensions);
        let mut updates = self.updates.take();
        let mut buffer: VecDeque<Datum> = VecDeque::new();
        let mut in_flight: Option<Call> = None;
        let mut in_flight_len = 0usize;
        let mut retry_at: Option<Instant> = None;
        let mut backoff = FIRST_RETRY;
        loop {
            if in_flight.is_none() && !buffer.is_empty() && retry_at.is_none() {
                let n = next_batch_len(buffer.make_contiguous(), dimensions_bytes);
                let batch: Vec<Datum> = buffer.drain(..n).collect();
                in_flight_len = batch.len();
                in_flight = Some(Box::pin(sender.clone().send(batch)));
            }
            self.status
                .send_modify(|s| s.datums_buffered = buffer.len() + in_flight_len);
            let call = async {
                match in_flight.as_mut() {
                    Some(call) => call.await,
                    None => std::future::pending().await,
                }
            };
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let update = async {
                match updates.as_mut() {
                    Some(updates) => updates.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                live = update => {
                    let Some(receiver) = updates.as_mut().filter(|_| live) else {
                        updates = None;
                        continue;
                    };
                    let next = receiver.borrow_and_update().cloudwatch.clone();
                    if next != self.config {
                        // The period in progress is closed as it is; what is buffered (and
                        // in flight) goes out with the new settings.
                        buffer.extend(aggregator.flush());
                        self.config = next;
                        (sender, aggregator) = self.sender(&sdk, &dimensions);
                        self.status.send_modify(|s| s.namespace = self.config.namespace.clone());
                    }
                }
                window = self.windows.recv() => {
                    let Some(window) = window else { break };
                    let datums = aggregator.add(&window, (self.health_code)());
                    buffer.extend(datums);
                }
                (batch, result) = call => {
                    in_flight = None;
                    in_flight_len = 0;
                    match result {
                        Ok(()) => {
                            backoff = FIRST_RETRY;
                            self.status.send_modify(|s| {
                                s.calls += 1;
                                s.datums_sent += batch.len() as u64;
                                s.last_success = Some(jiff::Timestamp::now().to_string());
                            });
                        }
                        Err(CallError::Rejected(message)) => {
                            tracing::error!("CloudWatch rejected {} datums: {message}", batch.len());
                            self.status.send_modify(|s| {
                                s.datums_rejected += batch.len() as u64;
                                s.last_error = Some(message);
                            });
                        }
                        Err(CallError::Retry(message)) => {
                            tracing::warn!("PutMetricData failed, retrying in {backoff:?}: {message}");
                            for datum in batch.into_iter().rev() {
                                buffer.push_front(datum);
                            }
                            let jitter = 0.8 + fastrand::f64() * 0.4;
                            retry_at = Some(Instant::now() + backoff.mul_f64(jitter));
                            backoff = (backoff * 2).min(LAST_RETRY);
                            self.status.send_modify(|s| s.last_error = Some(message));
                        }
                    }
                }
                () = retry => retry_at = None,
            }
            let over = (buffer.len() + in_flight_len).saturating_sub(self.config.buffer);
            if over > 0 {
                let over = over.min(buffer.len());
                buffer.drain(..over);
                self.status.send_modify(|s| s.datums_dropped += over as u64);
            }
        }
        // Shutdown: the period in progress and whatever waits, once, within a short budget.
        drop(in_flight);
        buffer.extend(aggregator.flush());
        let flush = async {
            while !buffer.is_empty() {
                let n = next_batch_len(buffer.make_contiguous(), dimensions_bytes);
                let batch: Vec<Datum> = buffer.drain(..n).collect();
                if sender.clone().send(batch).await.1.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(FLUSH_BUDGET, flush).await;
    }
}

#[derive(Debug, Clone)]
struct Sender {
    client: aws_sdk_cloudwatch::Client,
    namespace: String,
    dimensions: Vec<Dimension>,
    storage_resolution: i32,
}

impl Sender {
    async fn send(self, batch: Vec<Datum>) -> (Vec<Datum>, Result<(), CallError>) {
        let data: Vec<MetricDatum> = batch.iter().map(|d| self.datum(d)).collect();
        let result = self
            .client
            .put_metric_data()
            .namespace(&self.namespace)
            .set_metric_data(Some(data))
            .send()
            .await;
        let outcome = result.map(|_| ()).map_err(|error| {
            let message = DisplayErrorContext(&error).to_string();
            let invalid = match &error {
                SdkError::ServiceError(service) => {
                    service.raw().status().as_u16() == 400
                        && !service
                            .err()
                            .code()
                            .is_some_and(|code| code.contains("Throttl"))
                }
                _ => false,
            };
            if invalid {
                CallError::Rejected(message)
            } else {
                CallError::Retry(message)
            }
        });
        (batch, outcome)
    }

    fn datum(&self, datum: &Datum) -> MetricDatum {
        let unit = match datum.unit {
            Unit::Count => StandardUnit::Count,
            Unit::Seconds => StandardUnit::Seconds,
            Unit::Percent => StandardUnit::Percent,
            Unit::None => StandardUnit::None,
        };
        let builder = MetricDatum::builder()
            .metric_name(&datum.name)
            .set_dimensions(Some(self.dimensions.clone()))
            .timestamp(DateTime::from_millis(datum.timestamp_ms))
            .unit(unit)
            .storage_resolution(self.storage_resolution);
        match &datum.value {
            DatumValue::Stats {
                count,
                sum,
                min,
                max,
            } => builder.statistic_values(
                StatisticSet::builder()
                    .sample_count(*count)
                    .sum(*sum)
                    .minimum(*min)
                    .maximum(*max)
                    .build(),
            ),
            DatumValue::Values { values, counts } => builder
                .set_values(Some(values.clone()))
                .set_counts(Some(counts.clone())),
        }
        .build()
    }
}
