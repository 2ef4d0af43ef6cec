//! The EC2 provisioner: an environment's new hosts come from its EC2 Auto Scaling group, which
//! this module grows (SetDesiredCapacity) and shrinks (TerminateInstanceInAutoScalingGroup)
//! through the AWS SDK.
//!
//! The controller never talks to the instances it launches. Each one enrolls itself: the
//! group's launch template carries user data that installs the agent with an enrollment token
//! of the environment. The agent reports its EC2 instance id (from IMDS) when it enrolls, so
//! the ids returned by [`Ec2Provisioner::launch`] are the ids the new hosts show up with, and
//! the deployment can record them as its members before any of them has booted.
//!
//! Credentials come from the standard chain (environment, profile, instance or task role);
//! region and endpoint override from the provisioner's config, through the agent's shared SDK
//! configuration ([`hostmanager::aws::sdk_config`]).

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::error::DisplayErrorContext;
use aws_sdk_autoscaling::types::{AutoScalingGroup, LifecycleState};
use tokio::time::Instant;

use super::ProvisionError;
use crate::config::Ec2Config;

/// How often a launch asks the group whether the new instances are listed.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// One SDK call (its retries included) gives up after this, so a black-holed endpoint cannot
/// hold a deployment.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Ec2Provisioner {
    config: Ec2Config,
    /// The client, or why there is none (no region): reported by the first call.
    client: Result<Client, String>,
}

impl Ec2Provisioner {
    /// A provisioner with credentials from the standard chain. Never fails: a missing region
    /// is reported by the first launch or terminate.
    pub async fn new(config: &Ec2Config) -> Self {
        let settings = hostmanager::config::AwsConfig {
            region: config.region.clone(),
            endpoint_url: config.endpoint_url.clone(),
            force_path_style: false,
            checksums: hostmanager::config::ChecksumPolicy::WhenSupported,
            imds_endpoint: String::new(),
            imds_timeout: Duration::from_secs(1),
        };
        let client = match hostmanager::aws::sdk_config(&settings, None).await {
            Ok(sdk) => Ok(client(&sdk)),
            Err(hostmanager::aws::AwsError::NoRegion) => Err(
                "EC2 provisioner: no AWS region: set provisioner.region or AWS_REGION, or run \
                 the controller on EC2"
                    .to_string(),
            ),
        };
        Self {
            config: config.clone(),
            client,
        }
    }

    /// A provisioner with this SDK configuration (tests: fixed credentials, a moto endpoint).
    #[cfg(test)]
    pub(crate) fn with_sdk_config(config: &Ec2Config, sdk: &aws_config::SdkConfig) -> Self {
        Self {
            config: config.clone(),
            client: Ok(client(sdk)),
        }
    }

    pub fn group_name(&self, environment: &str) -> String {
        self.config
            .auto_scaling_group
            .replace("{environment}", environment)
    }

    /// Grows the environment's group by `count` and returns the ids of the new instances.
    pub async fn launch(
        &self,
        environment: &str,
        count: usize,
    ) -> Result<Vec<String>, ProvisionError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let client = self.client()?;
        let group_name = self.group_name(environment);
        let group = self.describe(client, &group_name).await?.ok_or_else(|| {
            ProvisionError::new(format!(
                "EC2 Auto Scaling group {group_name:?} does not exist: create it with the \
                 environment's launch template, whose user data enrolls the instances"
            ))
        })?;
        let desired = i64::from(group.desired_capacity().unwrap_or(0));
        let max = i64::from(group.max_size().unwrap_or(0));
        let wanted = desired.saturating_add(i64::try_from(count).unwrap_or(i64::MAX));
        if wanted > max {
            return Err(ProvisionError::new(format!(
                "EC2 Auto Scaling group {group_name:?} cannot grow by {count}: its desired \
                 capacity is {desired} and its MaxSize {max}; raise MaxSize to at least {wanted} \
                 (an Immutable deployment needs twice the environment's size)"
            )));
        }
        // `wanted` <= MaxSize, which is an i32.
        let wanted = i32::try_from(wanted).unwrap_or(i32::MAX);
        let before = instance_ids(&group);
        client
            .set_desired_capacity()
            .auto_scaling_group_name(&group_name)
            .desired_capacity(wanted)
            .honor_cooldown(false)
            .send()
            .await
            .map_err(|err| sdk_error("SetDesiredCapacity", &group_name, err))?;
        tracing::info!(group = %group_name, desired = wanted, count, "EC2: growing the Auto Scaling group");

        let deadline = Instant::now() + self.config.launch_timeout;
        loop {
            let group = self.describe(client, &group_name).await?.ok_or_else(|| {
                ProvisionError::new(format!(
                    "EC2 Auto Scaling group {group_name:?} disappeared while launching {count} instances"
                ))
            })?;
            let new = new_instances(&before, &group);
            if new.len() >= count {
                if new.len() > count {
                    tracing::warn!(group = %group_name, ids = ?new, count, "EC2: more new instances than asked for; keeping the first");
                }
                let new: Vec<String> = new.into_iter().take(count).collect();
                tracing::info!(group = %group_name, ids = ?new, "EC2: launched instances");
                return Ok(new);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ProvisionError::new(format!(
                    "EC2 Auto Scaling group {group_name:?} listed {} of {count} new instances \
                     within {}; see the group's activity history",
                    new.len(),
                    humantime::format_duration(self.config.launch_timeout)
                )));
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    /// Terminates these instances of the group, decrementing its desired capacity. Instances
    /// no longer in the group are not an error.
    pub async fn terminate(&self, environment: &str, ids: &[String]) -> Result<(), ProvisionError> {
        if ids.is_empty() {
            return Ok(());
        }
        let client = self.client()?;
        let group_name = self.group_name(environment);
        let Some(group) = self.describe(client, &group_name).await? else {
            tracing::info!(group = %group_name, ids = ?ids, "EC2: the Auto Scaling group is gone; nothing to terminate");
            return Ok(());
        };
        // Instances already on their way out (a retried release) are not terminated twice.
        let members: BTreeSet<&str> = group
            .instances()
            .iter()
            .filter(|instance| !leaving(instance.lifecycle_state()))
            .filter_map(|instance| instance.instance_id())
            .collect();
        for id in ids {
            if !members.contains(id.as_str()) {
                tracing::info!(group = %group_name, id = %id, "EC2: instance not in the group (or leaving it); skipped");
                continue;
            }
            client
                .terminate_instance_in_auto_scaling_group()
                .instance_id(id)
                .should_decrement_desired_capacity(true)
                .send()
                .await
                .map_err(|err| {
                    sdk_error("TerminateInstanceInAutoScalingGroup", &group_name, err)
                })?;
            tracing::info!(group = %group_name, id = %id, "EC2: terminated instance");
        }
        Ok(())
    }

    fn client(&self) -> Result<&Client, ProvisionError> {
        self.client
            .as_ref()
            .map_err(|err| ProvisionError::new(err.clone()))
    }

    async fn describe(
        &self,
        client: &Client,
        group_name: &str,
    ) -> Result<Option<AutoScalingGroup>, ProvisionError> {
        let output = client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group_name)
            .send()
            .await
            .map_err(|err| sdk_error("DescribeAutoScalingGroups", group_name, err))?;
        Ok(output
            .auto_scaling_groups()
            .iter()
            .find(|group| group.auto_scaling_group_name() == Some(group_name))
            .cloned())
    }
}

fn client(sdk: &aws_config::SdkConfig) -> Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    let config = aws_sdk_autoscaling::config::Builder::from(sdk)
        .timeout_config(timeouts)
        .build();
    Client::from_conf(config)
}

/// Every instance id the group lists, whatever its lifecycle state.
fn instance_ids(group: &AutoScalingGroup) -> BTreeSet<String> {
    group
        .instances()
        .iter()
        .filter_map(|instance| instance.instance_id())
        .map(str::to_owned)
        .collect()
}

/// The group's instances that are not in `before` and not leaving, sorted.
fn new_instances(before: &BTreeSet<String>, group: &AutoScalingGroup) -> Vec<String> {
    group
        .instances()
        .iter()
        .filter(|instance| !leaving(instance.lifecycle_state()))
        .filter_map(|instance| instance.instance_id())
        .filter(|id| !before.contains(*id))
        .map(str::to_owned)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// An instance on its way out (replaced, scaled in) is no new host.
fn leaving(state: Option<&LifecycleState>) -> bool {
    state.is_some_and(|state| {
        let state = state.as_str();
        state.starts_with("Terminat") || state.starts_with("Detach")
    })
}

fn sdk_error<E>(operation: &str, group_name: &str, err: E) -> ProvisionError
where
    E: std::error::Error,
{
    ProvisionError::new(format!(
        "EC2 Auto Scaling {operation} on group {group_name:?} failed: {}",
        DisplayErrorContext(err)
    ))
}

#[cfg(test)]
#[path = "ec2_tests.rs"]
mod tests;
