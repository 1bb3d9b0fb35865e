//! Stream labels and tenants of a tailed file, derived from its path.
//!
//! Pod logs (`/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`) get the labels
//! Grafana's Kubernetes pod-log configs conventionally set — `namespace`, `pod`, `container`,
//! `job="<namespace>/<container>"`, `app` (the pod name without its controller's hash suffixes) —
//! plus `service_name` (the container; Loki would otherwise derive it the same way), `node`, and
//! per entry `stream` (and `level` when the line carries one, see [`super::fields`]). Pod UID and restart count stay out of
//! the labels: they would start a new stream on every restart. Plain files get `filename`, `host`
//! and `job` (`varlogs` unless a static label sets it, as Promtail's stock config does).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::format::{Format, Stream};

/// Kubernetes coordinates parsed from a pod log path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodLogPath {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Pod UID.
    pub uid: String,
    /// Container name.
    pub container: String,
}

/// Parses `…/<namespace>_<pod>_<uid>/<container>/<restart>.log`. Namespaces and pod names are DNS
/// names, so they cannot contain `_`.
pub fn parse_pod_log_path(path: &Path) -> Option<PodLogPath> {
    let mut comps = path.iter().rev();
    let file = comps.next()?.to_str()?;
    let container = comps.next()?.to_str()?;
    let pod_dir = comps.next()?.to_str()?;
    if !file.ends_with(".log") || container.is_empty() {
        return None;
    }
    let mut it = pod_dir.splitn(3, '_');
    let (namespace, pod, uid) = (it.next()?, it.next()?, it.next()?);
    if namespace.is_empty() || pod.is_empty() || uid.is_empty() {
        return None;
    }
    Some(PodLogPath {
        namespace: namespace.into(),
        pod: pod.into(),
        uid: uid.into(),
        container: container.into(),
    })
}

/// Everything the shipper needs to know about a file's entries.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    /// How lines are parsed.
    pub format: Format,
    /// `X-Scope-OrgID` of its entries (`None`: the forwarder's default).
    pub tenant: Option<String>,
    /// Label set without `stream`, in Loki's text form.
    pub labels: Arc<str>,
    /// Label sets with `stream="stdout"` / `stream="stderr"`.
    pub labels_stream: [Arc<str>; 2],
    /// The label set without `stream`, for rendering variants (an entry's `level`).
    pub label_map: Arc<BTreeMap<String, String>>,
    /// Look for a level, trace id and span id in JSON and logfmt lines.
    pub parse_lines: bool,
    /// A pod log whose `app` was guessed from the pod name because its Kubernetes metadata was
    /// not known yet; the tailer derives the labels again once it is.
    pub provisional: bool,
}

impl Source {
    /// The label set of an entry of `stream`.
    pub fn labels_for(&self, stream: Option<Stream>) -> &Arc<str> {
        match stream {
            None => &self.labels,
            Some(s) => &self.labels_stream[s as usize],
        }
    }

    /// The label set of an entry of `stream` with `level="<level>"` added (rendered anew; callers
    /// cache it).
    pub fn labels_with_level(&self, stream: Option<Stream>, level: &str) -> Arc<str> {
        let mut l = (*self.label_map).clone();
        if let Some(s) = stream {
            l.insert("stream".into(), s.as_str().into());
        }
        l.insert("level".into(), level.into());
        format_labels(&l).into()
    }
}

/// The workload name in a pod name: the pod name without the suffixes its controller adds — a
/// Deployment's `-<pod-template-hash>-<5 chars>`, a DaemonSet's or Job's `-<5 chars>`, a
/// StatefulSet's `-<ordinal>` — for the `app` label when no Kubernetes metadata is at hand.
pub fn app_from_pod_name(pod: &str) -> &str {
    // Generated suffixes use Kubernetes' "safe" alphabet: no vowels, no 0/1/3.
    let safe = |s: &str| {
        s.bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
    };
    let strip = |name: &str, ok: &dyn Fn(&str) -> bool| -> Option<usize> {
        let (head, tail) = name.rsplit_once('-')?;
        (!head.is_empty() && ok(tail)).then_some(head.len())
    };
    if let Some(n) = strip(pod, &|t| t.len() == 5 && safe(t)) {
        let head = &pod[..n];
        // A ReplicaSet's pod-template hash sits before the random suffix.
        return match strip(head, &|t| (6..=10).contains(&t.len()) && safe(t)) {
            Some(m) => &head[..m],
            None => head,
        };
    }
    match strip(pod, &|t| {
        !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())
    }) {
        Some(n) => &pod[..n],
        None => pod,
    }
}

/// What labels and tenants are derived from.
#[derive(Clone, Debug, Default)]
pub struct LabelRules {
    /// Added to every stream; derived labels win.
    pub static_labels: BTreeMap<String, String>,
    /// `node` (pod logs) / `host` (plain files) value.
    pub node_name: String,
    /// Tenant of plain files, and of pod logs unless `tenant_from_namespace`.
    pub default_tenant: Option<String>,
    /// Pod logs go to their namespace's tenant.
    pub tenant_from_namespace: bool,
    /// See [`Source::parse_lines`].
    pub parse_lines: bool,
    /// Pod metadata from the Kubernetes API: `app` from the pod's labels when known.
    pub pod_meta: Option<crate::kube::PodMetaCache>,
}

impl LabelRules {
    /// The source of a pod log file (`pod`: matched the pod logs glob) or a plain file. Pod log
    /// paths that do not parse are treated as plain files of container format.
    pub fn source(&self, path: &Path, pod: bool) -> Source {
        let mut labels = self.static_labels.clone();
        let mut provisional = false;
        let (format, tenant) = match pod.then(|| parse_pod_log_path(path)).flatten() {
            Some(p) => {
                labels.insert("namespace".into(), p.namespace.clone());
                let meta = self.pod_meta.as_ref().map(|m| m.get(&p.namespace, &p.pod));
                provisional = matches!(meta, Some(None));
                let app = match meta.flatten() {
                    Some(m) => m.app(),
                    None => app_from_pod_name(&p.pod).to_string(),
                };
                labels.insert("app".into(), app);
                labels.insert("pod".into(), p.pod);
                labels.insert("job".into(), format!("{}/{}", p.namespace, p.container));
                labels.insert("service_name".into(), p.container.clone());
                labels.insert("container".into(), p.container);
                labels.insert("node".into(), self.node_name.clone());
                let tenant = if self.tenant_from_namespace {
                    Some(p.namespace)
                } else {
                    self.default_tenant.clone()
                };
                (Format::Container, tenant)
            }
            None => {
                labels.insert("filename".into(), path.display().to_string());
                labels.insert("host".into(), self.node_name.clone());
                labels
                    .entry("job".into())
                    .or_insert_with(|| "varlogs".into());
                let format = if pod {
                    Format::Container
                } else {
                    Format::Plain
                };
                (format, self.default_tenant.clone())
            }
        };
        let render = |extra: Option<&str>| -> Arc<str> {
            let mut l = labels.clone();
            if let Some(s) = extra {
                l.insert("stream".into(), s.into());
            }
            format_labels(&l).into()
        };
        Source {
            format,
            tenant,
            labels: render(None),
            labels_stream: [
                render(Some(Stream::Stdout.as_str())),
                render(Some(Stream::Stderr.as_str())),
            ],
            label_map: Arc::new(labels),
            parse_lines: self.parse_lines,
            provisional,
        }
    }
}

/// Loki's text form of a label set: `{a="1", b="x\"y"}` (sorted, values escaped like Go's `%q`
/// for the characters that matter).
pub fn format_labels(labels: &BTreeMap<String, String>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_log_path_parses() {
        let p = parse_pod_log_path(Path::new(
            "/var/log/pods/kube-system_coredns-5d78c9869d-abcde_0f6a1c2e-1111-2222-3333-444455556666/coredns/3.log",
        ))
        .unwrap();
        assert_eq!(
            p,
            PodLogPath {
                namespace: "kube-system".into(),
                pod: "coredns-5d78c9869d-abcde".into(),
                uid: "0f6a1c2e-1111-2222-3333-444455556666".into(),
                container: "coredns".into(),
            }
        );
        assert!(parse_pod_log_path(Path::new("/var/log/pods/nouid/c/0.log")).is_none());
        assert!(parse_pod_log_path(Path::new("/var/log/pods/a_b_c/c/0.txt")).is_none());
        assert!(parse_pod_log_path(Path::new("0.log")).is_none());
    }

    fn rules() -> LabelRules {
        LabelRules {
            static_labels: [("cluster".to_string(), "c1".to_string())].into(),
            node_name: "n1".into(),
            default_tenant: Some("infra".into()),
            tenant_from_namespace: true,
            parse_lines: true,
            pod_meta: None,
        }
    }

    #[test]
    fn pod_labels_and_tenant() {
        let s = rules().source(Path::new("/var/log/pods/shop_web-1_u-1/nginx/0.log"), true);
        assert_eq!(s.format, Format::Container);
        assert_eq!(s.tenant.as_deref(), Some("shop"));
        assert_eq!(
            &*s.labels,
            r#"{app="web", cluster="c1", container="nginx", job="shop/nginx", namespace="shop", node="n1", pod="web-1", service_name="nginx"}"#
        );
        assert_eq!(
            &**s.labels_for(Some(Stream::Stderr)),
            r#"{app="web", cluster="c1", container="nginx", job="shop/nginx", namespace="shop", node="n1", pod="web-1", service_name="nginx", stream="stderr"}"#
        );
        assert_eq!(
            &*s.labels_with_level(Some(Stream::Stdout), "warn"),
            r#"{app="web", cluster="c1", container="nginx", job="shop/nginx", level="warn", namespace="shop", node="n1", pod="web-1", service_name="nginx", stream="stdout"}"#
        );
        let mut r = rules();
        r.tenant_from_namespace = false;
        let s = r.source(Path::new("/var/log/pods/shop_web-1_u-1/nginx/0.log"), true);
        assert_eq!(s.tenant.as_deref(), Some("infra"));
    }

    #[test]
    fn file_labels_and_tenant() {
        let s = rules().source(Path::new("/var/log/syslog"), false);
        assert_eq!(s.format, Format::Plain);
        assert_eq!(s.tenant.as_deref(), Some("infra"));
        assert_eq!(
            &*s.labels,
            r#"{cluster="c1", filename="/var/log/syslog", host="n1", job="varlogs"}"#
        );
        let mut r = rules();
        r.static_labels.insert("job".into(), "system".into());
        r.static_labels.insert("filename".into(), "ignored".into());
        let s = r.source(Path::new("/var/log/a.log"), false);
        assert_eq!(
            &*s.labels,
            r#"{cluster="c1", filename="/var/log/a.log", host="n1", job="system"}"#
        );
    }

    #[test]
    fn app_names_from_pod_names() {
        for (pod, app) in [
            ("web-7d4b9c8f6-x2x9z", "web"),
            ("api-gateway-5f6b7c9d8b-qwxzt", "api-gateway"),
            ("node-agent-k2v4b", "node-agent"),
            ("db-0", "db"),
            ("kafka-12", "kafka"),
            ("web-1", "web"),
            ("standalone", "standalone"),
            ("my-app-hello", "my-app-hello"),
            ("-1", "-1"),
            ("coredns-aaaaa", "coredns-aaaaa"),
        ] {
            assert_eq!(app_from_pod_name(pod), app, "{pod}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let l: BTreeMap<String, String> = [("a".to_string(), "x\"y\\z\n".to_string())].into();
        assert_eq!(format_labels(&l), r#"{a="x\"y\\z\n"}"#);
        assert_eq!(format_labels(&BTreeMap::new()), "{}");
    }
}
