//! One place that builds AWS SDK clients from `[aws]`, so S3 (bundles, logs) and CloudWatch
//! share region, endpoint override, addressing and checksum policy; and the instance identity
//! (instance id, region) from config or IMDSv2.

mod identity;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};

pub use identity::{InstanceIdentity, Placement, resolve_identity, resolve_placement};

use crate::config::{AwsConfig, ChecksumPolicy};

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "no AWS region: set aws.region in agent.toml or AWS_REGION, or run on EC2 where IMDS tells it"
    )]
    NoRegion,
}

/// The shared SDK configuration, credentials from the standard chain. `region` is the resolved
/// one (config, environment or IMDS).
pub async fn sdk_config(
    settings: &AwsConfig,
    region: Option<String>,
) -> Result<SdkConfig, AwsError> {
    load(settings, region, None).await
}

/// The same with fixed keys (S3-compatible servers with their own keys; tests).
pub async fn sdk_config_with_credentials(
    settings: &AwsConfig,
    access_key: &str,
    secret_key: &str,
) -> Result<SdkConfig, AwsError> {
    let credentials = aws_sdk_s3::config::Credentials::new(
        access_key,
        secret_key,
        None,
        None,
        "hostmanager-config",
    );
    load(settings, None, Some(credentials)).await
}

async fn load(
    settings: &AwsConfig,
    region: Option<String>,
    credentials: Option<aws_sdk_s3::config::Credentials>,
) -> Result<SdkConfig, AwsError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    if let Some(region) = region.or_else(|| settings.region.clone()) {
        loader = loader.region(Region::new(region));
    }
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let (request, response) = match settings.checksums {
        ChecksumPolicy::WhenSupported => (
            RequestChecksumCalculation::WhenSupported,
            ResponseChecksumValidation::WhenSupported,
        ),
        ChecksumPolicy::WhenRequired => (
            RequestChecksumCalculation::WhenRequired,
            ResponseChecksumValidation::WhenRequired,
        ),
    };
    let config = loader
        .request_checksum_calculation(request)
        .response_checksum_validation(response)
        .load()
        .await;
    if config.region().is_none() {
        return Err(AwsError::NoRegion);
    }
    Ok(config)
}

pub fn s3_client(sdk: &SdkConfig, settings: &AwsConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(settings.force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A CloudWatch client whose calls (retries included) give up after `operation_timeout`, so a
/// black-holed endpoint cannot hold a caller.
pub fn cloudwatch_client(
    sdk: &SdkConfig,
    operation_timeout: std::time::Duration,
) -> aws_sdk_cloudwatch::Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_timeout(operation_timeout)
        .build();
    let config = aws_sdk_cloudwatch::config::Builder::from(sdk)
        .timeout_config(timeouts)
        .build();
    aws_sdk_cloudwatch::Client::from_conf(config)
}

/// An SQS client whose attempts give up a little after the longest long poll (20 s): without
/// an attempt timeout a receive can hang on a connection that went away (awslabs/aws-sdk-rust#1094).
pub fn sqs_client(sdk: &SdkConfig) -> aws_sdk_sqs::Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(std::time::Duration::from_secs(30))
        .operation_timeout(std::time::Duration::from_secs(75))
        .build();
    let config = aws_sdk_sqs::config::Builder::from(sdk)
        .timeout_config(timeouts)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}
