//! Command line: `hostmanager run` starts the agent; every other command talks to a running
//! agent over the control socket (`stop-apps` also works when the agent is down).

mod commands;
mod health;
mod logs;
mod offline;
mod properties;
mod proxy;
mod render;
mod render_health;
mod render_worker;
mod settings;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use commands::execute;

#[derive(Debug, Parser)]
#[command(
    name = "hostmanager",
    version,
    about = "On-instance host manager: deploys, supervises, proxies, checks health."
)]
pub struct Cli {
    /// Root prefix of every path the agent uses (`/` on a real host).
    #[arg(long, global = true, env = "HOSTMANAGER_ROOT", default_value = "/")]
    pub root: PathBuf,
    /// Config file [default: ROOT/etc/hostmanager/agent.toml].
    #[arg(long, global = true, env = "HOSTMANAGER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Format of the agent's own log on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GetConfigKind {
    Environment,
    Optionsettings,
    Container,
    Platformconfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (what systemd starts).
    Run,
    /// The settings in Elastic Beanstalk's namespaces, each with where it came from: the
    /// host's (agent.toml and defaults), or with --effective the serving release's (the
    /// bundle's .ebextensions and the deployment's over them).
    #[command(name = "config")]
    Settings {
        #[arg(long)]
        effective: bool,
        #[arg(long)]
        json: bool,
    },
    /// Elastic Beanstalk's get-config, for hooks and scripts: a deployment's environment
    /// properties, option settings, container facts or platform config, as JSON (one value
    /// as text with -k). In a hook, the deployment running it; elsewhere the serving release.
    GetConfig {
        #[arg(value_enum)]
        kind: GetConfigKind,
        /// One key: a property name (environment), a container fact (app_deploy_dir,
        /// app_staging_dir, app_user, environment_name, environment_id, proxy_server) or a
        /// platformconfig field.
        #[arg(short = 'k', long = "key")]
        key: Option<String>,
        /// optionsettings: only this namespace.
        #[arg(short = 'n', long = "namespace")]
        namespace: Option<String>,
        /// optionsettings: only this option (with --namespace).
        #[arg(short = 'o', long = "option")]
        option: Option<String>,
    },
    /// Check the config file; exit 0 when valid, 78 with every problem listed when not.
    Validate,
    /// Show the nginx URL, the serving release, the app processes and the health.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Deploy a bundle: a zip file, a directory, or a URL.
    Deploy {
        /// Path (zip or directory), file://, s3:// or https:// URL.
        bundle: String,
        /// Environment property for the app, KEY=VALUE (repeatable). Every local user can
        /// read the command line: give secrets with --env-file.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Environment properties from FILE, one KEY=VALUE a line, `#` comments; `-` reads
        /// standard input (repeatable; later files and --env override earlier ones).
        #[arg(long = "env-file", value_name = "FILE")]
        env_file: Vec<PathBuf>,
        /// Expected sha256 of the bundle.
        #[arg(long)]
        sha256: Option<String>,
        /// Version label [default: the bundle's file name].
        #[arg(long)]
        label: Option<String>,
        /// Wait for the outcome, showing each step as it runs.
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
    /// Change environment properties of the serving release (a configuration deployment:
    /// confighooks run, processes restart with zero downtime).
    Configure {
        /// Property to set, KEY=VALUE (repeatable). Every local user can read the command
        /// line: give secrets with --env-file.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Properties to set from FILE, one KEY=VALUE a line, `#` comments; `-` reads standard
        /// input (repeatable; later files and --set override earlier ones). Keys the file
        /// does not name keep their values.
        #[arg(long = "env-file", value_name = "FILE")]
        env_file: Vec<PathBuf>,
        /// Property to remove (repeatable).
        #[arg(long = "unset", value_name = "KEY")]
        unset: Vec<String>,
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
    /// Restart the app with zero downtime.
    Restart {
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
    /// Go back to the previous good release.
    Rollback {
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
    /// List recent deployments, newest first.
    Deployments {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show recorded events, oldest first.
    Events {
        /// Only events after this id.
        #[arg(long)]
        after: Option<u64>,
        /// Only events this recent: a duration ("10m", "2h") or a time ("2026-01-01T10:00:00Z").
        #[arg(long)]
        since: Option<String>,
        /// Keep printing new events as they are recorded (Ctrl-C stops).
        #[arg(long, short)]
        follow: bool,
        /// Only events at least this severe: info, warning, error.
        #[arg(long)]
        severity: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Stop every app process and nginx (works when the agent is down, too). They stay
    /// stopped, across agent restarts, until the next deployment or `hostmanager start`.
    StopApps,
    /// Start what `stop-apps` stopped: the serving release's processes and nginx (a restart
    /// job with its health gate).
    #[command(visible_alias = "start-apps")]
    Start {
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show the graded health with its causes and the last window's request and host metrics.
    Health {
        /// Refresh every second until interrupted.
        #[arg(long)]
        watch: bool,
        #[arg(long)]
        json: bool,
    },
    /// Metrics tools that need no agent.
    #[command(subcommand)]
    Metrics(MetricsCommand),
    /// Logs: tail, bundle, rotate, severe errors, publication status.
    Logs {
        #[command(subcommand)]
        command: LogsCommand,
    },
    /// nginx: the configuration it serves.
    Proxy {
        #[command(subcommand)]
        command: ProxyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// The files of the configuration nginx serves, the bundle's overrides as translated for
    /// this host, and each translation with its reason.
    Config {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Window a healthd access log by each line's time and print every window's statistics
    /// (the agent's own parser; `-` reads standard input).
    Aggregate {
        file: PathBuf,
        /// Window length.
        #[arg(long, default_value = "10s")]
        window: String,
        /// One JSON document per window.
        #[arg(long)]
        json: bool,
        /// Only the summary line.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// The last lines of every log of the tail set (Elastic Beanstalk's "Last 100 lines"),
    /// also kept locally and uploaded when publication is configured.
    Tail {
        #[arg(long)]
        json: bool,
    },
    /// A zip of every current and rotated log (Elastic Beanstalk's "Full logs").
    Bundle {
        /// Also upload it under resources/environments/logs/bundle/.
        #[arg(long)]
        upload: bool,
        #[arg(long)]
        json: bool,
    },
    /// Rotate every non-empty log now.
    Rotate,
    /// Severe errors by fingerprint, with counts and first exemplars.
    Errors {
        #[arg(long)]
        json: bool,
    },
    /// Watched files, spool, publication.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Compress and publish every file of DIR like rotated logs (no agent needed; benchmarks).
    #[command(hide = true)]
    PublishDir {
        dir: PathBuf,
        /// "s3://bucket" or a directory.
        #[arg(long)]
        destination: String,
        #[arg(long, default_value = "e-bench")]
        env_id: String,
        #[arg(long, default_value = "i-bench")]
        instance_id: String,
    },
}

impl Cli {
    pub fn config_path(&self) -> (PathBuf, bool) {
        match &self.config {
            Some(path) => (path.clone(), true),
            None => (crate::paths::Paths::new(&self.root).config_file(), false),
        }
    }
}
