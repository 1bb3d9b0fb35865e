//! The one error enum of the agent crate.

use std::path::PathBuf;

/// Agent errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a /proc, /sys or data-dir file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A kernel file did not have the expected format.
    #[error("parsing {}: {msg}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        msg: String,
    },

    /// The agent configuration cannot be used.
    #[error("agent config: {0}")]
    Config(String),

    /// The durable buffer failed.
    #[error("forwarder buffer: {0}")]
    Wal(#[from] storage::Error),

    /// Sending to the remote_write endpoint failed.
    #[error("remote_write: {0}")]
    Send(String),

    /// A scrape failed: the target did not answer, or its exposition could not be parsed.
    #[error("scrape: {0}")]
    Scrape(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Self::Parse {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// True when the file does not exist (the kernel lacks the feature; the collector is skipped).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}
