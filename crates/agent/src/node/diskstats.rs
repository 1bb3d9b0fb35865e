//! node_exporter's `diskstats` collector: /proc/diskstats with sectors → bytes (×512) and
//! milliseconds → seconds, partitions/ram/loop excluded by default, and `node_disk_info` plus the
//! udev-derived info families from the udev database.

use std::collections::HashMap;
use std::path::Path;

use super::{num, read, Ctx};
use crate::exposition::{Families, MetricType};
use crate::Error;

const SECTOR: f64 = 512.0;
const MS: f64 = 0.001;

/// One /proc/diskstats line.
#[derive(Debug, PartialEq)]
pub struct DiskStat {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Device name.
    pub name: String,
    /// The statistics after the name (11, 15 or 17 of them depending on the kernel).
    pub stats: Vec<f64>,
}

/// Parses /proc/diskstats.
pub fn parse(path: &Path, text: &str) -> Result<Vec<DiskStat>, Error> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 14 {
            return Err(Error::parse(path, format!("too few fields in {line:?}")));
        }
        out.push(DiskStat {
            major: num(path, f[0])?,
            minor: num(path, f[1])?,
            name: f[2].to_string(),
            stats: f[3..]
                .iter()
                .map(|s| num(path, s))
                .collect::<Result<_, _>>()?,
        });
    }
    Ok(out)
}

/// (name, help, type, scale) per /proc/diskstats column, node_exporter's order.
const COLUMNS: [(&str, &str, MetricType, f64); 17] = [
    (
        "node_disk_reads_completed_total",
        "The total number of reads completed successfully.",
        MetricType::Counter,
        1.0,
    ),
    (
        "node_disk_reads_merged_total",
        "The total number of reads merged.",
        MetricType::Counter,
        1.0,
    ),
    (
        "node_disk_read_bytes_total",
        "The total number of bytes read successfully.",
        MetricType::Counter,
        SECTOR,
    ),
    (
        "node_disk_read_time_seconds_total",
        "The total number of seconds spent by all reads.",
        MetricType::Counter,
        MS,
    ),
    (
        "node_disk_writes_completed_total",
        "The total number of writes completed successfully.",
        MetricType::Counter,
        1.0,
    ),
    (
        "node_disk_writes_merged_total",
        "The number of writes merged.",
        MetricType::Counter,
        1.0,
    ),
    (
        "node_disk_written_bytes_total",
        "The total number of bytes written successfully.",
        MetricType::Counter,
        SECTOR,
    ),
    (
        "node_disk_write_time_seconds_total",
        "This is the total number of seconds spent by all writes.",
        MetricType::Counter,
        MS,
    ),
    (
        "node_disk_io_now",
        "The number of I/Os currently in progress.",
        MetricType::Gauge,
        1.0,
    ),
    (
        "node_disk_io_time_seconds_total",
        "Total seconds spent doing I/Os.",
        MetricType::Counter,
        MS,
    ),
    (
        "node_disk_io_time_weighted_seconds_total",
        "The weighted # of seconds spent doing I/Os.",
        MetricType::Counter,
        MS,
    ),
    (
        "node_disk_discards_completed_total",
        "The total number of discards completed successfully.",
        MetricType::Counter,
        1.0,
    ),
    (
        "node_disk_discards_merged_total",
        "The total number of discards merged.",
        MetricType::Counter,
        1.0,
    ),
    // node_exporter exports discarded sectors unscaled.
    (
        "node_disk_discarded_sectors_total",
        "The total number of sectors discarded successfully.",
        MetricType::Counter,
        1.0,
    ),
    (
        "node_disk_discard_time_seconds_total",
        "This is the total number of seconds spent by all discards.",
        MetricType::Counter,
        MS,
    ),
    (
        "node_disk_flush_requests_total",
        "The total number of flush requests completed successfully",
        MetricType::Counter,
        1.0,
    ),
    (
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        MetricType::Counter,
        MS,
    ),
];

/// Reads `E:KEY=value` properties of a block device from the udev database.
pub fn udev_properties(dir: &Path, major: u32, minor: u32) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(dir.join(format!("b{major}:{minor}"))) {
        for line in text.lines() {
            if let Some((k, v)) = line.strip_prefix("E:").and_then(|l| l.split_once('=')) {
                out.insert(k.to_string(), v.to_string());
            }
        }
    }
    out
}

pub(crate) fn collect(ctx: &Ctx, out: &mut Families) -> Result<(), Error> {
    let path = ctx.proc("diskstats");
    for d in parse(&path, &read(&path)?)? {
        if ctx.disk_devices_exclude.is_match(&d.name) {
            continue;
        }
        let dev = d.name.as_str();
        let info = udev_properties(&ctx.cfg.udev_data, d.major, d.minor);
        let p = |k: &str| info.get(k).map(String::as_str).unwrap_or("");
        out.add(
            "node_disk_info",
            "Info of /sys/block/<block_device>.",
            MetricType::Gauge,
            &[
                ("device", dev),
                ("major", &d.major.to_string()),
                ("minor", &d.minor.to_string()),
                ("path", p("ID_PATH")),
                ("wwn", p("ID_WWN")),
                ("model", p("ID_MODEL")),
                ("serial", p("ID_SERIAL_SHORT")),
                ("revision", p("ID_REVISION")),
            ],
            1.0,
        );
        for ((name, help, typ, scale), v) in COLUMNS.iter().zip(&d.stats) {
            out.add(name, help, *typ, &[("device", dev)], v * scale);
        }
        if !p("ID_FS_TYPE").is_empty() {
            out.add(
                "node_disk_filesystem_info",
                "Info about disk filesystem.",
                MetricType::Gauge,
                &[
                    ("device", dev),
                    ("type", p("ID_FS_TYPE")),
                    ("usage", p("ID_FS_USAGE")),
                    ("uuid", p("ID_FS_UUID")),
                    ("version", p("ID_FS_VERSION")),
                ],
                1.0,
            );
        }
        if !p("DM_NAME").is_empty() {
            out.add(
                "node_disk_device_mapper_info",
                "Info about disk device mapper.",
                MetricType::Gauge,
                &[
                    ("device", dev),
                    ("name", p("DM_NAME")),
                    ("uuid", p("DM_UUID")),
                    ("vg_name", p("DM_VG_NAME")),
                    ("lv_name", p("DM_LV_NAME")),
                    ("lv_layer", p("DM_LV_LAYER")),
                ],
                1.0,
            );
        }
        if !p("ID_ATA").is_empty() {
            for (key, name, help) in [
                (
                    "ID_ATA_WRITE_CACHE",
                    "node_disk_ata_write_cache",
                    "ATA disk has a write cache.",
                ),
                (
                    "ID_ATA_WRITE_CACHE_ENABLED",
                    "node_disk_ata_write_cache_enabled",
                    "ATA disk has its write cache enabled.",
                ),
                (
                    "ID_ATA_ROTATION_RATE_RPM",
                    "node_disk_ata_rotation_rate_rpm",
                    "ATA disk rotation rate in RPMs (0 for SSDs).",
                ),
            ] {
                if let Some(v) = info.get(key).and_then(|v| v.parse::<f64>().ok()) {
                    out.add(name, help, MetricType::Gauge, &[("device", dev)], v);
                }
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
        let v = |n: &str, dev: &str| out.value(n, &[("device", dev)]);
        // Partitions and loop devices are excluded; nvme0n1p1 too; dm-0 and nvme0n1 stay.
        assert_eq!(v("node_disk_reads_completed_total", "sda"), Some(1000.0));
        assert_eq!(v("node_disk_reads_completed_total", "sda1"), None);
        assert_eq!(v("node_disk_reads_completed_total", "loop0"), None);
        assert_eq!(v("node_disk_reads_completed_total", "nvme0n1p1"), None);
        assert_eq!(
            v("node_disk_read_bytes_total", "sda"),
            Some(40000.0 * 512.0)
        );
        assert_eq!(v("node_disk_read_time_seconds_total", "sda"), Some(1.5));
        assert_eq!(
            v("node_disk_written_bytes_total", "sda"),
            Some(80000.0 * 512.0)
        );
        assert_eq!(v("node_disk_io_now", "sda"), Some(1.0));
        assert_eq!(
            v("node_disk_io_time_weighted_seconds_total", "sda"),
            Some(4.1)
        );
        assert_eq!(v("node_disk_discarded_sectors_total", "sda"), Some(4096.0));
        assert_eq!(
            v("node_disk_flush_requests_time_seconds_total", "sda"),
            Some(0.06)
        );
        // Old kernel line (11 stats): no discard or flush series.
        assert_eq!(v("node_disk_io_time_seconds_total", "nvme0n1"), Some(0.005));
        assert_eq!(v("node_disk_discards_completed_total", "nvme0n1"), None);
        // 15 stats: discards, no flush.
        assert_eq!(v("node_disk_discards_completed_total", "dm-0"), Some(0.0));
        assert_eq!(v("node_disk_flush_requests_total", "dm-0"), None);
        assert_eq!(
            out.value(
                "node_disk_info",
                &[
                    ("device", "sda"),
                    ("major", "8"),
                    ("minor", "0"),
                    ("path", "pci-0000:00:1f.2-ata-1"),
                    ("wwn", "0x5000000000000001"),
                    ("model", "EXAMPLE_DISK_1TB"),
                    ("serial", "X1"),
                    ("revision", "1.0A"),
                ]
            ),
            Some(1.0)
        );
        assert_eq!(v("node_disk_ata_rotation_rate_rpm", "sda"), Some(0.0));
        assert_eq!(
            out.get("node_disk_device_mapper_info")
                .unwrap()
                .series
                .len(),
            1
        );
        assert_eq!(
            out.get("node_disk_filesystem_info").unwrap().series.len(),
            1
        );
    }
}
