//! The one error enum of the server crate.

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration.
    #[error("config: {0}")]
    Config(#[from] common::Error),
    /// A listener could not be bound or served.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Storage failed to open or close.
    #[error("storage: {0}")]
    Storage(#[from] storage::Error),
    /// The metrics store failed to open or close.
    #[error("metrics: {0}")]
    Metrics(#[from] metrics::Error),
    /// The logs store failed to open or close.
    #[error("logs: {0}")]
    Logs(#[from] logs::Error),
    /// The trace store failed to open or close.
    #[error("traces: {0}")]
    Traces(#[from] traces::Error),
    /// The tenants file is invalid.
    #[error("tenants file {path}: {reason}")]
    TenantsFile {
        /// File path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}
