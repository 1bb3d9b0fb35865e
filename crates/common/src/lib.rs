//! Shared vocabulary of every heimdall crate: tenant ids, label sets and matchers, per-tenant limits,
//! configuration, and time/duration parsing in the upstream APIs' formats.
//!
//! This crate owns no I/O beyond reading config files and must not depend on any other heimdall crate.

pub mod config;
pub mod decompress;
pub mod error;
pub mod gofmt;
pub mod labels;
pub mod limits;
pub mod loglevel;
pub mod params;
pub mod ratelimit;
pub mod tenant;
pub mod time;

pub use error::Error;
pub use labels::{Label, Labels, MatchOp, Matcher};
pub use tenant::{TenantId, TenantSet};
