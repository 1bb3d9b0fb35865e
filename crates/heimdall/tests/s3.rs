//! S3 mode against moto's S3 server: blocks land in the bucket, and a node with an empty data dir
//! serves them.

mod support;
use std::path::Path;
use std::process::Command;

use support::*;

#[test]
fn blocks_go_to_s3_and_an_empty_node_reads_them() {
    let Some(py) = python() else { return };
    let moto = Path::new(&py).with_file_name("moto_server");
    assert!(moto.exists(), "moto_server missing next to {py}");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("moto.log");
    let _moto = Proc::spawn(
        "moto",
        Command::new(&moto).args(["-H", "127.0.0.1", "-p", &port.to_string()]),
        &log,
    );
    let s3 = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{s3}/moto-api/"), &log);
    assert!(client()
        .put(format!("{s3}/heimdall"))
        .send()
        .unwrap()
        .status()
        .is_success());

    let store = format!(
        "  object_store:\n    backend: s3\n    s3:\n      bucket: heimdall\n      endpoint: {s3}\n      region: us-east-1\n      \
         access_key_id: test\n      secret_access_key: test\n      allow_http: true\n      path_style: true\n      prefix: cluster-1\n"
    );
    let node_a = dir.path().join("a");
    std::fs::create_dir_all(&node_a).unwrap();
    let mut h = Heimdall::start(&node_a, &store);
    let t = now_ms() - 60_000;
    let series: Vec<_> = (0..20)
        .map(|i| {
            (
                vec![
                    ("__name__", "s3_metric"),
                    ("i", Box::leak(i.to_string().into_boxed_str()) as &str),
                ],
                (0..30).map(|k| (t + k * 1000, k as f64)).collect(),
            )
        })
        .collect();
    assert_eq!(push(&h.url, Some("s3t"), rw_body(&series)).0, 204);
    let r = client()
        .post(format!("{}/ingester/flush", h.url))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "flush: {}", r.text().unwrap());
    h.proc.terminate();

    let listing = client()
        .get(format!(
            "{s3}/heimdall?list-type=2&prefix=cluster-1/s3t/metrics/"
        ))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        listing.contains("meta.json"),
        "no block in the bucket: {listing}"
    );

    // A fresh node: empty data dir, same bucket.
    let node_b = dir.path().join("b");
    std::fs::create_dir_all(&node_b).unwrap();
    let h2 = Heimdall::start(&node_b, &store);
    let (s, v) = get_json(&format!("{}/api/v1/label/i/values", h2.url), Some("s3t"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 20, "{v}");
    let q = format!(
        "{}/api/v1/query?query=count_over_time(s3_metric%5B10m%5D)&time={}",
        h2.url,
        now_ms() as f64 / 1000.0
    );
    let (_, v) = get_json(&q, Some("s3t"));
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 20, "{v}");
    assert!(result.iter().all(|r| r["value"][1] == "30"), "{v}");
}
