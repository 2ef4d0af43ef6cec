//! hostmanager: the on-instance agent of an Elastic-Beanstalk-style platform. See
//! ARCHITECTURE.md for the map of modules, tasks and state.

pub mod agent;
pub mod aws;
pub mod cli;
pub mod config;
pub mod controller_link;
pub mod deploy;
pub mod ebext;
pub mod errors;
pub mod events;
pub mod fsutil;
pub mod health;
pub mod local_api;
pub mod logs;
pub mod metrics;
pub mod paths;
pub mod proxy;
pub mod reload;
pub mod secret;
pub mod store;
pub mod supervise;
pub mod tasks;
pub mod worker;
