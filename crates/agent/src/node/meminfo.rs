//! node_exporter's `meminfo` collector: every /proc/meminfo field as `node_memory_<Field>`, `kB`
//! values ×1024 with a `_bytes` suffix, `(x)` in names turned into `_x`.

use std::path::Path;

use super::{num, read, Ctx};
use crate::exposition::{Families, MetricType};
use crate::Error;

/// Parses /proc/meminfo into (node_exporter key, value).
pub fn parse(path: &Path, text: &str) -> Result<Vec<(String, f64)>, Error> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 2 {
            return Err(Error::parse(path, format!("invalid line {line:?}")));
        }
        let mut v: f64 = num(path, f[1])?;
        let raw = f[0].strip_suffix(':').unwrap_or(f[0]);
        // Active(anon) -> Active_anon
        let mut key = match (raw.find('('), raw.rfind(')')) {
            (Some(a), Some(b)) if a < b => {
                format!("{}_{}{}", &raw[..a], &raw[a + 1..b], &raw[b + 1..])
            }
            _ => raw.to_string(),
        };
        match f.len() {
            2 => {}
            3 => {
                v *= 1024.0;
                key.push_str("_bytes");
            }
            _ => return Err(Error::parse(path, format!("invalid line {line:?}"))),
        }
        out.push((key, v));
    }
    Ok(out)
}

pub(crate) fn collect(ctx: &Ctx, out: &mut Families) -> Result<(), Error> {
    let path = ctx.proc("meminfo");
    for (k, v) in parse(&path, &read(&path)?)? {
        let typ = if k.ends_with("_total") {
            MetricType::Counter
        } else {
            MetricType::Gauge
        };
        out.add(
            &format!("node_memory_{k}"),
            &format!("Memory information field {k}."),
            typ,
            &[],
            v,
        );
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
            out.value("node_memory_MemTotal_bytes", &[]),
            Some(8000000.0 * 1024.0)
        );
        assert_eq!(
            out.value("node_memory_Active_anon_bytes", &[]),
            Some(1500000.0 * 1024.0)
        );
        assert_eq!(out.value("node_memory_HugePages_Total", &[]), Some(0.0));
        let fam = out.get("node_memory_MemFree_bytes").unwrap();
        assert_eq!(fam.help, "Memory information field MemFree_bytes.");
        assert_eq!(fam.typ, MetricType::Gauge);
        assert!(parse(Path::new("x"), "MemTotal: x kB").is_err());
    }
}
