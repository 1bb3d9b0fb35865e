//! The `logs:` section of the agent config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::config::Duration;
use serde::{Deserialize, Serialize};

use crate::{Error, RemoteWriteConfig};

/// Kubernetes pod logs as the kubelet writes them:
/// `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`.
pub const DEFAULT_POD_LOGS_GLOB: &str = "/var/log/pods/*/*/*.log";

/// Log tailing: follows files, ships their lines to a Loki push endpoint through a durable buffer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogsConfig {
    /// Tail and ship logs.
    pub enabled: bool,
    /// Loki push endpoint; default: `remote_write.url`'s scheme and host with `/loki/api/v1/push`.
    pub url: Option<String>,
    /// `X-Scope-OrgID` for plain files (and pod logs unless `tenant_from_namespace`); default:
    /// `remote_write.tenant`.
    pub tenant: Option<String>,
    /// Sent as `Authorization: Bearer …`; default: `remote_write.bearer_token`.
    pub bearer_token: Option<String>,
    /// Pod logs go to the tenant named like their namespace (one push per tenant).
    pub tenant_from_namespace: bool,
    /// Pod log files (CRI or Docker json-file lines), labelled from their path with `namespace`,
    /// `pod`, `container`, `job` (`<namespace>/<container>`), `service_name` (the container),
    /// `node` and `stream`; empty disables.
    pub pod_logs_glob: String,
    /// Plain text files to tail (globs, e.g. `/var/log/syslog`, `/var/log/*.log`), labelled with
    /// `filename`, `host` and `job` (default `varlogs`).
    pub files: Vec<String>,
    /// Labels added to every stream (e.g. `cluster`, or `job` for plain files); labels derived from
    /// the file win.
    pub static_labels: BTreeMap<String, String>,
    /// Value of the `node`/`host` label; empty: this machine's host name.
    pub node_name: String,
    /// Where read positions are kept; default: `<data_dir>/logs/positions.yaml`.
    pub positions_file: Option<PathBuf>,
    /// Files found at the first start without a saved position are read from their end instead of
    /// their beginning (files appearing later are always read whole).
    pub tail_from_end: bool,
    /// JSON and logfmt lines: their level becomes the `level` label (normalised: `trace`,
    /// `debug`, `info`, `warn`, `error`, `critical`, `fatal`), their `trace_id`/`span_id` become
    /// structured metadata.
    pub parse_lines: bool,
    /// Longer lines are truncated to this many bytes.
    pub max_line_bytes: u64,
    /// A batch is sent once its lines reach this many bytes …
    pub batch_max_bytes: u64,
    /// … or once its oldest line waited this long.
    pub batch_max_wait: Duration,
    /// How often followed files are checked for new lines, rotation and truncation.
    pub poll_interval: Duration,
    /// How often the globs are re-evaluated to find new files.
    pub rescan_interval: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// First retry delay; doubles per failure up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Cap on un-acknowledged data kept on disk; tailing pauses while the buffer is this full.
    pub max_buffer_bytes: u64,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: None,
            tenant: None,
            bearer_token: None,
            tenant_from_namespace: true,
            pod_logs_glob: DEFAULT_POD_LOGS_GLOB.into(),
            files: Vec::new(),
            static_labels: BTreeMap::new(),
            node_name: String::new(),
            positions_file: None,
            tail_from_end: false,
            parse_lines: true,
            max_line_bytes: 256 << 10,
            batch_max_bytes: 1 << 20,
            batch_max_wait: Duration::from_secs(1),
            poll_interval: Duration::from_millis(250),
            rescan_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_buffer_bytes: 512 << 20,
        }
    }
}

/// Path of the Loki push API on an endpoint.
pub const LOKI_PUSH_PATH: &str = "/loki/api/v1/push";

impl LogsConfig {
    /// The push URL: `url`, or derived from the remote_write URL.
    pub fn push_url(&self, rw: Option<&RemoteWriteConfig>) -> Option<String> {
        if let Some(u) = &self.url {
            return Some(u.clone());
        }
        let u = &rw?.url;
        let scheme_end = u.find("://")? + 3;
        let host_end = u[scheme_end..]
            .find('/')
            .map_or(u.len(), |i| scheme_end + i);
        Some(format!("{}{LOKI_PUSH_PATH}", &u[..host_end]))
    }

    /// Default tenant: `tenant`, else remote_write's.
    pub fn default_tenant(&self, rw: Option<&RemoteWriteConfig>) -> Option<String> {
        self.tenant
            .clone()
            .or_else(|| rw.and_then(|r| r.tenant.clone()))
    }

    /// Bearer token: `bearer_token`, else remote_write's.
    pub fn token(&self, rw: Option<&RemoteWriteConfig>) -> Option<String> {
        self.bearer_token
            .clone()
            .or_else(|| rw.and_then(|r| r.bearer_token.clone()))
    }

    /// The positions file under `data_dir` unless configured.
    pub fn positions_path(&self, data_dir: &Path) -> PathBuf {
        self.positions_file
            .clone()
            .unwrap_or_else(|| data_dir.join("logs").join("positions.yaml"))
    }

    /// Checks values serde cannot (only when enabled).
    pub fn validate(&self, rw: Option<&RemoteWriteConfig>) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        let err = |m: String| Err(Error::Config(format!("logs.{m}")));
        match self.push_url(rw) {
            None => return err(
                "url is not set and there is no remote_write.url to derive it from; set logs.url"
                    .into(),
            ),
            Some(u) if !u.starts_with("http://") && !u.starts_with("https://") => {
                return err(format!("url {u:?} must be an http:// or https:// URL"))
            }
            Some(_) => {}
        }
        for g in std::iter::once(&self.pod_logs_glob)
            .filter(|g| !g.is_empty())
            .chain(&self.files)
        {
            if let Err(e) = glob::Pattern::new(g) {
                return err(format!("files: {g:?} is not a valid glob: {e}"));
            }
            if !g.starts_with('/') {
                return err(format!("files: {g:?} must be an absolute path"));
            }
        }
        for k in self.static_labels.keys() {
            if !is_label_name(k) {
                return err(format!(
                    "static_labels: {k:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                ));
            }
        }
        if self.max_line_bytes == 0 || self.batch_max_bytes < self.max_line_bytes {
            return err("max_line_bytes must be > 0 and <= batch_max_bytes".into());
        }
        if self.max_buffer_bytes / 4 < self.batch_max_bytes {
            return err("max_buffer_bytes must be at least 4 × batch_max_bytes".into());
        }
        for (name, d) in [
            ("batch_max_wait", self.batch_max_wait),
            ("poll_interval", self.poll_interval),
            ("rescan_interval", self.rescan_interval),
            ("timeout", self.timeout),
        ] {
            if d.as_millis() <= 0 {
                return err(format!("{name} must be > 0"));
            }
        }
        if self.min_backoff.as_millis() <= 0 || self.max_backoff < self.min_backoff {
            return err("min_backoff must be > 0 and <= max_backoff".into());
        }
        Ok(())
    }
}

/// Prometheus/Loki label name syntax.
pub(crate) fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_tenant_token_default_to_remote_write() {
        let rw = RemoteWriteConfig {
            url: "https://h:8080/api/v1/push".into(),
            tenant: Some("infra".into()),
            bearer_token: Some("tok".into()),
            ..Default::default()
        };
        let mut c = LogsConfig {
            enabled: true,
            ..Default::default()
        };
        assert_eq!(
            c.push_url(Some(&rw)).as_deref(),
            Some("https://h:8080/loki/api/v1/push")
        );
        assert_eq!(c.default_tenant(Some(&rw)).as_deref(), Some("infra"));
        assert_eq!(c.token(Some(&rw)).as_deref(), Some("tok"));
        c.validate(Some(&rw)).unwrap();
        // Enabled without any URL: error naming the field.
        let e = c.validate(None).unwrap_err().to_string();
        assert!(e.contains("logs.url"), "{e}");
        c.url = Some("http://x:1/loki/api/v1/push".into());
        c.tenant = Some("t".into());
        assert_eq!(c.push_url(Some(&rw)), c.url);
        assert_eq!(c.default_tenant(Some(&rw)).as_deref(), Some("t"));
        c.validate(None).unwrap();
        c.files = vec!["var/log/*.log".into()];
        assert!(c.validate(None).is_err());
        c.files = vec!["/var/log/[.log".into()];
        assert!(c.validate(None).is_err());
        c.files = vec![];
        c.max_buffer_bytes = c.batch_max_bytes;
        assert!(c.validate(None).is_err());
        c.max_buffer_bytes = LogsConfig::default().max_buffer_bytes;
        c.static_labels.insert("bad-name".into(), "x".into());
        assert!(c.validate(None).is_err());
    }

    #[test]
    fn positions_default_under_data_dir() {
        let c = LogsConfig::default();
        assert_eq!(
            c.positions_path(Path::new("/d")),
            PathBuf::from("/d/logs/positions.yaml")
        );
    }
}
