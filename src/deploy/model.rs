//! Deployment requests, records and the persisted agent state. Pure data and validation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secret::Properties;

pub use hostmanager_protocol::{
    DeploymentRequest, MAX_ENV_BYTES, RESERVED_PREFIX, is_property_name,
};

/// What a deployment does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A new bundle: app hooks, Buildfile. (Records written before kinds existed are deploys.)
    #[default]
    Deploy,
    /// New environment properties on the serving bundle: confighooks only.
    Configure,
    /// The serving release restarted with zero downtime.
    Restart,
    /// Back to the previous good release.
    Rollback,
}

/// `POST /v1/configuration`: change environment properties of the serving release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigureRequest {
    /// Values never in `Debug`.
    #[serde(default)]
    pub set: Properties,
    #[serde(default)]
    pub unset: Vec<String>,
}

impl ConfigureRequest {
    /// `env` with this change applied.
    pub fn apply(&self, mut env: Properties) -> Properties {
        for key in &self.unset {
            env.remove(key);
        }
        env.extend(self.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }
}

/// A queued unit of work. The environment is the complete one the job will run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    Deploy(DeploymentRequest),
    /// Applied to the environment serving when the job runs, not when it was submitted.
    Configure(ConfigureRequest),
    Restart,
    Rollback,
}

impl Job {
    pub fn kind(&self) -> JobKind {
        match self {
            Self::Deploy(_) => JobKind::Deploy,
            Self::Configure(_) => JobKind::Configure,
            Self::Restart => JobKind::Restart,
            Self::Rollback => JobKind::Rollback,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    Queued,
    Running,
    Succeeded,
    /// Failed before the new release took traffic: the old one kept serving.
    Failed,
    /// Took traffic, then failed and the previous release was restored.
    RolledBack,
    /// Same bundle and properties as the serving release: nothing to do.
    Noop,
}

impl DeploymentStatus {
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub status: StepStatus,
    pub started_ms: i64,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The persisted account of one deployment (no secrets: property values live apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub id: u64,
    #[serde(default)]
    pub kind: JobKind,
    pub version_label: String,
    pub source: String,
    pub sha256: Option<String>,
    pub env_keys: Vec<String>,
    pub status: DeploymentStatus,
    pub steps: Vec<StepRecord>,
    pub created_ms: i64,
    #[serde(default)]
    pub finished_ms: Option<i64>,
    #[serde(default)]
    pub web_port: Option<u16>,
    /// The TCP ports the new web process listened on when its health gate ended
    /// (docs/deployments.md#the-port-contract).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_listening: Option<Vec<u16>>,
    /// Why it failed, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How the bundle's nginx overrides were translated for this host (`proxy/overrides`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_translations: Vec<crate::proxy::overrides::Translation>,
    /// The controller's desired-state serial this deployment carries out (none for local ones;
    /// a restart or rollback carries the serial of the release it serves again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    /// The platform options a controller sent with the bundle (`[platform]` over them), kept
    /// so that a deployment queued when the agent restarts runs with them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub platform_options: BTreeMap<String, String>,
    /// The controller's leader choice for this deployment (`DeploymentRequest::command_leader`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_leader: Option<bool>,
    /// What the bundle's `.ebextensions` changed on the host: packages installed (with their
    /// versions), groups and users created, files written (and their `.bak`), services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_changes: Vec<String>,
}

/// A release that served (or serves) traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub deployment_id: u64,
    pub version_label: String,
    pub source: String,
    /// sha256 of the bundle (of its content, for directory bundles).
    pub sha256: String,
    /// Bundle + properties: equal fingerprints mean a resubmission is a no-op.
    pub fingerprint: String,
    pub dir: PathBuf,
    /// Where the web process listens and nginx proxies.
    pub web_port: u16,
    /// Set when the web process ignores `$PORT` and listens on a fixed port (`web_port`) instead:
    /// the `$PORT` it was given. Deployments then stop this release before starting the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_port: Option<u16>,
    /// Procfile as deployed: (name, command).
    pub processes: Vec<(String, String)>,
    pub deployed_ms: i64,
    pub proxy_generation: Option<String>,
    /// Root's copy of the release's `.platform` and Buildfile (`platform.rs`), the only place
    /// root reads them from; absent for releases deployed by an agent that made none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PathBuf>,
    /// The controller serial whose desired state this release is (none for local deployments
    /// and for releases whose properties were changed locally since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    /// The language platform it was built for (`runtime/`); absent for an earlier agent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<super::runtime::RuntimeInfo>,
    /// The settings it runs with, layer by layer (`ebext::ReleaseSettings`); absent for an
    /// earlier agent's release, which runs with the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<crate::ebext::ReleaseSettings>,
}

impl ReleaseInfo {
    /// The path its health checks probe: its settings' `Application Healthcheck URL`, else
    /// the host's `health.path`.
    pub fn health_path(&self, host: &crate::config::HealthConfig) -> String {
        health_path(self.settings.as_ref(), host)
    }
}

/// The health path of a release with `settings` (none: the host's).
pub fn health_path(
    settings: Option<&crate::ebext::ReleaseSettings>,
    host: &crate::config::HealthConfig,
) -> String {
    settings
        .and_then(|s| s.health_path())
        .unwrap_or_else(|| host.path.clone())
}

/// `var/lib/hostmanager/state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    pub last_deployment_id: u64,
    pub current: Option<ReleaseInfo>,
    /// Earlier good releases, newest first (rollback targets).
    #[serde(default)]
    pub previous: Vec<ReleaseInfo>,
    /// A deployment that was running when this state was written.
    #[serde(default)]
    pub in_progress: Option<InProgress>,
}

/// Written when a deployment starts and again at its commit point (atomically with `current`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InProgress {
    pub id: u64,
    /// The new release took traffic: after a crash it is finished, not undone.
    pub committed: bool,
}

/// A deployment being executed, as shown by status and used by health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveDeployment {
    pub id: u64,
    pub kind: JobKind,
    pub version_label: String,
    pub started_ms: i64,
    pub step: String,
}

/// What the deploy task publishes for the rest of the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployState {
    pub current: Option<ReleaseInfo>,
    pub active: Option<ActiveDeployment>,
}

/// The label shown when a request names none: the bundle's file name without extension.
pub fn default_label(source: &str, id: u64) -> String {
    let trimmed = source.trim_end_matches('/');
    let name = trimmed.rsplit('/').next().unwrap_or(trimmed);
    let name = name.split('?').next().unwrap_or(name);
    let stem = name.strip_suffix(".zip").unwrap_or(name);
    if stem.is_empty() {
        format!("deployment-{id}")
    } else {
        stem.to_string()
    }
}

/// Identifies bundle + properties + label + platform options: a change of any is a new
/// release. (Without platform options the fingerprint is what agents before them computed.)
pub fn fingerprint(
    bundle_sha256: &str,
    env: &BTreeMap<String, String>,
    label: &str,
    platform_options: &BTreeMap<String, String>,
) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(bundle_sha256.as_bytes());
    hasher.update([0]);
    hasher.update(label.as_bytes());
    for (key, value) in env {
        hasher.update([0]);
        hasher.update(key.as_bytes());
        hasher.update([b'=']);
        hasher.update(value.as_bytes());
    }
    for (key, value) in platform_options {
        // A byte no property name or value holds: options never read as a property.
        hasher.update([1]);
        hasher.update(key.as_bytes());
        hasher.update([b'=']);
        hasher.update(value.as_bytes());
    }
    super::extract::hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_problems_name_their_fields() {
        let request = DeploymentRequest {
            source: " ".into(),
            sha256: Some("abc".into()),
            version_label: None,
            env: BTreeMap::from([
                ("1BAD".into(), "x".into()),
                ("PORT".into(), "1".into()),
                ("OK".into(), "a\0b".into()),
            ])
            .into(),
            ..Default::default()
        };
        let problems = request.problems();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("source:")));
        assert!(problems.iter().any(|p| p.starts_with("sha256:")));
        assert!(problems.iter().any(|p| p.starts_with("env.1BAD:")));
        assert!(problems.iter().any(|p| p.starts_with("env.PORT:")));
        assert!(problems.iter().any(|p| p.starts_with("env.OK:")));
    }

    #[test]
    fn the_agents_own_names_are_reserved() {
        let request = DeploymentRequest {
            source: "/b.zip".into(),
            env: BTreeMap::from([
                ("HOSTMANAGER_DEPLOYMENT_ID".into(), "7".into()),
                ("HOSTMANAGER_ROOT".into(), "/".into()),
                ("MY_HOSTMANAGER_URL".into(), "ok".into()),
            ])
            .into(),
            ..Default::default()
        };
        let problems = request.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .all(|p| p.contains("reserved for the agent")),
            "{problems:?}"
        );
        assert!(problems[0].starts_with("env.HOSTMANAGER_DEPLOYMENT_ID:"));
    }

    #[test]
    fn debug_output_names_properties_but_never_shows_their_values() {
        let wire = r#"{"source":"/b.zip","sha256":null,"version_label":null,"env":{"DB_PASSWORD":"s3cret-value"}}"#;
        let request: DeploymentRequest = serde_json::from_str(wire).expect("the wire format");
        assert_eq!(serde_json::to_string(&request).expect("serialize"), wire);
        let change = ConfigureRequest {
            set: request.env.clone(),
            unset: vec![],
        };
        for debug in [
            format!("{request:?}"),
            format!("{request:#?}"),
            format!("{:?}", Job::Deploy(request.clone())),
            format!("{:?}", Job::Configure(change.clone())),
        ] {
            assert!(debug.contains("DB_PASSWORD"), "{debug}");
            assert!(!debug.contains("s3cret-value"), "{debug}");
        }
        assert_eq!(
            change.apply(Properties::default()).get("DB_PASSWORD"),
            Some(&"s3cret-value".to_string())
        );
    }

    #[test]
    fn records_from_before_job_kinds_read_as_deploys() {
        let old = r#"{"id":1,"version_label":"v1","source":"/b.zip","sha256":null,"env_keys":[],
            "status":"succeeded","steps":[],"created_ms":0}"#;
        let record: DeploymentRecord =
            serde_json::from_str(old).expect("an old record still reads");
        assert_eq!(record.kind, JobKind::Deploy);
    }

    #[test]
    fn labels_default_to_the_bundle_name() {
        assert_eq!(default_label("/tmp/app-v2.zip", 3), "app-v2");
        assert_eq!(default_label("s3://b/k/app.zip?versionId=1", 3), "app");
        assert_eq!(default_label("/srv/bundle/", 3), "bundle");
        assert_eq!(default_label("", 3), "deployment-3");
    }

    #[test]
    fn fingerprint_changes_with_any_input() {
        let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let none = BTreeMap::new();
        let base = fingerprint("sha", &env, "v1", &none);
        assert_eq!(base, fingerprint("sha", &env, "v1", &none));
        assert_ne!(base, fingerprint("sha2", &env, "v1", &none));
        assert_ne!(base, fingerprint("sha", &BTreeMap::new(), "v1", &none));
        let options = BTreeMap::from([(
            "aws:elasticbeanstalk:container:python:NumThreads".to_string(),
            "4".to_string(),
        )]);
        assert_ne!(base, fingerprint("sha", &env, "v1", &options));
        assert_ne!(base, fingerprint("sha", &env, "v2", &none));
    }
}
