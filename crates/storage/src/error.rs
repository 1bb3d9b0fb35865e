//! The one error enum of the storage crate, so that callers (signal crates, the server) map storage
//! failures to statuses in one place. Every variant says what failed and where.

use std::path::PathBuf;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Local file I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, including the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An object store operation failed.
    #[error("object store: {context}: {source}")]
    ObjectStore {
        /// What was being done, including the object path.
        context: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },

    /// A requested object does not exist in the object store.
    #[error("object store: {path} not found")]
    NotFound {
        /// The object path.
        path: String,
    },

    /// A block's `meta.json` could not be encoded or decoded.
    #[error("block meta {path}: {source}")]
    InvalidMeta {
        /// The object path of the `meta.json`.
        path: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// An argument was not acceptable (bad signal or file name, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The storage configuration cannot be used.
    #[error("storage config: {0}")]
    Config(String),

    /// A WAL segment other than the last one is damaged, so records after the damage would be lost.
    #[error("wal {}: segment {segment:08} is corrupt at byte offset {offset}: {reason}", dir.display())]
    WalCorrupt {
        /// The WAL directory.
        dir: PathBuf,
        /// The damaged segment.
        segment: u64,
        /// Byte offset of the first bad record in that segment.
        offset: u64,
        /// What is wrong with the record.
        reason: String,
    },

    /// A record is larger than the WAL accepts.
    #[error("wal record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// The record length.
        len: usize,
        /// The maximum record length.
        max: usize,
    },

    /// An empty record was appended; the WAL does not store those (an all-zero tail would look like them).
    #[error("wal record is empty")]
    EmptyRecord,

    /// The WAL was closed (or its writer thread stopped) before the operation could complete.
    #[error("wal {} is closed", dir.display())]
    WalClosed {
        /// The WAL directory.
        dir: PathBuf,
    },
}

impl Error {
    /// An [`Error::Io`] with `context`.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Maps an object store error on `path`; `NotFound` becomes [`Error::NotFound`].
    pub(crate) fn store(
        context: impl Into<String>,
        path: &object_store::path::Path,
        source: object_store::Error,
    ) -> Self {
        match source {
            object_store::Error::NotFound { .. } => Self::NotFound {
                path: path.to_string(),
            },
            source => Self::ObjectStore {
                context: format!("{} {path}", context.into()),
                source,
            },
        }
    }

    /// True when the error means the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}
