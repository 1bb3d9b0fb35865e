//! Host metrics with node_exporter 1.5's names, labels, help texts, types and units, read from
//! procfs/sysfs under configurable roots. One submodule per node_exporter collector; each has a
//! pure parser (unit-tested on fixture files in the kernel's formats) and a `collect` that reads
//! the files and adds families.

use std::path::{Path, PathBuf};
use std::time::Instant;

use regex::Regex;
use std::sync::Mutex;

use crate::exposition::{Families, MetricType};
use crate::{Error, NodeConfig};

pub mod boottime;
pub mod cpu;
pub mod diskstats;
pub mod filefd;
pub mod filesystem;
pub mod loadavg;
pub mod meminfo;
pub mod netdev;
pub mod pressure;
pub mod sockstat;
pub mod stat;
pub mod time;
pub mod uname;
pub mod vmstat;

/// Paths and compiled filters shared by the collectors.
pub struct Ctx {
    /// The configuration.
    pub cfg: NodeConfig,
    pub(crate) mount_points_exclude: Regex,
    pub(crate) fs_types_exclude: Regex,
    pub(crate) disk_devices_exclude: Regex,
    pub(crate) netdev_devices_exclude: Option<Regex>,
    pub(crate) vmstat_fields: Regex,
}

impl Ctx {
    /// Compiles the filters of `cfg`.
    pub fn new(cfg: NodeConfig) -> Result<Self, Error> {
        cfg.validate()?;
        let re = |s: &str| Regex::new(s).map_err(|e| Error::Config(e.to_string()));
        Ok(Self {
            mount_points_exclude: re(&cfg.mount_points_exclude)?,
            fs_types_exclude: re(&cfg.fs_types_exclude)?,
            disk_devices_exclude: re(&cfg.disk_devices_exclude)?,
            netdev_devices_exclude: if cfg.netdev_devices_exclude.is_empty() {
                None
            } else {
                Some(re(&cfg.netdev_devices_exclude)?)
            },
            vmstat_fields: re(&cfg.vmstat_fields)?,
            cfg,
        })
    }

    /// A path under the procfs root.
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.cfg.proc_root.join(rel)
    }

    /// A path under the sysfs root.
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.cfg.sys_root.join(rel)
    }
}

/// Reads a whole (small) kernel file.
pub(crate) fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Parses a number field, naming the file on failure.
pub(crate) fn num<T: std::str::FromStr>(path: &Path, s: &str) -> Result<T, Error> {
    s.parse()
        .map_err(|_| Error::parse(path, format!("invalid number {s:?}")))
}

/// The names of the collectors, in the order they run.
pub const COLLECTORS: &[&str] = &[
    "boottime",
    "cpu",
    "diskstats",
    "filefd",
    "filesystem",
    "loadavg",
    "meminfo",
    "netdev",
    "pressure",
    "sockstat",
    "stat",
    "time",
    "uname",
    "vmstat",
];

/// Runs every node collector. Cheap to share: `collect` takes `&self`.
pub struct NodeCollector {
    ctx: Ctx,
    cpu: Mutex<cpu::CpuState>,
}

impl NodeCollector {
    /// A collector for `cfg` (fails on an invalid filter regex).
    pub fn new(cfg: NodeConfig) -> Result<Self, Error> {
        Ok(Self {
            ctx: Ctx::new(cfg)?,
            cpu: Mutex::new(cpu::CpuState::default()),
        })
    }

    /// Runs all collectors. A collector whose kernel files are missing or malformed reports
    /// `node_scrape_collector_success{collector} 0` (and logs at debug) instead of failing the rest,
    /// like node_exporter; files that do not exist (no PSI, no IPv6) count as success without data.
    pub fn collect(&self) -> Families {
        let mut out = Families::new();
        for &name in COLLECTORS {
            let start = Instant::now();
            let r = match name {
                "boottime" => boottime::collect(&self.ctx, &mut out),
                "cpu" => {
                    let mut st = self.cpu.lock().unwrap_or_else(|p| p.into_inner());
                    cpu::collect(&self.ctx, &mut st, &mut out)
                }
                "diskstats" => diskstats::collect(&self.ctx, &mut out),
                "filefd" => filefd::collect(&self.ctx, &mut out),
                "filesystem" => filesystem::collect(&self.ctx, &mut out),
                "loadavg" => loadavg::collect(&self.ctx, &mut out),
                "meminfo" => meminfo::collect(&self.ctx, &mut out),
                "netdev" => netdev::collect(&self.ctx, &mut out),
                "pressure" => pressure::collect(&self.ctx, &mut out),
                "sockstat" => sockstat::collect(&self.ctx, &mut out),
                "stat" => stat::collect(&self.ctx, &mut out),
                "time" => time::collect(&self.ctx, &mut out),
                "uname" => uname::collect(&mut out),
                "vmstat" => vmstat::collect(&self.ctx, &mut out),
                _ => Ok(()),
            };
            let ok = match r {
                Ok(()) => true,
                Err(e) if e.is_not_found() && name == "pressure" => {
                    tracing::debug!(collector = name, error = %e, "no data");
                    true
                }
                Err(e) => {
                    tracing::debug!(collector = name, error = %e, "collector failed");
                    false
                }
            };
            let labels = [("collector", name)];
            out.add(
                "node_scrape_collector_duration_seconds",
                "node_exporter: Duration of a collector scrape.",
                MetricType::Gauge,
                &labels,
                start.elapsed().as_secs_f64(),
            );
            out.add(
                "node_scrape_collector_success",
                "node_exporter: Whether a collector succeeded.",
                MetricType::Gauge,
                &labels,
                if ok { 1.0 } else { 0.0 },
            );
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::PathBuf;

    use super::Ctx;
    use crate::NodeConfig;

    /// The fixture tree: `tests/fixtures/{proc,sys,udev}`.
    pub fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    /// Runs one collector over the fixture tree.
    pub fn collect_fixture(
        collect: fn(&Ctx, &mut crate::exposition::Families) -> Result<(), crate::Error>,
    ) -> crate::exposition::Families {
        let mut out = crate::exposition::Families::new();
        collect(&ctx(), &mut out).unwrap();
        out
    }

    /// A context reading the fixture tree.
    pub fn ctx() -> Ctx {
        let f = fixtures();
        Ctx::new(NodeConfig {
            proc_root: f.join("proc"),
            sys_root: f.join("sys"),
            udev_data: f.join("udev"),
            ..NodeConfig::default()
        })
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_collectors_succeed_on_fixtures() {
        let f = testutil::fixtures();
        let c = NodeCollector::new(NodeConfig {
            proc_root: f.join("proc"),
            sys_root: f.join("sys"),
            udev_data: f.join("udev"),
            ..NodeConfig::default()
        })
        .unwrap();
        let fams = c.collect();
        for name in COLLECTORS {
            assert_eq!(
                fams.value("node_scrape_collector_success", &[("collector", name)]),
                Some(1.0),
                "{name}"
            );
        }
        let text = fams.render();
        assert!(
            text.contains("# TYPE node_cpu_seconds_total counter\n"),
            "{text}"
        );
    }

    #[test]
    fn missing_roots_fail_per_collector() {
        let c = NodeCollector::new(NodeConfig {
            proc_root: "/nonexistent/proc".into(),
            sys_root: "/nonexistent/sys".into(),
            ..NodeConfig::default()
        })
        .unwrap();
        let fams = c.collect();
        assert_eq!(
            fams.value("node_scrape_collector_success", &[("collector", "meminfo")]),
            Some(0.0)
        );
        assert_eq!(
            fams.value("node_scrape_collector_success", &[("collector", "uname")]),
            Some(1.0)
        );
    }
}
