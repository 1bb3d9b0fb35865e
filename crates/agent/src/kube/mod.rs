//! Kubernetes service discovery and pod metadata for the node agent.
//!
//! [`Discovery`] watches the API server with the `kube` runtime watcher (list, then watch from the
//! list's `resourceVersion`, resuming from the last seen version or bookmark when a watch ends,
//! and re-listing when the server answers 410 Gone) and publishes Prometheus `kubernetes_sd`
//! targets: one label map per target, before relabeling, with Prometheus' meta label names.
//! Given a node name (a DaemonSet agent passes its own, from the downward API), pods are listed
//! with the field selector `spec.nodeName=<node>` and nodes with `metadata.name=<node>`, so the
//! agent only sees its own node.
//!
//! # Roles
//!
//! **pod** ([`Discovery::pods`]): one target per declared container port, `__address__` =
//! `podIP:port`, and one per container without ports, `__address__` = pod IP. Labels:
//! `__meta_kubernetes_namespace`, `__meta_kubernetes_pod_` + `name`, `ip`, `ipv4`, `ipv6`,
//! `label_<name>`, `labelpresent_<name>`, `annotation_<name>`, `annotationpresent_<name>`
//! (names sanitized to `[a-zA-Z0-9_]`), `container_name`, `container_id`, `container_image`,
//! `container_init`, `container_port_name`, `container_port_number`,
//! `container_port_protocol`, `ready` (`true`/`false`/`unknown`), `phase`, `node_name`,
//! `host_ip`, `uid`, `controller_kind`, `controller_name`. Like Prometheus, pods without an IP
//! give no target and Succeeded/Failed pods that still have one are kept.
//!
//! **node** ([`Discovery::nodes`]): `__address__` = first address by InternalIP, InternalDNS,
//! ExternalIP, ExternalDNS, LegacyHostIP, Hostname with the kubelet port from
//! `status.daemonEndpoints`, `instance` = node name, `__meta_kubernetes_node_name`,
//! `_label_*`, `_labelpresent_*`, `_annotation_*`, `_annotationpresent_*`,
//! `_address_<type>` (e.g. `__meta_kubernetes_node_address_InternalIP`).
//!
//! Labels whose value would be empty are left out (Prometheus treats empty and absent alike).
//!
//! # What the usual presets need
//!
//! - *Annotated pods* (`prometheus.io/scrape: "true"`): keep on
//!   `__meta_kubernetes_pod_annotation_prometheus_io_scrape` = `true`; path from
//!   `__meta_kubernetes_pod_annotation_prometheus_io_path` (default `/metrics`); scheme from
//!   `__meta_kubernetes_pod_annotation_prometheus_io_scheme`; port by rewriting `__address__`
//!   from `__meta_kubernetes_pod_ip` + `__meta_kubernetes_pod_annotation_prometheus_io_port`
//!   (the `_annotationpresent_` labels distinguish "absent" from "empty"). Usually also drop
//!   `__meta_kubernetes_pod_phase` = `Pending|Succeeded|Failed` and keep one target per pod
//!   (`__meta_kubernetes_pod_container_init` = `false`), and map `namespace`, `pod`,
//!   `container` from `__meta_kubernetes_namespace`, `_pod_name`, `_pod_container_name`.
//! - *Kubelet / cAdvisor*: role node; scheme `https`, `__address__` as given (the kubelet port,
//!   10250), path `/metrics/cadvisor` (and `/metrics` for the kubelet itself), bearer token from
//!   `/var/run/secrets/kubernetes.io/serviceaccount/token` and the service-account CA (kubelet
//!   serving certs are often self-signed: `insecure_skip_verify` is common); `instance` is the
//!   node name; `__meta_kubernetes_node_label_*` via labelmap.
//! - *kube-state-metrics*: role pod, keep
//!   `__meta_kubernetes_pod_label_app_kubernetes_io_name` = `kube-state-metrics` and
//!   `__meta_kubernetes_pod_container_port_name` = `http-metrics` (its self-metrics port is
//!   `telemetry`); it is cluster-wide, so scrape it from one agent only (the one whose node
//!   runs it: with a node name the agent only discovers its own node's pods anyway).
//!
//! # Pod metadata
//!
//! [`Discovery::pod_meta`] shares the pod watcher and gives the log tailer a [`PodMetaCache`]
//! (lookup by namespace/name or UID, deleted pods kept for [`meta::DELETED_POD_GRACE`]) and the
//! Promtail-style `app` label ([`PodMeta::app`]).

mod informer;
pub mod meta;
pub mod presets;
pub mod targets;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::error::Error;

pub use meta::{PodMeta, PodMetaCache};
pub use targets::{node_target, pod_targets, sanitize_label_name};

/// One discovered target: its labels before relabeling (`__address__`, `__meta_kubernetes_*`,
/// and `instance` for nodes).
pub type Target = BTreeMap<String, String>;

/// Kubernetes discovery for one agent: starts watchers (Tokio tasks) on demand and stops them all
/// when dropped, so keep it alive as long as its receivers and [`PodMetaCache`] are used.
pub struct Discovery {
    client: Client,
    node: Option<String>,
    watch_timeout: Option<u32>,
    page_size: Option<u32>,
    pods: Mutex<Option<PodShared>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// The handles of the one pod watcher behind [`Discovery::pods`] and [`Discovery::pod_meta`].
#[derive(Clone)]
struct PodShared {
    targets: watch::Sender<Vec<Target>>,
    index: Arc<RwLock<meta::PodIndex>>,
    synced: watch::Receiver<bool>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("node", &self.node)
            .field("watch_timeout", &self.watch_timeout)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl Discovery {
    /// Discovery over an existing client; `node` restricts pods and nodes to that node.
    pub fn new(client: Client, node: Option<String>) -> Self {
        Self {
            client,
            node: node.filter(|n| !n.is_empty()),
            watch_timeout: None,
            page_size: None,
            pods: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Discovery with the client configuration inferred like `kubectl` does: `$KUBECONFIG` or
    /// `~/.kube/config`, else the in-cluster service account (`KUBERNETES_SERVICE_HOST` and
    /// `/var/run/secrets/kubernetes.io/serviceaccount/`).
    pub async fn infer(node: Option<String>) -> Result<Self, Error> {
        let client = Client::try_default()
            .await
            .map_err(|e| Error::Config(format!("kubernetes client: {e}")))?;
        Ok(Self::new(client, node))
    }

    /// Discovery against an explicit API server URL without credentials (tests, `kubectl
    /// proxy`). Must be called inside a Tokio runtime.
    pub fn from_url(url: &str, node: Option<String>) -> Result<Self, Error> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| Error::Config(format!("kubernetes API URL {url:?}: {e}")))?;
        let client = Client::try_from(kube::Config::new(uri))
            .map_err(|e| Error::Config(format!("kubernetes client for {url}: {e}")))?;
        Ok(Self::new(client, node))
    }

    /// Asks the API server to end each watch after `secs` seconds (`timeoutSeconds`, default
    /// 290); the watcher then resumes from the last resource version.
    pub fn with_watch_timeout(mut self, secs: u32) -> Self {
        self.watch_timeout = Some(secs);
        self
    }

    /// Lists in pages of `limit` objects. By default lists are unpaged and served from the API
    /// server's watch cache (`resourceVersion=0`), which is far cheaper for a per-node agent.
    pub fn with_page_size(mut self, limit: u32) -> Self {
        self.page_size = Some(limit);
        self
    }

    /// The node this discovery is restricted to, if any.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    fn watcher_config(&self, field_selector: Option<String>) -> watcher::Config {
        let mut c = watcher::Config::default().any_semantic();
        c.page_size = self.page_size;
        if let Some(fs) = field_selector {
            c = c.fields(&fs);
        }
        if let Some(t) = self.watch_timeout {
            c = c.timeout(t);
        }
        c
    }

    /// Pod targets (Prometheus `role: pod`): the current list, empty until the initial list has
    /// loaded (which notifies receivers even when there is no target), then updated on every
    /// change. Must be called inside a Tokio runtime.
    pub fn pods(&self) -> watch::Receiver<Vec<Target>> {
        self.pod_shared().targets.subscribe()
    }

    /// Pod metadata for the log tailer, fed by the same watcher as [`Discovery::pods`]. Must be
    /// called inside a Tokio runtime.
    pub fn pod_meta(&self) -> PodMetaCache {
        let shared = self.pod_shared();
        PodMetaCache {
            index: shared.index,
            synced: shared.synced,
        }
    }

    /// The pod watcher, started on first use; it runs until the `Discovery` is dropped.
    fn pod_shared(&self) -> PodShared {
        let mut slot = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(shared) = slot.as_ref() {
            return shared.clone();
        }
        let (targets_tx, _) = watch::channel(Vec::new());
        let (synced_tx, synced_rx) = watch::channel(false);
        let index = Arc::new(RwLock::new(meta::PodIndex::default()));
        let shared = PodShared {
            targets: targets_tx.clone(),
            index: index.clone(),
            synced: synced_rx,
        };
        let api: Api<Pod> = Api::all(self.client.clone());
        let config = self.watcher_config(self.node.as_ref().map(|n| format!("spec.nodeName={n}")));
        let task = tokio::spawn(informer::run(
            "pod",
            api,
            config,
            |pod: &Pod| PodEntry {
                targets: pod_targets(pod),
                meta: Arc::new(PodMeta::from_pod(pod)),
            },
            move |entries: &BTreeMap<String, PodEntry>, initial: bool| {
                index
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .replace(entries.values().map(|e| e.meta.clone()));
                publish(
                    &targets_tx,
                    entries.values().flat_map(|e| e.targets.iter().cloned()),
                    initial,
                );
                synced_tx.send_replace(true);
            },
            std::future::pending(),
        ));
        self.track(task.abort_handle());
        *slot = Some(shared.clone());
        shared
    }

    /// Node targets (Prometheus `role: node`): empty until the initial list has loaded (which
    /// notifies the receiver even when there is no target), then updated on every change. Each
    /// call starts a watcher, which stops when its
    /// receivers are all dropped or the `Discovery` is. Must be called inside a Tokio runtime.
    pub fn nodes(&self) -> watch::Receiver<Vec<Target>> {
        let (tx, rx) = watch::channel(Vec::new());
        let api: Api<Node> = Api::all(self.client.clone());
        let config = self.watcher_config(self.node.as_ref().map(|n| format!("metadata.name={n}")));
        let stop = tx.clone();
        let task = tokio::spawn(informer::run(
            "node",
            api,
            config,
            node_target,
            move |entries: &BTreeMap<String, Option<Target>>, initial: bool| {
                publish(&tx, entries.values().flatten().cloned(), initial);
            },
            async move { stop.closed().await },
        ));
        self.track(task.abort_handle());
        rx
    }

    fn track(&self, task: AbortHandle) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        for t in self
            .tasks
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

/// The per-pod state the pod watcher keeps.
#[derive(Debug, Clone, PartialEq)]
struct PodEntry {
    targets: Vec<Target>,
    meta: Arc<PodMeta>,
}

/// Sends the new target list: always after a (re-)list, so receivers learn the initial state is
/// complete; otherwise only when it changed.
fn publish(tx: &watch::Sender<Vec<Target>>, targets: impl Iterator<Item = Target>, initial: bool) {
    let new: Vec<Target> = targets.collect();
    if initial {
        tx.send_replace(new);
    } else {
        tx.send_if_modified(|cur| {
            if *cur == new {
                false
            } else {
                *cur = new;
                true
            }
        });
    }
}
