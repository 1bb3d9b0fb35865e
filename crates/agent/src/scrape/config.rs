//! The agent's `scrape:` section: Prometheus `scrape_configs` (same field names where Prometheus
//! has them) plus heimdall's tenant routing and batching.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use common::config::Duration;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::relabel::{is_label_name, RelabelConfig, Relabeler};
use crate::Error;

/// Scraping of Prometheus exporters; samples go to `remote_write` (required when a job is set).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeConfig {
    /// How long scraped samples are gathered before they are buffered as one remote_write request
    /// per tenant.
    pub batch_max_wait: Duration,
    /// Most series in one remote_write request; a bigger batch is split.
    pub batch_max_series: usize,
    /// Scrape jobs, as Prometheus' `scrape_configs`.
    pub scrape_configs: Vec<ScrapeJobConfig>,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        Self {
            batch_max_wait: Duration::from_secs(1),
            batch_max_series: 5000,
            scrape_configs: Vec::new(),
        }
    }
}

impl ScrapeConfig {
    /// Checks every job; `default_interval` is the agent's `scrape_interval`.
    pub fn validate(&self, default_interval: Duration) -> Result<(), Error> {
        if self.batch_max_wait.as_millis() <= 0 {
            return Err(Error::Config("scrape.batch_max_wait must be > 0".into()));
        }
        if self.batch_max_series == 0 {
            return Err(Error::Config("scrape.batch_max_series must be > 0".into()));
        }
        let mut names = HashSet::new();
        for job in &self.scrape_configs {
            job.validate(default_interval)?;
            if !names.insert(job.job_name.as_str()) {
                return Err(Error::Config(format!(
                    "scrape.scrape_configs: job_name {:?} is used twice; job names must be unique",
                    job.job_name
                )));
            }
        }
        Ok(())
    }
}

/// One scrape job (Prometheus `scrape_config`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeJobConfig {
    /// The `job` label of its targets; unique.
    pub job_name: String,
    /// How often each target is scraped; default: the agent's `scrape_interval`.
    pub scrape_interval: Option<Duration>,
    /// Per-scrape timeout; default: 10s, or the interval when shorter.
    pub scrape_timeout: Option<Duration>,
    /// HTTP path of the exposition.
    pub metrics_path: String,
    /// `http` or `https`.
    pub scheme: String,
    /// URL query parameters.
    pub params: BTreeMap<String, Vec<String>>,
    /// Scraped labels win over target labels (otherwise they are kept as `exported_<name>`).
    pub honor_labels: bool,
    /// Use the timestamps of the exposition when present (otherwise the scrape time).
    pub honor_timestamps: bool,
    /// Fixed targets.
    pub static_configs: Vec<StaticConfig>,
    /// Kubernetes discovery (at most one entry; needs the agent's `kubernetes.enabled`); its
    /// targets are added to `static_configs`'.
    pub kubernetes_sd_configs: Vec<crate::kube::presets::KubernetesSdConfig>,
    /// Relabeling of discovered targets (before scraping).
    pub relabel_configs: Vec<RelabelConfig>,
    /// Relabeling of scraped samples (before sending).
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// A scrape with more samples (after metric relabeling) fails; 0 means no limit.
    pub sample_limit: u64,
    /// Largest accepted exposition, compressed and uncompressed (bytes, or e.g. `10MB`).
    pub body_size_limit: ByteSize,
    /// Sent as `Authorization: Bearer …`.
    pub bearer_token: Option<String>,
    /// File read at every scrape for the bearer token (e.g. a service account token).
    pub bearer_token_file: Option<PathBuf>,
    /// TLS settings for `https` targets.
    pub tls_config: TlsConfig,
    /// Tenant of every target of this job (`X-Scope-OrgID`); takes precedence over
    /// `tenant_from_namespace`.
    pub tenant: Option<String>,
    /// A target's tenant is its `namespace` label (after relabeling) when it has one.
    pub tenant_from_namespace: bool,
}

impl Default for ScrapeJobConfig {
    fn default() -> Self {
        Self {
            job_name: String::new(),
            scrape_interval: None,
            scrape_timeout: None,
            metrics_path: "/metrics".into(),
            scheme: "http".into(),
            params: BTreeMap::new(),
            honor_labels: false,
            honor_timestamps: true,
            static_configs: Vec::new(),
            kubernetes_sd_configs: Vec::new(),
            relabel_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
            sample_limit: 0,
            body_size_limit: ByteSize(DEFAULT_BODY_SIZE_LIMIT),
            bearer_token: None,
            bearer_token_file: None,
            tls_config: TlsConfig::default(),
            tenant: None,
            tenant_from_namespace: false,
        }
    }
}

/// Default `body_size_limit`: 64 MiB.
pub const DEFAULT_BODY_SIZE_LIMIT: u64 = 64 << 20;

/// Prometheus' default scrape timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl ScrapeJobConfig {
    /// The scrape interval, given the agent's default.
    pub fn interval(&self, default_interval: Duration) -> Duration {
        self.scrape_interval.unwrap_or(default_interval)
    }

    /// The scrape timeout, given the agent's default interval.
    pub fn timeout(&self, default_interval: Duration) -> Duration {
        self.scrape_timeout.unwrap_or_else(|| {
            let i = self.interval(default_interval);
            if i < DEFAULT_TIMEOUT {
                i
            } else {
                DEFAULT_TIMEOUT
            }
        })
    }

    /// Checks values serde cannot (including that the relabel configs compile).
    pub fn validate(&self, default_interval: Duration) -> Result<(), Error> {
        let name = &self.job_name;
        let bad = |msg: String| Error::Config(format!("scrape_configs[{name:?}]: {msg}"));
        if name.is_empty() {
            return Err(Error::Config(
                "scrape.scrape_configs: every job needs a job_name".into(),
            ));
        }
        let interval = self.interval(default_interval);
        let timeout = self.timeout(default_interval);
        if interval.as_millis() <= 0 {
            return Err(bad("scrape_interval must be > 0".into()));
        }
        if timeout.as_millis() <= 0 || timeout > interval {
            return Err(bad(format!(
                "scrape_timeout {timeout} must be > 0 and at most scrape_interval {interval}"
            )));
        }
        if self.scheme != "http" && self.scheme != "https" {
            return Err(bad(format!(
                "scheme {:?} must be http or https",
                self.scheme
            )));
        }
        if !self.metrics_path.starts_with('/') {
            return Err(bad(format!(
                "metrics_path {:?} must start with '/'",
                self.metrics_path
            )));
        }
        if self.body_size_limit.0 == 0 {
            return Err(bad("body_size_limit must be > 0".into()));
        }
        if self.bearer_token.is_some() && self.bearer_token_file.is_some() {
            return Err(bad(
                "set at most one of bearer_token and bearer_token_file".into()
            ));
        }
        if let Some(t) = &self.tenant {
            common::tenant::TenantId::new(t).map_err(|e| bad(format!("tenant: {e}")))?;
        }
        if self.kubernetes_sd_configs.len() > 1 {
            return Err(bad(
                "at most one kubernetes_sd_configs entry per job; use one job per role".into(),
            ));
        }
        for (i, sc) in self.static_configs.iter().enumerate() {
            if let Some(t) = sc.targets.iter().find(|t| t.trim().is_empty()) {
                return Err(bad(format!("static_configs[{i}]: empty target {t:?}")));
            }
            if let Some(l) = sc.labels.keys().find(|l| !is_label_name(l)) {
                return Err(bad(format!(
                    "static_configs[{i}]: invalid label name {l:?}"
                )));
            }
        }
        Relabeler::new(
            &self.relabel_configs,
            &format!("scrape_configs[{name:?}].relabel_configs"),
        )?;
        Relabeler::new(
            &self.metric_relabel_configs,
            &format!("scrape_configs[{name:?}].metric_relabel_configs"),
        )?;
        Ok(())
    }

    /// The targets of `static_configs` as discovery would report them: `__address__` plus the
    /// group's labels, one map per target.
    pub fn static_targets(&self) -> Vec<BTreeMap<String, String>> {
        let mut out = Vec::new();
        for sc in &self.static_configs {
            for t in &sc.targets {
                let mut m = sc.labels.clone();
                m.insert("__address__".into(), t.trim().to_string());
                out.push(m);
            }
        }
        out
    }
}

/// A group of fixed targets sharing labels (Prometheus `static_config`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` of each target.
    pub targets: Vec<String>,
    /// Labels of every target of the group.
    pub labels: BTreeMap<String, String>,
}

/// TLS settings of a job.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Accept any server certificate (self-signed exporters); insecure.
    pub insecure_skip_verify: bool,
}

/// A byte count, written as an integer or with a unit as Prometheus does (`512KB`, `10MB`, `1GiB`;
/// KB/MB/GB are powers of 1024 like Prometheus' `body_size_limit`). Serialises as an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `10MB`, `512KiB`, `1024` …
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?}; use e.g. 10MB or 1048576"))?;
        let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "K" | "KB" | "KIB" => 1 << 10,
            "M" | "MB" | "MIB" => 1 << 20,
            "G" | "GB" | "GIB" => 1 << 30,
            "T" | "TB" | "TIB" => 1 << 40,
            _ => {
                return Err(format!(
                    "unknown size unit in {s:?}; use B, KB, MB, GB or TB"
                ))
            }
        };
        n.checked_mul(mult)
            .map(Self)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Self(n)),
            Raw::Str(s) => Self::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(yaml: &str) -> Result<ScrapeJobConfig, Error> {
        let j: ScrapeJobConfig =
            serde_yaml::from_str(yaml).map_err(|e| Error::Config(e.to_string()))?;
        j.validate(Duration::from_secs(15))?;
        Ok(j)
    }

    #[test]
    fn prometheus_job_parses_with_defaults() {
        let j = job("job_name: node\n\
             scrape_interval: 5s\n\
             params: {module: [http_2xx]}\n\
             static_configs:\n  - targets: ['a:9100', 'b:9100']\n    labels: {env: prod}\n\
             relabel_configs:\n  - source_labels: [__address__]\n    target_label: host\n\
             metric_relabel_configs:\n  - source_labels: [__name__]\n    regex: go_.*\n    action: drop\n\
             body_size_limit: 10MB\n")
        .unwrap();
        assert_eq!(j.interval(Duration::from_secs(15)), Duration::from_secs(5));
        assert_eq!(j.timeout(Duration::from_secs(15)), Duration::from_secs(5));
        assert_eq!(j.metrics_path, "/metrics");
        assert!(j.honor_timestamps && !j.honor_labels);
        assert_eq!(j.body_size_limit, ByteSize(10 << 20));
        let t = j.static_targets();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1]["__address__"], "b:9100");
        assert_eq!(t[1]["env"], "prod");
        let d = job("job_name: x\n").unwrap();
        assert_eq!(d.interval(Duration::from_secs(30)), Duration::from_secs(30));
        assert_eq!(d.timeout(Duration::from_secs(30)), Duration::from_secs(10));
    }

    #[test]
    fn invalid_jobs_are_rejected() {
        for (yaml, want) in [
            ("scrape_interval: 5s\n", "every job needs a job_name"),
            (
                "job_name: a\nscrape_timeout: 20s\n",
                "must be > 0 and at most",
            ),
            ("job_name: a\nscheme: ftp\n", "scheme \"ftp\""),
            (
                "job_name: a\nmetrics_path: metrics\n",
                "must start with '/'",
            ),
            ("job_name: a\nbody_size_limit: 10XB\n", "unknown size unit"),
            ("job_name: a\ntenant: 'a b'\n", "tenant"),
            (
                "job_name: a\nbearer_token: x\nbearer_token_file: /y\n",
                "at most one of",
            ),
            (
                "job_name: a\nrelabel_configs:\n  - regex: '('\n",
                "scrape_configs[\"a\"].relabel_configs[0]: regex",
            ),
            (
                "job_name: a\nstatic_configs:\n  - targets: ['']\n",
                "empty target",
            ),
            ("job_name: a\nscrape_intervall: 5s\n", "unknown field"),
        ] {
            let e = job(yaml).unwrap_err().to_string();
            assert!(e.contains(want), "{yaml}: {e}");
        }
        let dup = ScrapeConfig {
            scrape_configs: vec![job("job_name: a\n").unwrap(), job("job_name: a\n").unwrap()],
            ..Default::default()
        };
        let e = dup
            .validate(Duration::from_secs(15))
            .unwrap_err()
            .to_string();
        assert!(e.contains("used twice"), "{e}");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(ByteSize::parse("1024"), Ok(ByteSize(1024)));
        assert_eq!(ByteSize::parse("1KB"), Ok(ByteSize(1024)));
        assert_eq!(ByteSize::parse("2 MiB"), Ok(ByteSize(2 << 20)));
        assert_eq!(ByteSize::parse("1gb"), Ok(ByteSize(1 << 30)));
        assert!(ByteSize::parse("MB").is_err());
        assert!(ByteSize::parse("99999999999TB").is_err());
    }
}
