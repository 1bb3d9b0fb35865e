//! The `heimdall` binary: one executable, roles chosen at run time.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use common::config::Config;

mod bench;

#[derive(Parser)]
#[command(
    name = "heimdall",
    version,
    about = "Metrics, logs, traces and profiles in one binary"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Flags shared by `server` and `up`; each overrides the config file.
#[derive(clap::Args, Clone, Default)]
struct ServeFlags {
    /// YAML config file (see `heimdall config default`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (WAL, and blocks with the default local object store).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTP listen address for every API.
    #[arg(long)]
    http_listen: Option<String>,
    /// OTLP gRPC listen address (heimdall's only gRPC service today); empty disables.
    #[arg(long, alias = "grpc-listen")]
    otlp_grpc_listen: Option<String>,
    /// Extra OTLP/HTTP listen address; empty disables (the main HTTP port serves OTLP too).
    #[arg(long)]
    otlp_http_listen: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server: every signal's ingest and query APIs.
    Server(ServeFlags),
    /// Local all-in-one: server with auth off (tenant `anonymous`) and data in ./heimdall-data.
    Up(ServeFlags),
    /// Node agent: host metrics on `/metrics` (port 12345), forwarded by remote_write.
    Agent {
        /// YAML agent config (an empty file or none: collect this host, serve /metrics only).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the version.
    Version,
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Bearer-token helpers for the tenants file.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Benchmarks that print throughput, bytes on disk and memory.
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate a config file and print the effective config.
    Check { file: PathBuf },
    /// Print the default config.
    Default,
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Print the SHA-256 hash of a token, for the tenants file.
    Hash { token: String },
}

fn load_config(f: &ServeFlags, up: bool) -> anyhow::Result<Config> {
    let mut cfg = match &f.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if up && f.config.is_none() {
        cfg.auth.enabled = false;
        cfg.server.http_listen = "127.0.0.1:8080".into();
        cfg.server.otlp_grpc_listen = "127.0.0.1:4317".into();
        cfg.server.otlp_http_listen = "127.0.0.1:4318".into();
    }
    if let Some(d) = &f.data_dir {
        cfg.storage.data_dir = d.clone();
    }
    if let Some(a) = &f.http_listen {
        cfg.server.http_listen = a.clone();
    }
    if let Some(a) = &f.otlp_grpc_listen {
        cfg.server.otlp_grpc_listen = a.clone();
    }
    if let Some(a) = &f.otlp_http_listen {
        cfg.server.otlp_http_listen = a.clone();
    }
    cfg.validate()?;
    Ok(cfg)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn print_up_banner(cfg: &Config, node_agent: &str) {
    let http = cfg.server.http_listen.replace("0.0.0.0", "127.0.0.1");
    println!(
        "heimdall {} is up — data in {}\n\
         \n  Prometheus API / remote_write: http://{http}/prometheus  (remote_write: http://{http}/api/v1/write)\
         \n  OTLP gRPC:                     {}\
         \n  OTLP HTTP:                     http://{http}/v1/metrics  http://{http}/v1/logs\
         \n  Loki API / push:               http://{http}  (push: http://{http}/loki/api/v1/push)\
         \n  Tempo API / OTLP traces:       http://{http}  (OTLP HTTP: http://{http}/v1/traces)\
         \n  Health / own metrics:          http://{http}/ready  http://{http}/metrics\
         \n  Node agent (this host):        {node_agent}  → node_* series every 15s, this host's log files\
         \n\nGrafana datasource provisioning (save as provisioning/datasources/heimdall.yaml):\n\
         \napiVersion: 1\ndatasources:\n  - name: heimdall-metrics\n    type: prometheus\n    access: proxy\n    url: http://{http}/prometheus\n    jsonData:\n      httpMethod: POST\n  - name: heimdall-logs\n    type: loki\n    access: proxy\n    url: http://{http}\n  - name: heimdall-traces\n    type: tempo\n    access: proxy\n    url: http://{http}\n",
        server::ops::VERSION,
        cfg.storage.data_dir.display(),
        cfg.server.otlp_grpc_listen,
    );
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Version => println!("heimdall {}", server::ops::VERSION),
        Cmd::Config {
            cmd: ConfigCmd::Default,
        } => print!("{}", serde_yaml::to_string(&Config::default())?),
        Cmd::Config {
            cmd: ConfigCmd::Check { file },
        } => {
            let cfg =
                Config::load(&file).with_context(|| format!("checking {}", file.display()))?;
            print!("{}", cfg.redacted_yaml());
            eprintln!("{}: ok", file.display());
        }
        Cmd::Token {
            cmd: TokenCmd::Hash { token },
        } => println!("{}", server::auth::hash_token(&token)),
        Cmd::Server(f) => {
            let cfg = load_config(&f, false)?;
            rt.block_on(async {
                let s = server::build(cfg).await?;
                s.serve(shutdown_signal()).await
            })?;
        }
        Cmd::Up(f) => {
            let cfg = load_config(&f, true)?;
            rt.block_on(async {
                let s = server::build(cfg.clone()).await?;
                // The node agent is a convenience of `up`: if it cannot start, the server still runs.
                let (_node_agent, agent_url) = match agent::run::start_local(
                    &cfg.server.http_listen,
                    &cfg.storage.data_dir.join("agent"),
                    "127.0.0.1:12345",
                )
                .await
                {
                    Ok((a, url)) => (Some(a), url.unwrap_or_else(|| "(port 12345 busy)".into())),
                    Err(e) => (None, format!("not running: {e}")),
                };
                print_up_banner(&cfg, &agent_url);
                s.serve(shutdown_signal()).await
            })?;
        }
        Cmd::Agent { config } => {
            let cfg = match &config {
                Some(p) => agent::AgentConfig::load(p)?,
                None => agent::AgentConfig::default(),
            };
            rt.block_on(agent::run::run(cfg, shutdown_signal()))?;
        }
        Cmd::Bench { cmd } => rt.block_on(bench::run(cmd))?,
    }
    Ok(())
}
