//! node_exporter's `uname` collector: `node_uname_info` from uname(2).

use crate::exposition::{Families, MetricType};
use crate::Error;

pub(crate) fn collect(out: &mut Families) -> Result<(), Error> {
    let u = rustix::system::uname();
    let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
    out.add(
        "node_uname_info",
        "Labeled system information as provided by the uname system call.",
        MetricType::Gauge,
        &[
            ("sysname", &s(u.sysname())),
            ("release", &s(u.release())),
            ("version", &s(u.version())),
            ("machine", &s(u.machine())),
            ("nodename", &s(u.nodename())),
            ("domainname", &s(u.domainname())),
        ],
        1.0,
    );
    Ok(())
}

/// This host's name (uname nodename), the default `instance` label of forwarded series.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_has_node_exporter_labels() {
        let mut out = Families::new();
        collect(&mut out).unwrap();
        let fam = out.get("node_uname_info").unwrap();
        let (labels, v) = fam.series.iter().next().unwrap();
        let names: Vec<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "domainname",
                "machine",
                "nodename",
                "release",
                "sysname",
                "version"
            ]
        );
        assert_eq!(labels[4].1, "Linux");
        assert_eq!(*v, 1.0);
        assert!(!hostname().is_empty());
    }
}
