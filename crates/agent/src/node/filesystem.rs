//! node_exporter's `filesystem` collector: mounts from /proc/1/mounts (falling back to
//! /proc/mounts), minus node_exporter's excluded mount points and filesystem types, each measured
//! with statfs(2) through the rootfs prefix.
//!
//! Like node_exporter, statfs runs under a watchdog: a mount that does not answer within 5 s (a hung
//! NFS server) reports `device_error 1` and is skipped until its pending statfs returns.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

use super::{read, Ctx};
use crate::exposition::{Families, MetricType};
use crate::Error;

/// One mount table entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mount {
    /// Source device.
    pub device: String,
    /// Mount point (fstab escapes `\040`, `\011` decoded).
    pub mountpoint: String,
    /// Filesystem type.
    pub fstype: String,
    /// Mount options.
    pub options: String,
}

/// Parses a mounts file.
pub fn parse_mounts(path: &Path, text: &str) -> Result<Vec<Mount>, Error> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 4 {
            return Err(Error::parse(path, format!("malformed mount line {line:?}")));
        }
        out.push(Mount {
            device: f[0].to_string(),
            mountpoint: f[1].replace("\\040", " ").replace("\\011", "\t"),
            fstype: f[2].to_string(),
            options: f[3].to_string(),
        });
    }
    Ok(out)
}

/// The mounts node_exporter would report, in table order, deduplicated.
pub fn selected(ctx: &Ctx, mounts: Vec<Mount>) -> Vec<Mount> {
    let mut seen = std::collections::HashSet::new();
    mounts
        .into_iter()
        .map(|mut m| {
            m.mountpoint = strip_rootfs(&ctx.cfg.rootfs, &m.mountpoint);
            m
        })
        .filter(|m| {
            !ctx.mount_points_exclude.is_match(&m.mountpoint)
                && !ctx.fs_types_exclude.is_match(&m.fstype)
        })
        .filter(|m| seen.insert((m.device.clone(), m.mountpoint.clone(), m.fstype.clone())))
        .collect()
}

/// When the agent sees the host through a rootfs mount, mount points carry that prefix.
fn strip_rootfs(rootfs: &Path, mp: &str) -> String {
    let r = rootfs.to_string_lossy();
    if r == "/" || r.is_empty() {
        return mp.to_string();
    }
    match mp.strip_prefix(r.trim_end_matches('/')) {
        Some("") => "/".into(),
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => mp.to_string(),
    }
}

fn rootfs_path(rootfs: &Path, mp: &str) -> PathBuf {
    rootfs.join(mp.trim_start_matches('/'))
}

/// How long statfs may take before the mount is marked stuck (node_exporter's `mount-timeout`).
const MOUNT_TIMEOUT: Duration = Duration::from_secs(5);

/// Paths whose statfs is still blocked in a watchdog thread.
fn stuck() -> std::sync::MutexGuard<'static, HashSet<PathBuf>> {
    static STUCK: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    STUCK
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// [`statfs`] on a helper thread, giving up after `timeout`; `None` on error, timeout or while
/// an earlier call on the same path is still stuck.
fn statfs_guarded(path: PathBuf, timeout: Duration) -> Option<[f64; 5]> {
    if stuck().contains(&path) {
        return None;
    }
    let (tx, rx) = mpsc::channel();
    let p = path.clone();
    let spawned = std::thread::Builder::new()
        .name("statfs".into())
        .spawn(move || {
            let _ = tx.send(statfs(&p));
            // Recovered (or never stuck): monitoring resumes with the next collection.
            stuck().remove(&p);
        });
    if spawned.is_err() {
        return statfs(&path).ok();
    }
    match rx.recv_timeout(timeout) {
        Ok(r) => r.ok(),
        Err(_) => {
            // Hold the set while re-checking so that a statfs finishing right now is not marked.
            let mut set = stuck();
            match rx.try_recv() {
                Ok(r) => r.ok(),
                Err(_) => {
                    tracing::warn!(path = %path.display(), timeout = ?timeout, "statfs timed out, mount marked stuck");
                    set.insert(path);
                    None
                }
            }
        }
    }
}

/// statfs(2) sizes: (size, free, avail, files, files_free).
fn statfs(path: &Path) -> std::io::Result<[f64; 5]> {
    let s = rustix::fs::statfs(path)?;
    let bs = s.f_bsize as f64;
    Ok([
        s.f_blocks as f64 * bs,
        s.f_bfree as f64 * bs,
        s.f_bavail as f64 * bs,
        s.f_files as f64,
        s.f_ffree as f64,
    ])
}

pub(crate) fn collect(ctx: &Ctx, out: &mut Families) -> Result<(), Error> {
    let mut path = ctx.proc("1/mounts");
    if !path.exists() {
        // hidepid hides PID 1's table.
        path = ctx.proc("mounts");
    }
    let mounts = selected(ctx, parse_mounts(&path, &read(&path)?)?);
    for m in mounts {
        let labels = [
            ("device", m.device.as_str()),
            ("mountpoint", m.mountpoint.as_str()),
            ("fstype", m.fstype.as_str()),
        ];
        let stats = statfs_guarded(rootfs_path(&ctx.cfg.rootfs, &m.mountpoint), MOUNT_TIMEOUT);
        out.add(
            "node_filesystem_device_error",
            "Whether an error occurred while getting statistics for the given device.",
            MetricType::Gauge,
            &labels,
            if stats.is_some() { 0.0 } else { 1.0 },
        );
        let Some([size, free, avail, files, files_free]) = stats else {
            continue;
        };
        let ro = m.options.split(',').any(|o| o == "ro");
        for (name, help, v) in [
            (
                "node_filesystem_size_bytes",
                "Filesystem size in bytes.",
                size,
            ),
            (
                "node_filesystem_free_bytes",
                "Filesystem free space in bytes.",
                free,
            ),
            (
                "node_filesystem_avail_bytes",
                "Filesystem space available to non-root users in bytes.",
                avail,
            ),
            (
                "node_filesystem_files",
                "Filesystem total file nodes.",
                files,
            ),
            (
                "node_filesystem_files_free",
                "Filesystem total free file nodes.",
                files_free,
            ),
            (
                "node_filesystem_readonly",
                "Filesystem read-only status.",
                if ro { 1.0 } else { 0.0 },
            ),
        ] {
            out.add(name, help, MetricType::Gauge, &labels, v);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testutil;

    #[test]
    fn fixture_selection_and_statfs() {
        let ctx = testutil::ctx();
        let path = ctx.proc("1/mounts");
        let mounts = selected(&ctx, parse_mounts(&path, &read(&path).unwrap()).unwrap());
        let mps: Vec<&str> = mounts.iter().map(|m| m.mountpoint.as_str()).collect();
        // /proc, /sys, /sys/fs/cgroup, /run/credentials/…, docker overlays and squashfs are excluded;
        // /run itself is kept (node_exporter 1.5 upstream default), the duplicate / is dropped.
        assert_eq!(mps, vec!["/", "/run", "/srv/my data"]);

        let mut out = Families::new();
        collect(&ctx, &mut out).unwrap();
        let root = [
            ("device", "/dev/sda1"),
            ("mountpoint", "/"),
            ("fstype", "ext4"),
        ];
        // statfs of the real / (rootfs is /): it exists, so no device error and a size.
        assert_eq!(out.value("node_filesystem_device_error", &root), Some(0.0));
        assert!(out.value("node_filesystem_size_bytes", &root).unwrap() > 0.0);
        let srv = [
            ("device", "/dev/sdb1"),
            ("mountpoint", "/srv/my data"),
            ("fstype", "xfs"),
        ];
        // This host has no /srv/my data: device error, no sizes.
        assert_eq!(out.value("node_filesystem_device_error", &srv), Some(1.0));
        assert_eq!(out.value("node_filesystem_size_bytes", &srv), None);
    }

    #[test]
    fn statfs_guard() {
        assert!(statfs_guarded(PathBuf::from("/"), MOUNT_TIMEOUT).is_some());
        assert!(statfs_guarded(PathBuf::from("/nonexistent/mount"), MOUNT_TIMEOUT).is_none());
        // A stuck path is skipped without calling statfs.
        let p = PathBuf::from("/pretend/stuck");
        stuck().insert(p.clone());
        assert!(statfs_guarded(p.clone(), MOUNT_TIMEOUT).is_none());
        stuck().remove(&p);
    }

    #[test]
    fn readonly_and_rootfs_prefix() {
        assert_eq!(
            strip_rootfs(Path::new("/host/root"), "/host/root/var"),
            "/var"
        );
        assert_eq!(strip_rootfs(Path::new("/host/root"), "/host/root"), "/");
        assert_eq!(strip_rootfs(Path::new("/host/root"), "/other"), "/other");
        assert_eq!(strip_rootfs(Path::new("/"), "/x"), "/x");
        assert_eq!(
            rootfs_path(Path::new("/host/root"), "/var"),
            PathBuf::from("/host/root/var")
        );

        let tmp = tempfile::tempdir().unwrap();
        let proc = tmp.path().join("proc");
        std::fs::create_dir_all(&proc).unwrap();
        let here = tmp.path().display().to_string();
        std::fs::write(
            proc.join("mounts"),
            format!("/dev/x {here} ext4 ro,noatime 0 0\n"),
        )
        .unwrap();
        let ctx = Ctx::new(crate::NodeConfig {
            proc_root: proc,
            ..Default::default()
        })
        .unwrap();
        let mut out = Families::new();
        collect(&ctx, &mut out).unwrap();
        let l = [
            ("device", "/dev/x"),
            ("mountpoint", here.as_str()),
            ("fstype", "ext4"),
        ];
        assert_eq!(out.value("node_filesystem_readonly", &l), Some(1.0));
        assert!(out.value("node_filesystem_files", &l).unwrap() > 0.0);
    }
}
