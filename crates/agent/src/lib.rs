//! The node agent (`heimdall agent`): host metrics collectors with node_exporter's names, the
//! Prometheus text exposition for `/metrics`, and durable remote_write forwarding.
//!
//! Owns collectors and forwarding. Depends only on `common`, `proto` and `storage`; it speaks
//! standard protocols (remote_write today; Loki push and OTLP later) so it never links the server.

pub mod config;
pub mod error;
pub mod exposition;
pub mod forward;
pub mod node;
pub mod run;

pub use config::{AgentConfig, NodeConfig, RemoteWriteConfig};
pub use error::Error;
pub use exposition::{Families, MetricType};
pub use forward::RemoteWriteForwarder;
pub use node::NodeCollector;
