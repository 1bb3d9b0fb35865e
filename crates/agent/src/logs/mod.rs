//! Log tailing: follows Kubernetes pod logs and plain files, ships their lines to a Loki push
//! endpoint (`POST …/loki/api/v1/push`, snappy protobuf) through the durable [`Forwarder`].
//!
//! - [`config`]: the `logs:` config section.
//! - [`tailer`]: discovery by glob, reading, rotation, truncation, deletion.
//! - [`format`]: CRI / Docker json-file / plain lines, partial-line joining.
//! - [`labels`]: stream labels and tenant from the file path.
//! - [`positions`]: the positions file, so a restart resumes without loss.
//! - [`ship`]: batching into per-tenant pushes and the tail → queue → commit loop.

pub mod config;
pub mod fields;
pub mod format;
pub mod labels;
pub mod positions;
pub mod ship;
pub mod tailer;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use config::LogsConfig;

use crate::exposition::{Families, MetricType};
use crate::forward::{Forwarder, ForwarderConfig};
use crate::{Error, RemoteWriteConfig};

/// The tailer's counters, exported on the agent's `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Files followed now.
    pub files: AtomicU64,
    /// Raw lines read.
    pub lines: AtomicU64,
    /// Bytes read.
    pub bytes: AtomicU64,
    /// Entries cut at the maximum line size.
    pub truncated: AtomicU64,
    /// Container lines that did not parse (shipped as plain text).
    pub malformed: AtomicU64,
    /// Entries durably queued for sending.
    pub queued: AtomicU64,
    /// Rotations seen.
    pub rotations: AtomicU64,
    /// Truncations (copytruncate) seen.
    pub truncations: AtomicU64,
}

/// Background tasks of a component; abort them to stop it.
pub type Tasks = Vec<tokio::task::JoinHandle<()>>;

/// Running log tailing: its forwarder and counters.
#[derive(Clone)]
pub struct Logs {
    fwd: Forwarder,
    stats: Arc<Stats>,
}

impl Logs {
    /// Opens the buffer (`data_dir/logs`) and positions, and spawns the tailing loop and the
    /// sender (pod streams take `app` from `pod_meta` when given); returns `None` when
    /// `cfg.enabled` is false. Must be called inside a tokio runtime.
    pub fn start(
        cfg: &LogsConfig,
        rw: Option<&RemoteWriteConfig>,
        data_dir: &Path,
        pod_meta: Option<crate::kube::PodMetaCache>,
    ) -> Result<Option<(Self, Tasks)>, Error> {
        if !cfg.enabled {
            return Ok(None);
        }
        cfg.validate(rw)?;
        let url = cfg
            .push_url(rw)
            .ok_or_else(|| Error::Config("logs.url is not set".into()))?;
        let fwd = Forwarder::open(
            ForwarderConfig {
                metric_prefix: "heimdall_agent_logs_push",
                kind: "loki push",
                url: url.clone(),
                tenant: cfg.default_tenant(rw),
                bearer_token: cfg.token(rw),
                headers: vec![("Content-Type", "application/x-protobuf")],
                timeout: cfg.timeout,
                min_backoff: cfg.min_backoff,
                max_backoff: cfg.max_backoff,
                max_buffer_bytes: cfg.max_buffer_bytes,
            },
            &data_dir.join("logs"),
        )?;
        let stats = Arc::new(Stats::default());
        let node_name = if cfg.node_name.is_empty() {
            crate::node::uname::hostname()
        } else {
            cfg.node_name.clone()
        };
        let positions_file = cfg.positions_path(data_dir);
        let tailer = tailer::Tailer::new(
            tailer::TailerOptions {
                pod_logs_glob: cfg.pod_logs_glob.clone(),
                files: cfg.files.clone(),
                max_line: cfg.max_line_bytes as usize,
                tail_from_end: cfg.tail_from_end,
                rules: labels::LabelRules {
                    static_labels: cfg.static_labels.clone(),
                    node_name,
                    default_tenant: cfg.default_tenant(rw),
                    tenant_from_namespace: cfg.tenant_from_namespace,
                    parse_lines: cfg.parse_lines,
                    pod_meta,
                },
            },
            positions::load(&positions_file),
            stats.clone(),
        );
        let opts = ship::LoopOptions {
            positions_file,
            batch_max_bytes: cfg.batch_max_bytes as usize,
            batch_max_wait: cfg.batch_max_wait.to_std(),
            poll_interval: cfg.poll_interval.to_std(),
            rescan_interval: cfg.rescan_interval.to_std(),
        };
        let tasks = vec![
            tokio::spawn(fwd.clone().run()),
            tokio::spawn(ship::run(tailer, fwd.clone(), opts, stats.clone())),
        ];
        tracing::info!(url = %url, pod_logs = %cfg.pod_logs_glob, files = ?cfg.files, "log tailing started");
        Ok(Some((Self { fwd, stats }, tasks)))
    }

    /// The tailer's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The durable forwarder the pushes go through.
    pub fn forwarder(&self) -> &Forwarder {
        &self.fwd
    }

    /// Adds `heimdall_agent_logs_*` (tailer) and `heimdall_agent_logs_push_*` (forwarder).
    pub fn add_metrics(&self, out: &mut Families) {
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        out.gauge(
            "heimdall_agent_logs_files_tailed",
            "Log files followed now.",
            get(&s.files),
        );
        for (name, help, v) in [
            (
                "heimdall_agent_logs_read_lines_total",
                "Lines read from log files.",
                get(&s.lines),
            ),
            (
                "heimdall_agent_logs_read_bytes_total",
                "Bytes read from log files.",
                get(&s.bytes),
            ),
            (
                "heimdall_agent_logs_truncated_lines_total",
                "Entries cut at logs.max_line_bytes.",
                get(&s.truncated),
            ),
            (
                "heimdall_agent_logs_malformed_lines_total",
                "Container log lines that did not parse and were shipped as plain text.",
                get(&s.malformed),
            ),
            (
                "heimdall_agent_logs_rotations_total",
                "Log file rotations seen.",
                get(&s.rotations),
            ),
            (
                "heimdall_agent_logs_truncations_total",
                "Log files seen truncated in place (copytruncate).",
                get(&s.truncations),
            ),
            (
                "heimdall_agent_logs_entries_queued_total",
                "Entries durably buffered for sending.",
                get(&s.queued),
            ),
            (
                "heimdall_agent_logs_entries_sent_total",
                "Entries acknowledged by the push endpoint.",
                self.fwd.items_sent() as f64,
            ),
            (
                "heimdall_agent_logs_entries_dropped_total",
                "Entries dropped: rejected with a 4xx, or over the buffer cap.",
                self.fwd.items_dropped() as f64,
            ),
        ] {
            out.add(name, help, MetricType::Counter, &[], v);
        }
        self.fwd.add_metrics(out);
    }
}

/// The globs of `candidates` that currently match at least one readable regular file (used by
/// `heimdall up` to enable only system logs this user can read).
pub fn readable_globs(candidates: &[&str]) -> Vec<String> {
    candidates
        .iter()
        .filter(|g| {
            glob::glob(g).is_ok_and(|mut paths| {
                paths.any(|p| {
                    p.is_ok_and(|p| {
                        std::fs::File::open(&p)
                            .and_then(|f| f.metadata())
                            .is_ok_and(|m| m.is_file())
                    })
                })
            })
        })
        .map(|g| g.to_string())
        .collect()
}
