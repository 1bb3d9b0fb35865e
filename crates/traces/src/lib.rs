//! Traces: OTLP span ingest, the trace store (columnar blocks), TraceQL, the Tempo HTTP API and
//! the metrics generator.
//!
//! Builds on `storage` (WAL, blocks, object store) and `common`; must not depend on other signal
//! crates or on `server` (the metrics generator writes through a trait the server wires up).

pub mod api;
pub mod error;
pub mod generator;
pub mod ingest;
pub mod model;
pub mod search;
pub mod store;
pub mod tempo_json;
pub mod traceql;
pub mod zipkin;

pub use error::Error;
