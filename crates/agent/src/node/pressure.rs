//! node_exporter's `pressure` collector: PSI totals from /proc/pressure/{cpu,io,memory}
//! (microseconds → seconds). Kernels without PSI have no such files: no data, not an error.

use std::path::Path;

use super::{num, read, Ctx};
use crate::exposition::Families;
use crate::Error;

/// Parses the `total=` of the `some` and `full` lines (µs).
pub fn parse(path: &Path, text: &str) -> Result<(Option<f64>, Option<f64>), Error> {
    let (mut some, mut full) = (None, None);
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let slot = match f.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        for kv in f {
            if let Some(v) = kv.strip_prefix("total=") {
                *slot = Some(num::<f64>(path, v)?);
            }
        }
    }
    Ok((some, full))
}

pub(crate) fn collect(ctx: &Ctx, out: &mut Families) -> Result<(), Error> {
    for res in ["cpu", "io", "memory"] {
        let path = ctx.proc(&format!("pressure/{res}"));
        let (some, full) = parse(&path, &read(&path)?)?;
        let some = some.unwrap_or(0.0) / 1e6;
        let full = full.unwrap_or(0.0) / 1e6;
        match res {
            "cpu" => out.counter(
                "node_pressure_cpu_waiting_seconds_total",
                "Total time in seconds that processes have waited for CPU time",
                some,
            ),
            "io" => {
                out.counter(
                    "node_pressure_io_waiting_seconds_total",
                    "Total time in seconds that processes have waited due to IO congestion",
                    some,
                );
                out.counter(
                    "node_pressure_io_stalled_seconds_total",
                    "Total time in seconds no process could make progress due to IO congestion",
                    full,
                );
            }
            _ => {
                out.counter(
                    "node_pressure_memory_waiting_seconds_total",
                    "Total time in seconds that processes have waited for memory",
                    some,
                );
                out.counter(
                    "node_pressure_memory_stalled_seconds_total",
                    "Total time in seconds no process could make progress due to memory congestion",
                    full,
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testutil;

    #[test]
    fn fixture() {
        let out = testutil::collect_fixture(collect);
        assert_eq!(
            out.value("node_pressure_cpu_waiting_seconds_total", &[]),
            Some(123.456789)
        );
        assert_eq!(
            out.value("node_pressure_io_waiting_seconds_total", &[]),
            Some(4.5)
        );
        assert_eq!(
            out.value("node_pressure_io_stalled_seconds_total", &[]),
            Some(2.25)
        );
        assert_eq!(
            out.value("node_pressure_memory_stalled_seconds_total", &[]),
            Some(0.0005)
        );
        assert_eq!(
            out.get("node_pressure_cpu_stalled_seconds_total")
                .map(|_| ()),
            None
        );
    }
}
