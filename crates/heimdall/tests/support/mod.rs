//! Test support: start the real `heimdall` binary and real peers on free loopback ports.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether an external program exists. When `HEIMDALL_REQUIRE_PEERS=1` (set by `scripts/test`), a missing
/// peer fails the test instead of skipping it, so CI cannot pass without running it.
pub fn have_peer(bin: &str) -> bool {
    let found = which(bin).is_some();
    if !found {
        if std::env::var("HEIMDALL_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("required peer {bin} is not installed (scripts/test installs it)");
        }
        eprintln!("skipping: {bin} not installed (run scripts/test to install peers)");
    }
    found
}

/// Finds a program on PATH.
pub fn which(bin: &str) -> Option<PathBuf> {
    if bin.contains('/') {
        return Path::new(bin).exists().then(|| PathBuf::from(bin));
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|p| p.exists())
    })
}

/// The Python with the test requirements (set by scripts/test), if any.
pub fn python() -> Option<String> {
    match std::env::var("HEIMDALL_PYTHON") {
        Ok(p) if Path::new(&p).exists() => Some(p),
        _ => {
            if std::env::var("HEIMDALL_REQUIRE_PEERS").as_deref() == Ok("1") {
                panic!(
                    "HEIMDALL_PYTHON is not set to a python with tests/requirements.txt installed"
                );
            }
            eprintln!("skipping: HEIMDALL_PYTHON not set (run scripts/test)");
            None
        }
    }
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let f = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            child,
            name: name.to_string(),
        }
    }

    /// SIGKILL, no chance to flush.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A running heimdall server.
pub struct Heimdall {
    pub proc: Proc,
    pub url: String,
    pub grpc: String,
    pub dir: PathBuf,
    config: String,
}

impl Heimdall {
    /// Starts `heimdall server` with `extra_yaml` appended to a config that enables auth and sets ports.
    pub fn start(dir: &Path, extra_yaml: &str) -> Heimdall {
        let config = format!(
            "storage:\n  data_dir: {}\n  maintenance_interval: 1s\n{extra_yaml}",
            dir.join("data").display()
        );
        Self::start_with(dir, config)
    }

    fn start_with(dir: &Path, config: String) -> Heimdall {
        Self::start_on(dir, config, free_port(), free_port())
    }

    fn start_on(dir: &Path, config: String, http: u16, grpc: u16) -> Heimdall {
        let cfg_path = dir.join("heimdall.yaml");
        std::fs::write(&cfg_path, &config).unwrap();
        let log = dir.join(format!("heimdall-{http}.log"));
        let proc = Proc::spawn(
            "heimdall",
            Command::new(env!("CARGO_BIN_EXE_heimdall"))
                .arg("server")
                .arg("--config")
                .arg(&cfg_path)
                .arg("--http-listen")
                .arg(format!("127.0.0.1:{http}"))
                .arg("--otlp-grpc-listen")
                .arg(format!("127.0.0.1:{grpc}"))
                .arg("--otlp-http-listen")
                .arg(""),
            &log,
        );
        let h = Heimdall {
            proc,
            url: format!("http://127.0.0.1:{http}"),
            grpc: format!("http://127.0.0.1:{grpc}"),
            dir: dir.to_path_buf(),
            config,
        };
        wait_ready(&format!("{}/ready", h.url), &log);
        h
    }

    /// Starts heimdall with a tenants file in which bearer `token` may read and write `tenant` only
    /// (how Debian's Prometheus 2.42, which drops `remote_write.headers`, names its tenant).
    pub fn start_with_token(dir: &Path, tenant: &str, token: &str) -> Heimdall {
        let out = Command::new(env!("CARGO_BIN_EXE_heimdall"))
            .args(["token", "hash", token])
            .output()
            .unwrap();
        let hash = String::from_utf8(out.stdout).unwrap();
        let tenants = dir.join("tenants.yaml");
        std::fs::write(
            &tenants,
            format!(
                "tokens:\n  - name: prometheus\n    sha256: {}\n    read: [{tenant}]\n    write: [{tenant}]\n",
                hash.trim()
            ),
        )
        .unwrap();
        Self::start(
            dir,
            &format!("auth:\n  tenants_file: {}\n", tenants.display()),
        )
    }

    /// Starts a new process on the same config, data dir and ports (after a kill or stop), so
    /// clients configured with the old URL reach it again.
    pub fn restart_same_ports(&mut self) {
        let port = |u: &str| u.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        let (http, grpc) = (port(&self.url), port(&self.grpc));
        let new = Self::start_on(&self.dir.clone(), self.config.clone(), http, grpc);
        *self = new;
    }

    /// Starts a new process on the same config and data dir (after a kill or stop).
    pub fn restart(&mut self) {
        let dir = self.dir.clone();
        let config = self.config.clone();
        let new = Self::start_with(&dir, config);
        *self = new;
    }
}

/// Writes `<dir>/agent.yaml`: listen on `port`, data in `<dir>/agent-data`, then `extra` (YAML).
pub fn write_agent_config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let cfg = dir.join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\n{extra}",
            dir.join("agent-data").display()
        ),
    )
    .unwrap();
    cfg
}

/// Starts `heimdall agent --config cfg`, output in `<dir>/<log_name>`.
pub fn start_agent(dir: &Path, cfg: &Path, log_name: &str) -> Proc {
    Proc::spawn(
        "heimdall agent",
        Command::new(env!("CARGO_BIN_EXE_heimdall"))
            .arg("agent")
            .arg("--config")
            .arg(cfg),
        &dir.join(log_name),
    )
}

/// Starts the Debian `prometheus-node-exporter` on a free port; returns it and its port.
pub fn start_node_exporter(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let log = dir.join("node.log");
    let p = Proc::spawn(
        "node_exporter",
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        &log,
    );
    wait_ready(&format!("http://127.0.0.1:{port}/metrics"), &log);
    (p, port)
}

/// Writes `config` to `<dir>/prometheus.yml` and starts the Debian `prometheus` on `port` (logging to
/// `<dir>/prometheus.log`, optionally as a remote-write receiver); returns it once ready, with its
/// base URL and log path.
pub fn start_prometheus(
    dir: &Path,
    port: u16,
    config: &str,
    receiver: bool,
) -> (Proc, String, PathBuf) {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, config).unwrap();
    let log = dir.join("prometheus.log");
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    if receiver {
        cmd.arg("--web.enable-remote-write-receiver");
    }
    let p = Proc::spawn("prometheus", &mut cmd, &log);
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{url}/-/ready"), &log);
    (p, url, log)
}

/// Waits until `url` answers 200, failing with the log's tail after 60 s.
pub fn wait_ready(url: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let c = client();
    while Instant::now() < deadline {
        if let Ok(r) = c.get(url).send() {
            if r.status().is_success() {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{url} not ready; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// GET `url` with a tenant header, returning (status, JSON body).
pub fn get_json(url: &str, tenant: Option<&str>) -> (u16, serde_json::Value) {
    get_json_auth(url, tenant, None)
}

/// GET `url` with an optional tenant header and bearer token, returning (status, JSON body).
pub fn get_json_auth(
    url: &str,
    tenant: Option<&str>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    send_json(client().get(url), tenant, token)
}

/// Sends `r` with an optional tenant header and bearer token, returning (status, JSON body or the
/// text as a JSON string).
fn send_json(
    mut r: reqwest::blocking::RequestBuilder,
    tenant: Option<&str>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    if let Some(t) = tenant {
        r = r.header("X-Scope-OrgID", t);
    }
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Builds a remote_write 1.0 body: snappy-compressed `WriteRequest`.
/// One series for [`rw_body`]: label pairs and (timestamp ms, value) samples.
pub type TestSeries<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, f64)>);

pub fn rw_body(series: &[TestSeries]) -> Vec<u8> {
    use proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|(labels, samples)| {
                let mut labels: Vec<Label> = labels
                    .iter()
                    .map(|(n, v)| Label {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect();
                labels.sort_by(|a, b| a.name.cmp(&b.name));
                TimeSeries {
                    labels,
                    samples: samples
                        .iter()
                        .map(|(t, v)| Sample {
                            timestamp: *t,
                            value: *v,
                        })
                        .collect(),
                    ..Default::default()
                }
            })
            .collect(),
        ..Default::default()
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

/// POSTs a remote_write body, returning the status.
pub fn push(url: &str, tenant: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut r = client()
        .post(format!("{url}/api/v1/push"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    if let Some(t) = tenant {
        r = r.header("X-Scope-OrgID", t);
    }
    let resp = r.send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// POSTs a remote_write body with a tenant header and a bearer token, returning the status.
pub fn push_auth(
    url: &str,
    tenant: Option<&str>,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let mut r = client()
        .post(format!("{url}/api/v1/push"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    if let Some(t) = tenant {
        r = r.header("X-Scope-OrgID", t);
    }
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

/// POSTs `form` as `application/x-www-form-urlencoded` (as Grafana does), returning (status, JSON body).
pub fn post_form_auth(
    url: &str,
    form: &str,
    tenant: Option<&str>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let r = client()
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.to_string());
    send_json(r, tenant, token)
}
