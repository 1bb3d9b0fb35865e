//! The one error enum of the metrics crate. Each variant knows its HTTP status; the Prometheus JSON
//! error shape is decided in `api` only.

/// Errors of ingest, storage and query of metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or carries invalid data (HTTP 400, `bad_data`).
    #[error("{0}")]
    BadData(String),
    /// A per-tenant limit was exceeded on the write path (HTTP 429).
    #[error("{0}")]
    TooManyRequests(String),
    /// The request body is larger than allowed (HTTP 413).
    #[error("{0}")]
    TooLarge(String),
    /// A query failed while executing, e.g. a query limit (HTTP 422, `execution`).
    #[error("{0}")]
    Execution(String),
    /// A query ran out of time (HTTP 503, `timeout`).
    #[error("query timed out: {0}")]
    Timeout(String),
    /// Unsupported media type (HTTP 415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Storage failed (HTTP 500).
    #[error("storage: {0}")]
    Storage(#[from] storage::Error),
    /// Anything else that is our fault (HTTP 500).
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status code of this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadData(_) => 400,
            Error::TooManyRequests(_) => 429,
            Error::TooLarge(_) => 413,
            Error::Execution(_) => 422,
            Error::Timeout(_) => 503,
            Error::UnsupportedMediaType(_) => 415,
            Error::Storage(_) | Error::Internal(_) => 500,
        }
    }
}

impl From<common::decompress::DecompressError> for Error {
    fn from(e: common::decompress::DecompressError) -> Self {
        use common::decompress::DecompressError as D;
        match e {
            D::TooLarge(m) => Error::TooLarge(m),
            D::BadData(m) => Error::BadData(m),
            D::Unsupported(m) => Error::UnsupportedMediaType(m),
        }
    }
}
