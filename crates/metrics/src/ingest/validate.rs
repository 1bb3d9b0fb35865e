//! Series validation shared by remote_write and OTLP, with Mimir's distributor rules and messages
//! (`pkg/util/validation/errors.go`): the message names the series (truncated to 200 characters, as
//! Mimir's `%.200s`) and the limit, so the sender's log says what to fix.
//!
//! Label names follow the Prometheus 2.x *legacy* charset (Mimir's default name validation); UTF-8
//! names are rejected for now because PromQL and the API here do not quote them yet.

use common::limits::Limits;
use common::{Label, Labels};

/// Whether `s` is a valid metric name in the legacy charset `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    match b.next() {
        Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {}
        _ => return false,
    }
    b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// Whether `s` is a valid label name in the legacy charset `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    match b.next() {
        Some(c) if c.is_ascii_alphabetic() || c == b'_' => {}
        _ => return false,
    }
    b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Formats labels as Mimir does in errors: `name{a="1", b="2"}` in the given order, truncated to
/// 200 characters.
pub fn format_series(labels: &[Label]) -> String {
    let mut name = None;
    let mut rest = Vec::with_capacity(labels.len());
    for l in labels {
        if l.name == common::labels::METRIC_NAME && name.is_none() && !l.value.is_empty() {
            name = Some(l.value.as_str());
        } else {
            rest.push(format!("{}={:?}", l.name, l.value));
        }
    }
    let s = match (name, rest.is_empty()) {
        (Some(n), true) => n.to_string(),
        (None, true) => "{}".to_string(),
        (n, false) => format!("{}{{{}}}", n.unwrap_or(""), rest.join(", ")),
    };
    truncate(&s, 200)
}

/// The first `n` characters of `s`.
pub fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Normalises and validates the label set of one series.
///
/// Like Mimir's distributor (`prePushRelabelMiddleware`): labels with an empty value are dropped
/// ("Prometheus strips empty values before storing") and unsorted labels are *sorted*, not
/// rejected (`SortLabelsIfNeeded`), since some senders do not sort. Then, in Mimir's order: missing
/// name, invalid name, too many labels, and per label invalid name / name too long / value too long
/// / duplicate name. Returns the error message on failure.
pub fn validate_series_labels(mut labels: Vec<Label>, limits: &Limits) -> Result<Labels, String> {
    labels.retain(|l| !l.value.is_empty());
    if !labels.windows(2).all(|w| w[0].name <= w[1].name) {
        labels.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let Some(name) = labels
        .iter()
        .find(|l| l.name == common::labels::METRIC_NAME)
    else {
        return Err("received series has no metric name".into());
    };
    if !valid_metric_name(&name.value) {
        return Err(format!(
            "received a series with invalid metric name: '{}'",
            truncate(&name.value, 200)
        ));
    }
    let max_names = limits.max_label_names_per_series;
    if max_names > 0 && labels.len() > max_names {
        return Err(format!(
            "received a series whose number of labels exceeds the limit (actual: {}, limit: {}) \
             series: '{}'; reduce the labels or raise max_label_names_per_series",
            labels.len(),
            max_names,
            format_series(&labels)
        ));
    }
    let mut last: Option<&str> = None;
    for l in &labels {
        if !valid_label_name(&l.name) {
            return Err(format!(
                "received a series with an invalid label: '{}' series: '{}'",
                truncate(&l.name, 200),
                format_series(&labels)
            ));
        }
        if limits.max_label_name_length > 0 && l.name.len() > limits.max_label_name_length {
            return Err(format!(
                "received a series whose label name length exceeds the limit, label: '{}' \
                 series: '{}' (limit: {} bytes, max_label_name_length)",
                truncate(&l.name, 200),
                format_series(&labels),
                limits.max_label_name_length
            ));
        }
        if limits.max_label_value_length > 0 && l.value.len() > limits.max_label_value_length {
            return Err(format!(
                "received a series whose label value length exceeds the limit, value: '{}' \
                 (truncated) series: '{}' (limit: {} bytes, max_label_value_length)",
                truncate(&l.value, 200),
                format_series(&labels),
                limits.max_label_value_length
            ));
        }
        if last == Some(l.name.as_str()) {
            return Err(format!(
                "received a series with duplicate label name, label: '{}' series: '{}'",
                truncate(&l.name, 200),
                format_series(&labels)
            ));
        }
        last = Some(&l.name);
    }
    Ok(Labels::from_sorted(labels))
}

/// Checks that a sample timestamp is not beyond `now + creation_grace_period` (Mimir's
/// `err-mimir-too-far-in-future`).
pub fn check_not_in_future(
    t: i64,
    now_ms: i64,
    limits: &Limits,
    labels: &Labels,
) -> Result<(), String> {
    let grace = limits.creation_grace_period.as_millis();
    if grace > 0 && t > now_ms.saturating_add(grace) {
        return Err(format!(
            "received a sample whose timestamp is too far in the future, timestamp: {t} series: \
             '{}' (sample timestamp too far in the future; creation_grace_period: {})",
            format_series(labels.clone().into_vec().as_slice()),
            limits.creation_grace_period
        ));
    }
    Ok(())
}

/// Prometheus' limit on the combined length (in characters) of an exemplar's label names and
/// values (`exemplar.ExemplarMaxLabelSetLength`).
pub const EXEMPLAR_MAX_LABEL_SET_LENGTH: usize = 128;

/// Validates exemplar labels: at least one (Mimir rejects exemplars without labels), legacy names,
/// non-empty values, combined length ≤ 128 characters.
pub fn validate_exemplar_labels(labels: Vec<Label>) -> Result<Labels, String> {
    if labels.is_empty() {
        return Err("received an exemplar with no valid labels".into());
    }
    let mut len = 0;
    for l in &labels {
        if !valid_label_name(&l.name) || l.value.is_empty() {
            return Err(format!(
                "invalid exemplar label: {:?}={:?}",
                l.name, l.value
            ));
        }
        len += l.name.chars().count() + l.value.chars().count();
    }
    if len > EXEMPLAR_MAX_LABEL_SET_LENGTH {
        return Err(format!(
            "exemplar combined labels exceed the limit of {EXEMPLAR_MAX_LABEL_SET_LENGTH} characters"
        ));
    }
    let n = labels.len();
    let out = Labels::from_pairs(labels.into_iter().map(|l| (l.name, l.value)));
    if out.len() != n {
        return Err("exemplar has duplicate label names".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect()
    }

    #[test]
    fn legacy_charsets() {
        assert!(valid_metric_name("a:b_c1"));
        assert!(valid_metric_name("_x"));
        assert!(!valid_metric_name("1a"));
        assert!(!valid_metric_name(""));
        assert!(!valid_metric_name("a.b"));
        assert!(valid_label_name("__name__"));
        assert!(!valid_label_name("a:b"));
        assert!(!valid_label_name("é"));
    }

    #[test]
    fn sorts_drops_empty_and_formats() {
        let lim = Limits::default();
        let ls = validate_series_labels(
            l(&[("b", "2"), ("__name__", "up"), ("a", ""), ("c", "3")]),
            &lim,
        )
        .unwrap();
        assert_eq!(ls.to_string(), r#"{__name__="up", b="2", c="3"}"#);
        assert_eq!(format_series(&ls.clone().into_vec()), r#"up{b="2", c="3"}"#);
    }

    #[test]
    fn rejections() {
        let lim = Limits {
            max_label_names_per_series: 2,
            max_label_name_length: 8,
            max_label_value_length: 5,
            ..Default::default()
        };
        let e = validate_series_labels(l(&[("a", "1")]), &lim).unwrap_err();
        assert_eq!(e, "received series has no metric name");
        let e = validate_series_labels(l(&[("__name__", "1x")]), &lim).unwrap_err();
        assert!(e.contains("invalid metric name: '1x'"), "{e}");
        let e = validate_series_labels(l(&[("__name__", "m"), ("a", "1"), ("b", "2")]), &lim)
            .unwrap_err();
        assert!(
            e.starts_with("received a series whose number of labels exceeds the limit (actual: 3, limit: 2) series: 'm{a=\"1\", b=\"2\"}'"),
            "{e}"
        );
        let e = validate_series_labels(l(&[("__name__", "m"), ("a-b", "1")]), &lim).unwrap_err();
        assert!(e.contains("invalid label: 'a-b'"), "{e}");
        let e =
            validate_series_labels(l(&[("__name__", "m"), ("abcdefghi", "1")]), &lim).unwrap_err();
        assert!(
            e.contains("label name length exceeds the limit") && e.contains("limit: 8"),
            "{e}"
        );
        let e = validate_series_labels(l(&[("__name__", "m"), ("a", "123456")]), &lim).unwrap_err();
        assert!(
            e.contains("label value length exceeds the limit, value: '123456'"),
            "{e}"
        );
        let e = validate_series_labels(
            l(&[("__name__", "m"), ("a", "1"), ("a", "2")]),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(e.contains("duplicate label name, label: 'a'"), "{e}");
    }

    #[test]
    fn future_timestamps() {
        let lim = Limits::default(); // 10m grace
        let ls = Labels::from_pairs([("__name__", "m")]);
        assert!(check_not_in_future(600_000, 0, &lim, &ls).is_ok());
        let e = check_not_in_future(600_001, 0, &lim, &ls).unwrap_err();
        assert!(
            e.contains("too far in the future, timestamp: 600001 series: 'm'"),
            "{e}"
        );
    }
}
