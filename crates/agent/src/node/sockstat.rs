//! node_exporter's `sockstat` collector: /proc/net/sockstat and sockstat6 as
//! `node_sockstat_<PROTO>_<field>`, plus `_mem_bytes` (pages × page size).

use super::{num, Ctx};
use crate::exposition::Families;
use crate::Error;

/// Adds the families of one sockstat file's text.
pub fn add(
    path: &std::path::Path,
    text: &str,
    ipv6: bool,
    page_size: f64,
    out: &mut Families,
) -> Result<(), Error> {
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        for kv in f.chunks(2) {
            let [k, v] = kv else {
                return Err(Error::parse(
                    path,
                    format!("odd number of fields in {line:?}"),
                ));
            };
            let v: f64 = num(path, v)?;
            if proto == "sockets" {
                if !ipv6 && *k == "used" {
                    out.gauge(
                        "node_sockstat_sockets_used",
                        "Number of IPv4 sockets in use.",
                        v,
                    );
                }
                continue;
            }
            out.gauge(
                &format!("node_sockstat_{proto}_{k}"),
                &format!("Number of {proto} sockets in state {k}."),
                v,
            );
            if *k == "mem" {
                out.gauge(
                    &format!("node_sockstat_{proto}_mem_bytes"),
                    &format!("Number of {proto} sockets in state mem_bytes."),
                    v * page_size,
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn collect(ctx: &Ctx, out: &mut Families) -> Result<(), Error> {
    let page = rustix::param::page_size() as f64;
    for (file, ipv6) in [("net/sockstat", false), ("net/sockstat6", true)] {
        let path = ctx.proc(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => add(&path, &text, ipv6, page, out)?,
            // No IPv6 (or no sockstat at all): nothing to export, like node_exporter.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
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
        let v = |n: &str| out.value(n, &[]);
        let page = rustix::param::page_size() as f64;
        assert_eq!(v("node_sockstat_sockets_used"), Some(230.0));
        assert_eq!(v("node_sockstat_TCP_inuse"), Some(12.0));
        assert_eq!(v("node_sockstat_TCP_tw"), Some(7.0));
        assert_eq!(v("node_sockstat_TCP_mem"), Some(3.0));
        assert_eq!(v("node_sockstat_TCP_mem_bytes"), Some(3.0 * page));
        assert_eq!(v("node_sockstat_UDP_mem_bytes"), Some(2.0 * page));
        assert_eq!(v("node_sockstat_FRAG_memory"), Some(0.0));
        assert_eq!(v("node_sockstat_TCP6_inuse"), Some(5.0));
        assert_eq!(v("node_sockstat_FRAG6_memory"), Some(0.0));
        assert_eq!(
            out.get("node_sockstat_TCP_alloc").unwrap().help,
            "Number of TCP sockets in state alloc."
        );
    }
}
