//! Per-tenant limits: defaults from the config, per-tenant overrides from a YAML file that is
//! re-read when it changes. Every limit check in heimdall goes through [`Overrides`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::config::Duration;
use crate::{Error, TenantId};

/// Limits that apply to one tenant. Field names are the YAML keys of `limits:` and of each tenant in
/// the overrides file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Sustained ingestion rate, in samples (metrics) per second. 0 disables the limit.
    pub ingestion_rate: f64,
    /// Burst allowed above `ingestion_rate`, in samples.
    pub ingestion_burst_size: u64,
    /// Maximum number of active series in the head. 0 disables the limit.
    pub max_active_series: u64,
    /// Maximum number of labels per series (including `__name__`).
    pub max_label_names_per_series: usize,
    /// Maximum length of a label name, in bytes.
    pub max_label_name_length: usize,
    /// Maximum length of a label value, in bytes.
    pub max_label_value_length: usize,
    /// Maximum size of one write request body after decompression, in bytes.
    pub max_request_size_bytes: usize,
    /// How far in the future a sample may be, relative to the server clock.
    pub creation_grace_period: Duration,
    /// Samples older than the newest sample of their series by up to this much are accepted
    /// (out-of-order ingestion). Zero rejects every out-of-order sample, as Prometheus does by default.
    pub out_of_order_time_window: Duration,
    /// How long blocks are kept.
    pub retention_period: Duration,
    /// Maximum time range of one query. Zero disables the limit.
    pub max_query_length: Duration,
    /// Maximum number of series one query may touch. 0 disables the limit.
    pub max_series_per_query: usize,
    /// Maximum number of samples one query may load. 0 disables the limit.
    pub max_samples_per_query: usize,
    /// Logs: sustained ingestion rate in MB (10^6 bytes of lines) per second. 0 disables the limit.
    pub ingestion_rate_mb: f64,
    /// Logs: burst allowed above `ingestion_rate_mb`, in MB.
    pub ingestion_burst_size_mb: f64,
    /// Logs: longest accepted line, in bytes. 0 disables the limit.
    pub max_line_size: usize,
    /// Logs: truncate lines longer than `max_line_size` instead of rejecting them.
    pub max_line_size_truncate: bool,
    /// Logs: maximum number of streams per tenant in the head. 0 disables the limit.
    pub max_global_streams_per_user: usize,
    /// Logs: entries older than now minus this are rejected. Zero disables the check.
    pub reject_old_samples_max_age: Duration,
    /// Logs: entries older than the newest entry of their stream by more than this are rejected
    /// (Loki accepts out-of-order writes within half of `max_chunk_age`, 1 h by default).
    pub log_out_of_order_window: Duration,
    /// Logs: accept structured metadata.
    pub allow_structured_metadata: bool,
    /// Logs: largest structured metadata of one entry, in bytes. 0 disables the limit.
    pub max_structured_metadata_size: usize,
    /// Logs: most structured metadata pairs of one entry. 0 disables the limit.
    pub max_structured_metadata_entries_count: usize,
    /// Logs: most entries one log query may return (`limit` above this is refused).
    pub max_entries_limit_per_query: usize,
    /// Logs: most series (streams) a metric query may return. 0 disables the limit.
    pub max_query_series: usize,
    /// Traces: sustained ingestion rate in bytes (encoded spans) per second. 0 disables the limit.
    pub ingestion_rate_limit_bytes: u64,
    /// Traces: burst allowed above `ingestion_rate_limit_bytes`, in bytes.
    pub ingestion_burst_size_bytes: u64,
    /// Traces: sustained ingestion rate in spans per second. 0 disables the limit.
    pub ingestion_rate_limit_spans: u64,
    /// Traces: largest trace, in bytes of encoded spans; spans past it are refused. 0 disables.
    pub max_bytes_per_trace: usize,
    /// Traces: largest single span, in bytes encoded; larger spans are refused. 0 disables.
    pub max_bytes_per_span: usize,
    /// Traces: metrics generator processors (Tempo's names): `span-metrics`, `service-graphs`.
    /// Empty turns the generator off for the tenant.
    pub metrics_generator_processors: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ingestion_rate: 1_000_000.0,
            ingestion_burst_size: 2_000_000,
            max_active_series: 1_000_000,
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_request_size_bytes: 100 << 20,
            creation_grace_period: Duration::from_secs(600),
            out_of_order_time_window: Duration::ZERO,
            retention_period: Duration::from_secs(7 * 86_400),
            max_query_length: Duration::ZERO,
            max_series_per_query: 500_000,
            max_samples_per_query: 50_000_000,
            ingestion_rate_mb: 64.0,
            ingestion_burst_size_mb: 128.0,
            max_line_size: 256 * 1024,
            max_line_size_truncate: false,
            max_global_streams_per_user: 100_000,
            reject_old_samples_max_age: Duration::from_secs(7 * 86_400),
            log_out_of_order_window: Duration::from_secs(3_600),
            allow_structured_metadata: true,
            max_structured_metadata_size: 64 * 1024,
            max_structured_metadata_entries_count: 128,
            max_entries_limit_per_query: 5_000,
            max_query_series: 500,
            ingestion_rate_limit_bytes: 15_000_000,
            ingestion_burst_size_bytes: 20_000_000,
            ingestion_rate_limit_spans: 0,
            max_bytes_per_trace: 5_000_000,
            max_bytes_per_span: 1 << 20,
            metrics_generator_processors: vec!["service-graphs".into(), "span-metrics".into()],
        }
    }
}

/// The overrides file: `overrides: { <tenant>: { <limit>: <value>, … } }`; unset fields fall back to
/// the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverridesFile {
    #[serde(default)]
    overrides: HashMap<String, serde_yaml::Value>,
}

struct State {
    per_tenant: HashMap<String, Arc<Limits>>,
    loaded_mtime: Option<SystemTime>,
}

/// Resolves the limits of a tenant. Cheap to clone and to query.
#[derive(Clone)]
pub struct Overrides {
    defaults: Arc<Limits>,
    file: Option<PathBuf>,
    state: Arc<RwLock<State>>,
}

impl Overrides {
    /// Builds the resolver and loads the overrides file (an error if it is invalid at start).
    pub fn new(defaults: Limits, file: Option<PathBuf>) -> Result<Self, Error> {
        let o = Self {
            defaults: Arc::new(defaults),
            file,
            state: Arc::new(RwLock::new(State {
                per_tenant: HashMap::new(),
                loaded_mtime: None,
            })),
        };
        o.reload()?;
        Ok(o)
    }

    /// Limits without any overrides file.
    pub fn fixed(defaults: Limits) -> Self {
        Self::new(defaults, None).expect("no file to load")
    }

    /// The limits of `tenant`.
    pub fn get(&self, tenant: &TenantId) -> Arc<Limits> {
        self.state
            .read()
            .per_tenant
            .get(tenant.as_str())
            .cloned()
            .unwrap_or_else(|| self.defaults.clone())
    }

    /// The defaults.
    pub fn defaults(&self) -> &Limits {
        &self.defaults
    }

    /// Re-reads the overrides file if its modification time changed. On a parse error the previous
    /// overrides stay in force and the error is returned.
    pub fn reload(&self) -> Result<bool, Error> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if mtime.is_some() && mtime == self.state.read().loaded_mtime {
            return Ok(false);
        }
        let per_tenant = load_file(path, &self.defaults)?;
        let mut st = self.state.write();
        st.per_tenant = per_tenant;
        st.loaded_mtime = mtime;
        Ok(true)
    }
}

fn load_file(path: &Path, defaults: &Limits) -> Result<HashMap<String, Arc<Limits>>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        // A missing file means "no overrides yet", so it can be created later.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => {
            return Err(Error::Io {
                path: path.display().to_string(),
                source: e,
            })
        }
    };
    let file: OverridesFile = if text.trim().is_empty() {
        OverridesFile::default()
    } else {
        serde_yaml::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
    };
    let base = serde_yaml::to_value(defaults).map_err(|e| Error::Config(e.to_string()))?;
    let mut out = HashMap::new();
    for (tenant, partial) in file.overrides {
        TenantId::new(&tenant)?;
        let mut merged = base.clone();
        if let (Some(m), serde_yaml::Value::Mapping(p)) = (merged.as_mapping_mut(), partial) {
            for (k, v) in p {
                m.insert(k, v);
            }
        }
        let limits: Limits = serde_yaml::from_value(merged)
            .map_err(|e| Error::Config(format!("{}: tenant {tenant}: {e}", path.display())))?;
        out.insert(tenant, Arc::new(limits));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_merge_over_defaults_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.yaml");
        std::fs::write(&path, "overrides:\n  team-a:\n    max_active_series: 5\n").unwrap();
        let o = Overrides::new(Limits::default(), Some(path.clone())).unwrap();
        let a = TenantId::new("team-a").unwrap();
        let b = TenantId::new("team-b").unwrap();
        assert_eq!(o.get(&a).max_active_series, 5);
        assert_eq!(o.get(&a).max_label_names_per_series, 30);
        assert_eq!(o.get(&b).max_active_series, 1_000_000);

        // A broken file keeps the previous overrides.
        std::fs::write(&path, "overrides:\n  team-a:\n    no_such_limit: 1\n").unwrap();
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(t)
            .unwrap();
        assert!(o.reload().is_err());
        assert_eq!(o.get(&a).max_active_series, 5);

        std::fs::write(&path, "overrides:\n  team-b:\n    retention_period: 1d\n").unwrap();
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(10);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(t)
            .unwrap();
        assert!(o.reload().unwrap());
        assert_eq!(o.get(&a).max_active_series, 1_000_000);
        assert_eq!(o.get(&b).retention_period.as_millis(), 86_400_000);
    }
}
