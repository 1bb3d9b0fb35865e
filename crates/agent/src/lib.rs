//! The node agent (`heimdall agent`): host metrics collectors with node_exporter's names, the
//! Prometheus text exposition for `/metrics`, Prometheus-style scraping of exporters, log
//! tailing, and durable forwarding (remote_write and Loki push share one WAL-backed forwarder).
//!
//! Owns collectors, scraping, the log tailer and forwarding. Depends only on `common`, `proto` and
//! `storage`; it speaks standard protocols (remote_write, Loki push; OTLP later) so it never links
//! the server.

pub mod config;
pub mod error;
pub mod exposition;
pub mod forward;
pub mod kube;
pub mod logs;
pub mod node;
pub mod run;
pub mod scrape;

pub use config::{AgentConfig, LogsConfig, NodeConfig, RemoteWriteConfig};
pub use error::Error;
pub use exposition::{Families, MetricType};
pub use forward::{Forwarder, RemoteWriteForwarder};
pub use node::NodeCollector;
pub use scrape::{ScrapeConfig, ScrapeJobConfig, Scraper};
