//! The agent's `kubernetes:` section: where the API server is, which node this agent runs on,
//! and the built-in scrape jobs a DaemonSet agent usually needs — written as ordinary
//! [`ScrapeJobConfig`]s with Prometheus relabel rules over the `kubernetes_sd` labels of
//! [`super::targets`], so they behave exactly like the same jobs in a Prometheus config:
//!
//! - `kubernetes-pods`: pods annotated `prometheus.io/scrape: "true"` (port, path and scheme from
//!   `prometheus.io/port|path|scheme`), labelled `namespace`, `pod`, `node` and the pod's labels,
//!   each in its namespace's tenant;
//! - `kubernetes-cadvisor` and `kubernetes-kubelet`: the kubelet's `/metrics/cadvisor` and
//!   `/metrics` on this node (https 10250, the service-account token), tenant `infrastructure`;
//! - `kube-state-metrics`: its pods (label `app.kubernetes.io/name=kube-state-metrics`, port
//!   `http-metrics` or `http`) with `honor_labels` (its series name other objects' namespaces),
//!   tenant `infrastructure`. With `node_name` set an agent only sees its own node's pods, so
//!   exactly one agent — the one on kube-state-metrics' node — scrapes it.
//!
//! User jobs can use `kubernetes_sd_configs: [{role: pod}]` or `[{role: node}]` too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Discovery, PodMetaCache};
use crate::scrape::config::TlsConfig;
use crate::scrape::relabel::Action;
use crate::scrape::{RelabelConfig, ScrapeJobConfig, Scraper};
use crate::Error;

/// Service-account token mounted into every pod (the kubelet accepts it).
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Kubernetes discovery and the built-in jobs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Watch the Kubernetes API (needs RBAC `get/list/watch` on pods and nodes).
    pub enabled: bool,
    /// API server URL without credentials (e.g. `http://127.0.0.1:8001` behind `kubectl
    /// proxy`); empty: the in-cluster service account.
    pub api_server: String,
    /// This agent's node (set it from the downward API, `spec.nodeName`); empty: `$NODE_NAME`,
    /// and when that is unset too, every node's pods (not what a DaemonSet wants).
    pub node_name: String,
    /// Tenant of node-level data: kubelet, cAdvisor and kube-state-metrics series.
    pub infrastructure_tenant: String,
    /// Scrape pods annotated `prometheus.io/scrape: "true"`, each in its namespace's tenant.
    pub annotated_pods: bool,
    /// Scrape this node's kubelet `/metrics/cadvisor`.
    pub cadvisor: bool,
    /// Scrape this node's kubelet `/metrics`.
    pub kubelet: bool,
    /// Scrape kube-state-metrics pods (on this node).
    pub kube_state_metrics: bool,
    /// Accept the kubelet's serving certificate without verification (usually self-signed).
    pub kubelet_insecure_skip_verify: bool,
    /// Pod log streams take `app` from the pod's labels (`app.kubernetes.io/name`, `app`,
    /// `k8s-app`, else the controller's name) instead of guessing from the pod name.
    pub pod_metadata_for_logs: bool,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            api_server: String::new(),
            node_name: String::new(),
            infrastructure_tenant: "infrastructure".into(),
            annotated_pods: true,
            cadvisor: true,
            kubelet: true,
            kube_state_metrics: true,
            kubelet_insecure_skip_verify: true,
            pod_metadata_for_logs: true,
        }
    }
}

/// A `kubernetes_sd_configs` entry of a scrape job (Prometheus' name; the API server and node are
/// the agent's `kubernetes:` settings).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesSdConfig {
    /// `pod` or `node`.
    pub role: Role,
}

/// What a Kubernetes discovery lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// One target per declared container port (or per container without ports).
    #[default]
    Pod,
    /// One target per node, at the kubelet's address.
    Node,
}

impl KubernetesConfig {
    /// The node name in effect: `node_name`, else `$NODE_NAME`.
    pub fn node(&self) -> Option<String> {
        Some(self.node_name.clone())
            .filter(|n| !n.is_empty())
            .or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()))
    }

    /// Checks the tenant name and the URL.
    pub fn validate(&self) -> Result<(), Error> {
        common::tenant::TenantId::new(&self.infrastructure_tenant)
            .map_err(|e| Error::Config(format!("kubernetes.infrastructure_tenant: {e}")))?;
        if !self.api_server.is_empty()
            && !self.api_server.starts_with("http://")
            && !self.api_server.starts_with("https://")
        {
            return Err(Error::Config(format!(
                "kubernetes.api_server {:?} must be an http:// or https:// URL",
                self.api_server
            )));
        }
        Ok(())
    }

    /// Connects (without network traffic yet): `api_server`, else the in-cluster service
    /// account. Must be called inside a Tokio runtime.
    pub fn discovery(&self) -> Result<Discovery, Error> {
        if !self.api_server.is_empty() {
            return Discovery::from_url(&self.api_server, self.node());
        }
        let cfg = kube::Config::incluster().map_err(|e| {
            Error::Config(format!(
                "kubernetes.enabled without api_server needs the in-cluster service account: {e}"
            ))
        })?;
        let client = kube::Client::try_from(cfg)
            .map_err(|e| Error::Config(format!("kubernetes client: {e}")))?;
        Ok(Discovery::new(client, self.node()))
    }

    /// The built-in jobs this config enables, with their roles.
    pub fn preset_jobs(&self) -> Vec<(ScrapeJobConfig, Role)> {
        let infra = Some(self.infrastructure_tenant.clone());
        let mut out = Vec::new();
        if self.annotated_pods {
            let mut relabel = vec![
                keep(&[ANNOTATION_SCRAPE], "true"),
                drop(&["__meta_kubernetes_pod_phase"], "Pending|Succeeded|Failed"),
                drop(&["__meta_kubernetes_pod_container_init"], "true"),
            ];
            if self.kube_state_metrics {
                // Scraped by its own job, into the infrastructure tenant.
                relabel.push(drop(&[KSM_NAME_LABEL], KSM_NAME));
            }
            relabel.extend([
                replace(
                    &["__meta_kubernetes_pod_ip", ANNOTATION_PORT],
                    r"([^:;]+);(\d+)",
                    "__address__",
                    "$1:$2",
                ),
                replace(
                    &["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                    "(.+)",
                    "__metrics_path__",
                    "$1",
                ),
                replace(
                    &["__meta_kubernetes_pod_annotation_prometheus_io_scheme"],
                    "(https?)",
                    "__scheme__",
                    "$1",
                ),
                RelabelConfig {
                    regex: "__meta_kubernetes_pod_label_(.+)".into(),
                    action: Action::LabelMap,
                    ..Default::default()
                },
                replace(&["__meta_kubernetes_namespace"], "(.*)", "namespace", "$1"),
                replace(&["__meta_kubernetes_pod_name"], "(.*)", "pod", "$1"),
                replace(&["__meta_kubernetes_pod_node_name"], "(.*)", "node", "$1"),
            ]);
            out.push((
                ScrapeJobConfig {
                    job_name: "kubernetes-pods".into(),
                    relabel_configs: relabel,
                    tenant_from_namespace: true,
                    ..Default::default()
                },
                Role::Pod,
            ));
        }
        let kubelet = |name: &str, path: &str| ScrapeJobConfig {
            job_name: name.into(),
            scheme: "https".into(),
            metrics_path: path.into(),
            bearer_token_file: Some(SERVICE_ACCOUNT_TOKEN.into()),
            tls_config: TlsConfig {
                insecure_skip_verify: self.kubelet_insecure_skip_verify,
            },
            relabel_configs: vec![
                RelabelConfig {
                    regex: "__meta_kubernetes_node_label_(.+)".into(),
                    action: Action::LabelMap,
                    ..Default::default()
                },
                replace(&["__meta_kubernetes_node_name"], "(.*)", "node", "$1"),
            ],
            tenant: infra.clone(),
            ..Default::default()
        };
        if self.cadvisor {
            out.push((
                kubelet("kubernetes-cadvisor", "/metrics/cadvisor"),
                Role::Node,
            ));
        }
        if self.kubelet {
            out.push((kubelet("kubernetes-kubelet", "/metrics"), Role::Node));
        }
        if self.kube_state_metrics {
            out.push((
                ScrapeJobConfig {
                    job_name: "kube-state-metrics".into(),
                    honor_labels: true,
                    relabel_configs: vec![
                        keep(&[KSM_NAME_LABEL], KSM_NAME),
                        keep(
                            &["__meta_kubernetes_pod_container_port_name"],
                            "http-metrics|http",
                        ),
                        drop(&["__meta_kubernetes_pod_phase"], "Pending|Succeeded|Failed"),
                    ],
                    tenant: infra,
                    ..Default::default()
                },
                Role::Pod,
            ));
        }
        out
    }
}

const ANNOTATION_SCRAPE: &str = "__meta_kubernetes_pod_annotation_prometheus_io_scrape";
const ANNOTATION_PORT: &str = "__meta_kubernetes_pod_annotation_prometheus_io_port";
const KSM_NAME_LABEL: &str = "__meta_kubernetes_pod_label_app_kubernetes_io_name";
const KSM_NAME: &str = "kube-state-metrics";

fn rule(source: &[&str], regex: &str, action: Action) -> RelabelConfig {
    RelabelConfig {
        source_labels: source.iter().map(|s| s.to_string()).collect(),
        regex: regex.into(),
        action,
        ..Default::default()
    }
}

fn keep(source: &[&str], regex: &str) -> RelabelConfig {
    rule(source, regex, Action::Keep)
}

fn drop(source: &[&str], regex: &str) -> RelabelConfig {
    rule(source, regex, Action::Drop)
}

fn replace(source: &[&str], regex: &str, target: &str, replacement: &str) -> RelabelConfig {
    RelabelConfig {
        target_label: target.into(),
        replacement: replacement.into(),
        ..rule(source, regex, Action::Replace)
    }
}

/// A job's targets: the role's discovered targets plus its `static_configs`, re-sent whenever
/// discovery changes (the forwarding task ends with the discovery's sender).
fn with_static(
    mut discovered: watch::Receiver<Vec<BTreeMap<String, String>>>,
    fixed: Vec<BTreeMap<String, String>>,
) -> watch::Receiver<Vec<BTreeMap<String, String>>> {
    if fixed.is_empty() {
        return discovered;
    }
    let merge = move |d: &[BTreeMap<String, String>]| {
        let mut all = fixed.clone();
        all.extend_from_slice(d);
        all
    };
    let first = merge(&discovered.borrow_and_update());
    let (tx, rx) = watch::channel(first);
    tokio::spawn(async move {
        while discovered.changed().await.is_ok() {
            let next = merge(&discovered.borrow_and_update());
            if tx.send(next).is_err() {
                break;
            }
        }
    });
    rx
}

/// Starts the Kubernetes side of an agent: the preset jobs and the user jobs with
/// `kubernetes_sd_configs` on `scraper` (when there is one), fed by one [`Discovery`]. Returns
/// the discovery (keep it alive) and, when `pod_metadata_for_logs`, the pod metadata cache.
pub fn start(
    cfg: &KubernetesConfig,
    user_jobs: &[ScrapeJobConfig],
    scraper: Option<&mut Scraper>,
) -> Result<(Discovery, Option<PodMetaCache>), Error> {
    let discovery = cfg.discovery()?;
    if let Some(scraper) = scraper {
        let mut jobs = cfg.preset_jobs();
        for job in user_jobs {
            if let Some(sd) = job.kubernetes_sd_configs.first() {
                jobs.push((job.clone(), sd.role));
            }
        }
        for (job, role) in jobs {
            let discovered = match role {
                Role::Pod => discovery.pods(),
                Role::Node => discovery.nodes(),
            };
            let targets = with_static(discovered, job.static_targets());
            scraper.start_job(job, targets)?;
        }
    }
    let meta = cfg.pod_metadata_for_logs.then(|| discovery.pod_meta());
    Ok((discovery, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::Relabeler;

    fn relabel(
        job: &ScrapeJobConfig,
        mut l: BTreeMap<String, String>,
    ) -> Option<BTreeMap<String, String>> {
        let r = Relabeler::new(&job.relabel_configs, "test").unwrap();
        r.process(&mut l).then_some(l)
    }

    fn pod(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut l: BTreeMap<String, String> = [
            ("__address__", "10.1.2.3:8080"),
            ("__meta_kubernetes_namespace", "shop"),
            ("__meta_kubernetes_pod_name", "web-1"),
            ("__meta_kubernetes_pod_ip", "10.1.2.3"),
            ("__meta_kubernetes_pod_phase", "Running"),
            ("__meta_kubernetes_pod_container_init", "false"),
            ("__meta_kubernetes_pod_node_name", "n1"),
            ("__meta_kubernetes_pod_label_tier", "front"),
            ("__meta_kubernetes_pod_container_port_name", "http"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            l.insert(k.to_string(), v.to_string());
        }
        l
    }

    #[test]
    fn preset_jobs_validate_and_are_all_there() {
        let jobs = KubernetesConfig::default().preset_jobs();
        let names: Vec<&str> = jobs.iter().map(|(j, _)| j.job_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kubernetes-pods",
                "kubernetes-cadvisor",
                "kubernetes-kubelet",
                "kube-state-metrics"
            ]
        );
        for (j, _) in &jobs {
            j.validate(common::config::Duration::from_secs(15)).unwrap();
        }
        let none = KubernetesConfig {
            annotated_pods: false,
            cadvisor: false,
            kubelet: false,
            kube_state_metrics: false,
            ..Default::default()
        };
        assert!(none.preset_jobs().is_empty());
    }

    #[test]
    fn annotated_pods_relabel_like_prometheus() {
        let job = &KubernetesConfig::default().preset_jobs()[0].0;
        assert!(relabel(job, pod(&[])).is_none(), "not annotated");
        let l = relabel(
            job,
            pod(&[
                (ANNOTATION_SCRAPE, "true"),
                (ANNOTATION_PORT, "9102"),
                (
                    "__meta_kubernetes_pod_annotation_prometheus_io_path",
                    "/stats",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(l["__address__"], "10.1.2.3:9102");
        assert_eq!(l["__metrics_path__"], "/stats");
        assert_eq!(l["namespace"], "shop");
        assert_eq!(l["pod"], "web-1");
        assert_eq!(l["node"], "n1");
        assert_eq!(l["tier"], "front");
        // Without a port annotation the discovered port stays; finished and init pods are dropped.
        let l = relabel(job, pod(&[(ANNOTATION_SCRAPE, "true")])).unwrap();
        assert_eq!(l["__address__"], "10.1.2.3:8080");
        for (k, v) in [
            ("__meta_kubernetes_pod_phase", "Succeeded"),
            ("__meta_kubernetes_pod_container_init", "true"),
            (KSM_NAME_LABEL, KSM_NAME),
        ] {
            assert!(
                relabel(job, pod(&[(ANNOTATION_SCRAPE, "true"), (k, v)])).is_none(),
                "{k}"
            );
        }
    }

    #[test]
    fn kube_state_metrics_and_kubelet_jobs() {
        let jobs = KubernetesConfig::default().preset_jobs();
        let ksm = &jobs[3].0;
        assert!(ksm.honor_labels);
        assert_eq!(ksm.tenant.as_deref(), Some("infrastructure"));
        assert!(relabel(ksm, pod(&[(KSM_NAME_LABEL, KSM_NAME)])).is_some());
        assert!(relabel(
            ksm,
            pod(&[
                (KSM_NAME_LABEL, KSM_NAME),
                ("__meta_kubernetes_pod_container_port_name", "telemetry")
            ])
        )
        .is_none());
        assert!(relabel(ksm, pod(&[])).is_none());
        let (cadvisor, role) = &jobs[1];
        assert_eq!(*role, Role::Node);
        assert_eq!(cadvisor.scheme, "https");
        assert_eq!(cadvisor.metrics_path, "/metrics/cadvisor");
        let node: BTreeMap<String, String> = [
            ("__address__", "192.168.0.5:10250"),
            ("__meta_kubernetes_node_name", "n1"),
            ("__meta_kubernetes_node_label_kubernetes_io_os", "linux"),
            ("instance", "n1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let l = relabel(cadvisor, node).unwrap();
        assert_eq!(l["node"], "n1");
        assert_eq!(l["kubernetes_io_os"], "linux");
    }

    #[test]
    fn config_checks() {
        assert!(KubernetesConfig::default().validate().is_ok());
        let bad = KubernetesConfig {
            api_server: "localhost:8001".into(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = KubernetesConfig {
            infrastructure_tenant: "a|b".into(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let n = KubernetesConfig {
            node_name: "n7".into(),
            ..Default::default()
        };
        assert_eq!(n.node().as_deref(), Some("n7"));
    }
}
