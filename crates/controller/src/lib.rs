//! hostmanager's central controller. See ARCHITECTURE.md ("The controller") for the map.

pub mod deploy;
pub mod eb;
pub mod health;
pub mod metrics;
pub mod model;
pub mod options;
pub mod store;
