//! `ip("…")` matching for line filters (`|= ip("10.0.0.0/8")`) and label filters
//! (`| addr = ip("…")`).
//!
//! A pattern is one address, a CIDR prefix (host bits may be set: `192.168.4.5/16`), or an
//! inclusive range `from-to` of one family. IPv4 and IPv6 never match each other (an
//! IPv4-mapped IPv6 address is IPv6), as with Go's `netip`.
//!
//! Matching scans the text for IP-looking tokens the way Loki does: at each position a cheap
//! hint (a digit followed by a `.` within three bytes; or a short hex run then `:`) selects the
//! IPv4 alphabet `[0-9.]` or the IPv6 alphabet `[0-9A-Fa-f:.]`; the longest run of that alphabet
//! is parsed, and scanning resumes after it. Label filters use the same scan over the value.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A compiled `ip("…")` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFilter {
    /// A single address.
    Addr(IpAddr),
    /// A CIDR prefix: network address (host bits cleared) and prefix length.
    Prefix(IpAddr, u8),
    /// An inclusive range of one family, `from <= to`.
    Range(IpAddr, IpAddr),
}

impl IpFilter {
    /// Parses `192.168.0.1`, `192.168.0.0/24`, `192.168.0.1-192.168.0.255` or their IPv6
    /// forms. No spaces are allowed.
    pub fn parse(pattern: &str) -> Result<IpFilter, String> {
        let bad = || format!("ip: invalid pattern: {pattern:?}");
        if let Some(a) = parse_addr(pattern) {
            return Ok(IpFilter::Addr(a));
        }
        if let Some((addr, bits)) = pattern.split_once('/') {
            let a = parse_addr(addr).ok_or_else(bad)?;
            let max = if a.is_ipv4() { 32 } else { 128 };
            if bits.is_empty() || bits.len() > 3 || !bits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            if bits.len() > 1 && bits.starts_with('0') {
                return Err(bad());
            }
            let n: u8 = bits.parse().map_err(|_| bad())?;
            if n > max {
                return Err(bad());
            }
            return Ok(IpFilter::Prefix(mask(a, n), n));
        }
        if let Some((from, to)) = pattern.split_once('-') {
            let (f, t) = (
                parse_addr(from).ok_or_else(bad)?,
                parse_addr(to).ok_or_else(bad)?,
            );
            if f.is_ipv4() != t.is_ipv4() || t < f {
                return Err(bad());
            }
            return Ok(IpFilter::Range(f, t));
        }
        Err(bad())
    }

    /// Whether the address `ip` falls in the pattern.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match *self {
            IpFilter::Addr(a) => a == ip,
            IpFilter::Prefix(net, n) => net.is_ipv4() == ip.is_ipv4() && mask(ip, n) == net,
            IpFilter::Range(f, t) => f.is_ipv4() == ip.is_ipv4() && f <= ip && ip <= t,
        }
    }

    /// Label filter `| label = ip("…")`: whether the value holds an address in the pattern
    /// (Loki scans the value like a line, so `10.0.0.1:8080` matches `10.0.0.0/8`).
    pub fn matches_value(&self, value: &str) -> bool {
        self.line_contains_match(value.as_bytes())
    }

    /// Line filter `|= ip("…")`: whether any IP-looking token in the line is in the pattern.
    pub fn line_contains_match(&self, line: &[u8]) -> bool {
        let n = line.len();
        let mut i = 0;
        while i < n {
            let v4 = i + 3 < n
                && line[i].is_ascii_digit()
                && (line[i + 1] == b'.' || line[i + 2] == b'.' || line[i + 3] == b'.');
            let v6 = !v4 && i + 4 < n && ipv6_hint(&line[i..i + 5]);
            if v4 || v6 {
                let accept: fn(u8) -> bool = if v4 {
                    |c| c.is_ascii_digit() || c == b'.'
                } else {
                    |c| c.is_ascii_hexdigit() || c == b':' || c == b'.'
                };
                let len = line[i..].iter().position(|&c| !accept(c)).unwrap_or(n - i);
                let tok = std::str::from_utf8(&line[i..i + len]).unwrap_or("");
                if let Some(ip) = parse_addr(tok) {
                    if self.contains(ip) {
                        return true;
                    }
                }
                // Loki skips the token and then one more byte.
                i += len + 1;
                continue;
            }
            i += 1;
        }
        false
    }
}

fn ipv6_hint(p: &[u8]) -> bool {
    let h = |c: u8| c.is_ascii_hexdigit();
    (p[0] == b':' && p[1] == b':' && h(p[2]))
        || (h(p[0]) && p[1] == b':')
        || (h(p[0]) && h(p[1]) && p[2] == b':')
        || (h(p[0]) && h(p[1]) && h(p[2]) && p[3] == b':')
        || (h(p[0]) && h(p[1]) && h(p[2]) && h(p[3]) && p[4] == b':')
}

/// Parses an address as Go's `netip.ParseAddr` would (no zones here): IPv4 dotted quads
/// without leading zeros, or any IPv6 text form including an embedded IPv4 tail.
fn parse_addr(s: &str) -> Option<IpAddr> {
    if s.contains(':') {
        return s.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for o in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        if p.len() > 1 && p.starts_with('0') {
            return None;
        }
        *o = p.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

/// Clears the host bits of `a` beyond the first `bits`.
fn mask(a: IpAddr, bits: u8) -> IpAddr {
    match a {
        IpAddr::V4(v) => {
            let m = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits.min(32)))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(v) & m))
        }
        IpAddr::V6(v) => {
            let m = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits.min(128)))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(v) & m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::test_util::fuzz_inputs;

    fn f(p: &str) -> IpFilter {
        IpFilter::parse(p).unwrap()
    }

    #[test]
    fn parse_patterns() {
        assert!(matches!(f("192.0.2.0"), IpFilter::Addr(_)));
        assert!(matches!(f("::1"), IpFilter::Addr(_)));
        assert_eq!(
            f("192.168.4.5/16"),
            IpFilter::Prefix("192.168.0.0".parse().unwrap(), 16)
        );
        assert!(matches!(f("2001:db8::/32"), IpFilter::Prefix(_, 32)));
        assert!(matches!(
            f("192.168.0.1-192.189.10.12"),
            IpFilter::Range(..)
        ));
        assert!(matches!(f("2001:db8::1-2001:db8::8"), IpFilter::Range(..)));
        assert!(matches!(f("0.0.0.0/0"), IpFilter::Prefix(_, 0)));
        for bad in [
            "",
            "foo",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1.2.3.4/08",
            "::1/129",
            "1.2.3.4 - 1.2.3.5",
            "1.2.3.5-1.2.3.4",
            "1.2.3.4-::1",
            "1.2.3.4-",
            "1.2.3.4/8/8",
        ] {
            assert!(IpFilter::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn line_filter() {
        let lines = [
            r#"3.180.71.3 - - [17/May/2015:08:05:32 +0000] "GET /downloads/product_1 HTTP/1.1" 304 0"#,
            r#"93.180.71.3 - - [17/May/2015:08:05:26 +0000] "GET /downloads/product_1 HTTP/1.1" 404 324"#,
        ];
        let single = f("3.180.71.3");
        assert!(single.line_contains_match(lines[0].as_bytes()));
        assert!(!single.line_contains_match(lines[1].as_bytes()));
        let cidr = f("93.180.0.0/16");
        assert!(!cidr.line_contains_match(lines[0].as_bytes()));
        assert!(cidr.line_contains_match(lines[1].as_bytes()));
        let range = f("192.168.4.5-192.168.4.20");
        assert!(range.line_contains_match(b"client=192.168.4.20:443 ok"));
        assert!(!range.line_contains_match(b"client=192.168.4.21 ok"));
        assert!(!range.line_contains_match(b""));
        let v6 = f("2001:db8::/32");
        assert!(v6.line_contains_match(b"from [2001:db8::1]:80"));
        assert!(v6.line_contains_match(b"2001:db8:ffff::abcd"));
        assert!(!v6.line_contains_match(b"2001:db9::1 x"));
        assert!(f("::1").line_contains_match(b"addr ::1 port"));
        // families never cross
        assert!(!f("1.2.3.4").line_contains_match(b"::ffff:1.2.3.4 x"));
        // not an address: leading zero
        assert!(!f("1.2.3.4").line_contains_match(b"01.2.3.4"));
        // unicode around the address
        assert!(f("10.0.0.0/8").line_contains_match("→10.1.2.3←".as_bytes()));
    }

    #[test]
    fn label_filter() {
        let p = f("192.168.4.5/16");
        assert!(p.matches_value("192.168.4.2"));
        assert!(p.matches_value("192.168.255.255"));
        assert!(!p.matches_value("192.169.0.1"));
        assert!(!p.matches_value(""));
        assert!(!f("192.168.4.2").matches_value("192.168.4.20"));
        assert!(f("2001:db8::1-2001:db8::8").matches_value("2001:db8::5"));
        assert!(!f("2001:db8::1-2001:db8::8").matches_value("2001:db8::9"));
    }

    #[test]
    fn fuzz_never_panics() {
        let frags = [
            "1", "2", ".", ":", "::", "f", "/", "-", "255", "0", " ", "é", "a",
        ];
        let filters = [f("0.0.0.0/0"), f("::/0"), f("1.2.3.4-1.2.3.9")];
        for input in fuzz_inputs(&frags, 20_000) {
            for fl in &filters {
                let _ = fl.line_contains_match(&input);
            }
            if let Ok(s) = std::str::from_utf8(&input) {
                let _ = IpFilter::parse(s);
            }
        }
        assert!(f("0.0.0.0/0").line_contains_match(b"x 10.0.0.1 y"));
        assert!(f("::/0").line_contains_match(b"x fe80::1 y"));
    }
}
