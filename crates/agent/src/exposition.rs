//! Metric families as collectors produce them, and the Prometheus text exposition format 0.0.4
//! that `/metrics` serves (`# HELP`/`# TYPE`, escaping, Go-style float formatting so that our output
//! reads like node_exporter's).

use std::collections::BTreeMap;
use std::fmt::Write;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's type, as written in `# TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// Monotonic counter.
    Counter,
    /// Gauge.
    Gauge,
    /// Untyped (node_exporter's vmstat fields).
    Untyped,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Untyped => "untyped",
        }
    }
}

/// One family: name, help, type and its series.
#[derive(Clone, Debug)]
pub struct Family {
    /// HELP text.
    pub help: String,
    /// TYPE.
    pub typ: MetricType,
    /// Series: label pairs sorted by name (without `__name__`) → value.
    pub series: BTreeMap<Vec<(String, String)>, f64>,
}

/// Metric families keyed by name, ordered by name like client_golang's output.
#[derive(Clone, Debug, Default)]
pub struct Families {
    map: BTreeMap<String, Family>,
}

impl Families {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample. The first call for a name fixes its help and type; a repeated label set
    /// keeps the first value (node_exporter dedups the same way).
    pub fn add(
        &mut self,
        name: &str,
        help: &str,
        typ: MetricType,
        labels: &[(&str, &str)],
        v: f64,
    ) {
        let fam = self.map.entry(name.to_string()).or_insert_with(|| Family {
            help: help.to_string(),
            typ,
            series: BTreeMap::new(),
        });
        let mut ls: Vec<(String, String)> = labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        ls.sort();
        fam.series.entry(ls).or_insert(v);
    }

    /// Shorthand for a gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, v: f64) {
        self.add(name, help, MetricType::Gauge, &[], v);
    }

    /// Shorthand for a counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, v: f64) {
        self.add(name, help, MetricType::Counter, &[], v);
    }

    /// Moves every family of `other` into `self`.
    pub fn extend(&mut self, other: Families) {
        for (name, fam) in other.map {
            match self.map.get_mut(&name) {
                Some(mine) => {
                    for (ls, v) in fam.series {
                        mine.series.entry(ls).or_insert(v);
                    }
                }
                None => {
                    self.map.insert(name, fam);
                }
            }
        }
    }

    /// A family by name.
    pub fn get(&self, name: &str) -> Option<&Family> {
        self.map.get(name)
    }

    /// The value of one series (labels in any order), for tests and callers.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut ls: Vec<(String, String)> = labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        ls.sort();
        self.map.get(name)?.series.get(&ls).copied()
    }

    /// Families in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Family)> {
        self.map.iter()
    }

    /// Family names in order.
    pub fn names(&self) -> Vec<&str> {
        self.map.keys().map(String::as_str).collect()
    }

    /// Number of series over all families.
    pub fn series_count(&self) -> usize {
        self.map.values().map(|f| f.series.len()).sum()
    }

    /// True when there is no family.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Renders the text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.series_count() * 64);
        for (name, fam) in &self.map {
            if fam.series.is_empty() {
                continue;
            }
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&fam.help));
            let _ = writeln!(out, "# TYPE {name} {}", fam.typ.as_str());
            for (labels, v) in &fam.series {
                out.push_str(name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (n, lv)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{n}=\"{}\"", escape_label_value(lv));
                    }
                    out.push('}');
                }
                out.push(' ');
                out.push_str(&format_value(*v));
                out.push('\n');
            }
        }
        out
    }
}

/// HELP escaping: backslash and newline.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label value escaping: backslash, double quote and newline.
fn escape_label_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Go's `FormatFloat(v, 'g', -1, 64)`, which client_golang writes.
pub use common::gofmt::format_g as format_value;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_format() {
        for (v, want) in [
            (0.0, "0"),
            (1.0, "1"),
            (2.0, "2"),
            (105403.0, "105403"),
            (4663913.0, "4.663913e+06"),
            (1e6, "1e+06"),
            (1480.82, "1480.82"),
            (1.795610776e9, "1.795610776e+09"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.01, "0.01"),
            (-2.5, "-2.5"),
            (8.753746999999999, "8.753746999999999"),
            (1.7956145827701406e9, "1.7956145827701406e+09"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(format_value(v), want, "{v}");
        }
        assert_eq!(format_value(f64::NAN), "NaN");
    }

    #[test]
    fn render_sorts_and_escapes() {
        let mut f = Families::new();
        f.add(
            "b_total",
            "Help with \\ and\nnewline.",
            MetricType::Counter,
            &[("z", "1"), ("a", "q\"\\\n")],
            3.0,
        );
        f.gauge("a", "A gauge.", 0.5);
        f.add(
            "b_total",
            "ignored",
            MetricType::Gauge,
            &[("a", "0"), ("z", "0")],
            1.0,
        );
        assert_eq!(
            f.render(),
            "# HELP a A gauge.\n# TYPE a gauge\na 0.5\n\
             # HELP b_total Help with \\\\ and\\nnewline.\n# TYPE b_total counter\n\
             b_total{a=\"0\",z=\"0\"} 1\nb_total{a=\"q\\\"\\\\\\n\",z=\"1\"} 3\n"
        );
        assert_eq!(f.value("b_total", &[("z", "0"), ("a", "0")]), Some(1.0));
    }
}
