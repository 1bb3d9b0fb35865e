//! Wire types of the protocols heimdall speaks: Prometheus remote_write 1.0/2.0 and remote_read, Loki push
//! (hand-written `prost` structs built from the documented field numbers; no `build.rs`, no
//! `protoc`), and the OTLP types re-exported from `opentelemetry-proto`.
//!
//! This crate holds data types only: no validation, no I/O, no dependency on other heimdall crates.

pub mod loki;
pub mod otlp_json;
pub mod otlp_value;
pub mod prometheus;
pub mod prometheus_v2;
pub mod tempo;

/// The generated OTLP protobuf types (with serde for OTLP/JSON), re-exported so that every crate uses
/// the same version.
pub use opentelemetry_proto as otlp;
