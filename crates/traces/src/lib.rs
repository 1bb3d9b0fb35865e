//! Traces: OTLP span ingest, the trace store (columnar blocks), TraceQL, the Tempo HTTP API and
//! the metrics generator.
//!
//! Builds on `storage` (WAL, blocks, object store) and `common`; must not depend on other signal
//! crates or on `server` (the metrics generator writes through a trait the server wires up).

pub mod error;
pub mod model;
pub mod store;
pub mod traceql;

pub use error::Error;
