//! node_exporter's `filefd` collector: /proc/sys/fs/file-nr (allocated, unused, maximum).

use std::path::Path;

use super::{num, read, Ctx};
use crate::exposition::Families;
use crate::Error;

/// Parses (allocated, maximum).
pub fn parse(path: &Path, text: &str) -> Result<(f64, f64), Error> {
    let f: Vec<&str> = text.split('\t').map(str::trim).collect();
    if f.len() < 3 {
        return Err(Error::parse(path, "expected 3 tab-separated fields"));
    }
    Ok((num(path, f[0])?, num(path, f[2])?))
}

pub(crate) fn collect(ctx: &Ctx, out: &mut Families) -> Result<(), Error> {
    let path = ctx.proc("sys/fs/file-nr");
    let (alloc, max) = parse(&path, &read(&path)?)?;
    out.gauge(
        "node_filefd_allocated",
        "File descriptor statistics: allocated.",
        alloc,
    );
    out.gauge(
        "node_filefd_maximum",
        "File descriptor statistics: maximum.",
        max,
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
        assert_eq!(out.value("node_filefd_allocated", &[]), Some(1920.0));
        assert_eq!(
            out.value("node_filefd_maximum", &[]),
            Some(9.223372036854776e18)
        );
    }
}
