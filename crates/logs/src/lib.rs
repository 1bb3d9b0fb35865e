//! Logs: Loki-compatible ingest, the log store, LogQL and the Loki HTTP API.
//!
//! Owns everything log-specific; builds on `storage` (WAL, blocks, object store) and `common`
//! (tenants, labels, limits). Must not depend on other signal crates or on `server`.

pub mod api;
pub mod error;
pub mod ingest;
pub mod logql;
pub mod model;
pub mod store;
mod writer;

pub use error::Error;
