//! `.ebextensions`: the configuration files of an Elastic Beanstalk bundle — which files are
//! read and in what order (`parse.rs`), the option settings they give (`options.rs`), the
//! host changes they ask for (`server.rs`) and the settings a release ends up with, layer by
//! layer (`settings.rs`). All pure: the deployment's steps (`deploy/ebextensions.rs`) read the
//! files and apply the plan. docs/ebextensions.md lists every key and namespace.

mod commands;
mod effects;
mod files;
mod functions;
mod options;
mod parse;
mod server;
mod settings;

pub use effects::{Effects, HostFacts, effects};
pub use functions::Resolver;
pub use options::{ENVIRONMENT, NamespaceKind, OptionSetting, classify, option_settings};
pub use parse::{ConfigFile, MAX_CONFIG_BYTES, Parsed, config_file_names, parse_config};
pub use server::{
    Command, FileContent, FileEntry, FileKeys, Group, Package, Program, Service, Source, User,
    server_keys,
};
pub use settings::{
    HEALTHCHECK_URL, LOG_PUBLICATION, PROXY_SERVER, ReleaseSettings, Setting, health_check_path,
    host_layer,
};

/// The bundle's configuration directory.
pub const DIR: &str = ".ebextensions";
