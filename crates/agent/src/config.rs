//! `heimdall agent --config FILE`: serde structs with defaults for every field, so an empty file is
//! a valid config (collect this host every 15 s, serve `/metrics` on 12345, forward nowhere).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::config::Duration;
use serde::{Deserialize, Serialize};

pub use crate::logs::LogsConfig;
pub use crate::scrape::ScrapeConfig;
use crate::Error;

/// The agent's configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// HTTP listen address for `/metrics`, `/ready` and the status page.
    pub listen: String,
    /// How often the node collectors run and their samples are forwarded.
    pub scrape_interval: Duration,
    /// Host metrics collectors.
    pub node: NodeConfig,
    /// Where collected samples are sent; none means `/metrics` only.
    pub remote_write: Option<RemoteWriteConfig>,
    /// Directory of the durable forwarding buffers (and of the log positions file).
    pub data_dir: PathBuf,
    /// Log tailing (pod logs and files) shipped to a Loki push endpoint; off by default.
    pub logs: LogsConfig,
    /// Prometheus-style scraping of exporters (`scrape_configs`), forwarded with remote_write.
    pub scrape: ScrapeConfig,
    /// Kubernetes discovery: built-in jobs (annotated pods, kubelet/cAdvisor,
    /// kube-state-metrics), `kubernetes_sd_configs` of scrape jobs, pod labels for log streams.
    pub kubernetes: crate::kube::presets::KubernetesConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:12345".into(),
            scrape_interval: Duration::from_secs(15),
            node: NodeConfig::default(),
            remote_write: None,
            data_dir: PathBuf::from("./heimdall-agent-data"),
            logs: LogsConfig::default(),
            scrape: ScrapeConfig::default(),
            kubernetes: Default::default(),
        }
    }
}

impl AgentConfig {
    /// Parses YAML and validates.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        let cfg: Self = if text.trim().is_empty() {
            Self::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| Error::Config(e.to_string()))?
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_yaml(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<(), Error> {
        if self.scrape_interval.as_millis() < 1000 {
            return Err(Error::Config(format!(
                "scrape_interval {} is below 1s; set a longer interval",
                self.scrape_interval
            )));
        }
        self.node.validate()?;
        if let Some(rw) = &self.remote_write {
            rw.validate()?;
        }
        self.logs.validate(self.remote_write.as_ref())?;
        self.scrape.validate(self.scrape_interval)?;
        self.kubernetes.validate()?;
        if !self.kubernetes.enabled
            && self
                .scrape
                .scrape_configs
                .iter()
                .any(|j| !j.kubernetes_sd_configs.is_empty())
        {
            return Err(Error::Config(
                "scrape jobs with kubernetes_sd_configs need kubernetes.enabled: true".into(),
            ));
        }
        if !self.scrape.scrape_configs.is_empty() && self.remote_write.is_none() {
            return Err(Error::Config(
                "scrape.scrape_configs needs remote_write: scraped samples are only forwarded"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Host metrics: where /proc, /sys and the root filesystem are (in a container, the host's are
/// usually mounted at /host/proc, /host/sys and /host/root), and node_exporter's filters.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// procfs mount point (node_exporter `--path.procfs`).
    pub proc_root: PathBuf,
    /// sysfs mount point (`--path.sysfs`).
    pub sys_root: PathBuf,
    /// Root of the host filesystem, prefixed to mount points for statfs (`--path.rootfs`).
    pub rootfs: PathBuf,
    /// udev database, for `node_disk_info` (`--path.udev.data`).
    pub udev_data: PathBuf,
    /// Mount points to skip (`--collector.filesystem.mount-points-exclude`).
    pub mount_points_exclude: String,
    /// Filesystem types to skip (`--collector.filesystem.fs-types-exclude`).
    pub fs_types_exclude: String,
    /// Block devices to skip (`--collector.diskstats.device-exclude`).
    pub disk_devices_exclude: String,
    /// Network devices to skip (`--collector.netdev.device-exclude`); empty keeps all.
    pub netdev_devices_exclude: String,
    /// /proc/vmstat fields to export (`--collector.vmstat.fields`).
    pub vmstat_fields: String,
}

/// node_exporter 1.5's `defMountPointsExcluded` (Linux).
pub const DEFAULT_MOUNT_POINTS_EXCLUDE: &str =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// node_exporter 1.5's `defFSTypesExcluded` (Linux).
pub const DEFAULT_FS_TYPES_EXCLUDE: &str = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";
/// node_exporter 1.5's `diskstatsDefaultIgnoredDevices`: partitions, ram, loop and floppy devices.
pub const DEFAULT_DISK_DEVICES_EXCLUDE: &str = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";
/// node_exporter 1.5's default `--collector.vmstat.fields`.
pub const DEFAULT_VMSTAT_FIELDS: &str = "^(oom_kill|pgpg|pswp|pg.*fault).*";

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            rootfs: PathBuf::from("/"),
            udev_data: PathBuf::from("/run/udev/data"),
            mount_points_exclude: DEFAULT_MOUNT_POINTS_EXCLUDE.into(),
            fs_types_exclude: DEFAULT_FS_TYPES_EXCLUDE.into(),
            disk_devices_exclude: DEFAULT_DISK_DEVICES_EXCLUDE.into(),
            netdev_devices_exclude: String::new(),
            vmstat_fields: DEFAULT_VMSTAT_FIELDS.into(),
        }
    }
}

impl NodeConfig {
    /// Checks that the regexes compile.
    pub fn validate(&self) -> Result<(), Error> {
        for (field, re) in [
            ("mount_points_exclude", &self.mount_points_exclude),
            ("fs_types_exclude", &self.fs_types_exclude),
            ("disk_devices_exclude", &self.disk_devices_exclude),
            ("netdev_devices_exclude", &self.netdev_devices_exclude),
            ("vmstat_fields", &self.vmstat_fields),
        ] {
            regex::Regex::new(re)
                .map_err(|e| Error::Config(format!("node.{field} is not a valid regex: {e}")))?;
        }
        Ok(())
    }
}

/// A Prometheus remote_write 1.0 endpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Endpoint URL, e.g. `http://heimdall:8080/api/v1/push`.
    pub url: String,
    /// Sent as `X-Scope-OrgID` when set.
    pub tenant: Option<String>,
    /// Sent as `Authorization: Bearer …` when set.
    pub bearer_token: Option<String>,
    /// Labels added to every series (e.g. `cluster`); `job` and `instance` default to `node` and
    /// the host name unless set here.
    pub external_labels: BTreeMap<String, String>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// First retry delay; doubles per failure up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Cap on un-acknowledged data kept on disk; beyond it the oldest batches are dropped.
    pub max_buffer_bytes: u64,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            tenant: None,
            bearer_token: None,
            external_labels: BTreeMap::new(),
            timeout: Duration::from_secs(30),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_buffer_bytes: 512 << 20,
        }
    }
}

impl RemoteWriteConfig {
    /// Checks the URL and backoffs.
    pub fn validate(&self) -> Result<(), Error> {
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            return Err(Error::Config(format!(
                "remote_write.url {:?} must be an http:// or https:// URL",
                self.url
            )));
        }
        if self.min_backoff.as_millis() <= 0 || self.max_backoff < self.min_backoff {
            return Err(Error::Config(
                "remote_write.min_backoff must be > 0 and <= max_backoff".into(),
            ));
        }
        if self.timeout.as_millis() <= 0 {
            return Err(Error::Config("remote_write.timeout must be > 0".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of `b` (recursively) that `a` lacks.
    fn missing_keys(a: &serde_yaml::Value, b: &serde_yaml::Value, path: &str) -> Vec<String> {
        let (Some(a), Some(b)) = (a.as_mapping(), b.as_mapping()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, bv) in b {
            let key = format!("{path}.{}", k.as_str().unwrap_or("?"));
            match a.get(k) {
                None => out.push(key),
                Some(av) => out.extend(missing_keys(av, bv, &key)),
            }
        }
        out
    }

    #[test]
    fn example_config_is_in_sync() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.yaml");
        let example = AgentConfig::load(&path).unwrap();
        let rw = example.remote_write.clone().unwrap();
        // The example shows the defaults, apart from the lines marked "example".
        let job = &example.scrape.scrape_configs[0];
        let want_job = crate::ScrapeJobConfig {
            job_name: job.job_name.clone(),
            scrape_interval: job.scrape_interval,
            static_configs: job.static_configs.clone(),
            metric_relabel_configs: job.metric_relabel_configs.clone(),
            ..Default::default()
        };
        let want = AgentConfig {
            remote_write: Some(RemoteWriteConfig {
                url: rw.url.clone(),
                tenant: rw.tenant.clone(),
                external_labels: rw.external_labels.clone(),
                ..Default::default()
            }),
            scrape: ScrapeConfig {
                scrape_configs: vec![want_job],
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(example, want);
        // And it names every field (of the example job too).
        let text: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let all = serde_yaml::to_value(&want).unwrap();
        let mut missing = missing_keys(&text, &all, "");
        missing.extend(missing_keys(
            &text["scrape"]["scrape_configs"][0],
            &all["scrape"]["scrape_configs"][0],
            ".scrape.scrape_configs[0]",
        ));
        missing.extend(
            missing_keys(
                &text["scrape"]["scrape_configs"][0]["metric_relabel_configs"][0],
                &all["scrape"]["scrape_configs"][0]["metric_relabel_configs"][0],
                "",
            )
            .into_iter()
            .filter(|k| k == ".action" || k == ".regex" || k == ".source_labels"),
        );
        assert!(missing.is_empty(), "agent.example.yaml lacks {missing:?}");
    }

    #[test]
    fn empty_is_default_and_unknown_fields_fail() {
        assert_eq!(AgentConfig::from_yaml("").unwrap(), AgentConfig::default());
        let cfg = AgentConfig::from_yaml(
            "scrape_interval: 5s\nnode:\n  proc_root: /host/proc\nremote_write:\n  url: http://x/api/v1/push\n  tenant: t1\n",
        )
        .unwrap();
        assert_eq!(cfg.scrape_interval, Duration::from_secs(5));
        assert_eq!(cfg.node.proc_root, PathBuf::from("/host/proc"));
        assert_eq!(cfg.node.sys_root, PathBuf::from("/sys"));
        assert_eq!(cfg.remote_write.unwrap().tenant.as_deref(), Some("t1"));
        assert!(AgentConfig::from_yaml("nope: 1").is_err());
        assert!(AgentConfig::from_yaml("node:\n  procroot: /x").is_err());
        assert!(AgentConfig::from_yaml("remote_write:\n  url: ftp://x").is_err());
        assert!(AgentConfig::from_yaml("remote_write:\n  url: https://x").is_ok());
        assert!(AgentConfig::from_yaml("node:\n  vmstat_fields: '('").is_err());
        let cfg = AgentConfig::from_yaml(
            "remote_write:\n  url: http://h:8080/api/v1/push\nlogs:\n  enabled: true\n  files: [/var/log/syslog]\n  static_labels: {cluster: c}\n",
        )
        .unwrap();
        assert_eq!(cfg.logs.files, vec!["/var/log/syslog".to_string()]);
        assert_eq!(cfg.logs.pod_logs_glob, "/var/log/pods/*/*/*.log");
        assert!(
            AgentConfig::from_yaml("logs:\n  enabled: true\n").is_err(),
            "no url"
        );
        assert!(AgentConfig::from_yaml("logs:\n  enable: true\n").is_err());
        // Scrape jobs need somewhere to send their samples.
        let job = "scrape:\n  scrape_configs:\n    - job_name: a\n      static_configs: [{targets: ['h:1']}]\n";
        let e = AgentConfig::from_yaml(job).unwrap_err().to_string();
        assert!(e.contains("needs remote_write"), "{e}");
        let cfg = AgentConfig::from_yaml(&format!(
            "remote_write:\n  url: http://h/api/v1/write\n{job}"
        ))
        .unwrap();
        assert_eq!(cfg.scrape.scrape_configs[0].static_targets().len(), 1);
        assert!(AgentConfig::from_yaml(
            "scrape:\n  scrape_configs:\n    - job_name: a\n      scrape_timeout: 1m\n"
        )
        .is_err());
    }
}

#[cfg(test)]
mod deploy_tests {
    use super::*;

    /// `deploy/kubernetes/agent.yaml`: the ConfigMap's config loads, and every host path it names
    /// is mounted into the DaemonSet's container.
    #[test]
    fn daemonset_manifest_config_is_valid_and_mounted() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/agent.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
            .map(serde_yaml::Value::deserialize)
            .collect::<Result<_, _>>()
            .unwrap();
        let kind = |k: &str| docs.iter().find(|d| d["kind"] == k).unwrap();
        let cfg = AgentConfig::from_yaml(kind("ConfigMap")["data"]["agent.yaml"].as_str().unwrap())
            .unwrap();
        assert!(cfg.kubernetes.enabled && cfg.logs.enabled);
        let mounts: Vec<&str> = kind("DaemonSet")["spec"]["template"]["spec"]["containers"][0]
            ["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap())
            .collect();
        let under_mount = |p: &Path| mounts.iter().any(|m| p.starts_with(m));
        for p in [
            &cfg.node.proc_root,
            &cfg.node.sys_root,
            &cfg.node.rootfs,
            &cfg.data_dir,
            &PathBuf::from(cfg.logs.pod_logs_glob.split('*').next().unwrap()),
        ] {
            assert!(
                under_mount(p),
                "{} is not mounted ({mounts:?})",
                p.display()
            );
        }
    }
}
