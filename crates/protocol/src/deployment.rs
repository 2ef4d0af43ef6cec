//! The deployment document: what the local API's `POST /v1/deployments` takes and what a
//! controller's desired state carries. Pure data and validation.

use serde::{Deserialize, Serialize};

use crate::Properties;

/// Total size of all environment properties (Elastic Beanstalk allows only 4096 bytes).
pub const MAX_ENV_BYTES: usize = 64 * 1024;

/// Property names the agent sets itself (`HOSTMANAGER_DEPLOYMENT_ID`, `HOSTMANAGER_ROOT`, …).
pub const RESERVED_PREFIX: &str = "HOSTMANAGER_";

/// The desired state a client asks for (`POST /v1/deployments`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentRequest {
    /// A path, `file://`, `s3://bucket/key` or `https://` URL of a zip, or a directory path.
    pub source: String,
    /// Expected sha256 of the bundle (hex); checked when given.
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub version_label: Option<String>,
    /// Environment properties given to the app and its hooks (values never in `Debug`).
    #[serde(default)]
    pub env: Properties,
    /// The environment's platform options (`namespace:option` → value, in the namespaces of
    /// [`PLATFORM_NAMESPACES`]), over the host's `[platform]`; absent when none are set, so
    /// that agents from before platforms keep reading the document.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub platform_options: std::collections::BTreeMap<String, String>,
    /// Whether this host runs the bundle's leader-only `container_commands` (the controller
    /// names one host of the environment per deployment). Absent: a host without a
    /// controller is its own leader; a controller that names none leads none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_leader: Option<bool>,
}

/// `hostmanager:platform` (`Name`, `JvmOptions`, `NpmUseProduction`): the platform itself, which
/// Elastic Beanstalk takes from the environment's platform version.
pub const PLATFORM: &str = "hostmanager:platform";
/// `WSGIPath`, `NumProcesses`, `NumThreads`.
pub const CONTAINER_PYTHON: &str = "aws:elasticbeanstalk:container:python";
/// Option name: a URL path; value: the directory of the bundle nginx serves at it.
pub const STATIC_FILES: &str = "aws:elasticbeanstalk:environment:proxy:staticfiles";
/// The namespaces a controller forwards to its hosts in `platform_options`.
pub const PLATFORM_NAMESPACES: &[&str] = &[PLATFORM, CONTAINER_PYTHON, STATIC_FILES];

impl DeploymentRequest {
    /// Every problem with the request, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.source.trim().is_empty() {
            problems.push(
                "source: must name a bundle (path, file://, s3:// or https:// URL)".to_string(),
            );
        }
        if let Some(sha) = &self.sha256
            && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
        {
            problems.push(format!("sha256: {sha:?} is not 64 hexadecimal digits"));
        }
        if let Some(label) = &self.version_label
            && (label.is_empty() || label.len() > 100 || label.chars().any(char::is_control))
        {
            problems.push("version_label: must be 1 to 100 printable characters".to_string());
        }
        let mut total = 0;
        for (key, value) in &self.env {
            total += key.len() + value.len() + 2;
            if !is_property_name(key) {
                problems.push(format!(
                    "env.{key}: names are letters, digits and '_', not starting with a digit"
                ));
            } else if key == "PORT" {
                problems.push("env.PORT: set by the agent (app.port / app.alternate_port); nginx proxies to it".to_string());
            } else if key.starts_with(RESERVED_PREFIX) {
                // Crash recovery finds a deployment's orphaned hooks by these names: an app
                // carrying them could be taken for a hook and have its process group killed.
                problems.push(format!(
                    "env.{key}: names starting with {RESERVED_PREFIX} are reserved for the agent"
                ));
            }
            if value.contains('\0') {
                problems.push(format!("env.{key}: value contains a NUL byte"));
            }
        }
        if total > MAX_ENV_BYTES {
            problems.push(format!(
                "env: {total} bytes in total, more than {MAX_ENV_BYTES}"
            ));
        }
        problems
    }
}

/// Environment property names: letters, digits and '_', not starting with a digit.
pub fn is_property_name(key: &str) -> bool {
    key.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
