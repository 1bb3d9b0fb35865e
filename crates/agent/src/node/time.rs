//! node_exporter's `time` collector: the clock, the time zone offset, and clocksources from sysfs.

use std::path::Path;

use super::Ctx;
use crate::exposition::{Families, MetricType};
use crate::Error;

pub(crate) fn collect(ctx: &Ctx, out: &mut Families) -> Result<(), Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    out.gauge(
        "node_time_seconds",
        "System time in seconds since epoch (1970).",
        now.as_secs_f64(),
    );
    let offset = chrono::Local::now().offset().local_minus_utc();
    let zone = zone_name(now.as_secs() as i64).unwrap_or_else(|| {
        if offset == 0 {
            "UTC".into()
        } else {
            String::new()
        }
    });
    out.add(
        "node_time_zone_offset_seconds",
        "System time zone offset in seconds.",
        MetricType::Gauge,
        &[("time_zone", &zone)],
        offset as f64,
    );
    clocksources(&ctx.sys("devices/system/clocksource"), out);
    Ok(())
}

/// `node_time_clocksource_{available,current}_info` per `clocksourceN` directory.
fn clocksources(dir: &Path, out: &mut Families) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut devs: Vec<(u32, std::path::PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            Some((n.strip_prefix("clocksource")?.parse().ok()?, e.path()))
        })
        .collect();
    devs.sort();
    for (i, path) in devs {
        let dev = i.to_string();
        if let Ok(a) = std::fs::read_to_string(path.join("available_clocksource")) {
            for cs in a.split_whitespace() {
                out.add(
                    "node_time_clocksource_available_info",
                    "Available clocksources read from '/sys/devices/system/clocksource'.",
                    MetricType::Gauge,
                    &[("device", &dev), ("clocksource", cs)],
                    1.0,
                );
            }
        }
        if let Ok(c) = std::fs::read_to_string(path.join("current_clocksource")) {
            out.add(
                "node_time_clocksource_current_info",
                "Current clocksource read from '/sys/devices/system/clocksource'.",
                MetricType::Gauge,
                &[("device", &dev), ("clocksource", c.trim())],
                1.0,
            );
        }
    }
}

/// The zone abbreviation (`UTC`, `CET`, …) in effect at `now` per `$TZ` or /etc/localtime, as Go's
/// `time.Now().Zone()` reports it.
fn zone_name(now: i64) -> Option<String> {
    match std::env::var("TZ") {
        Ok(tz) if tz.is_empty() || tz == "UTC" || tz == ":UTC" => Some("UTC".into()),
        Ok(tz) => {
            let name = tz.trim_start_matches(':');
            let path = if name.starts_with('/') {
                name.to_string()
            } else {
                format!("/usr/share/zoneinfo/{name}")
            };
            tzif_abbrev(&std::fs::read(path).ok()?, now)
        }
        Err(_) => tzif_abbrev(&std::fs::read("/etc/localtime").ok()?, now),
    }
}

/// The abbreviation in effect at `now` from TZif data (RFC 8536), using the 64-bit block when present.
pub fn tzif_abbrev(data: &[u8], now: i64) -> Option<String> {
    fn be32(d: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
    }
    fn counts(d: &[u8]) -> Option<[usize; 6]> {
        if d.get(..4)? != b"TZif" {
            return None;
        }
        let mut c = [0usize; 6];
        for (i, slot) in c.iter_mut().enumerate() {
            *slot = be32(d, 20 + i * 4)? as usize;
        }
        Some(c)
    }
    let [isut, isstd, leap, timecnt, typecnt, charcnt] = counts(data)?;
    let (d, tsize) = if data[4] >= b'2' {
        let v1_len = 44 + timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut;
        (data.get(v1_len..)?, 8)
    } else {
        (data, 4)
    };
    let [_, _, _, timecnt, typecnt, charcnt] = counts(d)?;
    let times = 44;
    let idxs = times + timecnt * tsize;
    let types = idxs + timecnt;
    let chars = types + typecnt * 6;
    let mut ty = 0usize;
    for i in 0..timecnt {
        let t = if tsize == 8 {
            i64::from_be_bytes(d.get(times + i * 8..times + i * 8 + 8)?.try_into().ok()?)
        } else {
            be32(d, times + i * 4)? as i32 as i64
        };
        if t > now {
            break;
        }
        ty = *d.get(idxs + i)? as usize;
    }
    let abbr_at = *d.get(types + ty * 6 + 5)? as usize;
    let abbrs = d.get(chars..chars + charcnt)?;
    let rest = abbrs.get(abbr_at..)?;
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testutil;

    #[test]
    fn fixture() {
        let out = testutil::collect_fixture(collect);
        let now = out.value("node_time_seconds", &[]).unwrap();
        assert!(now > 1.7e9);
        let c = |n: &str, cs: &str| out.value(n, &[("device", "0"), ("clocksource", cs)]);
        assert_eq!(c("node_time_clocksource_available_info", "hpet"), Some(1.0));
        assert_eq!(
            c("node_time_clocksource_available_info", "acpi_pm"),
            Some(1.0)
        );
        assert_eq!(c("node_time_clocksource_current_info", "tsc"), Some(1.0));
        assert_eq!(
            out.get("node_time_zone_offset_seconds")
                .unwrap()
                .series
                .len(),
            1
        );
    }

    #[test]
    fn tzif_v1_transitions() {
        // A made-up zone: "AAA" (+0) until t=1000, then "BBBT" (+3600).
        let mut d = b"TZif".to_vec();
        d.extend([0u8; 16]);
        for c in [0u32, 0, 0, 1, 2, 9] {
            d.extend(c.to_be_bytes());
        }
        d.extend(1000i32.to_be_bytes());
        d.push(1);
        d.extend(0i32.to_be_bytes());
        d.extend([0, 0]);
        d.extend(3600i32.to_be_bytes());
        d.extend([1, 4]);
        d.extend(b"AAA\0BBBT\0");
        assert_eq!(tzif_abbrev(&d, 10).as_deref(), Some("AAA"));
        assert_eq!(tzif_abbrev(&d, 5000).as_deref(), Some("BBBT"));
        assert_eq!(tzif_abbrev(b"nope", 0), None);
    }
}
