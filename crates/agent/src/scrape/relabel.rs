//! Prometheus `relabel_config`: the same YAML fields, defaults and semantics (regexes fully
//! anchored, `$1`/`${1}`/`${name}` in `replacement` and `target_label`, setting an empty value
//! removes the label, `hashmod` on the MD5 of the joined values), used for `relabel_configs` on
//! discovered targets and `metric_relabel_configs` on scraped samples.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::Error;

/// What a relabeling step does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Set `target_label` to the expanded `replacement` when `regex` matches the joined values.
    #[default]
    Replace,
    /// Drop the label set unless `regex` matches the joined values.
    Keep,
    /// Drop the label set when `regex` matches the joined values.
    Drop,
    /// Set `target_label` to the MD5 of the joined values modulo `modulus`.
    HashMod,
    /// Copy every label whose name matches `regex` to the name given by `replacement`.
    LabelMap,
    /// Remove every label whose name matches `regex`.
    LabelDrop,
    /// Remove every label whose name does not match `regex`.
    LabelKeep,
    /// Set `target_label` to the joined values in lower case.
    Lowercase,
    /// Set `target_label` to the joined values in upper case.
    Uppercase,
    /// Drop the label set unless the joined values equal the value of `target_label`.
    KeepEqual,
    /// Drop the label set when the joined values equal the value of `target_label`.
    DropEqual,
}

/// One relabeling step, with Prometheus' field names and defaults.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` and matched against `regex`.
    pub source_labels: Vec<String>,
    /// Joins the source values.
    pub separator: String,
    /// Regular expression (RE2-like syntax), implicitly anchored at both ends.
    pub regex: String,
    /// For `hashmod`: the modulus.
    pub modulus: u64,
    /// The label written by `replace`, `hashmod`, `lowercase` and `uppercase`.
    pub target_label: String,
    /// For `replace` and `labelmap`: the value (name) written, with `$1`, `${1}` or `${name}`
    /// references to regex groups.
    pub replacement: String,
    /// What the step does.
    pub action: Action,
}

/// Prometheus' default `separator`.
pub const DEFAULT_SEPARATOR: &str = ";";
/// Prometheus' default `regex`.
pub const DEFAULT_REGEX: &str = "(.*)";
/// Prometheus' default `replacement`.
pub const DEFAULT_REPLACEMENT: &str = "$1";

impl Default for RelabelConfig {
    fn default() -> Self {
        Self {
            source_labels: Vec::new(),
            separator: DEFAULT_SEPARATOR.into(),
            regex: DEFAULT_REGEX.into(),
            modulus: 0,
            target_label: String::new(),
            replacement: DEFAULT_REPLACEMENT.into(),
            action: Action::Replace,
        }
    }
}

/// Whether `s` is a valid Prometheus label name.
pub fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Compiled relabeling steps, applied in order.
#[derive(Clone, Debug, Default)]
pub struct Relabeler {
    steps: Vec<(RelabelConfig, Regex)>,
}

impl Relabeler {
    /// Validates and compiles `configs`; `what` names the list in errors (e.g.
    /// `scrape_configs[node].relabel_configs`).
    pub fn new(configs: &[RelabelConfig], what: &str) -> Result<Self, Error> {
        let mut steps = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let bad = |msg: String| Error::Config(format!("{what}[{i}]: {msg}"));
            let re = Regex::new(&format!("^(?:{})$", c.regex))
                .map_err(|e| bad(format!("regex {:?} does not compile: {e}", c.regex)))?;
            validate(c).map_err(bad)?;
            steps.push((c.clone(), re));
        }
        Ok(Self { steps })
    }

    /// True when there is no step.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies every step to `labels`; false when a step drops the label set (then `labels` is
    /// unspecified).
    pub fn process(&self, labels: &mut BTreeMap<String, String>) -> bool {
        self.steps.iter().all(|(c, re)| step(c, re, labels))
    }
}

fn validate(c: &RelabelConfig) -> Result<(), String> {
    let needs_target = matches!(
        c.action,
        Action::Replace
            | Action::HashMod
            | Action::Lowercase
            | Action::Uppercase
            | Action::KeepEqual
            | Action::DropEqual
    );
    let action = serde_yaml::to_string(&c.action).unwrap_or_default();
    let action = action.trim();
    if needs_target && c.target_label.is_empty() {
        return Err(format!("action {action} needs a target_label"));
    }
    // A replace target may be a template ($1, ${name}), checked when expanded.
    let template_ok = c.action == Action::Replace && c.target_label.contains('$');
    if needs_target && !template_ok && !is_label_name(&c.target_label) {
        return Err(format!(
            "invalid target_label {:?} for action {action}",
            c.target_label
        ));
    }
    if c.action == Action::HashMod && c.modulus == 0 {
        return Err("action hashmod needs a modulus > 0".into());
    }
    if matches!(c.action, Action::KeepEqual | Action::DropEqual)
        && (c.regex != DEFAULT_REGEX || c.modulus != 0 || c.replacement != DEFAULT_REPLACEMENT)
    {
        return Err(format!(
            "action {action} uses only source_labels, separator and target_label"
        ));
    }
    if matches!(c.action, Action::LabelDrop | Action::LabelKeep)
        && (!c.source_labels.is_empty()
            || !c.target_label.is_empty()
            || c.modulus != 0
            || c.separator != DEFAULT_SEPARATOR
            || c.replacement != DEFAULT_REPLACEMENT)
    {
        return Err(format!("action {action} uses only regex"));
    }
    if let Some(bad) = c.source_labels.iter().find(|l| !is_label_name(l)) {
        return Err(format!("invalid source label {bad:?}"));
    }
    Ok(())
}

/// Sets `name` to `value`, or removes it when `value` is empty.
fn set(labels: &mut BTreeMap<String, String>, name: &str, value: String) {
    if value.is_empty() {
        labels.remove(name);
    } else {
        labels.insert(name.to_string(), value);
    }
}

/// One step; false drops the label set.
fn step(c: &RelabelConfig, re: &Regex, labels: &mut BTreeMap<String, String>) -> bool {
    let val = || {
        let mut v = String::new();
        for (i, l) in c.source_labels.iter().enumerate() {
            if i > 0 {
                v.push_str(&c.separator);
            }
            if let Some(x) = labels.get(l) {
                v.push_str(x);
            }
        }
        v
    };
    match c.action {
        Action::Keep => re.is_match(&val()),
        Action::Drop => !re.is_match(&val()),
        Action::KeepEqual => labels.get(&c.target_label).map_or("", String::as_str) == val(),
        Action::DropEqual => labels.get(&c.target_label).map_or("", String::as_str) != val(),
        Action::Replace => {
            let v = val();
            let Some(caps) = re.captures(&v) else {
                return true;
            };
            let mut target = String::new();
            caps.expand(&c.target_label, &mut target);
            if !is_label_name(&target) {
                return true;
            }
            let mut res = String::new();
            caps.expand(&c.replacement, &mut res);
            if res.is_empty() {
                labels.remove(&c.target_label);
            } else {
                labels.insert(target, res);
            }
            true
        }
        Action::Lowercase => {
            set(labels, &c.target_label, val().to_lowercase());
            true
        }
        Action::Uppercase => {
            set(labels, &c.target_label, val().to_uppercase());
            true
        }
        Action::HashMod => {
            let sum = Md5::digest(val().as_bytes());
            let mut last = [0u8; 8];
            last.copy_from_slice(&sum[8..16]);
            let m = u64::from_be_bytes(last) % c.modulus.max(1);
            set(labels, &c.target_label, m.to_string());
            true
        }
        Action::LabelMap => {
            let renamed: Vec<(String, String)> = labels
                .iter()
                .filter(|(n, _)| re.is_match(n))
                .map(|(n, v)| {
                    (
                        re.replace(n, c.replacement.as_str()).into_owned(),
                        v.clone(),
                    )
                })
                .collect();
            for (n, v) in renamed {
                set(labels, &n, v);
            }
            true
        }
        Action::LabelDrop => {
            labels.retain(|n, _| !re.is_match(n));
            true
        }
        Action::LabelKeep => {
            labels.retain(|n, _| re.is_match(n));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn run(yaml: &str, input: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        let cfgs: Vec<RelabelConfig> = serde_yaml::from_str(yaml).unwrap();
        let r = Relabeler::new(&cfgs, "test").unwrap();
        let mut l = ls(input);
        r.process(&mut l).then_some(l)
    }

    fn invalid(yaml: &str) -> String {
        let cfgs: Vec<RelabelConfig> = serde_yaml::from_str(yaml).unwrap();
        Relabeler::new(&cfgs, "x").unwrap_err().to_string()
    }

    #[test]
    fn replace_with_groups_and_defaults() {
        let out = run(
            "- source_labels: [a, b]\n  regex: '(.*);(?P<second>.+)'\n  target_label: c\n  replacement: '${1}-$second-$$'\n",
            &[("a", "x"), ("b", "y")],
        )
        .unwrap();
        assert_eq!(out, ls(&[("a", "x"), ("b", "y"), ("c", "x-y-$")]));
        // Defaults: regex (.*), replacement $1, separator ';'.
        let out = run(
            "- source_labels: [a, missing, b]\n  target_label: c\n",
            &[("a", "x"), ("b", "y")],
        )
        .unwrap();
        assert_eq!(out["c"], "x;;y");
        // The regex is anchored: "x" does not match "ax".
        let out = run(
            "- source_labels: [a]\n  regex: x\n  target_label: c\n  replacement: hit\n",
            &[("a", "ax")],
        )
        .unwrap();
        assert!(!out.contains_key("c"));
        // An empty result removes the target label.
        let out = run(
            "- source_labels: [nothing]\n  target_label: a\n",
            &[("a", "x")],
        )
        .unwrap();
        assert!(out.is_empty());
        // A templated target label; an invalid expansion changes nothing.
        let out = run(
            "- source_labels: [k]\n  regex: '(.+)'\n  target_label: 'tag_$1'\n  replacement: yes\n\
             - source_labels: [k]\n  regex: '(.+)'\n  target_label: '$1'\n  replacement: no\n",
            &[("k", "env"), ("z", "1")],
        )
        .unwrap();
        assert_eq!(out.get("tag_env").map(String::as_str), Some("yes"));
        assert_eq!(out.get("env").map(String::as_str), Some("no"));
        let out = run(
            "- source_labels: [k]\n  regex: '(.+)'\n  target_label: '$1'\n  replacement: no\n",
            &[("k", "1bad")],
        )
        .unwrap();
        assert_eq!(out, ls(&[("k", "1bad")]));
    }

    #[test]
    fn keep_drop_and_equal() {
        let keep = "- source_labels: [__name__]\n  regex: 'node_(cpu|load).*'\n  action: keep\n";
        assert!(run(keep, &[("__name__", "node_load1")]).is_some());
        assert!(run(keep, &[("__name__", "go_gc")]).is_none());
        assert!(run(keep, &[]).is_none());
        let drop = "- source_labels: [a]\n  regex: ''\n  action: drop\n";
        assert!(run(drop, &[]).is_none(), "missing label reads as empty");
        assert!(run(drop, &[("a", "1")]).is_some());
        let ke = "- source_labels: [a]\n  target_label: b\n  action: keepequal\n";
        assert!(run(ke, &[("a", "1"), ("b", "1")]).is_some());
        assert!(run(ke, &[("a", "1"), ("b", "2")]).is_none());
        let de = "- source_labels: [a]\n  target_label: b\n  action: dropequal\n";
        assert!(run(de, &[("a", "1"), ("b", "1")]).is_none());
        assert!(run(de, &[("a", "1")]).is_some());
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // Expected values: last 8 bytes of MD5, big endian, modulo (as Prometheus' sum64).
        for (v, m, want) in [
            ("foo", 1000, "696"),
            ("10.0.0.1:9100", 1000, "645"),
            ("", 1000, "958"),
            ("foo", 7, "2"),
        ] {
            let out = run(
                &format!(
                    "- source_labels: [a]\n  target_label: shard\n  modulus: {m}\n  action: hashmod\n"
                ),
                &[("a", v)],
            )
            .unwrap();
            assert_eq!(out["shard"], want, "{v} % {m}");
        }
    }

    #[test]
    fn labelmap_labeldrop_labelkeep_case() {
        let out = run(
            "- regex: '__meta_kubernetes_pod_label_(.+)'\n  action: labelmap\n",
            &[
                ("__meta_kubernetes_pod_label_app", "web"),
                ("__meta_kubernetes_pod_label_tier", "fe"),
                ("other", "x"),
            ],
        )
        .unwrap();
        assert_eq!(out["app"], "web");
        assert_eq!(out["tier"], "fe");
        assert_eq!(out.len(), 5, "labelmap copies, it does not move");
        let out = run(
            "- regex: '__meta_.*'\n  action: labeldrop\n",
            &[("__meta_a", "1"), ("b", "2")],
        )
        .unwrap();
        assert_eq!(out, ls(&[("b", "2")]));
        let out = run(
            "- regex: 'a|__name__'\n  action: labelkeep\n",
            &[("__name__", "m"), ("a", "1"), ("ab", "2")],
        )
        .unwrap();
        assert_eq!(out, ls(&[("__name__", "m"), ("a", "1")]));
        let out = run(
            "- source_labels: [a]\n  target_label: lo\n  action: lowercase\n\
             - source_labels: [a]\n  target_label: up\n  action: uppercase\n",
            &[("a", "MiXeD")],
        )
        .unwrap();
        assert_eq!((out["lo"].as_str(), out["up"].as_str()), ("mixed", "MIXED"));
    }

    #[test]
    fn steps_apply_in_order() {
        let out = run(
            "- source_labels: [__address__]\n  regex: '([^:]+):\\d+'\n  target_label: host\n\
             - source_labels: [host]\n  regex: 'db.*'\n  action: drop\n\
             - regex: 'host'\n  action: labeldrop\n",
            &[("__address__", "web1:80")],
        )
        .unwrap();
        assert_eq!(out, ls(&[("__address__", "web1:80")]));
        assert!(run(
            "- source_labels: [__address__]\n  regex: '([^:]+):\\d+'\n  target_label: host\n\
             - source_labels: [host]\n  regex: 'db.*'\n  action: drop\n",
            &[("__address__", "db1:80")],
        )
        .is_none());
    }

    #[test]
    fn invalid_configs_are_rejected() {
        for (yaml, want) in [
            ("- regex: '('\n", "test[0]: regex \"(\" does not compile"),
            (
                "- source_labels: [a]\n",
                "action replace needs a target_label",
            ),
            ("- target_label: '1a'\n", "invalid target_label \"1a\""),
            (
                "- target_label: t\n  action: hashmod\n",
                "hashmod needs a modulus > 0",
            ),
            (
                "- source_labels: [a]\n  regex: x\n  action: labeldrop\n",
                "action labeldrop uses only regex",
            ),
            (
                "- source_labels: [a]\n  target_label: b\n  regex: x\n  action: keepequal\n",
                "keepequal uses only",
            ),
            (
                "- source_labels: ['a-b']\n  action: keep\n",
                "invalid source label",
            ),
        ] {
            let e = invalid(yaml).replace("x[", "test[");
            assert!(e.contains(want), "{yaml}: {e}");
        }
        let e: Result<Vec<RelabelConfig>, _> = serde_yaml::from_str("- action: Replace\n");
        assert!(e.is_err(), "actions are lowercase");
        let e: Result<Vec<RelabelConfig>, _> = serde_yaml::from_str("- sourcelabels: [a]\n");
        assert!(e.is_err(), "unknown fields are rejected");
    }
}
