//! The positions file: per tailed path, the file identity (device, inode) and the offset up to which
//! its lines are durably queued. Written atomically (temp file, fsync, rename) and only after the
//! batch holding those lines is in the forwarder's WAL, so a restart continues where the last
//! queued batch ended.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// Where reading of one file continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Device of the file.
    pub dev: u64,
    /// Inode of the file.
    pub ino: u64,
    /// Byte offset of the first line not yet queued.
    pub offset: u64,
}

/// Path → position.
pub type Positions = BTreeMap<PathBuf, Position>;

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    positions: Positions,
}

/// Reads the positions file; a missing file is empty, a damaged one is reported and ignored (the
/// files are then read again from their beginning: duplicates rather than loss).
pub fn load(path: &Path) -> Positions {
    match std::fs::read_to_string(path) {
        Ok(s) => match serde_yaml::from_str::<File>(&s) {
            Ok(f) => f.positions,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "positions file unreadable, starting over");
                Positions::new()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Positions::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "positions file unreadable, starting over");
            Positions::new()
        }
    }
}

/// Replaces the positions file atomically.
pub fn save(path: &Path, positions: &Positions) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let text = serde_yaml::to_string(&File {
        positions: positions.clone(),
    })
    .map_err(|e| Error::parse(path, e.to_string()))?;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/positions.yaml");
        assert!(load(&path).is_empty());
        let mut p = Positions::new();
        p.insert(
            "/var/log/a b.log".into(),
            Position {
                dev: 1,
                ino: 2,
                offset: 3,
            },
        );
        save(&path, &p).unwrap();
        assert_eq!(load(&path), p);
        std::fs::write(&path, "positions: [").unwrap();
        assert!(load(&path).is_empty());
    }
}
