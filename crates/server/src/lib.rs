//! The front door of `heimdall server`: HTTP routers for every API family, tenancy and auth
//! middleware, the OTLP gRPC receiver, ops endpoints and the background maintenance loop.
//!
//! Depends on the signal crates, `storage` and `common`; signal crates never depend on this one.

pub mod auth;
pub mod error;
pub mod generator_sink;
pub mod ops;
pub mod otlp_grpc;
pub mod run;
pub mod telemetry;
pub mod tenancy;

pub use error::Error;
pub use run::{build, Server};
