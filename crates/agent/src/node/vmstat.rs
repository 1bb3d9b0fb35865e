//! node_exporter's `vmstat` collector: /proc/vmstat fields matching `vmstat_fields` (default
//! `^(oom_kill|pgpg|pswp|pg.*fault).*`), untyped like node_exporter.

use super::{num, read, Ctx};
use crate::exposition::{Families, MetricType};
use crate::Error;

pub(crate) fn collect(ctx: &Ctx, out: &mut Families) -> Result<(), Error> {
    let path = ctx.proc("vmstat");
    for line in read(&path)?.lines() {
        let mut f = line.split_whitespace();
        let (Some(k), Some(v)) = (f.next(), f.next()) else {
            continue;
        };
        if !ctx.vmstat_fields.is_match(k) {
            continue;
        }
        out.add(
            &format!("node_vmstat_{k}"),
            &format!("/proc/vmstat information field {k}."),
            MetricType::Untyped,
            &[],
            num(&path, v)?,
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
            out.names(),
            vec![
                "node_vmstat_oom_kill",
                "node_vmstat_pgfault",
                "node_vmstat_pgmajfault",
                "node_vmstat_pgpgin",
                "node_vmstat_pgpgout",
                "node_vmstat_pswpin",
                "node_vmstat_pswpout"
            ]
        );
        assert_eq!(out.value("node_vmstat_pgfault", &[]), Some(5555555.0));
        assert_eq!(
            out.get("node_vmstat_pgfault").unwrap().typ,
            MetricType::Untyped
        );
    }
}
