//! node_exporter's `stat` collector: /proc/stat counters (interrupts, context switches, forks)
//! and process states. `node_boot_time_seconds` lives in [`super::boottime`].

use std::path::Path;

use super::{num, read, Ctx};
use crate::exposition::Families;
use crate::Error;

/// The non-CPU lines of /proc/stat.
#[derive(Debug, Default, PartialEq)]
pub struct Stat {
    /// `intr` first field: interrupts serviced.
    pub intr: f64,
    /// `ctxt`.
    pub ctxt: f64,
    /// `btime`, seconds since the epoch.
    pub btime: f64,
    /// `processes`: forks since boot.
    pub processes: f64,
    /// `procs_running`.
    pub procs_running: f64,
    /// `procs_blocked`.
    pub procs_blocked: f64,
}

/// Parses /proc/stat.
pub fn parse(path: &Path, text: &str) -> Result<Stat, Error> {
    let mut s = Stat::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(key), Some(v)) = (f.next(), f.next()) else {
            continue;
        };
        let slot = match key {
            "intr" => &mut s.intr,
            "ctxt" => &mut s.ctxt,
            "btime" => &mut s.btime,
            "processes" => &mut s.processes,
            "procs_running" => &mut s.procs_running,
            "procs_blocked" => &mut s.procs_blocked,
            _ => continue,
        };
        *slot = num(path, v)?;
    }
    Ok(s)
}

pub(crate) fn collect(ctx: &Ctx, out: &mut Families) -> Result<(), Error> {
    let path = ctx.proc("stat");
    let s = parse(&path, &read(&path)?)?;
    out.counter(
        "node_intr_total",
        "Total number of interrupts serviced.",
        s.intr,
    );
    out.counter(
        "node_context_switches_total",
        "Total number of context switches.",
        s.ctxt,
    );
    out.counter("node_forks_total", "Total number of forks.", s.processes);
    out.gauge(
        "node_procs_running",
        "Number of processes in runnable state.",
        s.procs_running,
    );
    out.gauge(
        "node_procs_blocked",
        "Number of processes blocked waiting for I/O to complete.",
        s.procs_blocked,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testutil;

    #[test]
    fn fixture() {
        let out = testutil::collect_fixture(collect);
        assert_eq!(out.value("node_intr_total", &[]), Some(8123456.0));
        assert_eq!(
            out.value("node_context_switches_total", &[]),
            Some(9876543.0)
        );
        assert_eq!(out.value("node_forks_total", &[]), Some(424242.0));
        assert_eq!(out.value("node_procs_running", &[]), Some(3.0));
        assert_eq!(out.value("node_procs_blocked", &[]), Some(1.0));
        assert!(parse(Path::new("x"), "ctxt abc\n").is_err());
    }
}
