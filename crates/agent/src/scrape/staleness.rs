//! What one scrape of one target produces: the target's labels merged into every sample
//! (`honor_labels`), `metric_relabel_configs`, `sample_limit`, the five report series and
//! staleness markers.
//!
//! [`TargetState`] remembers the series of the previous successful scrape. A series that is gone
//! from the next scrape gets a staleness marker (Prometheus' special NaN) at the new scrape's
//! time, so queries stop returning it at once instead of after the 5-minute lookback; a failed
//! scrape marks every previous series stale (and writes `up` 0); a target that stops being
//! discovered marks its series and its report series stale ([`TargetState::stop`]). As in
//! Prometheus, series with an explicit timestamp (under `honor_timestamps`) are not tracked.

use std::collections::{BTreeMap, HashMap};

use proto::prometheus::{Label, MetricMetadata, Sample, TimeSeries};

use super::parse::Exposition;
use super::relabel::Relabeler;

/// Bit pattern of Prometheus' staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the staleness marker (exact bits; an ordinary NaN is not).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Metadata is re-sent at least this often even when unchanged (Prometheus' default
/// `metadata_config.send_interval`).
const METADATA_RESEND_MS: i64 = 60_000;

/// The names of the series every scrape writes about itself.
pub const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// How the samples of a job are labelled and limited.
pub struct SampleRules<'a> {
    /// Exposed labels win over target labels.
    pub honor_labels: bool,
    /// Explicit exposition timestamps are kept.
    pub honor_timestamps: bool,
    /// `metric_relabel_configs`.
    pub metric_relabel: &'a Relabeler,
    /// Most samples after relabeling; 0 is unlimited.
    pub sample_limit: u64,
}

/// A series' labels, sorted by name, including `__name__`.
type Key = Vec<(String, String)>;

/// Per-target memory between scrapes.
#[derive(Default)]
pub struct TargetState {
    /// Series of the last successful scrape → whether staleness is tracked for it.
    prev: HashMap<Key, bool>,
    /// Timestamp of the last sample written, so that a stop marker never precedes it.
    last_ts: i64,
    /// Fingerprint of the metadata last sent, and when.
    meta_sent: Option<(u64, i64)>,
}

/// The outcome of one scrape, for logs and counters.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The error of a failed scrape.
    pub error: Option<String>,
    /// Samples in the exposition.
    pub scraped: usize,
    /// Samples kept after metric relabeling (and deduplication).
    pub post_relabel: usize,
    /// Series not in the previous scrape.
    pub added: usize,
}

/// What a scrape writes.
pub struct Output {
    /// Samples, staleness markers and report series, labels sorted.
    pub series: Vec<TimeSeries>,
    /// Metadata of the target's families, when it changed or is due again.
    pub metadata: Vec<MetricMetadata>,
    /// Counts and error.
    pub report: Report,
}

impl TargetState {
    /// Turns one scrape (the parsed exposition or the error) at `ts_ms`, which took
    /// `duration_s`, into series for target `labels` (sorted, final).
    pub fn apply(
        &mut self,
        rules: &SampleRules<'_>,
        labels: &[(String, String)],
        result: Result<Exposition, String>,
        ts_ms: i64,
        duration_s: f64,
    ) -> Output {
        let mut series = Vec::new();
        let mut metadata = Vec::new();
        let report = match result {
            Err(e) => {
                self.fail(&mut series, ts_ms);
                Report {
                    error: Some(e),
                    scraped: 0,
                    post_relabel: 0,
                    added: 0,
                }
            }
            Ok(exp) => {
                let scraped = exp.samples.len();
                let mut kept: Vec<(Key, f64, i64, bool)> = Vec::with_capacity(scraped);
                let mut seen: HashMap<Key, ()> = HashMap::with_capacity(scraped);
                for s in exp.samples {
                    let mut ls = merge_labels(labels, s.labels, s.name, rules.honor_labels);
                    if !rules.metric_relabel.is_empty() && !rules.metric_relabel.process(&mut ls) {
                        continue;
                    }
                    ls.retain(|_, v| !v.is_empty());
                    if !ls.contains_key("__name__") {
                        continue;
                    }
                    let key: Key = ls.into_iter().collect();
                    // A repeated series keeps its first sample, as Prometheus rejects the rest.
                    if seen.insert(key.clone(), ()).is_some() {
                        continue;
                    }
                    let (t, explicit) = match s.timestamp_ms {
                        Some(t) if rules.honor_timestamps => (t, true),
                        _ => (ts_ms, false),
                    };
                    kept.push((key, s.value, t, explicit));
                }
                let post_relabel = kept.len();
                if rules.sample_limit > 0 && post_relabel as u64 > rules.sample_limit {
                    self.fail(&mut series, ts_ms);
                    Report {
                        error: Some(format!(
                            "sample_limit exceeded: {post_relabel} samples > {}",
                            rules.sample_limit
                        )),
                        scraped,
                        post_relabel,
                        added: 0,
                    }
                } else {
                    let mut next: HashMap<Key, bool> = HashMap::with_capacity(kept.len());
                    let mut added = 0;
                    for (key, v, t, explicit) in kept {
                        if !self.prev.contains_key(&key) {
                            added += 1;
                        }
                        series.push(ts(&key, v, t));
                        next.insert(key, !explicit);
                    }
                    for (key, tracked) in &self.prev {
                        if *tracked && !next.get(key).copied().unwrap_or(false) {
                            series.push(ts(key, stale_nan(), ts_ms));
                        }
                    }
                    self.prev = next;
                    metadata = self.metadata_due(&exp.metadata, ts_ms);
                    Report {
                        error: None,
                        scraped,
                        post_relabel,
                        added,
                    }
                }
            }
        };
        let up = if report.error.is_none() { 1.0 } else { 0.0 };
        for (name, v) in REPORT_SERIES.iter().zip([
            up,
            duration_s,
            report.scraped as f64,
            report.post_relabel as f64,
            report.added as f64,
        ]) {
            series.push(ts(&with_name(labels, name), v, ts_ms));
        }
        self.last_ts = self.last_ts.max(ts_ms);
        Output {
            series,
            metadata,
            report,
        }
    }

    /// The target is gone: staleness markers for its series and its report series, at `now_ms`
    /// (never before its last sample).
    pub fn stop(&mut self, labels: &[(String, String)], now_ms: i64) -> Vec<TimeSeries> {
        let t = now_ms.max(self.last_ts + 1);
        let mut out = Vec::new();
        self.fail(&mut out, t);
        if self.last_ts > 0 {
            for name in REPORT_SERIES {
                out.push(ts(&with_name(labels, name), stale_nan(), t));
            }
        }
        out
    }

    /// Marks every tracked series of the previous scrape stale and forgets them.
    fn fail(&mut self, out: &mut Vec<TimeSeries>, ts_ms: i64) {
        for (key, tracked) in self.prev.drain() {
            if tracked {
                out.push(ts(&key, stale_nan(), ts_ms));
            }
        }
    }

    fn metadata_due(&mut self, meta: &[super::parse::Metadata], ts_ms: i64) -> Vec<MetricMetadata> {
        if meta.is_empty() {
            return Vec::new();
        }
        let fp = super::target::fnv1a(meta.iter().flat_map(|m| {
            [
                m.family.as_bytes(),
                m.help.as_bytes(),
                m.unit.as_bytes(),
                type_tag(m.typ.remote_write_type()),
            ]
        }));
        let due = match self.meta_sent {
            Some((prev, at)) => prev != fp || ts_ms - at >= METADATA_RESEND_MS,
            None => true,
        };
        if !due {
            return Vec::new();
        }
        self.meta_sent = Some((fp, ts_ms));
        meta.iter()
            .map(|m| MetricMetadata {
                r#type: m.typ.remote_write_type(),
                metric_family_name: m.family.clone(),
                help: m.help.clone(),
                unit: m.unit.clone(),
            })
            .collect()
    }
}

/// A distinct byte string per metadata type, for fingerprints.
fn type_tag(t: i32) -> &'static [u8] {
    const TAGS: [&[u8]; 8] = [b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7"];
    TAGS.get(t as usize).copied().unwrap_or(b"?")
}

/// A scraped sample's labels with the target's: target labels win unless `honor_labels`; an
/// exposed label they override is kept as `exported_<name>` (more `exported_` prefixes until the
/// name is free).
pub fn merge_labels(
    target: &[(String, String)],
    exposed: Vec<(String, String)>,
    name: String,
    honor_labels: bool,
) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> =
        exposed.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    m.insert("__name__".into(), name);
    if honor_labels {
        for (k, v) in target {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        return m;
    }
    let mut conflicts = Vec::new();
    for (k, v) in target {
        if let Some(old) = m.insert(k.clone(), v.clone()) {
            conflicts.push((k, old));
        }
    }
    for (k, old) in conflicts {
        let mut n = format!("exported_{k}");
        while m.contains_key(&n) {
            n.insert_str(0, "exported_");
        }
        m.insert(n, old);
    }
    m
}

fn with_name(labels: &[(String, String)], name: &str) -> Key {
    let mut k: Key = Vec::with_capacity(labels.len() + 1);
    k.push(("__name__".into(), name.into()));
    k.extend(labels.iter().filter(|(n, _)| n != "__name__").cloned());
    k.sort();
    k
}

fn ts(key: &[(String, String)], v: f64, t: i64) -> TimeSeries {
    TimeSeries {
        labels: key
            .iter()
            .map(|(n, v)| Label {
                name: n.clone(),
                value: v.clone(),
            })
            .collect(),
        samples: vec![Sample {
            value: v,
            timestamp: t,
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::parse::{parse, Format};
    use crate::scrape::relabel::RelabelConfig;

    fn target() -> Vec<(String, String)> {
        vec![
            ("instance".into(), "h:1".into()),
            ("job".into(), "j".into()),
        ]
    }

    fn exp(s: &str) -> Result<Exposition, String> {
        Ok(parse(s.as_bytes(), Format::Text).unwrap())
    }

    /// (series as `name{a="b",…}`, value) of an output, sorted.
    fn render(out: &[TimeSeries]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = out.iter().map(crate::scrape::tests::render).collect();
        v.sort();
        v
    }

    fn value(out: &Output, name: &str) -> String {
        let r = render(&out.series);
        r.into_iter()
            .find(|(n, _)| n.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    fn rules(r: &Relabeler) -> SampleRules<'_> {
        SampleRules {
            honor_labels: false,
            honor_timestamps: true,
            metric_relabel: r,
            sample_limit: 0,
        }
    }

    #[test]
    fn vanished_series_get_a_staleness_marker() {
        let none = Relabeler::default();
        let mut st = TargetState::default();
        let o = st.apply(
            &rules(&none),
            &target(),
            exp("a{x=\"1\"} 1\na{x=\"2\"} 2\n"),
            1000,
            0.5,
        );
        assert_eq!(o.report.added, 2);
        assert_eq!(value(&o, "up"), "1");
        assert_eq!(value(&o, "scrape_duration_seconds"), "0.5");
        assert_eq!(value(&o, "scrape_samples_scraped"), "2");
        assert_eq!(value(&o, "scrape_series_added"), "2");
        let o = st.apply(
            &rules(&none),
            &target(),
            exp("a{x=\"1\"} 3\nb 1\n"),
            2000,
            0.1,
        );
        let r = render(&o.series);
        assert!(r.contains(&("a{instance=\"h:1\",job=\"j\",x=\"1\"}".into(), "3".into())));
        assert!(
            r.contains(&(
                "a{instance=\"h:1\",job=\"j\",x=\"2\"}".into(),
                "STALE".into()
            )),
            "{r:?}"
        );
        assert_eq!(value(&o, "scrape_series_added"), "1");
        let stale_ts: Vec<i64> = o
            .series
            .iter()
            .filter(|s| is_stale_nan(s.samples[0].value))
            .map(|s| s.samples[0].timestamp)
            .collect();
        assert_eq!(stale_ts, vec![2000], "marker at the new scrape's time");
        // The stale series is not marked again.
        let o = st.apply(
            &rules(&none),
            &target(),
            exp("a{x=\"1\"} 3\nb 1\n"),
            3000,
            0.1,
        );
        assert!(!render(&o.series).iter().any(|(_, v)| v == "STALE"));
        assert_eq!(value(&o, "scrape_series_added"), "0");
    }

    #[test]
    fn failed_scrape_marks_everything_stale_and_writes_up_zero() {
        let none = Relabeler::default();
        let mut st = TargetState::default();
        st.apply(&rules(&none), &target(), exp("a 1\nb 2\n"), 1000, 0.1);
        let o = st.apply(
            &rules(&none),
            &target(),
            Err("connection refused".into()),
            2000,
            0.2,
        );
        assert_eq!(o.report.error.as_deref(), Some("connection refused"));
        let r = render(&o.series);
        assert_eq!(
            r,
            vec![
                ("a{instance=\"h:1\",job=\"j\"}".into(), "STALE".into()),
                ("b{instance=\"h:1\",job=\"j\"}".into(), "STALE".into()),
                (
                    "scrape_duration_seconds{instance=\"h:1\",job=\"j\"}".into(),
                    "0.2".into()
                ),
                (
                    "scrape_samples_post_metric_relabeling{instance=\"h:1\",job=\"j\"}".into(),
                    "0".into()
                ),
                (
                    "scrape_samples_scraped{instance=\"h:1\",job=\"j\"}".into(),
                    "0".into()
                ),
                (
                    "scrape_series_added{instance=\"h:1\",job=\"j\"}".into(),
                    "0".into()
                ),
                ("up{instance=\"h:1\",job=\"j\"}".into(), "0".into()),
            ]
        );
        // A second failure has nothing left to mark; recovery counts the series as added again.
        let o = st.apply(&rules(&none), &target(), Err("again".into()), 3000, 0.2);
        assert!(!render(&o.series).iter().any(|(_, v)| v == "STALE"));
        let o = st.apply(&rules(&none), &target(), exp("a 1\n"), 4000, 0.1);
        assert_eq!(value(&o, "scrape_series_added"), "1");
    }

    #[test]
    fn stopped_target_marks_series_and_report_series_stale() {
        let none = Relabeler::default();
        let mut st = TargetState::default();
        st.apply(&rules(&none), &target(), exp("a 1\n"), 5000, 0.1);
        let out = st.stop(&target(), 5000);
        let r = render(&out);
        assert_eq!(r.len(), 6, "{r:?}");
        assert!(r.iter().all(|(_, v)| v == "STALE"));
        assert!(out.iter().all(|s| s.samples[0].timestamp == 5001));
        // A target that never scraped leaves nothing.
        assert!(TargetState::default().stop(&target(), 1).is_empty());
    }

    #[test]
    fn explicit_timestamps_are_kept_and_not_tracked() {
        let none = Relabeler::default();
        let mut st = TargetState::default();
        let o = st.apply(&rules(&none), &target(), exp("a 1 500\nb 1\n"), 1000, 0.1);
        let a = o.series.iter().find(|s| s.labels[0].value == "a").unwrap();
        assert_eq!(a.samples[0].timestamp, 500);
        let o = st.apply(&rules(&none), &target(), exp(""), 2000, 0.1);
        let r = render(&o.series);
        assert!(r.contains(&("b{instance=\"h:1\",job=\"j\"}".into(), "STALE".into())));
        assert!(!r.iter().any(|(n, _)| n.starts_with("a{")), "{r:?}");
        // Without honor_timestamps the scrape time is used.
        let mut st = TargetState::default();
        let mut rl = rules(&none);
        rl.honor_timestamps = false;
        let o = st.apply(&rl, &target(), exp("a 1 500\n"), 1000, 0.1);
        assert_eq!(o.series[0].samples[0].timestamp, 1000);
    }

    #[test]
    fn honor_labels_and_exported_prefix() {
        let t = vec![
            ("exported_job".into(), "x".into()),
            ("instance".into(), "h:1".into()),
            ("job".into(), "j".into()),
        ];
        let m = merge_labels(
            &t,
            vec![
                ("job".into(), "exposed".into()),
                ("z".into(), String::new()),
            ],
            "m".into(),
            false,
        );
        assert_eq!(m["job"], "j");
        assert_eq!(m["exported_job"], "x");
        assert_eq!(m["exported_exported_job"], "exposed");
        assert!(!m.contains_key("z"), "empty values are dropped");
        let m = merge_labels(&t, vec![("job".into(), "exposed".into())], "m".into(), true);
        assert_eq!(m["job"], "exposed");
        assert_eq!(m["instance"], "h:1");
        assert_eq!(m["__name__"], "m");
    }

    #[test]
    fn metric_relabeling_limits_and_duplicates() {
        let cfgs: Vec<RelabelConfig> = serde_yaml::from_str(
            "- source_labels: [__name__]\n  regex: 'go_.*'\n  action: drop\n\
             - regex: 'tmp'\n  action: labeldrop\n",
        )
        .unwrap();
        let r = Relabeler::new(&cfgs, "m").unwrap();
        let mut st = TargetState::default();
        let body = "go_x 1\na{tmp=\"1\"} 1\na{tmp=\"2\"} 2\nb 3\n";
        let o = st.apply(&rules(&r), &target(), exp(body), 1000, 0.1);
        assert_eq!(o.report.scraped, 4);
        assert_eq!(o.report.post_relabel, 2, "go_x dropped, a deduplicated");
        assert_eq!(
            value(&o, "a"),
            "1",
            "the first of two samples that relabeling made equal wins"
        );
        let mut rl = rules(&r);
        rl.sample_limit = 1;
        let o = st.apply(&rl, &target(), exp(body), 2000, 0.1);
        assert!(o
            .report
            .error
            .as_deref()
            .unwrap()
            .contains("sample_limit exceeded: 2 samples > 1"));
        assert_eq!(value(&o, "up"), "0");
        assert_eq!(value(&o, "a"), "STALE");
        assert_eq!(value(&o, "scrape_samples_post_metric_relabeling"), "2");
    }

    #[test]
    fn metadata_is_sent_when_new_changed_or_due() {
        let none = Relabeler::default();
        let mut st = TargetState::default();
        let with = |help: &str| exp(&format!("# HELP a {help}\n# TYPE a counter\na 1\n"));
        let o = st.apply(&rules(&none), &target(), with("x"), 1000, 0.1);
        assert_eq!(o.metadata.len(), 1);
        assert_eq!(o.metadata[0].metric_family_name, "a");
        assert_eq!(o.metadata[0].r#type, 1);
        assert_eq!(o.metadata[0].help, "x");
        assert!(st
            .apply(&rules(&none), &target(), with("x"), 2000, 0.1)
            .metadata
            .is_empty());
        assert_eq!(
            st.apply(&rules(&none), &target(), with("y"), 3000, 0.1)
                .metadata
                .len(),
            1
        );
        assert_eq!(
            st.apply(&rules(&none), &target(), with("y"), 63_000, 0.1)
                .metadata
                .len(),
            1,
            "re-sent after a minute"
        );
    }

    #[test]
    fn labels_are_sorted_for_remote_write() {
        let none = Relabeler::default();
        let mut st = TargetState::default();
        let t = vec![("Zone".into(), "z".into()), ("job".into(), "j".into())];
        let o = st.apply(&rules(&none), &t, exp("m{A=\"1\",b=\"2\"} 1\n"), 1000, 0.1);
        for s in &o.series {
            let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted);
        }
    }
}
