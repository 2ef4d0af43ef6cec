//! Who and where this instance is: the configured instance id and region when given, else
//! IMDSv2 (token first, short timeouts, so the agent never hangs off EC2), else the host name
//! and no region.

use std::time::Duration;

use crate::config::{AwsConfig, EnvironmentConfig};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    pub instance_id: String,
    pub region: Option<String>,
    /// Where the answer came from, for the startup log: "config", "imds", "hostname".
    pub source: &'static str,
}

/// Resolves the identity. Only asks IMDS for what the config does not say.
pub async fn resolve_identity(
    environment: &EnvironmentConfig,
    aws: &AwsConfig,
) -> InstanceIdentity {
    let configured_region = aws
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok());
    if let (Some(instance_id), Some(region)) = (&environment.instance_id, &configured_region) {
        return InstanceIdentity {
            instance_id: instance_id.clone(),
            region: Some(region.clone()),
            source: "config",
        };
    }
    let imds = imds_client(aws);
    let from_imds = match imds {
        Some(client) => {
            query(
                &client,
                environment.instance_id.is_none(),
                configured_region.is_none(),
            )
            .await
        }
        None => (None, None),
    };
    let region = configured_region.or(from_imds.1);
    match (environment.instance_id.clone(), from_imds.0) {
        (Some(instance_id), _) => InstanceIdentity {
            instance_id,
            region,
            source: "config",
        },
        (None, Some(instance_id)) => InstanceIdentity {
            instance_id,
            region,
            source: "imds",
        },
        (None, None) => InstanceIdentity {
            instance_id: hostname(),
            region,
            source: "hostname",
        },
    }
}

/// Where in EC2 the instance runs, for the controller's host facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub availability_zone: Option<String>,
    pub instance_type: Option<String>,
}

/// Asks IMDS for the availability zone and instance type, unless IMDS is disabled
/// (`AWS_EC2_METADATA_DISABLED=true`, as the SDK reads it): off EC2 both stay unknown.
pub async fn resolve_placement(aws: &AwsConfig) -> Placement {
    let disabled = std::env::var("AWS_EC2_METADATA_DISABLED")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let Some(client) = imds_client(aws).filter(|_| !disabled) else {
        return Placement::default();
    };
    let get = async |path: &str| match client.get(path).await {
        Ok(value) => Some(value.as_ref().trim().to_string()),
        Err(error) => {
            tracing::info!(%error, path, "IMDS gave no answer");
            None
        }
    };
    let availability_zone = get("/latest/meta-data/placement/availability-zone").await;
    // No second wait when the first question already went unanswered (not on EC2).
    let instance_type = match availability_zone {
        Some(_) => get("/latest/meta-data/instance-type").await,
        None => None,
    };
    Placement {
        availability_zone,
        instance_type,
    }
}

fn imds_client(aws: &AwsConfig) -> Option<aws_config::imds::Client> {
    let builder = aws_config::imds::Client::builder()
        .endpoint(&aws.imds_endpoint)
        .ok()?
        .connect_timeout(aws.imds_timeout)
        .read_timeout(aws.imds_timeout)
        .max_attempts(2)
        .token_ttl(Duration::from_secs(6 * 3600));
    Some(builder.build())
}

async fn query(
    client: &aws_config::imds::Client,
    want_id: bool,
    want_region: bool,
) -> (Option<String>, Option<String>) {
    let mut instance_id = None;
    let mut region = None;
    if want_id {
        match client.get("/latest/meta-data/instance-id").await {
            Ok(id) => instance_id = Some(id.as_ref().trim().to_string()),
            Err(error) => tracing::info!(%error, "IMDS gave no instance id (not on EC2?)"),
        }
    }
    // No second wait when the first question already went unanswered.
    if want_region && (instance_id.is_some() || !want_id) {
        match client.get("/latest/meta-data/placement/region").await {
            Ok(name) => region = Some(name.as_ref().trim().to_string()),
            Err(error) => tracing::info!(%error, "IMDS gave no region"),
        }
    }
    (instance_id, region)
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}
