//! hostmanager's central controller. See ARCHITECTURE.md ("The controller") for the map.

pub mod cli;
pub mod config;
pub mod deploy;
pub mod eb;
pub mod environment_info;
pub mod fleet;
pub mod health;
pub mod http;
pub mod lb;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod ops;
pub mod options;
pub mod orchestrator;
pub mod provision;
pub mod rollback;
pub mod secrets;
pub mod service;
pub mod store;
pub mod swap;
pub mod versions;
pub mod views;
