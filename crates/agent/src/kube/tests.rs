//! Discovery against the in-process fake API server, and the pure target/metadata functions.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::fake::{FakeApi, Kind};
use super::meta::strip_template_hash;
use super::*;

const WAIT: Duration = Duration::from_secs(20);

/// A running pod: a `web` container with ports 8080/http and 9090/metrics (TCP), a `sidecar`
/// without ports, and an init container `init` with one port.
fn pod(ns: &str, name: &str, node: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": format!("uid-{ns}-{name}"),
            "labels": {
                "app.kubernetes.io/name": "shop",
                "pod-template-hash": "7d4b9c8f6d",
            },
            "annotations": { "prometheus.io/scrape": "true" },
            "ownerReferences": [
                { "apiVersion": "v1", "kind": "Node", "name": "ignored", "uid": "n1" },
                { "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c8f6d",
                  "uid": "rs1", "controller": true },
            ],
        },
        "spec": {
            "nodeName": node,
            "containers": [
                { "name": "web", "image": "shop:1.2",
                  "ports": [
                      { "name": "http", "containerPort": 8080, "protocol": "TCP" },
                      { "name": "metrics", "containerPort": 9090, "protocol": "TCP" },
                  ] },
                { "name": "sidecar", "image": "proxy:3" },
            ],
            "initContainers": [
                { "name": "init", "image": "setup:1",
                  "ports": [ { "containerPort": 7000, "protocol": "UDP" } ] },
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [ { "ip": ip } ],
            "hostIP": "192.168.1.10",
            "conditions": [
                { "type": "Initialized", "status": "True" },
                { "type": "Ready", "status": "True" },
            ],
            "containerStatuses": [
                { "name": "web", "image": "shop:1.2", "imageID": "sha256:1", "ready": true,
                  "restartCount": 0, "containerID": "containerd://abc" },
            ],
        },
    })
}

fn node(name: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": format!("uid-{name}"),
            "labels": { "kubernetes.io/os": "linux", "node-role.kubernetes.io/worker": "" },
            "annotations": { "node.alpha.kubernetes.io/ttl": "0" },
        },
        "status": {
            "addresses": [
                { "type": "Hostname", "address": name },
                { "type": "InternalIP", "address": ip },
                { "type": "InternalIP", "address": "10.9.9.9" },
                { "type": "ExternalIP", "address": "203.0.113.5" },
            ],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": 10250 } },
        },
    })
}

fn labels(pairs: &[(&str, &str)]) -> Target {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Waits until the receiver holds a value satisfying `pred`.
async fn wait_for(
    rx: &mut watch::Receiver<Vec<Target>>,
    what: &str,
    pred: impl Fn(&[Target]) -> bool,
) -> Vec<Target> {
    let r = tokio::time::timeout(WAIT, rx.wait_for(|t| pred(t)))
        .await
        .map(|r| r.map(|v| v.clone()));
    match r {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => panic!("{what}: watcher stopped"),
        Err(_) => panic!("{what}: timed out; last value {:#?}", *rx.borrow()),
    }
}

/// The pod names among the targets, sorted and deduplicated.
fn pod_names(targets: &[Target]) -> Vec<String> {
    let mut v: Vec<String> = targets
        .iter()
        .filter_map(|t| t.get("__meta_kubernetes_pod_name").cloned())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn target_for<'a>(targets: &'a [Target], pod: &str, address: &str) -> &'a Target {
    targets
        .iter()
        .find(|t| {
            t.get("__meta_kubernetes_pod_name").map(String::as_str) == Some(pod)
                && t.get("__address__").map(String::as_str) == Some(address)
        })
        .unwrap_or_else(|| panic!("no target {pod} {address} in {targets:#?}"))
}

/// The labels every target of the `pod()` fixture shares.
fn pod_common(ns: &str, name: &str, node: &str, ip: &str) -> Vec<(String, String)> {
    [
        ("__meta_kubernetes_namespace", ns.to_string()),
        ("__meta_kubernetes_pod_name", name.to_string()),
        ("__meta_kubernetes_pod_ip", ip.to_string()),
        ("__meta_kubernetes_pod_ipv4", ip.to_string()),
        ("__meta_kubernetes_pod_ready", "true".into()),
        ("__meta_kubernetes_pod_phase", "Running".into()),
        ("__meta_kubernetes_pod_node_name", node.to_string()),
        ("__meta_kubernetes_pod_host_ip", "192.168.1.10".into()),
        ("__meta_kubernetes_pod_uid", format!("uid-{ns}-{name}")),
        ("__meta_kubernetes_pod_controller_kind", "ReplicaSet".into()),
        (
            "__meta_kubernetes_pod_controller_name",
            "web-7d4b9c8f6d".into(),
        ),
        (
            "__meta_kubernetes_pod_label_app_kubernetes_io_name",
            "shop".into(),
        ),
        (
            "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name",
            "true".into(),
        ),
        (
            "__meta_kubernetes_pod_label_pod_template_hash",
            "7d4b9c8f6d".into(),
        ),
        (
            "__meta_kubernetes_pod_labelpresent_pod_template_hash",
            "true".into(),
        ),
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
            "true".into(),
        ),
        (
            "__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape",
            "true".into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[tokio::test]
async fn initial_list_gives_prometheus_pod_targets() {
    let api = FakeApi::start().await;
    api.apply(Kind::Pod, pod("shop", "web-1", "node-a", "10.1.0.5"));
    let d = Discovery::from_url(&api.url, None).unwrap();
    let mut rx = d.pods();
    let t = wait_for(&mut rx, "initial list", |t| !t.is_empty()).await;

    // 2 ports of `web` + `sidecar` without ports + 1 port of the init container.
    assert_eq!(t.len(), 4, "{t:#?}");
    let mut want: Target = pod_common("shop", "web-1", "node-a", "10.1.0.5")
        .into_iter()
        .collect();
    want.extend(labels(&[
        ("__address__", "10.1.0.5:9090"),
        ("__meta_kubernetes_pod_container_name", "web"),
        ("__meta_kubernetes_pod_container_id", "containerd://abc"),
        ("__meta_kubernetes_pod_container_image", "shop:1.2"),
        ("__meta_kubernetes_pod_container_init", "false"),
        ("__meta_kubernetes_pod_container_port_name", "metrics"),
        ("__meta_kubernetes_pod_container_port_number", "9090"),
        ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
    ]));
    assert_eq!(target_for(&t, "web-1", "10.1.0.5:9090"), &want);
    assert_eq!(
        target_for(&t, "web-1", "10.1.0.5:8080")["__meta_kubernetes_pod_container_port_name"],
        "http"
    );

    let mut want: Target = pod_common("shop", "web-1", "node-a", "10.1.0.5")
        .into_iter()
        .collect();
    want.extend(labels(&[
        ("__address__", "10.1.0.5"),
        ("__meta_kubernetes_pod_container_name", "sidecar"),
        ("__meta_kubernetes_pod_container_image", "proxy:3"),
        ("__meta_kubernetes_pod_container_init", "false"),
    ]));
    assert_eq!(target_for(&t, "web-1", "10.1.0.5"), &want);

    let init = target_for(&t, "web-1", "10.1.0.5:7000");
    assert_eq!(init["__meta_kubernetes_pod_container_init"], "true");
    assert_eq!(init["__meta_kubernetes_pod_container_port_protocol"], "UDP");
    assert!(!init.contains_key("__meta_kubernetes_pod_container_port_name"));

    // Default list: served from the watch cache, no field selector without a node name.
    let first = &api.requests()[0];
    assert_eq!(first.path, "/api/v1/pods");
    assert_eq!(
        first.query.get("resourceVersion").map(String::as_str),
        Some("0")
    );
    assert_eq!(
        first.query.get("resourceVersionMatch").map(String::as_str),
        Some("NotOlderThan")
    );
    assert!(!first.query.contains_key("fieldSelector"));
}

#[tokio::test]
async fn watch_add_modify_delete_update_targets() {
    let api = FakeApi::start().await;
    api.apply(Kind::Pod, pod("shop", "web-1", "node-a", "10.1.0.5"));
    let d = Discovery::from_url(&api.url, None).unwrap();
    let mut rx = d.pods();
    wait_for(&mut rx, "initial list", |t| pod_names(t) == ["web-1"]).await;

    // Added.
    api.apply(Kind::Pod, pod("shop", "web-2", "node-a", "10.1.0.6"));
    let t = wait_for(&mut rx, "added", |t| pod_names(t) == ["web-1", "web-2"]).await;
    assert_eq!(t.len(), 8);

    // Modified: a new annotation.
    let mut p = pod("shop", "web-2", "node-a", "10.1.0.6");
    p["metadata"]["annotations"]["prometheus.io/port"] = json!("9090");
    api.apply(Kind::Pod, p.clone());
    let t = wait_for(&mut rx, "annotation", |t| {
        t.iter().any(|t| {
            t.get("__meta_kubernetes_pod_annotation_prometheus_io_port")
                .is_some_and(|v| v == "9090")
        })
    })
    .await;
    let web2 = target_for(&t, "web-2", "10.1.0.6:9090");
    assert_eq!(
        web2["__meta_kubernetes_pod_annotationpresent_prometheus_io_port"],
        "true"
    );
    assert!(!target_for(&t, "web-1", "10.1.0.5:9090")
        .contains_key("__meta_kubernetes_pod_annotation_prometheus_io_port"));

    // Modified: readiness flips.
    p["status"]["conditions"][1]["status"] = json!("False");
    api.apply(Kind::Pod, p);
    let t = wait_for(&mut rx, "not ready", |t| {
        t.iter().any(|t| {
            t.get("__meta_kubernetes_pod_ready")
                .is_some_and(|v| v == "false")
        })
    })
    .await;
    assert!(t
        .iter()
        .filter(|t| t["__meta_kubernetes_pod_name"] == "web-2")
        .all(|t| t["__meta_kubernetes_pod_ready"] == "false"));

    // Deleted.
    assert!(api.delete(Kind::Pod, "shop/web-1"));
    let t = wait_for(&mut rx, "deleted", |t| pod_names(t) == ["web-2"]).await;
    assert_eq!(t.len(), 4);

    // All of it came through one list and one watch.
    assert_eq!(api.lists("/api/v1/pods"), 1);
    assert_eq!(api.watches("/api/v1/pods"), 1);
    let w = api
        .requests()
        .into_iter()
        .find(|r| r.is_watch())
        .expect("watch request");
    assert_eq!(
        w.query.get("resourceVersion").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        w.query.get("allowWatchBookmarks").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        w.query.get("timeoutSeconds").map(String::as_str),
        Some("290")
    );
}

#[tokio::test]
async fn node_role_targets() {
    let api = FakeApi::start().await;
    api.apply(Kind::Node, node("node-a", "192.168.1.10"));
    let d = Discovery::from_url(&api.url, None).unwrap();
    let mut rx = d.nodes();
    let t = wait_for(&mut rx, "nodes", |t| !t.is_empty()).await;
    let want = labels(&[
        ("__address__", "192.168.1.10:10250"),
        ("instance", "node-a"),
        ("__meta_kubernetes_node_name", "node-a"),
        ("__meta_kubernetes_node_label_kubernetes_io_os", "linux"),
        (
            "__meta_kubernetes_node_labelpresent_kubernetes_io_os",
            "true",
        ),
        // An empty label value: only the "present" label.
        (
            "__meta_kubernetes_node_labelpresent_node_role_kubernetes_io_worker",
            "true",
        ),
        (
            "__meta_kubernetes_node_annotation_node_alpha_kubernetes_io_ttl",
            "0",
        ),
        (
            "__meta_kubernetes_node_annotationpresent_node_alpha_kubernetes_io_ttl",
            "true",
        ),
        ("__meta_kubernetes_node_address_Hostname", "node-a"),
        ("__meta_kubernetes_node_address_InternalIP", "192.168.1.10"),
        ("__meta_kubernetes_node_address_ExternalIP", "203.0.113.5"),
    ]);
    assert_eq!(t, vec![want]);

    // A second node, then a label change and a deletion, through the watch.
    api.apply(Kind::Node, node("node-b", "192.168.1.11"));
    wait_for(&mut rx, "node-b", |t| t.len() == 2).await;
    let mut b = node("node-b", "192.168.1.11");
    b["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!("z1");
    api.apply(Kind::Node, b);
    wait_for(&mut rx, "zone label", |t| {
        t.iter().any(|t| {
            t.get("__meta_kubernetes_node_label_topology_kubernetes_io_zone")
                .is_some_and(|z| z == "z1")
        })
    })
    .await;
    api.delete(Kind::Node, "node-a");
    let t = wait_for(&mut rx, "node-a deleted", |t| t.len() == 1).await;
    assert_eq!(t[0]["instance"], "node-b");
}

#[tokio::test]
async fn node_name_restricts_pods_and_nodes_to_that_node() {
    let api = FakeApi::start().await;
    api.apply(Kind::Pod, pod("shop", "a-1", "node-a", "10.1.0.5"));
    api.apply(Kind::Pod, pod("shop", "b-1", "node-b", "10.2.0.5"));
    api.apply(Kind::Node, node("node-a", "192.168.1.10"));
    api.apply(Kind::Node, node("node-b", "192.168.1.11"));
    let d = Discovery::from_url(&api.url, Some("node-a".into())).unwrap();
    let mut pods = d.pods();
    let mut nodes = d.nodes();
    wait_for(&mut pods, "own pods", |t| pod_names(t) == ["a-1"]).await;
    let n = wait_for(&mut nodes, "own node", |t| !t.is_empty()).await;
    assert_eq!(n.len(), 1);
    assert_eq!(n[0]["instance"], "node-a");

    // A pending pod (no node, no IP) gets scheduled onto node-a: the watch sees it arrive.
    let mut pending = pod("shop", "a-2", "", "");
    pending["spec"].as_object_mut().unwrap().remove("nodeName");
    pending["status"] = json!({ "phase": "Pending" });
    api.apply(Kind::Pod, pending);
    api.apply(Kind::Pod, pod("shop", "a-2", "node-a", "10.1.0.6"));
    // And pods on node-b change without the agent seeing them.
    api.apply(Kind::Pod, pod("shop", "b-2", "node-b", "10.2.0.6"));
    wait_for(&mut pods, "scheduled pod", |t| {
        pod_names(t) == ["a-1", "a-2"]
    })
    .await;
    api.delete(Kind::Pod, "shop/a-1");
    wait_for(&mut pods, "deleted", |t| pod_names(t) == ["a-2"]).await;

    for r in api.requests() {
        let fs = r.query.get("fieldSelector").map(String::as_str);
        match r.path.as_str() {
            "/api/v1/pods" => assert_eq!(fs, Some("spec.nodeName=node-a")),
            "/api/v1/nodes" => assert_eq!(fs, Some("metadata.name=node-a")),
            other => panic!("unexpected request {other}"),
        }
    }
}

#[tokio::test]
async fn expired_watch_relists() {
    let api = FakeApi::start().await;
    api.apply(Kind::Pod, pod("shop", "web-1", "node-a", "10.1.0.5"));
    api.apply(Kind::Pod, pod("shop", "web-2", "node-a", "10.1.0.6"));
    let d = Discovery::from_url(&api.url, None).unwrap();
    let cache = d.pod_meta();
    let mut rx = d.pods();
    wait_for(&mut rx, "initial", |t| pod_names(t) == ["web-1", "web-2"]).await;
    wait_until(|| api.watches("/api/v1/pods") == 1).await;

    // Changes the watch never delivers: only a new list can reveal them.
    api.change_unwatched(Kind::Pod, "shop/web-2", None);
    api.change_unwatched(
        Kind::Pod,
        "",
        Some(pod("shop", "web-3", "node-a", "10.1.0.7")),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(pod_names(&rx.borrow()), ["web-1", "web-2"]);

    // The live watch gets ERROR 410 (Expired): the watcher lists again, and the new list
    // replaces the store (web-2 is gone without any DELETED event).
    api.expire_watches();
    wait_for(&mut rx, "re-listed", |t| pod_names(t) == ["web-1", "web-3"]).await;
    assert_eq!(api.lists("/api/v1/pods"), 2);
    assert!(cache.get("shop", "web-3").is_some());
    // Watching goes on after the re-list.
    api.apply(Kind::Pod, pod("shop", "web-4", "node-a", "10.1.0.8"));
    wait_for(&mut rx, "web-4", |t| pod_names(t).len() == 3).await;
}

#[tokio::test]
async fn too_old_resource_version_on_resume_relists() {
    let api = FakeApi::start().await;
    api.apply(Kind::Pod, pod("shop", "web-1", "node-a", "10.1.0.5"));
    let d = Discovery::from_url(&api.url, None).unwrap();
    let mut rx = d.pods();
    wait_for(&mut rx, "initial", |t| pod_names(t) == ["web-1"]).await;
    wait_until(|| api.watches("/api/v1/pods") == 1).await;

    // A change the watch misses and the history forgets; then the connection drops. Resuming
    // from version 1 gets ERROR 410 "too old resource version", and the watcher lists again.
    api.change_unwatched(Kind::Pod, "shop/web-1", None);
    api.close_watches();
    wait_for(&mut rx, "re-listed", |t| t.is_empty()).await;
    assert_eq!(api.lists("/api/v1/pods"), 2);
    let versions: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.is_watch())
        .map(|r| r.query["resourceVersion"].clone())
        .collect();
    assert_eq!(&versions[..2], ["1", "1"], "{versions:?}");
}

#[tokio::test]
async fn watch_timeout_resumes_from_last_version_without_relist() {
    let api = FakeApi::start().await;
    api.apply(Kind::Pod, pod("shop", "web-1", "node-a", "10.1.0.5"));
    let d = Discovery::from_url(&api.url, None)
        .unwrap()
        .with_watch_timeout(1);
    let mut rx = d.pods();
    wait_for(&mut rx, "initial", |t| pod_names(t) == ["web-1"]).await;
    api.apply(Kind::Pod, pod("shop", "web-2", "node-a", "10.1.0.6"));
    wait_for(&mut rx, "web-2", |t| pod_names(t).len() == 2).await;
    // The server ends the watch after timeoutSeconds=1; the next one resumes at version 2.
    wait_until(|| api.watches("/api/v1/pods") >= 2).await;
    api.apply(Kind::Pod, pod("shop", "web-3", "node-a", "10.1.0.7"));
    wait_for(&mut rx, "web-3", |t| pod_names(t).len() == 3).await;

    assert_eq!(api.lists("/api/v1/pods"), 1);
    let versions: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.is_watch())
        .map(|r| {
            assert_eq!(r.query["timeoutSeconds"], "1");
            r.query["resourceVersion"].clone()
        })
        .collect();
    assert_eq!(&versions[..2], ["1", "2"]);
}

#[tokio::test]
async fn bookmarks_keep_a_filtered_watch_resumable() {
    let api = FakeApi::start().await;
    api.set_bookmark_interval(Some(Duration::from_millis(100)));
    api.apply(Kind::Pod, pod("shop", "a-1", "node-a", "10.1.0.5"));
    let d = Discovery::from_url(&api.url, Some("node-a".into())).unwrap();
    let mut rx = d.pods();
    wait_for(&mut rx, "initial", |t| pod_names(t) == ["a-1"]).await;

    // Changes the filtered watch never delivers move the version on; bookmarks carry it.
    for i in 0..5 {
        api.apply(
            Kind::Pod,
            pod("shop", &format!("b-{i}"), "node-b", "10.2.0.5"),
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.compact();
    api.close_watches();
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.apply(Kind::Pod, pod("shop", "a-2", "node-a", "10.1.0.6"));
    wait_for(&mut rx, "a-2", |t| pod_names(t) == ["a-1", "a-2"]).await;
    // Resumed from the bookmarked version: no 410, no second list.
    assert_eq!(api.lists("/api/v1/pods"), 1);
    let last = api
        .requests()
        .into_iter()
        .rfind(|r| r.is_watch())
        .expect("watch");
    assert_eq!(last.query["resourceVersion"], "6");
}

#[tokio::test]
async fn paged_list() {
    let api = FakeApi::start().await;
    for i in 0..3 {
        api.apply(
            Kind::Pod,
            pod("shop", &format!("web-{i}"), "node-a", "10.1.0.5"),
        );
    }
    let d = Discovery::from_url(&api.url, None)
        .unwrap()
        .with_page_size(1);
    let mut rx = d.pods();
    wait_for(&mut rx, "all pages", |t| pod_names(t).len() == 3).await;
    let lists: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| !r.is_watch())
        .collect();
    assert_eq!(lists.len(), 3);
    assert!(lists.iter().all(|r| r.query["limit"] == "1"));
    assert!(!lists[0].query.contains_key("continue"));
    assert_eq!(lists[1].query["continue"], "3/1");
    assert_eq!(lists[2].query["continue"], "3/2");
}

#[tokio::test]
async fn pod_metadata_lookup_and_app() {
    let api = FakeApi::start().await;
    api.apply(Kind::Pod, pod("shop", "web-1", "node-a", "10.1.0.5"));
    let mut plain = pod("kube-system", "coredns-abc", "node-a", "10.1.0.9");
    plain["metadata"]["labels"] = json!({ "k8s-app": "kube-dns" });
    api.apply(Kind::Pod, plain);
    let d = Discovery::from_url(&api.url, None).unwrap();
    let cache = d.pod_meta();
    tokio::time::timeout(WAIT, cache.wait_synced())
        .await
        .expect("synced");
    assert!(cache.is_synced());

    let m = cache.get("shop", "web-1").expect("by name");
    assert_eq!(m.uid, "uid-shop-web-1");
    assert_eq!(m.node, "node-a");
    assert_eq!(m.labels["app.kubernetes.io/name"], "shop");
    assert_eq!(m.annotations["prometheus.io/scrape"], "true");
    assert_eq!(m.controller_kind.as_deref(), Some("ReplicaSet"));
    assert_eq!(m.app(), "shop");
    assert_eq!(cache.get_by_uid("uid-shop-web-1"), Some(m));
    assert_eq!(
        cache
            .get("kube-system", "coredns-abc")
            .expect("coredns")
            .app(),
        "kube-dns"
    );
    assert!(cache.get("shop", "nope").is_none());
    assert!(cache.get("other", "web-1").is_none());

    // Updates show up; deleted pods stay resolvable for the grace period.
    let mut p = pod("shop", "web-1", "node-a", "10.1.0.5");
    p["metadata"]["labels"]["tier"] = json!("front");
    api.apply(Kind::Pod, p);
    wait_until(|| {
        cache
            .get("shop", "web-1")
            .is_some_and(|m| m.labels.get("tier").is_some_and(|t| t == "front"))
    })
    .await;
    api.delete(Kind::Pod, "shop/web-1");
    let mut targets = d.pods();
    wait_for(&mut targets, "deleted", |t| pod_names(t) == ["coredns-abc"]).await;
    assert_eq!(
        cache.get("shop", "web-1").expect("grace").labels["tier"],
        "front"
    );
    assert!(cache.get_by_uid("uid-shop-web-1").is_some());
    // The pods() receiver and the cache share one watcher.
    assert_eq!(api.lists("/api/v1/pods"), 1);
}

#[tokio::test]
async fn dropping_discovery_stops_its_watchers() {
    let api = FakeApi::start().await;
    api.apply(Kind::Pod, pod("shop", "web-1", "node-a", "10.1.0.5"));
    api.apply(Kind::Node, node("node-a", "192.168.1.10"));
    let d = Discovery::from_url(&api.url, None).unwrap();
    let mut pods = d.pods();
    let mut nodes = d.nodes();
    wait_for(&mut pods, "pods", |t| !t.is_empty()).await;
    wait_for(&mut nodes, "nodes", |t| !t.is_empty()).await;
    drop(d);
    for rx in [&mut pods, &mut nodes] {
        let r = tokio::time::timeout(WAIT, rx.changed()).await;
        assert!(matches!(r, Ok(Err(_))), "watcher still running: {r:?}");
    }
}

#[tokio::test]
async fn from_url_rejects_a_bad_url() {
    let e = Discovery::from_url("not a url at all", None).unwrap_err();
    assert!(e.to_string().contains("kubernetes API URL"), "{e}");
}

/// Polls a condition every 20 ms until it holds.
async fn wait_until(cond: impl Fn() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("condition not reached in time");
}

// Pure functions.

fn parse_pod(v: Value) -> Pod {
    serde_json::from_value(v).expect("pod json")
}

fn parse_node(v: Value) -> Node {
    serde_json::from_value(v).expect("node json")
}

#[test]
fn sanitizes_like_prometheus() {
    assert_eq!(
        sanitize_label_name("app.kubernetes.io/name"),
        "app_kubernetes_io_name"
    );
    assert_eq!(sanitize_label_name("a-b_c9"), "a_b_c9");
    assert_eq!(sanitize_label_name("é/x"), "__x");
}

#[test]
fn pods_without_ip_give_no_targets_and_finished_pods_are_kept() {
    let mut p = pod("ns", "p", "n", "10.0.0.1");
    p["status"]["podIP"] = Value::Null;
    assert!(pod_targets(&parse_pod(p)).is_empty());

    let mut p = pod("ns", "p", "n", "10.0.0.1");
    p["status"]["phase"] = json!("Succeeded");
    let t = pod_targets(&parse_pod(p));
    assert_eq!(t.len(), 4);
    assert!(t
        .iter()
        .all(|t| t["__meta_kubernetes_pod_phase"] == "Succeeded"));
}

#[test]
fn ipv6_pod_addresses_are_bracketed() {
    let mut p = pod("ns", "p", "n", "fd00::5");
    p["status"]["podIPs"] = json!([{ "ip": "fd00::5" }, { "ip": "10.0.0.5" }]);
    let t = pod_targets(&parse_pod(p));
    let addrs: Vec<&str> = t.iter().map(|t| t["__address__"].as_str()).collect();
    assert!(addrs.contains(&"[fd00::5]:9090"), "{addrs:?}");
    assert!(addrs.contains(&"[fd00::5]"), "{addrs:?}");
    assert_eq!(t[0]["__meta_kubernetes_pod_ipv6"], "fd00::5");
    assert_eq!(t[0]["__meta_kubernetes_pod_ipv4"], "10.0.0.5");
}

#[test]
fn pod_ready_is_unknown_without_condition() {
    let mut p = pod("ns", "p", "n", "10.0.0.1");
    p["status"]["conditions"] = json!([]);
    let t = pod_targets(&parse_pod(p));
    assert_eq!(t[0]["__meta_kubernetes_pod_ready"], "unknown");
}

#[test]
fn node_address_priority_and_default_port() {
    let mut n = node("n1", "10.0.0.1");
    n["status"]["addresses"] = json!([
        { "type": "Hostname", "address": "n1.local" },
        { "type": "ExternalIP", "address": "203.0.113.1" },
    ]);
    n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] = json!(10255);
    let t = node_target(&parse_node(n)).unwrap();
    assert_eq!(t["__address__"], "203.0.113.1:10255");

    let mut n = node("n1", "10.0.0.1");
    n["status"]["addresses"] = json!([{ "type": "Hostname", "address": "n1.local" }]);
    n["status"]
        .as_object_mut()
        .unwrap()
        .remove("daemonEndpoints");
    let t = node_target(&parse_node(n)).unwrap();
    assert_eq!(t["__address__"], "n1.local:10250");

    let mut n = node("n1", "10.0.0.1");
    n["status"]["addresses"] = json!([]);
    assert!(node_target(&parse_node(n)).is_none());
}

fn meta_with(labels: &[(&str, &str)], controller: Option<&str>) -> PodMeta {
    PodMeta {
        namespace: "ns".into(),
        name: "pod-x".into(),
        uid: "u".into(),
        node: "n".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        annotations: BTreeMap::new(),
        controller_kind: controller.map(|_| "ReplicaSet".to_string()),
        controller_name: controller.map(str::to_string),
    }
}

#[test]
fn app_label_precedence() {
    let all = [
        ("app.kubernetes.io/name", "a"),
        ("app", "b"),
        ("k8s-app", "c"),
    ];
    assert_eq!(meta_with(&all, Some("ctl")).app(), "a");
    assert_eq!(meta_with(&all[1..], Some("ctl")).app(), "b");
    assert_eq!(meta_with(&all[2..], Some("ctl")).app(), "c");
    // An empty value does not count.
    assert_eq!(meta_with(&[("app", ""), ("k8s-app", "c")], None).app(), "c");
    // Controller without the Deployment's hash (from the pod-template-hash label).
    assert_eq!(
        meta_with(
            &[("pod-template-hash", "5c98db65d4")],
            Some("api-server-5c98db65d4")
        )
        .app(),
        "api-server"
    );
    // Non-hex hash characters are stripped when the label names them.
    assert_eq!(
        meta_with(
            &[("pod-template-hash", "7bzx9mk2qw")],
            Some("web-7bzx9mk2qw")
        )
        .app(),
        "web"
    );
    // DaemonSets and StatefulSets have no hash.
    assert_eq!(meta_with(&[], Some("fluent-bit")).app(), "fluent-bit");
    // No labels and no controller: the pod name.
    assert_eq!(meta_with(&[], None).app(), "pod-x");
}

#[test]
fn template_hash_stripping() {
    assert_eq!(strip_template_hash("web-7d4b9c8f6d", None), "web");
    assert_eq!(strip_template_hash("web-12345678", None), "web");
    assert_eq!(strip_template_hash("web-1234567", None), "web-1234567");
    assert_eq!(strip_template_hash("web-frontend", None), "web-frontend");
    assert_eq!(strip_template_hash("deadbeef", None), "deadbeef");
    let h = "zz9".to_string();
    assert_eq!(strip_template_hash("web-zz9", Some(&h)), "web");
    assert_eq!(strip_template_hash("zz9", Some(&h)), "zz9");
}

/// What the fake heimdall received: (tenant, series labels in text form) for remote_write, and
/// (tenant, stream labels) for Loki pushes.
#[derive(Default)]
struct Sink {
    series: std::sync::Mutex<Vec<(String, String)>>,
    streams: std::sync::Mutex<Vec<(String, String)>>,
}

async fn serve_sink(sink: Arc<Sink>) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use prost::Message;
    let tenant = |h: &HeaderMap| {
        h.get("X-Scope-OrgID")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (s1, s2) = (sink.clone(), sink);
    let app = axum::Router::new()
        .route(
            "/api/v1/push",
            axum::routing::post(move |h: HeaderMap, body: Bytes| {
                let sink = s1.clone();
                async move {
                    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
                    let req = proto::prometheus::WriteRequest::decode(raw.as_slice()).unwrap();
                    let mut out = sink.series.lock().unwrap();
                    for ts in req.timeseries {
                        let l: Vec<String> = ts
                            .labels
                            .iter()
                            .map(|l| format!("{}={}", l.name, l.value))
                            .collect();
                        out.push((tenant(&h), l.join(",")));
                    }
                    StatusCode::NO_CONTENT
                }
            }),
        )
        .route(
            "/loki/api/v1/push",
            axum::routing::post(move |h: HeaderMap, body: Bytes| {
                let sink = s2.clone();
                async move {
                    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
                    let req = proto::loki::PushRequest::decode(raw.as_slice()).unwrap();
                    let mut out = sink.streams.lock().unwrap();
                    for s in req.streams {
                        out.push((tenant(&h), s.labels));
                    }
                    StatusCode::NO_CONTENT
                }
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    url
}

/// The whole agent with `kubernetes.enabled` against the fake API: the annotated-pods preset
/// scrapes the pod at its annotated port into the pod's namespace tenant, and the pod's log
/// stream takes `app` from the pod's labels (not from its name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_scrapes_annotated_pods_and_labels_their_logs() {
    // The pod's exporter.
    let exporter = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            "# TYPE demo_requests_total counter\ndemo_requests_total 5\n"
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(l, exporter).await;
    });
    let sink = Arc::new(Sink::default());
    let sink_url = serve_sink(sink.clone()).await;

    let api = FakeApi::start().await;
    let mut p = pod("shop", "web-7d4b9c8f6d-x2x9z", "node-a", "127.0.0.1");
    p["metadata"]["annotations"]["prometheus.io/port"] = json!(port.to_string());
    api.apply(Kind::Pod, p);
    // Another node's pod is not this agent's business.
    api.apply(Kind::Pod, pod("shop", "far-1", "node-b", "127.0.0.2"));

    let dir = tempfile::tempdir().unwrap();
    let pod_dir = dir.path().join("pods/shop_web-7d4b9c8f6d-x2x9z_uid-1/web");
    std::fs::create_dir_all(&pod_dir).unwrap();
    std::fs::write(
        pod_dir.join("0.log"),
        "2024-01-01T00:00:00.000000001Z stdout F hello\n",
    )
    .unwrap();
    let cfg = crate::AgentConfig::from_yaml(&format!(
        "listen: 127.0.0.1:0\nscrape_interval: 1s\ndata_dir: {}\nremote_write:\n  url: {sink_url}/api/v1/push\n  tenant: hosts\nscrape:\n  batch_max_wait: 100ms\nkubernetes:\n  enabled: true\n  api_server: {}\n  node_name: node-a\n  cadvisor: false\n  kubelet: false\nlogs:\n  enabled: true\n  url: {sink_url}/loki/api/v1/push\n  pod_logs_glob: {}/pods/*/*/*.log\n  batch_max_wait: 100ms\n  poll_interval: 100ms\n  rescan_interval: 200ms\n",
        dir.path().join("data").display(),
        api.url,
        dir.path().display()
    ))
    .unwrap();
    let _agent = crate::run::Agent::start(&cfg).unwrap();

    let deadline = std::time::Instant::now() + WAIT;
    let scraped = loop {
        let got: Vec<(String, String)> = sink
            .series
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.contains("__name__=demo_requests_total"))
            .cloned()
            .collect();
        if let Some(s) = got.first() {
            break s.clone();
        }
        assert!(std::time::Instant::now() < deadline, "pod never scraped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(scraped.0, "shop", "tenant = namespace: {scraped:?}");
    for want in [
        "job=kubernetes-pods",
        "namespace=shop",
        "pod=web-7d4b9c8f6d-x2x9z",
        "node=node-a",
        &format!("instance=127.0.0.1:{port}"),
        "app_kubernetes_io_name=shop",
    ] {
        assert!(scraped.1.contains(want), "{want} missing in {scraped:?}");
    }
    // Nothing of the other node's pod.
    assert!(!sink
        .series
        .lock()
        .unwrap()
        .iter()
        .any(|(_, l)| l.contains("far-1")));

    let deadline = std::time::Instant::now() + WAIT;
    let stream = loop {
        // Labels guessed from the path before the pod list arrived are redone once it has.
        let s = sink
            .streams
            .lock()
            .unwrap()
            .iter()
            .find(|(_, l)| l.contains(r#"app="shop""#))
            .cloned();
        if let Some(s) = s {
            break s;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "no stream with app from pod labels: {:?}",
                sink.streams.lock().unwrap()
            );
        }
        // Lines appended after the metadata arrived carry the pod's app label.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(pod_dir.join("0.log"))
            .unwrap();
        std::io::Write::write_all(&mut f, b"2024-01-01T00:00:01.000000001Z stdout F again\n")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(stream.0, "shop", "{stream:?}");
    assert!(stream.1.contains(r#"namespace="shop""#), "{stream:?}");
}
