//! Helpers shared by the controller's integration tests (`mod support;`).

// Each test binary compiles its own copy and uses a different part of it.
#![allow(dead_code)]

mod postgres;

pub use postgres::PgServer;
