//! hostmanager's central controller. See ARCHITECTURE.md ("The controller") for the map.

pub mod model;
pub mod store;
