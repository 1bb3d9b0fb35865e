//! Storage shared by every signal: the write-ahead log, block metadata and the object store that
//! holds immutable blocks (local folder or S3-compatible).
//!
//! Depends on `common` only; knows nothing of signal formats.

pub mod block;
pub mod error;
pub mod wal;

pub use block::{expired, plan_compaction, BlockMeta, BlockStore};
pub use error::Error;
pub use wal::{Wal, WalOptions};
