//! node_exporter's `cpu` collector: per-CPU times from /proc/stat in seconds (USER_HZ = 100 ticks
//! per second), guest times, and from sysfs the thermal throttle counters and isolated CPUs.
//!
//! Like node_exporter, counters never go backwards: a kernel that reports a smaller value (idle and
//! iowait do on some kernels) keeps the previous one, and an idle drop of ≥ 3 s (CPU hotplug)
//! resets that CPU.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{num, read, Ctx};
use crate::exposition::{Families, MetricType};
use crate::Error;

/// Ticks per second of /proc/stat (USER_HZ is 100 on every Linux architecture node_exporter knows).
const USER_HZ: f64 = 100.0;
/// An idle drop this large means hotplug: reset instead of clamping.
const JUMP_BACK_SECONDS: f64 = 3.0;
/// Modes in /proc/stat column order, followed by guest and guest_nice.
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// Times of one CPU in seconds: the 8 [`MODES`], then guest, guest_nice.
pub type CpuTimes = [f64; 10];

/// Parses the `cpuN` lines of /proc/stat.
pub fn parse(path: &Path, text: &str) -> Result<BTreeMap<u32, CpuTimes>, Error> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(id) = f.next().and_then(|k| k.strip_prefix("cpu")) else {
            continue;
        };
        if id.is_empty() {
            continue; // the aggregate line
        }
        let id: u32 = num(path, id)?;
        let mut t = [0.0; 10];
        for (i, v) in f.take(10).enumerate() {
            t[i] = num::<f64>(path, v)? / USER_HZ;
        }
        out.insert(id, t);
    }
    Ok(out)
}

/// The last values exported, to keep counters monotonic.
#[derive(Default)]
pub struct CpuState {
    last: BTreeMap<u32, CpuTimes>,
}

impl CpuState {
    /// Merges a new reading and returns what to export.
    pub fn update(&mut self, new: BTreeMap<u32, CpuTimes>) -> &BTreeMap<u32, CpuTimes> {
        if self.last.len() != new.len() {
            self.last.clear();
        }
        for (id, n) in new {
            let old = self.last.entry(id).or_insert([0.0; 10]);
            if old[3] - n[3] >= JUMP_BACK_SECONDS {
                *old = [0.0; 10];
            }
            for i in 0..10 {
                if n[i] >= old[i] {
                    old[i] = n[i];
                }
            }
        }
        &self.last
    }
}

/// Parses a CPU list like `0-2,5`.
pub fn parse_cpu_list(path: &Path, s: &str) -> Result<BTreeSet<u32>, Error> {
    let mut out = BTreeSet::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (num(path, a)?, num(path, b)?);
                out.extend(a..=b);
            }
            None => {
                out.insert(num(path, part)?);
            }
        }
    }
    Ok(out)
}

pub(crate) fn collect(ctx: &Ctx, st: &mut CpuState, out: &mut Families) -> Result<(), Error> {
    throttles(ctx, out);
    let iso = ctx.sys("devices/system/cpu/isolated");
    if let Ok(text) = std::fs::read_to_string(&iso) {
        for cpu in parse_cpu_list(&iso, &text)? {
            out.add(
                "node_cpu_isolated",
                "Whether each core is isolated, information from /sys/devices/system/cpu/isolated.",
                MetricType::Gauge,
                &[("cpu", &cpu.to_string())],
                1.0,
            );
        }
    }
    let path = ctx.proc("stat");
    let cpus = parse(&path, &read(&path)?)?;
    for (id, t) in st.update(cpus) {
        let cpu = id.to_string();
        for (i, mode) in MODES.iter().enumerate() {
            out.add(
                "node_cpu_seconds_total",
                "Seconds the CPUs spent in each mode.",
                MetricType::Counter,
                &[("cpu", &cpu), ("mode", mode)],
                t[i],
            );
        }
        // Guest time is also counted in user and nice.
        for (i, mode) in [(8, "user"), (9, "nice")] {
            out.add(
                "node_cpu_guest_seconds_total",
                "Seconds the CPUs spent in guests (VMs) for each mode.",
                MetricType::Counter,
                &[("cpu", &cpu), ("mode", mode)],
                t[i],
            );
        }
    }
    Ok(())
}

/// `node_cpu_core_throttles_total` / `node_cpu_package_throttles_total` where the kernel has them.
fn throttles(ctx: &Ctx, out: &mut Families) {
    let dir = ctx.sys("devices/system/cpu");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let read_u64 =
        |p: &Path| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    let mut cpus: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.strip_prefix("cpu")
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| e.path())
        .collect();
    cpus.sort();
    let mut packages: BTreeMap<u64, Option<u64>> = BTreeMap::new();
    let mut cores: BTreeMap<(u64, u64), Option<u64>> = BTreeMap::new();
    for cpu in cpus {
        let (Some(pkg), Some(core)) = (
            read_u64(&cpu.join("topology/physical_package_id")),
            read_u64(&cpu.join("topology/core_id")),
        ) else {
            continue;
        };
        cores
            .entry((pkg, core))
            .or_insert_with(|| read_u64(&cpu.join("thermal_throttle/core_throttle_count")));
        packages
            .entry(pkg)
            .or_insert_with(|| read_u64(&cpu.join("thermal_throttle/package_throttle_count")));
    }
    for (pkg, n) in packages {
        if let Some(n) = n {
            out.add(
                "node_cpu_package_throttles_total",
                "Number of times this CPU package has been throttled.",
                MetricType::Counter,
                &[("package", &pkg.to_string())],
                n as f64,
            );
        }
    }
    for ((pkg, core), n) in cores {
        if let Some(n) = n {
            out.add(
                "node_cpu_core_throttles_total",
                "Number of times this CPU core has been throttled.",
                MetricType::Counter,
                &[("package", &pkg.to_string()), ("core", &core.to_string())],
                n as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testutil;

    #[test]
    fn fixture() {
        let mut out = Families::new();
        let mut st = CpuState::default();
        collect(&testutil::ctx(), &mut st, &mut out).unwrap();
        let v = |cpu: &str, mode: &str| {
            out.value("node_cpu_seconds_total", &[("cpu", cpu), ("mode", mode)])
        };
        assert_eq!(v("0", "user"), Some(260.0));
        assert_eq!(v("1", "idle"), Some(4500.0));
        assert_eq!(v("1", "steal"), Some(0.15));
        assert_eq!(v("2", "user"), None);
        assert_eq!(
            out.value(
                "node_cpu_guest_seconds_total",
                &[("cpu", "0"), ("mode", "nice")]
            ),
            Some(0.02)
        );
        assert_eq!(out.get("node_cpu_seconds_total").unwrap().series.len(), 16);
        assert_eq!(
            out.value(
                "node_cpu_core_throttles_total",
                &[("package", "0"), ("core", "1")]
            ),
            Some(6.0)
        );
        assert_eq!(
            out.value("node_cpu_package_throttles_total", &[("package", "0")]),
            Some(9.0)
        );
        assert_eq!(out.value("node_cpu_isolated", &[("cpu", "1")]), Some(1.0));
    }

    #[test]
    fn counters_do_not_go_backwards() {
        let p = Path::new("stat");
        let mut st = CpuState::default();
        st.update(parse(p, "cpu0 100 0 0 1000 50 0 0 0 0 0\n").unwrap());
        // iowait drops: keep the old value; idle drops a little: keep.
        let got = st.update(parse(p, "cpu0 200 0 0 990 40 0 0 0 0 0\n").unwrap());
        assert_eq!(got[&0][0], 2.0);
        assert_eq!(got[&0][3], 10.0);
        assert_eq!(got[&0][4], 0.5);
        // Idle drops by ≥ 3 s: hotplug, reset.
        let got = st.update(parse(p, "cpu0 1 0 0 100 1 0 0 0 0 0\n").unwrap());
        assert_eq!(got[&0][3], 1.0);
        assert_eq!(got[&0][0], 0.01);
    }

    #[test]
    fn cpu_lists() {
        let p = Path::new("isolated");
        assert!(parse_cpu_list(p, "\n").unwrap().is_empty());
        assert_eq!(
            parse_cpu_list(p, "0-2,5\n")
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![0, 1, 2, 5]
        );
    }
}
