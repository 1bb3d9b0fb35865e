//! The heimdall configuration file (YAML). Every field has a default, so an empty file is valid;
//! command-line flags override the file. `heimdall config check FILE` validates one.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::Limits;
use crate::Error;

/// A duration written as in Prometheus (`30s`, `2h`, `7d`), stored in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(i64);

impl Duration {
    /// Zero.
    pub const ZERO: Self = Self(0);
    /// From seconds.
    pub const fn from_secs(s: i64) -> Self {
        Self(s * 1000)
    }
    /// From milliseconds.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }
    /// Milliseconds.
    pub const fn as_millis(self) -> i64 {
        self.0
    }
    /// As a std duration (negative values clamp to zero).
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.max(0) as u64)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms == 0 {
            return f.write_str("0s");
        }
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1000, "s"),
            (1, "ms"),
        ];
        let mut rest = ms;
        for (n, u) in units {
            if rest >= n {
                write!(f, "{}{}", rest / n, u)?;
                rest %= n;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Str(String),
            Num(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Self((n * 1000.0) as i64)),
            Raw::Str(s) => crate::time::parse_prom_duration(&s)
                .map(Self)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Top-level configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listeners.
    pub server: ServerConfig,
    /// Where and how data is kept.
    pub storage: StorageConfig,
    /// Tenancy and authentication.
    pub auth: AuthConfig,
    /// Default per-tenant limits.
    pub limits: Limits,
    /// Optional YAML file of per-tenant limit overrides, re-read when it changes.
    pub overrides_file: Option<PathBuf>,
    /// Metrics-specific settings.
    pub metrics: MetricsConfig,
}

impl Config {
    /// Parses YAML text and validates it.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        let cfg: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| Error::Config(e.to_string()))?
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and validates a config file.
    pub fn load(path: &std::path::Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::from_yaml(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Checks cross-field rules.
    pub fn validate(&self) -> Result<(), Error> {
        if self.storage.block_duration.as_millis() < 60_000 {
            return Err(Error::Config(
                "storage.block_duration must be at least 1m".into(),
            ));
        }
        if self.storage.object_store.backend == Backend::S3
            && self.storage.object_store.s3.bucket.is_empty()
        {
            return Err(Error::Config(
                "storage.object_store.s3.bucket is required".into(),
            ));
        }
        if self.limits.max_request_size_bytes == 0 {
            return Err(Error::Config(
                "limits.max_request_size_bytes must be > 0".into(),
            ));
        }
        Ok(())
    }

    /// The config as YAML with secrets replaced by `<redacted>`, for `/config`.
    pub fn redacted_yaml(&self) -> String {
        let mut c = self.clone();
        let s3 = &mut c.storage.object_store.s3;
        if s3.secret_access_key.is_some() {
            s3.secret_access_key = Some("<redacted>".into());
        }
        serde_yaml::to_string(&c).unwrap_or_default()
    }
}

/// Network listeners.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the HTTP API (every signal, ops endpoints).
    pub http_listen: String,
    /// Address of the OTLP gRPC receiver. Empty disables it.
    pub otlp_grpc_listen: String,
    /// Extra address for OTLP over HTTP (`/v1/*`); the main HTTP port serves these paths too.
    /// Empty disables the extra listener.
    pub otlp_http_listen: String,
    /// How long shutdown waits for in-flight requests before flushing.
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_listen: "0.0.0.0:8080".into(),
            otlp_grpc_listen: "0.0.0.0:4317".into(),
            otlp_http_listen: "0.0.0.0:4318".into(),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// Storage settings shared by all signals.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Local directory for the write-ahead log (and blocks, with the local object store).
    pub data_dir: PathBuf,
    /// Where immutable blocks go.
    pub object_store: ObjectStoreConfig,
    /// Time span of one metrics block cut from the head.
    pub block_duration: Duration,
    /// How often retention and compaction run.
    pub maintenance_interval: Duration,
    /// Whether each WAL group commit is fsynced (turn off only for throwaway data).
    pub wal_fsync: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("heimdall-data"),
            object_store: ObjectStoreConfig::default(),
            block_duration: Duration::from_secs(7200),
            maintenance_interval: Duration::from_secs(60),
            wal_fsync: true,
        }
    }
}

/// Object storage for blocks.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// `filesystem` (the default) or `s3`.
    pub backend: Backend,
    /// Folder for blocks with the filesystem backend; default `<data_dir>/blocks`.
    pub path: Option<PathBuf>,
    /// Settings of the `s3` backend.
    pub s3: S3Config,
}

/// Which object store holds blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A local folder.
    #[default]
    Filesystem,
    /// An S3-compatible bucket.
    S3,
}

/// S3-compatible object storage.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL (e.g. `http://127.0.0.1:9000`); empty uses AWS.
    pub endpoint: String,
    /// Region.
    pub region: String,
    /// Access key id; falls back to the environment when unset.
    pub access_key_id: Option<String>,
    /// Secret access key; falls back to the environment when unset. Redacted in `/config`.
    pub secret_access_key: Option<String>,
    /// Allow plain-HTTP endpoints.
    pub allow_http: bool,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most non-AWS servers.
    pub path_style: bool,
    /// Key prefix inside the bucket.
    pub prefix: String,
}

/// Tenancy and authentication.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// When true, every request needs `X-Scope-OrgID`; when false everything is tenant `anonymous`.
    pub enabled: bool,
    /// Optional YAML file of bearer tokens (SHA-256 hashes) granting read/write on tenant sets.
    pub tenants_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tenants_file: None,
        }
    }
}

/// Metrics settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// What happens to OTLP delta sums and histograms: `reject` (Prometheus' default) or `convert`
    /// (accumulate per series into cumulative values, like `otlp-deltatocumulative`).
    pub otlp_delta: OtlpDeltaPolicy,
    /// Resource attributes copied onto every series of their resource (besides job/instance).
    pub otlp_promote_resource_attributes: Vec<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            otlp_delta: OtlpDeltaPolicy::Reject,
            otlp_promote_resource_attributes: vec![],
        }
    }
}

/// See [`MetricsConfig::otlp_delta`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpDeltaPolicy {
    /// Reject delta data points (partial success).
    Reject,
    /// Accumulate deltas into cumulative series.
    Convert,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_default_and_valid() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.server.http_listen, "0.0.0.0:8080");
        assert_eq!(c.limits.retention_period.as_millis(), 7 * 86_400_000);
    }

    #[test]
    fn unknown_fields_rejected_and_durations_parsed() {
        assert!(Config::from_yaml("nope: 1").is_err());
        let c = Config::from_yaml("storage:\n  block_duration: 30m\n  object_store:\n    backend: s3\n    s3:\n      bucket: b\n      secret_access_key: s\n").unwrap();
        assert_eq!(c.storage.block_duration.as_millis(), 1_800_000);
        assert!(c.redacted_yaml().contains("<redacted>"));
        assert!(!c.redacted_yaml().contains("secret_access_key: s\n"));
    }

    /// `docs/example-config.yaml` lists every setting with its default (comments aside); regenerate the
    /// values with `UPDATE_GOLDEN=1 cargo test -p common example_config` and keep the comments.
    #[test]
    fn example_config_is_in_sync() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/example-config.yaml"
        );
        let want = serde_yaml::to_value(Config::default()).unwrap();
        if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
            let header = "# Every heimdall setting with its default value. `heimdall config default` prints the same.\n";
            std::fs::write(
                path,
                format!(
                    "{header}{}",
                    serde_yaml::to_string(&Config::default()).unwrap()
                ),
            )
            .unwrap();
        }
        let text = std::fs::read_to_string(path).unwrap();
        let got: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(got, want, "docs/example-config.yaml is out of date");
        Config::from_yaml(&text).unwrap();
    }

    #[test]
    fn duration_display_roundtrips() {
        for s in ["2h", "1d2h", "90s", "0s", "1m30s"] {
            let d: Duration = serde_yaml::from_str(s).unwrap();
            let back: Duration = serde_yaml::from_str(&d.to_string()).unwrap();
            assert_eq!(d, back, "{s}");
        }
    }
}
