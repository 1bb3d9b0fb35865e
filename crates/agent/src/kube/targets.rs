//! Pod and node objects turned into Prometheus `kubernetes_sd` targets (label sets before
//! relabeling), with the same meta label names and values as Prometheus' `role: pod` and
//! `role: node`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Target;

/// Prefix of every Kubernetes meta label.
const META: &str = "__meta_kubernetes_";

/// Replaces every character outside `[a-zA-Z0-9_]` with `_`, as Prometheus does for label and
/// annotation names (`app.kubernetes.io/name` → `app_kubernetes_io_name`).
pub fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Inserts `key=value` unless the value is empty: Prometheus treats an empty label value as an
/// absent label, so leaving it out keeps relabeling results identical and the maps smaller.
fn put(target: &mut Target, key: impl Into<String>, value: impl Into<String>) {
    let value = value.into();
    if !value.is_empty() {
        target.insert(key.into(), value);
    }
}

/// `__meta_kubernetes_<role>_name`, `_label_*`, `_labelpresent_*`, `_annotation_*` and
/// `_annotationpresent_*` for one object.
fn object_meta_labels(target: &mut Target, meta: &ObjectMeta, role: &str) {
    put(
        target,
        format!("{META}{role}_name"),
        meta.name.clone().unwrap_or_default(),
    );
    for (kind, map) in [("label", &meta.labels), ("annotation", &meta.annotations)] {
        for (key, value) in map.iter().flatten() {
            let name = sanitize_label_name(key);
            put(target, format!("{META}{role}_{kind}_{name}"), value.clone());
            target.insert(format!("{META}{role}_{kind}present_{name}"), "true".into());
        }
    }
}

/// `host:port`, with brackets around an IPv6 host (Go's `net.JoinHostPort`).
fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// True for an address that is IPv4 or IPv4-mapped IPv6 (Go's `ip.To4() != nil`).
fn is_v4(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    }
}

/// The controlling owner reference (`ownerReferences[].controller == true`) as (kind, name).
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<(&str, &str)> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| (r.kind.as_str(), r.name.as_str()))
}

/// The labels shared by every target of a pod.
fn pod_labels(pod: &Pod, pod_ip: &str) -> Target {
    let mut t = Target::new();
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();

    put(
        &mut t,
        format!("{META}namespace"),
        meta.namespace.clone().unwrap_or_default(),
    );
    object_meta_labels(&mut t, meta, "pod");
    put(&mut t, format!("{META}pod_ip"), pod_ip);
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map_or_else(|| "unknown".to_string(), |c| c.status.to_lowercase());
    put(&mut t, format!("{META}pod_ready"), ready);
    put(
        &mut t,
        format!("{META}pod_phase"),
        status.and_then(|s| s.phase.clone()).unwrap_or_default(),
    );
    put(
        &mut t,
        format!("{META}pod_node_name"),
        spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
    );
    put(
        &mut t,
        format!("{META}pod_host_ip"),
        status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
    );
    put(
        &mut t,
        format!("{META}pod_uid"),
        meta.uid.clone().unwrap_or_default(),
    );
    // The first IPv4 and the first IPv6 address of status.podIPs (dual-stack clusters).
    for pip in status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
    {
        let Ok(ip) = pip.ip.parse::<IpAddr>() else {
            continue;
        };
        let key = if is_v4(&ip) { "pod_ipv4" } else { "pod_ipv6" };
        t.entry(format!("{META}{key}"))
            .or_insert_with(|| pip.ip.clone());
    }
    if let Some((kind, name)) = controller_of(meta) {
        put(&mut t, format!("{META}pod_controller_kind"), kind);
        put(&mut t, format!("{META}pod_controller_name"), name);
    }
    t
}

/// The runtime's container ID (`containerd://…`) of the named container, if it has started.
fn container_id(statuses: Option<&Vec<ContainerStatus>>, name: &str) -> String {
    statuses
        .into_iter()
        .flatten()
        .find(|s| s.name == name)
        .and_then(|s| s.container_id.clone())
        .unwrap_or_default()
}

/// Prometheus `role: pod` targets: one per declared container port (`__address__` =
/// `podIP:port`) and one per container without ports (`__address__` = pod IP), init containers
/// included with `__meta_kubernetes_pod_container_init="true"`.
///
/// A pod without an IP (pending, or evicted) yields no target, exactly like Prometheus; pods in
/// phase Succeeded or Failed that still report an IP are kept (Prometheus keeps them too; drop
/// them with a relabel rule on `__meta_kubernetes_pod_phase`).
pub fn pod_targets(pod: &Pod) -> Vec<Target> {
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .unwrap_or_default();
    if pod_ip.is_empty() {
        return Vec::new();
    }
    let common = pod_labels(pod, pod_ip);
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let status = pod.status.as_ref();
    let containers: Vec<(&Container, bool)> = spec
        .containers
        .iter()
        .map(|c| (c, false))
        .chain(spec.init_containers.iter().flatten().map(|c| (c, true)))
        .collect();

    let mut out = Vec::new();
    for (c, is_init) in containers {
        let statuses = status.and_then(|s| {
            if is_init {
                s.init_container_statuses.as_ref()
            } else {
                s.container_statuses.as_ref()
            }
        });
        let mut base = common.clone();
        put(
            &mut base,
            format!("{META}pod_container_name"),
            c.name.clone(),
        );
        put(
            &mut base,
            format!("{META}pod_container_id"),
            container_id(statuses, &c.name),
        );
        put(
            &mut base,
            format!("{META}pod_container_image"),
            c.image.clone().unwrap_or_default(),
        );
        put(
            &mut base,
            format!("{META}pod_container_init"),
            is_init.to_string(),
        );

        let ports = c.ports.as_deref().unwrap_or_default();
        if ports.is_empty() {
            // No port: the address is the bare pod IP (bracketed when IPv6, RFC 3986 forbids a
            // trailing ':'); a relabel rule has to add the port.
            let addr = match pod_ip.parse::<IpAddr>() {
                Ok(ip) if !is_v4(&ip) => format!("[{ip}]"),
                _ => pod_ip.to_string(),
            };
            base.insert("__address__".into(), addr);
            out.push(base);
            continue;
        }
        for p in ports {
            let mut t = base.clone();
            let number = p.container_port.to_string();
            t.insert("__address__".into(), join_host_port(pod_ip, &number));
            put(
                &mut t,
                format!("{META}pod_container_port_name"),
                p.name.clone().unwrap_or_default(),
            );
            put(&mut t, format!("{META}pod_container_port_number"), number);
            put(
                &mut t,
                format!("{META}pod_container_port_protocol"),
                p.protocol.clone().unwrap_or_default(),
            );
            out.push(t);
        }
    }
    out
}

/// The kubelet port when a node object does not report `status.daemonEndpoints` (every real
/// kubelet does; Prometheus would produce port 0 there).
pub const DEFAULT_KUBELET_PORT: i32 = 10250;

/// Address types in the order Prometheus picks a node's `__address__` from.
const NODE_ADDRESS_PRIORITY: [&str; 6] = [
    "InternalIP",
    "InternalDNS",
    "ExternalIP",
    "ExternalDNS",
    "LegacyHostIP",
    "Hostname",
];

/// The Prometheus `role: node` target: `__address__` = the first address of the first type in
/// InternalIP, InternalDNS, ExternalIP, ExternalDNS, LegacyHostIP, Hostname order, joined with the
/// kubelet port from `status.daemonEndpoints.kubeletEndpoint.port`; `instance` = node name;
/// `__meta_kubernetes_node_address_<type>` = the first address of each type. None when the node
/// reports no usable address (Prometheus skips it as well).
pub fn node_target(node: &Node) -> Option<Target> {
    let status = node.status.as_ref();
    let mut by_type: BTreeMap<&str, &str> = BTreeMap::new();
    for a in status
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
    {
        by_type
            .entry(a.type_.as_str())
            .or_insert(a.address.as_str());
    }
    let host = NODE_ADDRESS_PRIORITY
        .iter()
        .find_map(|ty| by_type.get(ty).copied())?;
    let port = status
        .and_then(|s| s.daemon_endpoints.as_ref())
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .map_or(DEFAULT_KUBELET_PORT, |k| k.port);

    let mut t = Target::new();
    object_meta_labels(&mut t, &node.metadata, "node");
    t.insert(
        "__address__".into(),
        join_host_port(host, &port.to_string()),
    );
    put(
        &mut t,
        "instance",
        node.metadata.name.clone().unwrap_or_default(),
    );
    for (ty, addr) in by_type {
        put(
            &mut t,
            sanitize_label_name(&format!("{META}node_address_{ty}")),
            addr,
        );
    }
    Some(t)
}
