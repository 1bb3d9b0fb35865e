//! A running scrape job: follows its discovered targets, runs one scrape loop per target, and
//! scrapes over HTTP (content negotiation, gzip, body size limit, timeout, bearer token).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::config::Duration;
use tokio::sync::{mpsc, oneshot, watch};

use super::batch::Batch;
use super::config::ScrapeJobConfig;
use super::parse::{self, Exposition, Format};
use super::relabel::Relabeler;
use super::staleness::{SampleRules, TargetState};
use super::target::{self, Target};
use crate::Error;

/// Bodies larger than this are parsed on the blocking pool rather than on the runtime.
const PARSE_INLINE_MAX: usize = 256 << 10;

/// Counters of one job, for the agent's `/metrics`.
#[derive(Debug, Default)]
pub struct JobStats {
    /// Targets with a running scrape loop.
    pub targets: AtomicU64,
    /// Discovered label sets dropped by relabeling or unusable.
    pub dropped_targets: AtomicU64,
    /// Scrapes done.
    pub scrapes: AtomicU64,
    /// Scrapes that failed (`up` 0).
    pub failures: AtomicU64,
    /// Samples written after metric relabeling.
    pub samples: AtomicU64,
}

/// A validated, compiled job.
pub struct Job {
    pub(crate) cfg: ScrapeJobConfig,
    default_interval: Duration,
    relabel: Relabeler,
    metric_relabel: Relabeler,
    client: reqwest::Client,
    pub(crate) stats: Arc<JobStats>,
}

impl Job {
    /// Validates `cfg` and builds its HTTP client.
    pub fn new(cfg: ScrapeJobConfig, default_interval: Duration) -> Result<Self, Error> {
        cfg.validate(default_interval)?;
        let name = &cfg.job_name;
        let relabel = Relabeler::new(
            &cfg.relabel_configs,
            &format!("scrape_configs[{name:?}].relabel_configs"),
        )?;
        let metric_relabel = Relabeler::new(
            &cfg.metric_relabel_configs,
            &format!("scrape_configs[{name:?}].metric_relabel_configs"),
        )?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("heimdall-agent/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(cfg.tls_config.insecure_skip_verify)
            .build()
            .map_err(|e| Error::Config(format!("job {name:?}: building http client: {e}")))?;
        Ok(Self {
            cfg,
            default_interval,
            relabel,
            metric_relabel,
            client,
            stats: Arc::default(),
        })
    }

    /// The targets of one discovery snapshot, keyed by identity, and how many were dropped.
    pub fn targets(&self, discovered: &[BTreeMap<String, String>]) -> (HashMap<u64, Target>, u64) {
        let mut out = HashMap::new();
        let mut dropped = 0;
        for d in discovered {
            match target::build(&self.cfg, &self.relabel, self.default_interval, d) {
                Ok(Some(t)) => {
                    out.insert(t.hash, t);
                }
                Ok(None) => dropped += 1,
                Err(e) => {
                    dropped += 1;
                    tracing::warn!(job = %self.cfg.job_name, address = d.get("__address__").map(String::as_str).unwrap_or(""), error = %e, "dropping target");
                }
            }
        }
        (out, dropped)
    }

    async fn bearer(&self) -> Result<Option<String>, String> {
        if let Some(t) = &self.cfg.bearer_token {
            return Ok(Some(t.clone()));
        }
        let Some(p) = &self.cfg.bearer_token_file else {
            return Ok(None);
        };
        let t = tokio::fs::read_to_string(p)
            .await
            .map_err(|e| format!("reading bearer_token_file {}: {e}", p.display()))?;
        Ok(Some(t.trim().to_string()))
    }

    /// Scrapes `target` once, within its timeout.
    pub async fn scrape(&self, target: &Target) -> Result<Exposition, String> {
        match tokio::time::timeout(target.timeout, self.fetch_and_parse(target)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "scrape timed out after {}",
                Duration::from_millis(target.timeout.as_millis() as i64)
            )),
        }
    }

    async fn fetch_and_parse(&self, target: &Target) -> Result<Exposition, String> {
        use reqwest::header;
        let mut req = self
            .client
            .get(&target.url)
            .header(header::ACCEPT, parse::ACCEPT)
            .header(header::ACCEPT_ENCODING, "gzip")
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", target.timeout.as_secs_f64()),
            );
        if let Some(t) = self.bearer().await? {
            req = req.bearer_auth(t);
        }
        let mut resp = req.send().await.map_err(describe)?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(format!("server returned HTTP status {}", resp.status()));
        }
        let header = |h: header::HeaderName| {
            resp.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header(header::CONTENT_TYPE);
        let encoding = header(header::CONTENT_ENCODING);
        let limit = usize::try_from(self.cfg.body_size_limit.0).unwrap_or(usize::MAX);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > limit {
                return Err(format!(
                    "body size limit exceeded: the response is larger than {limit} bytes (body_size_limit)"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let body = match encoding.as_deref().map(str::trim) {
            None | Some("") | Some("identity") => body,
            Some(enc) if enc.eq_ignore_ascii_case("gzip") => {
                common::decompress::decompress_http(&body, Some("gzip"), limit)
                    .map_err(|e| match e {
                        common::decompress::DecompressError::TooLarge(_) => format!(
                            "body size limit exceeded: the decompressed response is larger than {limit} bytes (body_size_limit)"
                        ),
                        e => e.to_string(),
                    })?
                    .into_owned()
            }
            Some(enc) => return Err(format!("unsupported Content-Encoding {enc:?}")),
        };
        let format = Format::from_content_type(content_type.as_deref());
        let parsed = if body.len() <= PARSE_INLINE_MAX {
            parse::parse(&body, format)
        } else {
            tokio::task::spawn_blocking(move || parse::parse(&body, format))
                .await
                .map_err(|e| format!("parse task: {e}"))?
        };
        parsed.map_err(|e| match e {
            Error::Scrape(m) => m,
            e => e.to_string(),
        })
    }
}

/// A reqwest error with its cause chain (reqwest's own message alone is often just "error sending
/// request").
fn describe(e: reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// The scrape loops of a job, aborted when dropped.
struct Loops {
    map: HashMap<u64, (oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl Drop for Loops {
    fn drop(&mut self) {
        for (_, (_, task)) in self.map.drain() {
            task.abort();
        }
    }
}

/// Runs `job` forever: on every discovery update, stops the loops of targets that are gone (they
/// write staleness markers) and starts loops for new ones. When the discovery sender is dropped
/// the last targets keep being scraped.
pub async fn run(
    job: Arc<Job>,
    mut discovered: watch::Receiver<Vec<BTreeMap<String, String>>>,
    out: mpsc::Sender<Batch>,
) {
    let mut loops = Loops {
        map: HashMap::new(),
    };
    loop {
        let snapshot = discovered.borrow_and_update().clone();
        let (wanted, dropped) = job.targets(&snapshot);
        let gone: Vec<u64> = loops
            .map
            .keys()
            .filter(|h| !wanted.contains_key(h))
            .copied()
            .collect();
        for h in gone {
            if let Some((stop, _task)) = loops.map.remove(&h) {
                // The loop writes its staleness markers and ends on its own.
                let _ = stop.send(());
            }
        }
        for (h, t) in wanted {
            if loops.map.contains_key(&h) {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            let task = tokio::spawn(target_loop(job.clone(), t, rx, out.clone()));
            loops.map.insert(h, (tx, task));
        }
        job.stats
            .targets
            .store(loops.map.len() as u64, Ordering::Relaxed);
        job.stats.dropped_targets.store(dropped, Ordering::Relaxed);
        if discovered.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Scrapes one target every interval at its offset until `stop` fires (then writes staleness
/// markers for everything it wrote) or is dropped (then just ends).
async fn target_loop(
    job: Arc<Job>,
    target: Target,
    mut stop: oneshot::Receiver<()>,
    out: mpsc::Sender<Batch>,
) {
    let mut state = TargetState::default();
    let rules = SampleRules {
        honor_labels: job.cfg.honor_labels,
        honor_timestamps: job.cfg.honor_timestamps,
        metric_relabel: &job.metric_relabel,
        sample_limit: job.cfg.sample_limit,
    };
    // First scrape at the next wall-clock instant whose position in the interval is the target's
    // offset, so that targets spread over the interval and keep their phase across restarts.
    let interval_ms = (target.interval.as_millis() as i64).max(1);
    let phase = target.offset().as_millis() as i64;
    let wait = (phase - common::time::now_ms().rem_euclid(interval_ms)).rem_euclid(interval_ms);
    let start = tokio::time::Instant::now() + std::time::Duration::from_millis(wait as u64);
    let mut tick = tokio::time::interval_at(start, target.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut was_up = true;
    loop {
        tokio::select! {
            biased;
            r = &mut stop => return finish(r.is_ok(), &mut state, &target, &out).await,
            _ = tick.tick() => {}
        }
        let ts = common::time::now_ms();
        let started = std::time::Instant::now();
        let result = tokio::select! {
            biased;
            r = &mut stop => return finish(r.is_ok(), &mut state, &target, &out).await,
            r = job.scrape(&target) => r,
        };
        let took = started.elapsed().as_secs_f64();
        let o = state.apply(&rules, &target.labels, result, ts, took);
        let stats = &job.stats;
        stats.scrapes.fetch_add(1, Ordering::Relaxed);
        match &o.report.error {
            Some(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                if was_up {
                    tracing::warn!(job = %job.cfg.job_name, url = %target.url, error = %e, "scrape failed");
                }
                was_up = false;
            }
            None => {
                stats
                    .samples
                    .fetch_add(o.report.post_relabel as u64, Ordering::Relaxed);
                if !was_up {
                    tracing::info!(job = %job.cfg.job_name, url = %target.url, "scrape recovered");
                }
                was_up = true;
            }
        }
        let batch = Batch {
            tenant: target.tenant.clone(),
            series: o.series,
            metadata: o.metadata,
        };
        if out.send(batch).await.is_err() {
            return;
        }
    }
}

async fn finish(
    stopped: bool,
    state: &mut TargetState,
    target: &Target,
    out: &mpsc::Sender<Batch>,
) {
    if !stopped {
        return;
    }
    let series = state.stop(&target.labels, common::time::now_ms());
    if !series.is_empty() {
        let _ = out
            .send(Batch {
                tenant: target.tenant.clone(),
                series,
                metadata: Vec::new(),
            })
            .await;
    }
}
