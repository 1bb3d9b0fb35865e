//! Metrics: the TSDB (head, WAL records, blocks, compaction), remote_write and OTLP ingest, the PromQL
//! engine and the Prometheus HTTP API handlers.
//!
//! Depends on `common`, `proto` and `storage` only; knows nothing of HTTP routing or tenancy
//! extraction (the server crate passes a validated `TenantId`/`TenantSet` in).

pub mod api;
pub mod error;
pub mod ingest;
pub mod model;
pub mod promql;
pub mod tsdb;

pub use error::Error;
pub use model::*;
