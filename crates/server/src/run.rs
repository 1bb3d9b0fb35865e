//! Assembles the server from a config and runs it until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::middleware::from_fn_with_state;
use axum::Router;
use common::config::Config;
use common::limits::Overrides;
use logs::api::LogsApi;
use logs::store::LogStore;
use metrics::api::MetricsApi;
use metrics::tsdb::MetricsStore;
use storage::block::BlockStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use traces::api::TracesApi;
use traces::store::TraceStore;
use tracing::{info, warn};

use crate::auth::Tokens;
use crate::telemetry::{self, Telemetry};
use crate::tenancy::{self, Tenancy};
use crate::{ops, otlp_grpc, Error};

/// A built, not yet serving, server.
pub struct Server {
    cfg: Config,
    router: Router,
    /// Metrics API state (also used by the gRPC receiver and `up`).
    pub api: MetricsApi,
    /// Logs API state (also used by the gRPC receiver).
    pub logs: LogsApi,
    log_store: LogStore,
    /// Traces API state (also used by the gRPC receiver).
    pub traces: TracesApi,
    trace_store: TraceStore,
    tenancy: Tenancy,
}

/// Opens storage and builds every router from `cfg`.
pub async fn build(cfg: Config) -> Result<Server, Error> {
    cfg.validate()?;
    std::fs::create_dir_all(&cfg.storage.data_dir).map_err(|e| Error::Io {
        context: format!("creating data dir {}", cfg.storage.data_dir.display()),
        source: e,
    })?;
    let overrides = Overrides::new(cfg.limits.clone(), cfg.overrides_file.clone())?;
    let blocks = BlockStore::from_config(&cfg.storage)?;
    let store = MetricsStore::open(&cfg.storage, overrides.clone(), blocks.clone()).await?;
    let log_store = LogStore::open(&cfg.storage, overrides.clone(), blocks.clone()).await?;
    let trace_store = TraceStore::open(&cfg.storage, overrides.clone(), blocks).await?;
    let tokens = match &cfg.auth.tenants_file {
        Some(p) => Some(Arc::new(Tokens::load(p)?)),
        None => None,
    };
    let tenancy = Tenancy {
        enabled: cfg.auth.enabled,
        tokens,
    };
    let api = MetricsApi::new(store.clone(), overrides.clone(), cfg.metrics.clone());
    let logs = LogsApi::new(
        Arc::new(log_store.clone()),
        Arc::new(log_store.clone()),
        overrides.clone(),
    );
    // Span metrics and service graphs go into the same tenant's metrics.
    let generator = Arc::new(traces::generator::Generator::new(Arc::new(
        crate::generator_sink::MetricsSink::start(store.clone()),
    )));
    let traces = TracesApi::new(
        Arc::new(trace_store.clone()),
        Arc::new(trace_store.clone()),
        overrides,
        Some(generator),
    );
    let telemetry = Arc::new(Telemetry::default());

    let read = metrics::api::read_routes(api.clone())
        .route_layer(from_fn_with_state(tenancy.clone(), tenancy::read));
    let write = metrics::api::write_routes(api.clone())
        .route_layer(from_fn_with_state(tenancy.clone(), tenancy::write));
    let prom = Router::new().merge(read).merge(write);
    let loki = Router::new()
        .merge(
            logs::api::read_routes(logs.clone())
                .route_layer(from_fn_with_state(tenancy.clone(), tenancy::read)),
        )
        .merge(
            logs::api::write_routes(logs.clone())
                .route_layer(from_fn_with_state(tenancy.clone(), tenancy::write)),
        )
        .merge(logs::api::public_routes());
    let tempo_read = traces::api::read_routes(traces.clone())
        .route_layer(from_fn_with_state(tenancy.clone(), tenancy::read));
    let tempo = Router::new()
        .merge(tempo_read)
        .merge(traces::api::public_routes());
    let tempo_write = traces::api::write_routes(traces.clone())
        .route_layer(from_fn_with_state(tenancy.clone(), tenancy::write));
    let ops_state = ops::Ops {
        config_yaml: Arc::new(cfg.redacted_yaml()),
        telemetry: telemetry.clone(),
        store,
        logs: log_store.clone(),
        traces: trace_store.clone(),
    };
    let router = Router::new()
        .merge(ops::routes(ops_state))
        .nest("/prometheus", prom.clone())
        .merge(prom)
        .merge(loki)
        .nest("/tempo", tempo.clone())
        .merge(tempo)
        .merge(tempo_write)
        .layer(from_fn_with_state(telemetry, telemetry::track));
    Ok(Server {
        cfg,
        router,
        api,
        logs,
        log_store,
        traces,
        trace_store,
        tenancy,
    })
}

async fn bind(addr: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|e| Error::Io {
        context: format!("binding {addr}"),
        source: e,
    })
}

impl Server {
    /// The HTTP router (for in-process tests).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves every listener until `shutdown` resolves, then drains requests and closes storage so that
    /// everything acknowledged is durable.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let http = bind(&self.cfg.server.http_listen).await?;
        info!(addr = %local(&http), "http listening");
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(serve_http(
            http,
            self.router.clone(),
            stop_rx.clone(),
        )));
        if !self.cfg.server.otlp_http_listen.is_empty() {
            let l = bind(&self.cfg.server.otlp_http_listen).await?;
            info!(addr = %local(&l), "otlp http listening");
            tasks.push(tokio::spawn(serve_http(
                l,
                self.router.clone(),
                stop_rx.clone(),
            )));
        }
        if !self.cfg.server.otlp_grpc_listen.is_empty() {
            let l = bind(&self.cfg.server.otlp_grpc_listen).await?;
            info!(addr = %local(&l), "otlp grpc listening");
            let max = self.cfg.limits.max_request_size_bytes;
            let svc = otlp_grpc::service(
                otlp_grpc::Metrics {
                    api: self.api.clone(),
                    tenancy: self.tenancy.clone(),
                },
                max,
            );
            let traces_svc = otlp_grpc::traces_service(
                otlp_grpc::Traces {
                    api: self.traces.clone(),
                    tenancy: self.tenancy.clone(),
                },
                max,
            );
            let logs_svc = otlp_grpc::logs_service(
                otlp_grpc::Logs {
                    api: self.logs.clone(),
                    tenancy: self.tenancy.clone(),
                },
                max,
            );
            let mut rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let incoming = tokio_stream_from(l);
                let r = tonic::transport::Server::builder()
                    .add_service(svc)
                    .add_service(logs_svc)
                    .add_service(traces_svc)
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(e) = r {
                    warn!(error = %e, "otlp grpc server failed");
                }
            }));
        }
        let maint = tokio::spawn(maintenance_loop(
            self.api.clone(),
            self.log_store.clone(),
            self.trace_store.clone(),
            self.cfg.clone(),
            stop_rx.clone(),
        ));

        shutdown.await;
        info!("shutting down");
        let _ = stop_tx.send(true);
        let grace = self.cfg.server.shutdown_timeout.to_std();
        for t in tasks {
            let _ = tokio::time::timeout(grace, t).await;
        }
        let _ = maint.await;
        self.api.store.close().await?;
        self.log_store.close().await?;
        self.trace_store.close().await?;
        info!("storage closed");
        Ok(())
    }
}

fn local(l: &TcpListener) -> String {
    l.local_addr().map(|a| a.to_string()).unwrap_or_default()
}

fn tokio_stream_from(
    l: TcpListener,
) -> impl futures::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    futures::stream::unfold(l, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    })
}

async fn serve_http(l: TcpListener, router: Router, mut stop: watch::Receiver<bool>) {
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    let r = axum::serve(l, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = r {
        warn!(error = %e, "http server failed");
    }
}

async fn maintenance_loop(
    api: MetricsApi,
    log_store: LogStore,
    trace_store: TraceStore,
    cfg: Config,
    mut stop: watch::Receiver<bool>,
) {
    let every = cfg
        .storage
        .maintenance_interval
        .to_std()
        .max(std::time::Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = api.overrides.reload() {
            warn!(error = %e, "overrides file not reloaded; previous overrides stay in force");
        }
        if let Err(e) = api.maintenance(common::time::now_ms()).await {
            warn!(error = %e, "metrics maintenance failed");
        }
        if let Err(e) = log_store
            .maintenance(common::time::now_ms() * 1_000_000)
            .await
        {
            warn!(error = %e, "logs maintenance failed");
        }
        if let Err(e) = trace_store
            .maintenance(common::time::now_ms() * 1_000_000)
            .await
        {
            warn!(error = %e, "traces maintenance failed");
        }
    }
}
