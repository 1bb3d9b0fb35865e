//! node_exporter's `netdev` collector: /proc/net/dev counters as `node_network_<dir>_<stat>_total`
//! with node_exporter's legacy (non-detailed) names, plus `receive_nohandler` from sysfs (node_exporter
//! reads it over netlink; /proc/net/dev lacks it).

use std::path::Path;

use super::{num, read, Ctx};
use crate::exposition::{Families, MetricType};
use crate::Error;

/// Column names of /proc/net/dev after the device name.
const COLUMNS: [&str; 16] = [
    "receive_bytes",
    "receive_packets",
    "receive_errs",
    "receive_drop",
    "receive_fifo",
    "receive_frame",
    "receive_compressed",
    "receive_multicast",
    "transmit_bytes",
    "transmit_packets",
    "transmit_errs",
    "transmit_drop",
    "transmit_fifo",
    "transmit_colls",
    "transmit_carrier",
    "transmit_compressed",
];

/// Parses /proc/net/dev into (device, 16 counters).
pub fn parse(path: &Path, text: &str) -> Result<Vec<(String, [f64; 16])>, Error> {
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((dev, rest)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 16 {
            return Err(Error::parse(path, format!("too few fields in {line:?}")));
        }
        let mut v = [0.0; 16];
        for (i, s) in f.iter().take(16).enumerate() {
            v[i] = num(path, s)?;
        }
        out.push((dev.trim().to_string(), v));
    }
    Ok(out)
}

pub(crate) fn collect(ctx: &Ctx, out: &mut Families) -> Result<(), Error> {
    let path = ctx.proc("net/dev");
    for (dev, v) in parse(&path, &read(&path)?)? {
        if ctx
            .netdev_devices_exclude
            .as_ref()
            .is_some_and(|re| re.is_match(&dev))
        {
            continue;
        }
        let labels = [("device", dev.as_str())];
        for (col, v) in COLUMNS.iter().zip(v) {
            out.add(
                &format!("node_network_{col}_total"),
                &format!("Network device statistic {col}."),
                MetricType::Counter,
                &labels,
                v,
            );
        }
        let nh = ctx.sys(&format!("class/net/{dev}/statistics/rx_nohandler"));
        if let Some(v) = std::fs::read_to_string(nh)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
        {
            out.add(
                "node_network_receive_nohandler_total",
                "Network device statistic receive_nohandler.",
                MetricType::Counter,
                &labels,
                v,
            );
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
        let v = |n: &str, dev: &str| out.value(n, &[("device", dev)]);
        assert_eq!(
            v("node_network_receive_bytes_total", "ens3"),
            Some(9876543210.0)
        );
        assert_eq!(v("node_network_receive_drop_total", "ens3"), Some(14.0));
        assert_eq!(
            v("node_network_receive_multicast_total", "ens3"),
            Some(999.0)
        );
        assert_eq!(v("node_network_transmit_colls_total", "ens3"), Some(7.0));
        assert_eq!(v("node_network_transmit_carrier_total", "ens3"), Some(4.0));
        assert_eq!(v("node_network_transmit_packets_total", "lo"), Some(4000.0));
        assert_eq!(
            v("node_network_receive_nohandler_total", "ens3"),
            Some(17.0)
        );
        assert_eq!(
            out.get("node_network_receive_bytes_total").unwrap().help,
            "Network device statistic receive_bytes."
        );
        assert!(parse(Path::new("x"), "a\nb\n eth0: 1 2 3\n").is_err());
    }
}
