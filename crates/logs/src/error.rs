//! The one error type of the logs crate; [`Error::status`] decides the HTTP status.

use axum::http::StatusCode;

/// Everything that can go wrong in ingest, storage and queries of logs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (bad body, bad parameter, bad query).
    #[error("{0}")]
    BadRequest(String),
    /// A LogQL parse error.
    #[error("parse error at line {line}, col {col}: {msg}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What was wrong.
        msg: String,
    },
    /// A per-tenant limit refused the request (status given: 400, 413 or 429).
    #[error("{msg}")]
    Limit {
        /// HTTP status to return.
        status: u16,
        /// Message naming the limit and the tenant.
        msg: String,
    },
    /// A query exceeded a per-tenant query limit.
    #[error("{0}")]
    QueryLimit(String),
    /// Storage failure.
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// Shared-vocabulary failure (tenant ids, matchers, time parsing).
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
    /// The HTTP status Loki would answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) | Error::Parse { .. } | Error::Common(_) => {
                StatusCode::BAD_REQUEST
            }
            Error::Limit { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            Error::QueryLimit(_) => StatusCode::BAD_REQUEST,
            Error::Storage(_) | Error::Io { .. } | Error::Corrupt(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}
