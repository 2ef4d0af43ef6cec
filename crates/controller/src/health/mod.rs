//! Enhanced health, the controller's side: each instance's effective status ([`instance`]),
//! the environment's roll-up with hysteresis and transition events ([`rollup`]). Pure: time is
//! passed in. The algorithm is `docs/controller.md` ("Health"); texts are Elastic Beanstalk's.

pub mod instance;
pub mod rollup;

use serde::{Deserialize, Serialize};

pub use instance::{InstanceHealth, effective};
pub use rollup::{Candidate, Evaluation, RollupInput, candidate, evaluate, publish};

/// Elastic Beanstalk's health statuses (`health-enhanced-status.md`), plus `NoData`.
///
/// "Worse" follows [`Status::rank`]: Ok < Info < Unknown = Pending < NoData < Warning <
/// Degraded < Severe. `NoData` sits below Warning in the order (it says nothing about the
/// app) but counts as impaired in the roll-up ([`Status::is_impaired`]), as EB counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    Ok,
    Info,
    Unknown,
    Pending,
    NoData,
    Warning,
    Degraded,
    Severe,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Ok,
        Status::Info,
        Status::Unknown,
        Status::Pending,
        Status::NoData,
        Status::Warning,
        Status::Degraded,
        Status::Severe,
    ];

    /// The status named by `text` (EB's spelling, case-insensitive); `None` otherwise.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(text))
    }

    /// Like [`Status::parse`], with anything unrecognised read as `Unknown` (the agent's
    /// status strings come from another program, possibly a newer one).
    pub fn parse_lenient(text: &str) -> Self {
        Self::parse(text).unwrap_or(Status::Unknown)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "Ok",
            Status::Info => "Info",
            Status::Unknown => "Unknown",
            Status::Pending => "Pending",
            Status::NoData => "NoData",
            Status::Warning => "Warning",
            Status::Degraded => "Degraded",
            Status::Severe => "Severe",
        }
    }

    /// Larger is worse. Unknown and Pending share a rank: both mean "not known yet".
    pub fn rank(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Info => 1,
            Status::Unknown | Status::Pending => 2,
            Status::NoData => 3,
            Status::Warning => 4,
            Status::Degraded => 5,
            Status::Severe => 6,
        }
    }

    pub fn is_worse_than(self, other: Status) -> bool {
        self.rank() > other.rank()
    }

    /// The worse of two statuses (the first on a tie).
    pub fn worst(self, other: Status) -> Status {
        if other.is_worse_than(self) {
            other
        } else {
            self
        }
    }

    /// The statuses that count as impaired services in the environment roll-up.
    pub fn is_impaired(self) -> bool {
        matches!(
            self,
            Status::Warning | Status::Degraded | Status::Severe | Status::NoData
        )
    }

    /// EB's colours: Ok/Info Green, Warning Yellow, Degraded/Severe Red, the rest Grey.
    pub fn color(self) -> Color {
        match self {
            Status::Ok | Status::Info => Color::Green,
            Status::Warning => Color::Yellow,
            Status::Degraded | Status::Severe => Color::Red,
            Status::Unknown | Status::Pending | Status::NoData => Color::Grey,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// EB's `Health` / `Color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Color {
    Green,
    Yellow,
    Red,
    Grey,
}

impl Color {
    pub fn as_str(self) -> &'static str {
        match self {
            Color::Green => "Green",
            Color::Yellow => "Yellow",
            Color::Red => "Red",
            Color::Grey => "Grey",
        }
    }
}

/// EB's `InstanceHealthSummary`: how many instances are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstancesHealth {
    pub no_data: u32,
    pub unknown: u32,
    pub pending: u32,
    pub ok: u32,
    pub info: u32,
    pub warning: u32,
    pub degraded: u32,
    pub severe: u32,
}

impl InstancesHealth {
    pub fn count(statuses: impl IntoIterator<Item = Status>) -> Self {
        let mut counts = Self::default();
        for status in statuses {
            let slot = match status {
                Status::NoData => &mut counts.no_data,
                Status::Unknown => &mut counts.unknown,
                Status::Pending => &mut counts.pending,
                Status::Ok => &mut counts.ok,
                Status::Info => &mut counts.info,
                Status::Warning => &mut counts.warning,
                Status::Degraded => &mut counts.degraded,
                Status::Severe => &mut counts.severe,
            };
            *slot += 1;
        }
        counts
    }
}

/// Builders shared by the health and deployment tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use hostmanager_protocol::{HostCause, HostStatus, MetricsWindow, ServingRelease};

    use crate::model::Instance;

    /// An instance that last reported at `last_seen_ms` with `status` and no causes.
    pub fn instance(id: &str, last_seen_ms: Option<i64>, status: &str) -> Instance {
        let mut host = HostStatus::default();
        host.health.status = status.to_string();
        Instance {
            id: id.to_string(),
            environment: "env".to_string(),
            enrolled_ms: 0,
            machine_fingerprint: String::new(),
            facts: Default::default(),
            agent_version: "1".to_string(),
            credential: Default::default(),
            revoked_ms: None,
            last_seen_ms,
            status: host,
            metrics: None,
            applied_serial: 0,
            events_cursor: 0,
            desired_results: Vec::new(),
        }
    }

    pub fn serving(mut instance: Instance, label: &str, serial: u64) -> Instance {
        instance.status.release = Some(ServingRelease {
            deployment_id: 40 + serial,
            version_label: label.to_string(),
            serial: Some(serial),
            ..ServingRelease::default()
        });
        instance
    }

    pub fn with_cause(mut instance: Instance, status: &str, message: &str) -> Instance {
        instance.status.health.causes.push(HostCause {
            status: status.to_string(),
            message: message.to_string(),
        });
        instance
    }

    /// A 10 s window ending at `ended_ms` with `ok` 2xx, `client` 4xx and `server` 5xx.
    pub fn with_window(
        mut instance: Instance,
        ended_ms: i64,
        ok: u64,
        client: u64,
        server: u64,
    ) -> Instance {
        instance.metrics = Some(MetricsWindow {
            ended_ms,
            duration_ms: 10_000,
            requests: ok + client + server,
            status_2xx: ok,
            status_4xx: client,
            status_5xx: server,
            latency_us: vec![[1_000, ok + client + server]],
            ..MetricsWindow::default()
        });
        instance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_of_worse() {
        use Status::*;
        let ordered = [Ok, Info, Pending, NoData, Warning, Degraded, Severe];
        for pair in ordered.windows(2) {
            assert!(pair[1].is_worse_than(pair[0]), "{pair:?}");
        }
        assert_eq!(Unknown.rank(), Pending.rank());
        assert_eq!(Ok.worst(Severe), Severe);
        assert_eq!(Warning.worst(Info), Warning);
    }

    #[test]
    fn colours_are_ebs() {
        use Status::*;
        assert_eq!(Ok.color(), Color::Green);
        assert_eq!(Info.color(), Color::Green);
        assert_eq!(Warning.color(), Color::Yellow);
        assert_eq!(Degraded.color(), Color::Red);
        assert_eq!(Severe.color(), Color::Red);
        for grey in [Unknown, Pending, NoData] {
            assert_eq!(grey.color(), Color::Grey);
        }
    }

    #[test]
    fn parses_names_and_reads_anything_else_as_unknown() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("severe"), Some(Status::Severe));
        assert_eq!(Status::parse_lenient("Suspended"), Status::Unknown);
    }

    #[test]
    fn impaired_set() {
        let impaired: Vec<_> = Status::ALL
            .into_iter()
            .filter(|s| s.is_impaired())
            .collect();
        use Status::*;
        assert_eq!(impaired, [NoData, Warning, Degraded, Severe]);
    }

    #[test]
    fn counts_serialize_as_ebs_summary() {
        use Status::*;
        let counts = InstancesHealth::count([Ok, Ok, Severe, NoData]);
        let json = serde_json::to_value(counts).unwrap_or_default();
        assert_eq!(json["Ok"], 2);
        assert_eq!(json["Severe"], 1);
        assert_eq!(json["NoData"], 1);
        assert_eq!(json["Pending"], 0);
    }
}
