//! Running the agent: the collection loop that feeds the forwarder, scrape jobs, log tailing, and
//! the HTTP endpoints (`/metrics` with fresh node metrics and the agent's own counters, `/ready`).

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::exposition::CONTENT_TYPE;
use crate::forward::to_write_request;
use crate::logs::Logs;
use crate::node::uname::hostname;
use crate::scrape::Scraper;
use crate::{AgentConfig, Error, LogsConfig, NodeCollector, RemoteWriteForwarder};

/// A started agent: its background tasks stop when this is dropped.
pub struct Agent {
    collector: Arc<NodeCollector>,
    forwarder: Option<RemoteWriteForwarder>,
    logs: Option<Logs>,
    /// Scrape jobs; present whenever `remote_write` is set (jobs may be added later).
    scraper: Option<Scraper>,
    /// Kubernetes watchers; they stop when this is dropped.
    _discovery: Option<crate::kube::Discovery>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Agent {
    /// Opens the forwarding buffers and starts collecting every `scrape_interval` (and forwarding,
    /// when `remote_write` is set), the scrape jobs of `scrape.scrape_configs` and tailing logs
    /// (when `logs.enabled`). Must be called inside a tokio runtime.
    pub fn start(cfg: &AgentConfig) -> Result<Self, Error> {
        cfg.validate()?;
        let collector = Arc::new(NodeCollector::new(cfg.node.clone())?);
        let mut tasks = Vec::new();
        let forwarder = match &cfg.remote_write {
            None => None,
            Some(rw) => {
                let fwd = RemoteWriteForwarder::open(rw.clone(), &cfg.data_dir)?;
                tasks.push(tokio::spawn(fwd.clone().run()));
                let mut extra: Vec<(String, String)> = rw
                    .external_labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !rw.external_labels.contains_key("job") {
                    extra.push(("job".into(), "node".into()));
                }
                if !rw.external_labels.contains_key("instance") {
                    extra.push(("instance".into(), hostname()));
                }
                let (c, f) = (collector.clone(), fwd.clone());
                let every = cfg.scrape_interval.to_std();
                tasks.push(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        let c = c.clone();
                        let Ok(fams) = tokio::task::spawn_blocking(move || c.collect()).await
                        else {
                            continue;
                        };
                        let req = to_write_request(&fams, common::time::now_ms(), &extra);
                        if let Err(e) = f.enqueue(&req).await {
                            tracing::error!(error = %e, "buffering collected samples failed");
                        }
                    }
                }));
                Some(fwd)
            }
        };
        let mut scraper = match (&forwarder, &cfg.remote_write) {
            (Some(fwd), Some(rw)) => {
                let mut s = Scraper::start(&cfg.scrape, fwd.clone(), rw, cfg.scrape_interval);
                for job in &cfg.scrape.scrape_configs {
                    if job.kubernetes_sd_configs.is_empty() {
                        s.start_static_job(job.clone())?;
                    }
                }
                Some(s)
            }
            _ => None,
        };
        let (discovery, pod_meta) = if cfg.kubernetes.enabled {
            let (d, meta) = crate::kube::presets::start(
                &cfg.kubernetes,
                &cfg.scrape.scrape_configs,
                scraper.as_mut(),
            )?;
            (Some(d), meta)
        } else {
            (None, None)
        };
        let logs = match Logs::start(
            &cfg.logs,
            cfg.remote_write.as_ref(),
            &cfg.data_dir,
            pod_meta,
        )? {
            Some((logs, t)) => {
                tasks.extend(t);
                Some(logs)
            }
            None => None,
        };
        Ok(Self {
            collector,
            forwarder,
            logs,
            scraper,
            _discovery: discovery,
            tasks,
        })
    }

    /// The scrape jobs, to start more (e.g. with discovered targets); `None` without
    /// `remote_write`.
    pub fn scraper(&mut self) -> Option<&mut Scraper> {
        self.scraper.as_mut()
    }

    /// The HTTP routes: `/metrics` and `/ready`.
    pub fn router(&self) -> Router {
        let collector = self.collector.clone();
        let forwarder = self.forwarder.clone();
        let logs = self.logs.clone();
        let scrape = self.scraper.as_ref().map(Scraper::metrics);
        Router::new()
            .route(
                "/metrics",
                get(move || {
                    let c = collector.clone();
                    let f = forwarder.clone();
                    let l = logs.clone();
                    let s = scrape.clone();
                    async move {
                        let fams = tokio::task::spawn_blocking(move || {
                            let mut fams = c.collect();
                            if let Some(f) = f {
                                f.add_metrics(&mut fams);
                            }
                            if let Some(l) = l {
                                l.add_metrics(&mut fams);
                            }
                            if let Some(s) = s {
                                s.add_metrics(&mut fams);
                            }
                            fams
                        })
                        .await
                        .unwrap_or_default();
                        ([(header::CONTENT_TYPE, CONTENT_TYPE)], fams.render()).into_response()
                    }
                }),
            )
            .route("/ready", get(|| async { "ready\n" }))
    }

    /// Serves [`Agent::router`] on `listener` until `shutdown` resolves.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| Error::Io {
                path: "http server".into(),
                source: e,
            })
    }
}

/// `heimdall agent`: start, bind `cfg.listen`, serve until `shutdown`.
pub async fn run(
    cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let agent = Agent::start(&cfg)?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| Error::Config(format!("listen on {}: {e}", cfg.listen)))?;
    tracing::info!(listen = %cfg.listen, remote_write = ?cfg.remote_write.as_ref().map(|r| &r.url), logs = cfg.logs.enabled, scrape_jobs = cfg.scrape.scrape_configs.len(), "agent started");
    agent.serve(listener, shutdown).await
}

/// System log files `heimdall up` tails when this user can read them.
pub const UP_LOG_FILES: &[&str] = &["/var/log/syslog", "/var/log/messages", "/var/log/*.log"];

/// The agent inside `heimdall up`: collect this host every 15 s and remote_write to the local
/// server at `server_http` (tenant `anonymous`), buffering under `data_dir`; tail pod logs and
/// those of [`UP_LOG_FILES`] that are readable (new lines only on the first start) to the server's
/// Loki push endpoint, all in tenant `anonymous`; also serve the agent's `/metrics` on `listen`
/// when that port is free. Returns the agent (keep it alive) and the URL of its `/metrics`, if
/// bound.
pub async fn start_local(
    server_http: &str,
    data_dir: &std::path::Path,
    listen: &str,
) -> Result<(Agent, Option<String>), Error> {
    let server = server_http.replace("0.0.0.0", "127.0.0.1");
    let cfg = AgentConfig {
        listen: listen.into(),
        data_dir: data_dir.to_path_buf(),
        remote_write: Some(crate::RemoteWriteConfig {
            url: format!("http://{server}/api/v1/write"),
            tenant: Some("anonymous".into()),
            ..Default::default()
        }),
        logs: LogsConfig {
            enabled: true,
            url: Some(format!(
                "http://{server}{}",
                crate::logs::config::LOKI_PUSH_PATH
            )),
            tenant: Some("anonymous".into()),
            tenant_from_namespace: false,
            files: crate::logs::readable_globs(UP_LOG_FILES),
            tail_from_end: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut agent = Agent::start(&cfg)?;
    let url = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => {
            let router = agent.router();
            agent.tasks.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(l, router).await {
                    tracing::warn!(error = %e, "agent http server stopped");
                }
            }));
            Some(format!(
                "http://{}/metrics",
                listen.replace("0.0.0.0", "127.0.0.1")
            ))
        }
        Err(e) => {
            tracing::warn!(listen, error = %e, "agent /metrics not served; node metrics still go to the server");
            None
        }
    };
    Ok((agent, url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn up_agent_tails_logs_and_exports_their_metrics() {
        let data = tempfile::tempdir().unwrap();
        // Nothing needs to listen on the server address for the agent to start.
        let (agent, url) = start_local("127.0.0.1:9", data.path(), "127.0.0.1:0")
            .await
            .unwrap();
        assert!(url.is_some());
        let logs = agent.logs.as_ref().expect("logs enabled by up");
        let mut m = crate::Families::new();
        logs.add_metrics(&mut m);
        assert!(m.get("heimdall_agent_logs_files_tailed").is_some());
        assert!(m
            .value(
                "heimdall_agent_logs_push_pending_batches",
                &[("url", "http://127.0.0.1:9/loki/api/v1/push")]
            )
            .is_some());
    }
}
