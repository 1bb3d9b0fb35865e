//! Prometheus-style scraping: the agent pulls `/metrics` of exporters and forwards the samples
//! with remote_write, per tenant, through the same durable forwarder as its node metrics.
//!
//! # Design
//!
//! * **Jobs take targets from a `watch` channel.** A job ([`Scraper::start_job`]) receives
//!   `Vec<BTreeMap<String, String>>` snapshots, one map per discovered target (`__address__`
//!   plus `__meta_*` labels, before relabeling). `static_configs` are a fixed snapshot
//!   ([`Scraper::start_static_job`]); other discovery (Kubernetes) sends new snapshots whenever
//!   targets change. On each snapshot the job builds targets ([`target::build`]: job defaults,
//!   `relabel_configs`, default port, `instance`, `__` labels removed) and diffs them by identity
//!   (hash of labels and URL): loops of vanished targets are stopped, new ones started, unchanged
//!   ones keep running undisturbed.
//! * **One loop per target** scrapes at a fixed offset within its interval derived from the target
//!   hash (targets spread out; a restart keeps the phase), sending Prometheus' `Accept` header
//!   and `Accept-Encoding: gzip`, bounded by `scrape_timeout` and `body_size_limit`. The body is
//!   parsed as OpenMetrics or text format by its `Content-Type` ([`parse`]).
//! * **Per-target state** ([`staleness::TargetState`]) merges target labels into samples
//!   (`honor_labels`, `exported_` prefixes), applies `metric_relabel_configs` and `sample_limit`,
//!   writes the report series (`up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
//!   `scrape_samples_post_metric_relabeling`, `scrape_series_added`) and staleness markers for
//!   series that disappeared, for every series of a failed scrape, and for everything of a target
//!   that is no longer discovered. Family metadata is sent when it first appears, changes, or
//!   once a minute.
//! * **Tenancy** is decided per target: the job's `tenant`, else its `namespace` label when
//!   `tenant_from_namespace`, else the agent's default (remote_write `tenant`).
//! * **Batching** ([`batch`]): loops send their output over a bounded channel (back-pressure) to
//!   one batcher, which gathers up to `batch_max_wait` and buffers one remote_write request per
//!   tenant as one durable forwarder batch (a WAL segment), so a thousand targets do not mean a
//!   thousand fsyncs per interval.

pub mod batch;
pub mod config;
pub mod job;
pub mod parse;
pub mod relabel;
pub mod staleness;
pub mod target;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::config::Duration;
use tokio::sync::{mpsc, watch};

pub use config::{ScrapeConfig, ScrapeJobConfig, StaticConfig};
pub use relabel::{RelabelConfig, Relabeler};

use crate::exposition::{Families, MetricType};
use crate::{Error, RemoteWriteConfig, RemoteWriteForwarder};

/// One discovered target: `__address__` plus discovery's labels (e.g. `__meta_kubernetes_*`),
/// before relabeling.
pub type DiscoveredTarget = BTreeMap<String, String>;

/// Queue of scrape outputs waiting for the batcher.
const CHANNEL_CAPACITY: usize = 256;

/// Runs scrape jobs and forwards their samples. Jobs and the batcher stop when it is dropped.
pub struct Scraper {
    tx: mpsc::Sender<batch::Batch>,
    default_interval: Duration,
    jobs: Vec<RunningJob>,
    metrics: ScrapeMetrics,
    batcher: Option<tokio::task::JoinHandle<()>>,
}

struct RunningJob {
    name: String,
    task: tokio::task::JoinHandle<()>,
    /// Keeps a static job's target list alive.
    _static: Option<watch::Sender<Vec<DiscoveredTarget>>>,
}

impl Drop for Scraper {
    fn drop(&mut self) {
        for j in &self.jobs {
            j.task.abort();
        }
        if let Some(b) = &self.batcher {
            b.abort();
        }
    }
}

impl Scraper {
    /// Starts the batcher that buffers scraped samples in `fwd` (adding `rw.external_labels`
    /// where a series lacks them); jobs are added with [`Scraper::start_static_job`] and
    /// [`Scraper::start_job`]. `default_interval` is the agent's `scrape_interval`. Must be called
    /// inside a tokio runtime.
    pub fn start(
        cfg: &ScrapeConfig,
        fwd: RemoteWriteForwarder,
        rw: &RemoteWriteConfig,
        default_interval: Duration,
    ) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let metrics = ScrapeMetrics::default();
        let external: Vec<(String, String)> = rw
            .external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let batcher = tokio::spawn(batch::run(
            rx,
            fwd,
            cfg.batch_max_wait.to_std(),
            cfg.batch_max_series,
            external,
            metrics.enqueue_failures.clone(),
        ));
        Self {
            tx,
            default_interval,
            jobs: Vec::new(),
            metrics,
            batcher: Some(batcher),
        }
    }

    /// A scraper whose output goes to `tx` instead of a forwarder (tests).
    #[cfg(test)]
    fn to_channel(tx: mpsc::Sender<batch::Batch>, default_interval: Duration) -> Self {
        Self {
            tx,
            default_interval,
            jobs: Vec::new(),
            metrics: ScrapeMetrics::default(),
            batcher: None,
        }
    }

    /// Starts a job on its `static_configs`.
    pub fn start_static_job(&mut self, job: ScrapeJobConfig) -> Result<(), Error> {
        let (tx, rx) = watch::channel(job.static_targets());
        self.spawn(job, rx, Some(tx))
    }

    /// Starts a job whose targets come from discovery: every value sent on `targets` replaces the
    /// job's target list (its `static_configs` are not added; merge them into the snapshots if
    /// wanted, e.g. with [`ScrapeJobConfig::static_targets`]). If the sender is dropped the last
    /// list keeps being scraped.
    pub fn start_job(
        &mut self,
        job: ScrapeJobConfig,
        targets: watch::Receiver<Vec<DiscoveredTarget>>,
    ) -> Result<(), Error> {
        self.spawn(job, targets, None)
    }

    fn spawn(
        &mut self,
        cfg: ScrapeJobConfig,
        targets: watch::Receiver<Vec<DiscoveredTarget>>,
        keep: Option<watch::Sender<Vec<DiscoveredTarget>>>,
    ) -> Result<(), Error> {
        if self.jobs.iter().any(|j| j.name == cfg.job_name) {
            return Err(Error::Config(format!(
                "scrape job {:?} is already running; job names must be unique",
                cfg.job_name
            )));
        }
        let job = Arc::new(job::Job::new(cfg, self.default_interval)?);
        let name = job.cfg.job_name.clone();
        self.metrics
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.clone(), job.stats.clone()));
        let task = tokio::spawn(job::run(job, targets, self.tx.clone()));
        self.jobs.push(RunningJob {
            name,
            task,
            _static: keep,
        });
        Ok(())
    }

    /// A handle on the scrape counters, for `/metrics`.
    pub fn metrics(&self) -> ScrapeMetrics {
        self.metrics.clone()
    }
}

/// Counters of each job by name.
type JobStatsList = Vec<(String, Arc<job::JobStats>)>;

/// The scrape counters of every job. Cheap to clone.
#[derive(Clone, Default)]
pub struct ScrapeMetrics {
    jobs: Arc<Mutex<JobStatsList>>,
    enqueue_failures: Arc<AtomicU64>,
}

impl ScrapeMetrics {
    /// Adds `heimdall_agent_scrape_*` families (label `job`).
    pub fn add_metrics(&self, out: &mut Families) {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (name, s) in &jobs {
            let l = [("job", name.as_str())];
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
            out.add(
                "heimdall_agent_scrape_targets",
                "Targets being scraped.",
                MetricType::Gauge,
                &l,
                load(&s.targets),
            );
            out.add(
                "heimdall_agent_scrape_targets_dropped",
                "Discovered targets dropped by relabeling or because they cannot be scraped.",
                MetricType::Gauge,
                &l,
                load(&s.dropped_targets),
            );
            out.add(
                "heimdall_agent_scrapes_total",
                "Scrapes done.",
                MetricType::Counter,
                &l,
                load(&s.scrapes),
            );
            out.add(
                "heimdall_agent_scrape_failures_total",
                "Scrapes that failed (the target's up was 0).",
                MetricType::Counter,
                &l,
                load(&s.failures),
            );
            out.add(
                "heimdall_agent_scrape_samples_total",
                "Samples scraped, after metric relabeling.",
                MetricType::Counter,
                &l,
                load(&s.samples),
            );
        }
        out.counter(
            "heimdall_agent_scrape_buffer_failures_total",
            "Batches of scraped samples that could not be buffered for remote_write.",
            self.enqueue_failures.load(Ordering::Relaxed) as f64,
        );
    }
}

#[cfg(test)]
mod tests;
