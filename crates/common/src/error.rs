//! The one error enum of this crate.

/// Errors raised while validating shared inputs (tenant ids, matchers, times, config).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tenant id in `X-Scope-OrgID` is not acceptable.
    #[error("invalid tenant id {id:?}: {reason}")]
    InvalidTenant { id: String, reason: &'static str },
    /// A label matcher could not be built (bad regex).
    #[error("invalid matcher {name}: {reason}")]
    InvalidMatcher { name: String, reason: String },
    /// A time or duration parameter could not be parsed.
    #[error("cannot parse {value:?} to a valid {kind}")]
    InvalidTime { value: String, kind: &'static str },
    /// The configuration is invalid.
    #[error("invalid config: {0}")]
    Config(String),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
