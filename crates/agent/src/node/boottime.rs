//! `node_boot_time_seconds` from the `btime` line of /proc/stat (node_exporter's `stat` collector
//! exports it on Linux; the separate `boottime` collector is the BSD/Solaris one).

use super::{read, stat, Ctx};
use crate::exposition::Families;
use crate::Error;

pub(crate) fn collect(ctx: &Ctx, out: &mut Families) -> Result<(), Error> {
    let path = ctx.proc("stat");
    let s = stat::parse(&path, &read(&path)?)?;
    out.gauge(
        "node_boot_time_seconds",
        "Node boot time, in unixtime.",
        s.btime,
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
        assert_eq!(out.value("node_boot_time_seconds", &[]), Some(1760000000.0));
        assert!(out.render().contains("node_boot_time_seconds 1.76e+09\n"));
    }
}
