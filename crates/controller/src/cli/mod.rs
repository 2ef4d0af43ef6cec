//! The command line: `run` and `validate` for the service, and operator commands in the EB
//! CLI's spirit that talk to a controller's API (`--url`, `--token-file`, `--json`).

mod client;
mod commands;
mod logs;
mod render;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use commands::execute;

pub const EXIT_OK: i32 = 0;
/// A request failed, or the deployment being waited for failed.
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 64;
pub const EXIT_UNAVAILABLE: i32 = 69;
pub const EXIT_CONFIG: i32 = 78;

#[derive(Debug, Parser)]
#[command(
    name = "hostmanager-controller",
    version,
    about = "hostmanager's central controller"
)]
pub struct Cli {
    /// The data directory: SQLite database, object store, admin token.
    #[arg(long, global = true, env = "HOSTMANAGER_CONTROLLER_DATA")]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub remote: Remote,
    #[command(subcommand)]
    pub command: Command,
}

/// How operator commands reach the controller.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// The controller's URL.
    #[arg(
        long,
        global = true,
        env = "HOSTMANAGER_CONTROLLER_URL",
        default_value = "http://127.0.0.1:7600"
    )]
    pub url: String,
    /// A file holding an admin token (default: DATA/admin.token).
    #[arg(long, global = true, env = "HOSTMANAGER_CONTROLLER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust for an https:// URL.
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Print JSON documents instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller service.
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a config file: exit 0, or 78 with every problem listed.
    Validate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Environments.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Enrollment tokens for new hosts.
    #[command(subcommand, name = "enroll-token")]
    EnrollToken(TokenCommand),
    /// Deploy a bundle (zip, directory or URL) to every instance of an environment.
    Deploy {
        name: String,
        bundle: String,
        #[arg(long)]
        label: String,
        /// Wait until the deployment ends; exit non-zero when it fails.
        #[arg(long)]
        wait: bool,
        /// Option settings to change with the deployment (NAMESPACE:OPTION=VALUE).
        #[arg(long = "option")]
        options: Vec<String>,
        /// The application (default: the environment's).
        #[arg(long)]
        description: Option<String>,
    },
    /// Restart the app on every instance (RestartAppServer).
    Restart {
        name: String,
        #[arg(long)]
        wait: bool,
    },
    /// Abort the running deployment (AbortEnvironmentUpdate).
    Abort { name: String },
    /// Swap two environments' URLs (SwapEnvironmentCNAMEs): the load balancer's host map
    /// changes at once, without a reload.
    Swap { source: String, destination: String },
    /// The instances of an environment with their health (DescribeInstancesHealth).
    Instances { name: String },
    /// Revoke an instance's credential: its reports are refused from now on.
    Revoke { instance: String },
    /// A deployment, by id.
    Deployment { id: i64 },
    /// Every instance's log tail, printed (RequestEnvironmentInfo, then
    /// RetrieveEnvironmentInfo); with --bundle, every log zipped, saved per instance.
    Logs {
        name: String,
        /// All the logs, zipped, instead of their last lines.
        #[arg(long)]
        bundle: bool,
        /// Save one file per instance here (bundles: default the current directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// How long to wait for every instance to answer.
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment.
    Create {
        name: String,
        #[arg(long, default_value = "web", value_parser = ["web", "worker"])]
        tier: String,
        /// The application (default: the environment's name).
        #[arg(long)]
        app: Option<String>,
        /// NAMESPACE:OPTION=VALUE, e.g. aws:elasticbeanstalk:command:Timeout=600.
        #[arg(long = "option")]
        options: Vec<String>,
    },
    /// Change option settings (UpdateEnvironment without a version): a configuration
    /// deployment, in batches under a rolling policy.
    Update {
        name: String,
        /// NAMESPACE:OPTION=VALUE; an empty value removes the option.
        #[arg(long = "option", required = true)]
        options: Vec<String>,
        /// Wait until the deployment ends; exit non-zero when it fails.
        #[arg(long)]
        wait: bool,
    },
    /// Every environment, with its health.
    List,
    /// One environment (DescribeEnvironments).
    Status { name: String },
    /// Health with causes and instances (DescribeEnvironmentHealth).
    Health {
        name: String,
        /// Print again every few seconds until interrupted.
        #[arg(long)]
        refresh: bool,
    },
    /// Events, newest last (DescribeEvents).
    Events {
        name: String,
        /// Keep printing new events until interrupted.
        #[arg(long)]
        follow: bool,
        /// Only events at least this severe (TRACE…FATAL).
        #[arg(long)]
        severity: Option<String>,
        #[arg(long)]
        instance: Option<String>,
        /// How many of the newest events to print first.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Terminate an environment (its hosts' credentials are revoked).
    Terminate { name: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints it (once: only its hash is kept).
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        uses: u32,
        #[arg(long, default_value = "1h")]
        expires: String,
    },
    /// Revoke a token by its id.
    Revoke { id: String },
}
