//! Enrollment and credentials: an operator's enrollment token (scoped to one environment,
//! limited uses, an expiry) is exchanged once for a random per-instance secret, which then
//! authenticates every report of that instance and only that instance.

use serde::{Deserialize, Serialize};

/// What the agent tells the controller about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostFacts {
    /// `host:port` where the host's nginx serves the app (the load balancer's target).
    pub advertised_addr: Option<String>,
    pub availability_zone: Option<String>,
    pub instance_type: Option<String>,
    /// RFC 3339: when the agent first started on this host.
    pub launched_at: Option<String>,
}

/// `POST /v1/enroll`. The token is in `Authorization: Bearer`, never in the body, so that a
/// body logged by a proxy shows no secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnrollRequest {
    pub instance_id: String,
    /// sha256 of `/etc/machine-id`: the same instance id from another machine is refused.
    pub machine_fingerprint: String,
    pub agent_version: String,
    pub facts: HostFacts,
}

/// The answer to an enrollment and to a credential rotation.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub instance_id: String,
    pub environment: String,
    /// The instance's secret: sent once, stored hashed by the controller, kept 0600 by the agent.
    pub secret: String,
    /// Milliseconds since the epoch after which the secret is refused.
    pub expires_ms: i64,
    /// The report interval the controller asks for.
    pub interval_ms: u64,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("instance_id", &self.instance_id)
            .field("environment", &self.environment)
            .field("secret", &"***")
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

/// The body of every error answer of the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
