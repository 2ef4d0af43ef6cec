//! The documents hostmanager's agent and controller exchange, and nothing else: serde types
//! with their validation, no I/O, no runtime. Both sides depend on this crate, so a change to
//! the wire is a change here, seen by both.

mod deployment;
mod enroll;
mod events;
mod metrics;
pub mod pacing;
mod platform;
mod properties;
mod report;
mod status;

pub use deployment::*;
pub use enroll::*;
pub use events::*;
pub use metrics::*;
pub use platform::*;
pub use properties::*;
pub use report::*;
pub use status::*;
