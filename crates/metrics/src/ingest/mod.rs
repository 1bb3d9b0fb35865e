//! Write-path decoders: Prometheus remote_write 1.0/2.0 ([`remote_write`]) and OTLP metrics
//! ([`otlp`]) bodies become validated [`crate::WriteBatch`]es. Nothing here touches HTTP or the
//! TSDB: callers pass the body, the relevant headers, the tenant's limits and the clock.
//!
//! Every decoder is bounded (decompressed size checked against `max_request_size_bytes` before or
//! while inflating) and must never panic on arbitrary input.

pub mod decompress;
pub mod otlp;
pub mod remote_write;
pub mod validate;

pub use validate::{valid_label_name, valid_metric_name};
