//! node_exporter's `loadavg` collector: /proc/loadavg.

use std::path::Path;

use super::{num, read, Ctx};
use crate::exposition::Families;
use crate::Error;

/// Parses the three load averages.
pub fn parse(path: &Path, text: &str) -> Result<[f64; 3], Error> {
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.len() < 3 {
        return Err(Error::parse(path, "expected at least 3 fields"));
    }
    Ok([num(path, f[0])?, num(path, f[1])?, num(path, f[2])?])
}

pub(crate) fn collect(ctx: &Ctx, out: &mut Families) -> Result<(), Error> {
    let path = ctx.proc("loadavg");
    let [l1, l5, l15] = parse(&path, &read(&path)?)?;
    out.gauge("node_load1", "1m load average.", l1);
    out.gauge("node_load5", "5m load average.", l5);
    out.gauge("node_load15", "15m load average.", l15);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testutil;

    #[test]
    fn fixture() {
        let out = testutil::collect_fixture(collect);
        assert_eq!(out.value("node_load1", &[]), Some(0.52));
        assert_eq!(out.value("node_load5", &[]), Some(1.25));
        assert_eq!(out.value("node_load15", &[]), Some(2.0));
        assert!(parse(Path::new("x"), "1 2").is_err());
    }
}
