//! The one error type of the traces crate; [`Error::status`] decides the HTTP status.

/// Everything that can go wrong in ingest, storage and queries of traces.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (bad body, bad parameter).
    #[error("{0}")]
    BadRequest(String),
    /// A TraceQL parse error (Tempo's message shape).
    #[error("parse error at line {line}, col {col}: {msg}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What was wrong.
        msg: String,
    },
    /// A per-tenant limit refused the request (status 400, 413 or 429).
    #[error("{msg}")]
    Limit {
        /// HTTP status to return.
        status: u16,
        /// Message naming the limit and the tenant.
        msg: String,
    },
    /// The trace does not exist.
    #[error("trace not found")]
    NotFound,
    /// Storage failure.
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// Shared-vocabulary failure (tenant ids, time parsing).
    #[error(transparent)]
    Common(#[from] common::Error),
    /// Local I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Corrupt on-disk data.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

impl Error {
    /// The HTTP status Tempo would answer with.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) | Error::Parse { .. } | Error::Common(_) => 400,
            Error::Limit { status, .. } => *status,
            Error::NotFound => 404,
            Error::Storage(_) | Error::Io { .. } | Error::Corrupt(_) => 500,
        }
    }
}
