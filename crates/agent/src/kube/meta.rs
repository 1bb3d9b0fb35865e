//! Pod metadata for the log tailer: a cache of the pods the pod watcher sees, looked up by
//! (namespace, pod name) or by UID (the parts of a `/var/log/pods/<ns>_<pod>_<uid>/` path).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;

use super::targets::controller_of;

/// How long a deleted pod stays resolvable, so the last lines of its log files (read after the
/// API server already dropped the pod) still get its labels.
pub const DELETED_POD_GRACE: Duration = Duration::from_secs(300);

/// The metadata of one pod the log tailer attaches to its streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMeta {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `spec.nodeName`; empty while the pod is unscheduled.
    pub node: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// Kind of the controlling owner (`ReplicaSet`, `DaemonSet`, `StatefulSet`, `Job`, …).
    pub controller_kind: Option<String>,
    /// Name of the controlling owner.
    pub controller_name: Option<String>,
}

impl PodMeta {
    /// Extracts the metadata of a pod object.
    pub fn from_pod(pod: &Pod) -> Self {
        let m = &pod.metadata;
        let controller = controller_of(m);
        Self {
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            node: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            labels: m.labels.clone().unwrap_or_default(),
            annotations: m.annotations.clone().unwrap_or_default(),
            controller_kind: controller.map(|(k, _)| k.to_string()),
            controller_name: controller.map(|(_, n)| n.to_string()),
        }
    }

    /// The `app` stream label, following the Promtail/Grafana Alloy Kubernetes convention: the
    /// pod label `app.kubernetes.io/name`, else `app`, else `k8s-app`, else the controller name
    /// without its pod-template-hash suffix (a Deployment's ReplicaSet `web-7d4b9c8f6d` → `web`),
    /// else the pod name. Empty values are skipped.
    pub fn app(&self) -> String {
        for key in ["app.kubernetes.io/name", "app", "k8s-app"] {
            if let Some(v) = self.labels.get(key).filter(|v| !v.is_empty()) {
                return v.clone();
            }
        }
        if let Some(c) = self.controller_name.as_deref().filter(|c| !c.is_empty()) {
            return strip_template_hash(c, self.labels.get("pod-template-hash")).to_string();
        }
        self.name.clone()
    }
}

/// Removes a Deployment's pod-template-hash from a ReplicaSet name: the exact `-<hash>` from the
/// pod's `pod-template-hash` label when present, else (Promtail's rule) a trailing `-` followed by
/// 8 to 10 lowercase hex digits.
pub fn strip_template_hash<'a>(controller: &'a str, template_hash: Option<&String>) -> &'a str {
    if let Some(hash) = template_hash.filter(|h| !h.is_empty()) {
        if let Some(base) = controller
            .strip_suffix(hash.as_str())
            .and_then(|s| s.strip_suffix('-'))
            .filter(|b| !b.is_empty())
        {
            return base;
        }
    }
    match controller.rsplit_once('-') {
        Some((base, suffix))
            if !base.is_empty()
                && (8..=10).contains(&suffix.len())
                && suffix
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            base
        }
        _ => controller,
    }
}

/// Live pods plus recently deleted ones.
#[derive(Debug, Default)]
pub(crate) struct PodIndex {
    by_name: HashMap<(String, String), Arc<PodMeta>>,
    by_uid: HashMap<String, Arc<PodMeta>>,
    /// Deleted pods by UID with their deletion time, kept for [`DELETED_POD_GRACE`].
    deleted: HashMap<String, (Instant, Arc<PodMeta>)>,
}

impl PodIndex {
    /// Replaces the live set; pods that disappeared move to the deleted set.
    pub(crate) fn replace(&mut self, live: impl IntoIterator<Item = Arc<PodMeta>>) {
        let now = Instant::now();
        let mut by_name = HashMap::new();
        let mut by_uid = HashMap::new();
        for m in live {
            by_name.insert((m.namespace.clone(), m.name.clone()), m.clone());
            if !m.uid.is_empty() {
                by_uid.insert(m.uid.clone(), m);
            }
        }
        for (uid, m) in self.by_uid.drain() {
            if !by_uid.contains_key(&uid) {
                self.deleted.insert(uid, (now, m));
            }
        }
        for uid in by_uid.keys() {
            self.deleted.remove(uid);
        }
        self.deleted
            .retain(|_, (at, _)| now.duration_since(*at) < DELETED_POD_GRACE);
        self.by_name = by_name;
        self.by_uid = by_uid;
    }

    fn by_name(&self, namespace: &str, name: &str) -> Option<Arc<PodMeta>> {
        if let Some(m) = self.by_name.get(&(namespace.to_string(), name.to_string())) {
            return Some(m.clone());
        }
        // Most recently deleted pod of that name.
        self.deleted
            .values()
            .filter(|(_, m)| m.namespace == namespace && m.name == name)
            .max_by_key(|(at, _)| *at)
            .map(|(_, m)| m.clone())
    }

    fn by_uid(&self, uid: &str) -> Option<Arc<PodMeta>> {
        self.by_uid
            .get(uid)
            .or_else(|| self.deleted.get(uid).map(|(_, m)| m))
            .cloned()
    }
}

/// A shared, continuously updated view of the pods the pod watcher sees (the node's own pods
/// when [`Discovery`](super::Discovery) has a node name). Cheap to clone; updated while the
/// `Discovery` that made it is alive.
#[derive(Debug, Clone)]
pub struct PodMetaCache {
    pub(crate) index: Arc<RwLock<PodIndex>>,
    pub(crate) synced: watch::Receiver<bool>,
}

impl PodMetaCache {
    /// The pod `namespace/name`, live or deleted within [`DELETED_POD_GRACE`].
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<PodMeta>> {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_name(namespace, name)
    }

    /// The pod with this UID, live or deleted within [`DELETED_POD_GRACE`].
    pub fn get_by_uid(&self, uid: &str) -> Option<Arc<PodMeta>> {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_uid(uid)
    }

    /// True once the initial pod list has been loaded.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the initial pod list has been loaded (returns at once if it has).
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.clone();
        // Err only when the watcher task is gone; nothing more will arrive then.
        let _ = rx.wait_for(|s| *s).await;
    }
}
