//! From a discovered label set to a scrape target, as Prometheus' `populateLabels`: job defaults
//! (`job`, `__scheme__`, `__metrics_path__`, `__scrape_interval__`, `__scrape_timeout__`,
//! `__param_*`) are added where discovery did not set them, `relabel_configs` run, the address gets
//! a default port, `instance` defaults to the address, and labels starting with `__` are removed.

use std::collections::BTreeMap;

use common::config::Duration;

use super::config::ScrapeJobConfig;
use super::relabel::Relabeler;

/// One target of a job, ready to scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// Labels attached to every sample: sorted by name, no `__` labels, no empty values.
    pub labels: Vec<(String, String)>,
    /// The URL scraped.
    pub url: String,
    /// `X-Scope-OrgID` of its samples; `None` is the agent's default tenant.
    pub tenant: Option<String>,
    /// Scrape interval (from `__scrape_interval__`).
    pub interval: std::time::Duration,
    /// Scrape timeout (from `__scrape_timeout__`).
    pub timeout: std::time::Duration,
    /// Identity of the target (labels and URL): the same target keeps its scrape loop across
    /// discovery updates, and its scrape offset within the interval derives from it.
    pub hash: u64,
}

impl Target {
    /// The value of a target label.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Where in each interval this target is scraped: a fixed offset derived from its hash, so
    /// many targets spread over the interval and a restart keeps the same phase (as Prometheus).
    pub fn offset(&self) -> std::time::Duration {
        let ms = self.interval.as_millis().max(1) as u64;
        std::time::Duration::from_millis(self.hash % ms)
    }
}

/// 64-bit FNV-1a, stable across builds and platforms (unlike `DefaultHasher`).
pub(crate) fn fnv1a(parts: impl IntoIterator<Item = impl AsRef<[u8]>>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.as_ref() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // Separator so that ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The tenant of a target with final labels `labels`: the job's `tenant`, else its `namespace`
/// label when `tenant_from_namespace` (and the namespace is a valid tenant id), else `None` (the
/// agent's default).
pub fn tenant_for(job: &ScrapeJobConfig, labels: &[(String, String)]) -> Option<String> {
    if let Some(t) = &job.tenant {
        return Some(t.clone());
    }
    if !job.tenant_from_namespace {
        return None;
    }
    let ns = labels.iter().find(|(n, _)| n == "namespace")?.1.as_str();
    match common::tenant::TenantId::new(ns) {
        Ok(_) => Some(ns.to_string()),
        Err(e) => {
            tracing::warn!(job = %job.job_name, namespace = ns, error = %e, "namespace is not a valid tenant id; using the default tenant");
            None
        }
    }
}

/// Builds the target of one discovered label set: `Ok(None)` when relabeling drops it, `Err` when
/// what remains cannot be scraped (no address, bad scheme or interval).
pub fn build(
    job: &ScrapeJobConfig,
    relabel: &Relabeler,
    default_interval: Duration,
    discovered: &BTreeMap<String, String>,
) -> Result<Option<Target>, String> {
    let mut ls: BTreeMap<String, String> = discovered
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let interval = job.interval(default_interval);
    let timeout = job.timeout(default_interval);
    for (k, v) in [
        ("job", job.job_name.clone()),
        ("__scheme__", job.scheme.clone()),
        ("__metrics_path__", job.metrics_path.clone()),
        ("__scrape_interval__", interval.to_string()),
        ("__scrape_timeout__", timeout.to_string()),
    ] {
        ls.entry(k.to_string()).or_insert(v);
    }
    for (k, vs) in &job.params {
        if let Some(v) = vs.first() {
            ls.entry(format!("__param_{k}"))
                .or_insert_with(|| v.clone());
        }
    }
    if !relabel.process(&mut ls) {
        return Ok(None);
    }
    let get = |k: &str| ls.get(k).map(String::as_str).unwrap_or("");
    let scheme = get("__scheme__").to_string();
    if scheme != "http" && scheme != "https" {
        return Err(format!("invalid __scheme__ {scheme:?}; want http or https"));
    }
    let addr = get("__address__");
    if addr.is_empty() {
        return Err("no __address__ after relabeling".into());
    }
    if addr.contains('/') || addr.contains(char::is_whitespace) {
        return Err(format!("invalid __address__ {addr:?}; want host:port"));
    }
    let addr = with_port(addr, &scheme);
    let parse_dur = |k: &str| -> Result<std::time::Duration, String> {
        let v = get(k);
        common::time::parse_prom_duration(v)
            .ok()
            .filter(|ms| *ms > 0)
            .map(|ms| std::time::Duration::from_millis(ms as u64))
            .ok_or_else(|| format!("invalid {k} {v:?}"))
    };
    let interval = parse_dur("__scrape_interval__")?;
    let timeout = parse_dur("__scrape_timeout__")?;
    if timeout > interval {
        return Err(format!(
            "__scrape_timeout__ {} is longer than __scrape_interval__ {}",
            get("__scrape_timeout__"),
            get("__scrape_interval__")
        ));
    }
    let mut path = get("__metrics_path__").to_string();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let mut url = reqwest::Url::parse(&format!("{scheme}://{addr}{path}"))
        .map_err(|e| format!("invalid target URL {scheme}://{addr}{path}: {e}"))?;
    // Query: the job's params, the first value of each replaced by its `__param_<name>` label.
    let mut params: BTreeMap<String, Vec<String>> = job.params.clone();
    for (k, v) in &ls {
        if let Some(p) = k.strip_prefix("__param_") {
            let e = params.entry(p.to_string()).or_default();
            if e.is_empty() {
                e.push(v.clone());
            } else {
                e[0] = v.clone();
            }
        }
    }
    if !params.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, vs) in &params {
            for v in vs {
                q.append_pair(k, v);
            }
        }
    }
    ls.insert("__address__".into(), addr.clone());
    ls.entry("instance".into()).or_insert(addr);
    let labels: Vec<(String, String)> = ls
        .into_iter()
        .filter(|(k, v)| !k.starts_with("__") && !v.is_empty())
        .collect();
    let url = url.to_string();
    let hash = fnv1a(
        labels
            .iter()
            .flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()])
            .chain([url.as_bytes()]),
    );
    Ok(Some(Target {
        tenant: tenant_for(job, &labels),
        labels,
        url,
        interval,
        timeout,
        hash,
    }))
}

/// `addr` with the scheme's default port when it has none (`host`, `[::1]`).
fn with_port(addr: &str, scheme: &str) -> String {
    let has_port = match addr.rsplit_once(':') {
        Some((host, port)) => {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')))
        }
        None => false,
    };
    if has_port {
        addr.to_string()
    } else {
        let port = if scheme == "https" { 443 } else { 80 };
        format!("{addr}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(yaml: &str) -> (ScrapeJobConfig, Relabeler) {
        let j: ScrapeJobConfig = serde_yaml::from_str(yaml).unwrap();
        j.validate(Duration::from_secs(15)).unwrap();
        let r = Relabeler::new(&j.relabel_configs, "t").unwrap();
        (j, r)
    }

    fn disc(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn labels(t: &Target) -> Vec<(&str, &str)> {
        t.labels
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect()
    }

    #[test]
    fn defaults_instance_and_internal_labels() {
        let (j, r) = job("job_name: node\nparams: {module: [a, b]}\n");
        let t = build(
            &j,
            &r,
            Duration::from_secs(15),
            &disc(&[
                ("__address__", "h:9100"),
                ("env", "prod"),
                ("__meta_x", "1"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            labels(&t),
            vec![("env", "prod"), ("instance", "h:9100"), ("job", "node")]
        );
        assert_eq!(t.url, "http://h:9100/metrics?module=a&module=b");
        assert_eq!(t.interval, std::time::Duration::from_secs(15));
        assert_eq!(t.timeout, std::time::Duration::from_secs(10));
        assert_eq!(t.tenant, None);
        assert!(t.offset() < t.interval);
    }

    #[test]
    fn relabeling_controls_address_scheme_path_params_and_interval() {
        let (j, r) = job("job_name: blackbox\nparams: {module: [http_2xx]}\n\
             relabel_configs:\n\
             - source_labels: [__address__]\n  target_label: __param_target\n\
             - source_labels: [__param_target]\n  target_label: instance\n\
             - target_label: __address__\n  replacement: 'prober'\n\
             - target_label: __scheme__\n  replacement: https\n\
             - target_label: __metrics_path__\n  replacement: /probe\n\
             - target_label: __scrape_interval__\n  replacement: 30s\n\
             - source_labels: [__meta_keep]\n  regex: 'no'\n  action: drop\n");
        let t = build(
            &j,
            &r,
            Duration::from_secs(15),
            &disc(&[("__address__", "example.com")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            t.url,
            "https://prober/probe?module=http_2xx&target=example.com"
        );
        assert_eq!(
            labels(&t),
            vec![("instance", "example.com"), ("job", "blackbox")]
        );
        assert_eq!(t.interval, std::time::Duration::from_secs(30));
        assert!(build(
            &j,
            &r,
            Duration::from_secs(15),
            &disc(&[("__address__", "x"), ("__meta_keep", "no")])
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn bad_targets_are_errors() {
        let (j, r) = job("job_name: a\n");
        let d = Duration::from_secs(15);
        assert!(build(&j, &r, d, &disc(&[]))
            .unwrap_err()
            .contains("no __address__"));
        assert!(build(&j, &r, d, &disc(&[("__address__", "h/x")]))
            .unwrap_err()
            .contains("invalid __address__"));
        assert!(build(
            &j,
            &r,
            d,
            &disc(&[("__address__", "h"), ("__scheme__", "ftp")])
        )
        .unwrap_err()
        .contains("__scheme__"));
        assert!(build(
            &j,
            &r,
            d,
            &disc(&[("__address__", "h"), ("__scrape_timeout__", "1m")])
        )
        .unwrap_err()
        .contains("longer than"));
    }

    #[test]
    fn default_ports() {
        assert_eq!(with_port("h", "http"), "h:80");
        assert_eq!(with_port("h", "https"), "h:443");
        assert_eq!(with_port("h:1", "https"), "h:1");
        assert_eq!(with_port("[::1]", "http"), "[::1]:80");
        assert_eq!(with_port("[::1]:9", "http"), "[::1]:9");
    }

    #[test]
    fn tenant_routing() {
        let d = Duration::from_secs(15);
        let target = |yaml: &str, ns: Option<&str>| {
            let (j, r) = job(yaml);
            let mut m = disc(&[("__address__", "h:1")]);
            if let Some(ns) = ns {
                m.insert("__meta_kubernetes_namespace".into(), ns.into());
            }
            build(&j, &r, d, &m).unwrap().unwrap().tenant
        };
        let ns_relabel = "relabel_configs:\n- source_labels: [__meta_kubernetes_namespace]\n  target_label: namespace\n";
        // Job tenant wins over the namespace.
        assert_eq!(
            target(
                &format!("job_name: a\ntenant: fixed\ntenant_from_namespace: true\n{ns_relabel}"),
                Some("team-a")
            ),
            Some("fixed".into())
        );
        // The namespace label after relabeling.
        assert_eq!(
            target(
                &format!("job_name: a\ntenant_from_namespace: true\n{ns_relabel}"),
                Some("team-a")
            ),
            Some("team-a".into())
        );
        // No namespace label: the default.
        assert_eq!(
            target(
                &format!("job_name: a\ntenant_from_namespace: true\n{ns_relabel}"),
                None
            ),
            None
        );
        // Off by default.
        assert_eq!(
            target(&format!("job_name: a\n{ns_relabel}"), Some("team-a")),
            None
        );
    }

    #[test]
    fn hash_is_stable_and_distinguishes() {
        assert_eq!(fnv1a(["a", "bc"]), fnv1a(["a", "bc"]));
        assert_ne!(fnv1a(["ab", "c"]), fnv1a(["a", "bc"]));
        // FNV-1a of "" then the separator byte: fixed across builds.
        assert_eq!(
            fnv1a([""]),
            (0xcbf2_9ce4_8422_2325u64 ^ 0xff).wrapping_mul(0x0100_0000_01b3)
        );
    }
}
