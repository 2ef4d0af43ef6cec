//! The worker tier: Elastic Beanstalk's SQS daemon (sqsd) inside the agent. A host with a
//! `[worker] queue_url` receives the queue's messages and POSTs each one to the app through
//! nginx (`daemon.rs`); an exact 200 deletes it, anything else lets it come back after the
//! error visibility timeout, and SQS's redrive moves it to the dead-letter queue after enough
//! receives. The leader also sends the periodic tasks of the release's `cron.yaml`
//! (`scheduler.rs`). Settings: `[worker]` of agent.toml under the release's
//! `aws:elasticbeanstalk:sqsd` option settings. Deployments pause the intake around their
//! cutover (`Intake`).

pub mod cron;
mod daemon;
mod delivery;
mod health;
mod log;
pub mod message;
mod meter;
mod post;
mod scheduler;
mod service;
mod sqs;
pub mod stats;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use health::causes;
pub use log::path as log_path;
pub use meter::{Meter, WorkerWindow, WorkerWindowStats};
pub use service::WorkerService;
pub use stats::WorkerStatus;

use crate::config::{Config, NUMERIC, SQSD_NAMESPACE, SqsdSettings, TEXT};
use crate::ebext::ReleaseSettings;

/// The daemon's settings for a release: the host's `[worker]` (as agent.toml says now) with
/// the release's own `aws:elasticbeanstalk:sqsd` settings (the bundle's, the deployment's)
/// over it; `None` on a web server. The host layer recorded with the release is not used: a
/// changed agent.toml applies at the next start, not at the next deployment. A value the
/// deploy checks refused cannot be in a release; one that is unreadable keeps the host's.
pub fn effective(config: &Config, release: Option<&ReleaseSettings>) -> Option<SqsdSettings> {
    let host = config.worker.sqsd.as_ref()?;
    let Some(release) = release else {
        return Some(host.clone());
    };
    let value = |option: &str| {
        release
            .options
            .get(&format!("{SQSD_NAMESPACE}:{option}"))
            .filter(|s| s.origin != "default" && s.origin != "agent.toml")
            .map(|s| s.value.as_str())
    };
    let built = SqsdSettings::build(
        |key| {
            let option = TEXT
                .iter()
                .find(|(k, _, _)| *k == key)
                .map(|(_, o, _)| *o)?;
            value(option).map(str::to_string).or_else(|| {
                host.options()
                    .into_iter()
                    .find(|(o, _)| *o == option)
                    .map(|(_, v)| v)
            })
        },
        |option| {
            Some(
                value(option.option)
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(Ok(host.number(option.key)), Ok),
            )
        },
    );
    Some(built.unwrap_or_else(|_| host.clone()))
}

/// The nginx read timeout of a worker host: past the daemon's own inactivity timeout, so the
/// daemon decides when a request took too long (nginx's default 60 s would cut long jobs with
/// a 504 while the app still works, and the message would run twice).
pub fn proxy_timeout(settings: &SqsdSettings) -> u64 {
    settings.inactivity_timeout + 5
}

/// Deployments hold the daemon's intake during their cutover: no message is received while
/// one is held; the requests already made finish, and a release is stopped only once they have
/// (`idle`): a job still running in the old release must not be cut and run again.
#[derive(Debug, Clone)]
pub struct Intake {
    holds: Arc<watch::Sender<u32>>,
    in_flight: Arc<watch::Sender<u64>>,
}

impl Default for Intake {
    fn default() -> Self {
        Self {
            holds: Arc::new(watch::channel(0).0),
            in_flight: Arc::new(watch::channel(0).0),
        }
    }
}

impl Intake {
    /// Paused until the returned guard is dropped.
    pub fn pause(&self) -> IntakeHold {
        self.holds.send_modify(|n| *n += 1);
        IntakeHold {
            holds: self.holds.clone(),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u32> {
        self.holds.subscribe()
    }

    /// One request to the app, in flight until the guard is dropped.
    pub fn request(&self) -> InFlight {
        self.in_flight.send_modify(|n| *n += 1);
        InFlight {
            in_flight: self.in_flight.clone(),
        }
    }

    /// Waits until no request is in flight, at most `limit`; how many still were then.
    pub async fn idle(&self, limit: Duration) -> u64 {
        let mut watch = self.in_flight.subscribe();
        let idle = watch.wait_for(|n| *n == 0);
        match tokio::time::timeout(limit, idle).await {
            Ok(_) => 0,
            Err(_) => *self.in_flight.borrow(),
        }
    }
}

#[derive(Debug)]
pub struct IntakeHold {
    holds: Arc<watch::Sender<u32>>,
}

impl Drop for IntakeHold {
    fn drop(&mut self) {
        self.holds.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[derive(Debug)]
pub struct InFlight {
    in_flight: Arc<watch::Sender<u64>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Whether this host sends the periodic tasks. A standalone host always does; a linked one
/// only while the controller's last replies name it the environment's leader, and not past
/// a few report intervals without a reply (a host cut off from its controller must not go on
/// sending beside the leader the controller names next).
#[derive(Debug, Clone)]
pub struct Leadership {
    state: Arc<Mutex<LeaderState>>,
}

#[derive(Debug, Clone, Copy)]
enum LeaderState {
    Standalone,
    Linked {
        leader: bool,
        until: Option<Instant>,
        valid_for: Duration,
        /// Counts the times the controller's answer turned to `true`: a new term means another
        /// host may have led in between.
        term: u64,
    },
}

impl Leadership {
    pub fn standalone() -> Self {
        Self {
            state: Arc::new(Mutex::new(LeaderState::Standalone)),
        }
    }

    /// Not the leader until the controller says so.
    pub fn linked() -> Self {
        Self {
            state: Arc::new(Mutex::new(LeaderState::Linked {
                leader: false,
                until: None,
                valid_for: Duration::ZERO,
                term: 0,
            })),
        }
    }

    /// The controller's answer, valid for `valid_for`.
    pub fn set(&self, leader: bool, valid_for: Duration) {
        let mut state = self.lock();
        if let LeaderState::Linked {
            leader: before,
            until,
            term,
            ..
        } = *state
        {
            let turned = leader && !(before && until.is_some());
            *state = LeaderState::Linked {
                leader,
                until: Some(Instant::now() + valid_for),
                valid_for,
                term: term + u64::from(turned),
            };
        }
    }

    /// The term this host leads in, while it does (a standalone host always, in term 0).
    pub fn lead(&self) -> Option<u64> {
        match *self.lock() {
            LeaderState::Standalone => Some(0),
            LeaderState::Linked {
                leader,
                until,
                term,
                ..
            } => (leader && until.is_some_and(|u| Instant::now() < u)).then_some(term),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LeaderState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_leader(&self) -> bool {
        self.lead().is_some()
    }

    /// Whether the controller has answered yet (a standalone host knows).
    pub fn known(&self) -> bool {
        match *self.lock() {
            LeaderState::Standalone => true,
            LeaderState::Linked { until, .. } => until.is_some(),
        }
    }

    /// How long a host that just became the leader waits before it sends: as long as the
    /// previous leader may still take itself for one (its last answer's validity).
    pub fn takeover_delay(&self) -> Duration {
        match *self.lock() {
            LeaderState::Standalone => Duration::ZERO,
            LeaderState::Linked { valid_for, .. } => valid_for,
        }
    }
}

/// The release's settings with what its cron.yaml holds, checked for this host: `Err` lists
/// what fails the deployment, `Ok` the warnings.
pub fn check_release(
    config: &Config,
    settings: &ReleaseSettings,
    cron_text: Option<&str>,
) -> Result<(Vec<cron::PeriodicTask>, Vec<String>), Vec<String>> {
    let mut warnings = Vec::new();
    let Some(sqsd) = effective(config, Some(settings)) else {
        if cron_text.is_some() {
            warnings.push(format!(
                "{} ignored: this host is a web server (no [worker] queue_url in agent.toml), periodic tasks run only on workers",
                cron::FILE
            ));
        }
        return Ok((Vec::new(), warnings));
    };
    warnings.extend(sqsd.warnings());
    let Some(text) = cron_text else {
        return Ok((Vec::new(), warnings));
    };
    let file = cron::parse(text)?;
    if !file.tasks.is_empty() && sqsd.queue_name().ends_with(".fifo") {
        return Err(vec![format!(
            "{}: periodic tasks are not supported with a FIFO queue ({}), as on Elastic Beanstalk",
            cron::FILE,
            sqsd.queue_name()
        )]);
    }
    warnings.extend(file.warnings);
    Ok((file.tasks, warnings))
}

/// Used by option-setting checks: a numeric sqsd option's range, by option name.
pub fn numeric_option(option: &str) -> Option<&'static crate::config::NumericOption> {
    NUMERIC.iter().find(|o| o.option == option)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_config;

    fn worker_config(extra: &str) -> Config {
        parse_config(&format!(
            "[worker]\nqueue_url = \"http://127.0.0.1:1/1/jobs\"\n{extra}"
        ))
        .expect("valid")
    }

    #[test]
    fn the_bundles_settings_are_over_the_hosts_but_not_its_old_host_layer() {
        let before = worker_config("http_connections = 4\n");
        let mut settings = crate::ebext::host_layer(&before);
        settings.set(
            format!("{SQSD_NAMESPACE}:HttpPath"),
            "/jobs".into(),
            ".ebextensions/sqsd.config",
        );
        // agent.toml changed since the deployment: the host's values are today's.
        let now = worker_config("http_connections = 8\n");
        let sqsd = effective(&now, Some(&settings)).expect("a worker");
        assert_eq!(sqsd.http_path, "/jobs");
        assert_eq!(sqsd.http_connections, 8);
        assert_eq!(
            effective(&parse_config("").expect("valid"), Some(&settings)),
            None
        );
    }

    #[test]
    fn cron_yaml_is_checked_on_a_worker_and_ignored_on_a_web_server() {
        let cron = "version: 1\ncron:\n - name: a\n   url: /a\n   schedule: \"@hourly\"\n";
        let config = worker_config("");
        let settings = crate::ebext::host_layer(&config);
        let (tasks, warnings) = check_release(&config, &settings, Some(cron)).expect("valid");
        assert_eq!((tasks.len(), warnings.len()), (1, 0));
        let web = parse_config("").expect("valid");
        let (tasks, warnings) =
            check_release(&web, &crate::ebext::host_layer(&web), Some(cron)).expect("ignored");
        assert!(tasks.is_empty());
        assert!(
            warnings[0].contains("ignored: this host is a web server"),
            "{warnings:?}"
        );
        let fifo = parse_config("[worker]\nqueue_url = \"http://127.0.0.1:1/1/jobs.fifo\"\n")
            .expect("valid");
        let problems =
            check_release(&fifo, &crate::ebext::host_layer(&fifo), Some(cron)).expect_err("fifo");
        assert!(problems[0].contains("FIFO"), "{problems:?}");
    }

    #[test]
    fn a_linked_host_leads_only_while_the_controllers_answer_holds() {
        let leadership = Leadership::linked();
        assert!(!leadership.known() && !leadership.is_leader());
        leadership.set(true, Duration::from_secs(60));
        assert!(leadership.known() && leadership.is_leader());
        assert_eq!(leadership.takeover_delay(), Duration::from_secs(60));
        leadership.set(true, Duration::ZERO);
        assert!(!leadership.is_leader(), "an answer past its validity");
        // A lapse is not a new term; an explicit false in between is.
        leadership.set(true, Duration::from_secs(60));
        assert_eq!(leadership.lead(), Some(1));
        leadership.set(false, Duration::from_secs(60));
        leadership.set(true, Duration::from_secs(60));
        assert_eq!(leadership.lead(), Some(2));
        assert!(Leadership::standalone().is_leader());
    }
}
