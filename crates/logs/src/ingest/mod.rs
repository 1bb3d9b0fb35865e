//! Log ingest: decoding of Loki push bodies (snappy protobuf and JSON) and OTLP logs, and Loki's
//! validation (labels, line size, timestamps, structured metadata), producing [`StreamPush`]es for
//! the store and the per-entry rejection reasons Loki would report.
//!
//! Every decoder is bounded: the body is checked against `max_request_size_bytes` before and after
//! decompression.

pub mod labels;
pub mod otlp;

use std::collections::HashMap;
use std::fmt::Write as _;

use common::decompress::{decompress_http, snappy_block, DecompressError};
use common::limits::Limits;
use common::Labels;
use prost::Message;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::model::{Entry, Metadata, StreamPush};
use crate::Error;

/// Entries of one stream as decoded from a body, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct RawStream {
    /// Stream labels (already parsed; duplicates rejected).
    pub labels: Labels,
    /// Entries as sent.
    pub entries: Vec<Entry>,
}

/// The validated request: what to write, and what was refused (Loki's messages).
#[derive(Debug, Default)]
pub struct Validated {
    /// Streams with their accepted entries (streams left empty are dropped).
    pub streams: Vec<StreamPush>,
    /// One message per refused entry or stream, in order, at most [`MAX_ERRORS`].
    pub errors: Vec<String>,
    /// Entries refused.
    pub rejected: usize,
    /// Entries in the request.
    pub total: usize,
    /// Line bytes accepted.
    pub bytes: usize,
    /// Entries accepted.
    pub entries: usize,
}

impl Validated {
    /// Loki's 400 body for a request with refused entries: the messages, then
    /// `total ignored: N out of M`.
    pub fn error_message(&self) -> Option<String> {
        if self.rejected == 0 && self.errors.is_empty() {
            return None;
        }
        let mut s = self.errors.join("\n");
        let _ = write!(
            s,
            "\ntotal ignored: {} out of {}",
            self.rejected, self.total
        );
        Some(s)
    }
}

/// Most distinct error messages kept per request.
pub const MAX_ERRORS: usize = 20;

fn decompress_err(e: DecompressError) -> Error {
    match e.status() {
        413 => Error::Limit {
            status: 413,
            msg: e.to_string(),
        },
        415 => Error::Limit {
            status: 415,
            msg: e.to_string(),
        },
        _ => Error::BadRequest(e.to_string()),
    }
}

/// Decodes a `POST /loki/api/v1/push` body: protobuf (Snappy block) unless the content type is
/// `application/json`; JSON may be gzip/deflate/zstd encoded.
pub fn decode_push(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    max: usize,
) -> Result<Vec<RawStream>, Error> {
    if body.len() > max {
        return Err(decompress_err(common::decompress::too_large(max)));
    }
    let media = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" => {
            let raw = decompress_http(body, content_encoding, max).map_err(decompress_err)?;
            decode_json(&raw)
        }
        "" | "application/x-protobuf" | "application/protobuf" | "application/octet-stream" => {
            // Loki tolerates `Content-Encoding: snappy` on protobuf bodies (they are always
            // snappy); other encodings wrap the snappy body.
            let raw = match content_encoding.map(|e| e.trim().to_ascii_lowercase()) {
                Some(e) if e == "snappy" => std::borrow::Cow::Borrowed(body),
                other => decompress_http(body, other.as_deref(), max).map_err(decompress_err)?,
            };
            let decoded = snappy_block(&raw, max).map_err(decompress_err)?;
            decode_protobuf(&decoded)
        }
        other => Err(Error::Limit {
            status: 415,
            msg: format!(
                "unsupported content type {other:?}; use application/x-protobuf or application/json"
            ),
        }),
    }
}

/// Decodes an uncompressed `logproto.PushRequest`.
pub fn decode_protobuf(raw: &[u8]) -> Result<Vec<RawStream>, Error> {
    let req = proto::loki::PushRequest::decode(raw)
        .map_err(|e| Error::BadRequest(format!("failed to decode push request: {e}")))?;
    req.streams
        .into_iter()
        .map(|s| {
            let labels = labels::parse_stream_labels(&s.labels)?;
            let entries = s
                .entries
                .into_iter()
                .map(|e| {
                    let ts = e
                        .timestamp
                        .map(|t| t.seconds.saturating_mul(1_000_000_000) + i64::from(t.nanos))
                        .unwrap_or(0);
                    Entry {
                        ts,
                        line: e.line,
                        metadata: e
                            .structured_metadata
                            .into_iter()
                            .map(|p| (p.name, p.value))
                            .collect(),
                    }
                })
                .collect();
            Ok(RawStream { labels, entries })
        })
        .collect()
}

#[derive(Deserialize)]
struct JPush {
    #[serde(default)]
    streams: Vec<JStream>,
}

#[derive(Deserialize)]
struct JStream {
    #[serde(default)]
    stream: HashMap<String, String>,
    #[serde(default)]
    values: Vec<JEntry>,
}

struct JEntry(Entry);

impl<'de> Deserialize<'de> for JEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("[\"<unix ns as string>\", \"<line>\", {<structured metadata>}]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JEntry, A::Error> {
                let ts: String = seq
                    .next_element()
                    .map_err(|_| {
                        de::Error::custom("timestamp must be a string of unix nanoseconds")
                    })?
                    .ok_or_else(|| de::Error::custom("missing timestamp"))?;
                let ts: i64 = ts
                    .parse()
                    .map_err(|_| de::Error::custom(format!("invalid timestamp {ts:?}")))?;
                let line: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("missing log line"))?;
                let meta: Option<HashMap<String, String>> = seq.next_element()?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("too many elements in a log entry"));
                }
                let mut metadata: Metadata = meta.unwrap_or_default().into_iter().collect();
                metadata.sort();
                Ok(JEntry(Entry { ts, line, metadata }))
            }
        }
        d.deserialize_seq(V)
    }
}

/// Decodes an uncompressed JSON push body.
pub fn decode_json(raw: &[u8]) -> Result<Vec<RawStream>, Error> {
    let req: JPush = serde_json::from_slice(raw)
        .map_err(|e| Error::BadRequest(format!("failed to parse push request: {e}")))?;
    req.streams
        .into_iter()
        .map(|s| {
            let labels = labels::from_map(s.stream)?;
            Ok(RawStream {
                labels,
                entries: s.values.into_iter().map(|e| e.0).collect(),
            })
        })
        .collect()
}

/// Labels Loki looks at, in order, to fill `service_name` when a stream has none.
pub const SERVICE_NAME_SOURCES: &[&str] = &[
    "service",
    "app",
    "application",
    "app_name",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "k8s_container_name",
    "component",
    "workload",
    "job",
];

/// Adds `service_name` as Loki's `discover_service_name` does.
pub fn discover_service_name(labels: &mut Labels) {
    if labels.get("service_name").is_some() {
        return;
    }
    let value = SERVICE_NAME_SOURCES
        .iter()
        .find_map(|n| labels.get(n).filter(|v| !v.is_empty()))
        .unwrap_or("unknown_service")
        .to_string();
    labels.set("service_name", &value);
}

/// Structured-metadata and label keys that carry a level (checked before parsing the line).
const LEVEL_KEYS: &[&str] = &[
    "level", "LEVEL", "Level", "severity", "SEVERITY", "Severity", "lvl", "LVL", "Lvl",
];

/// Loki's `discover_log_levels`: the normalised level of an entry, from a level label or
/// structured metadata, a `level=`/`"level":` field in the line, or keywords in the line.
pub fn detect_level(labels: &Labels, metadata: &Metadata, line: &str) -> &'static str {
    for k in LEVEL_KEYS {
        if let Some(v) = labels.get(k) {
            return normalize_level(v);
        }
        if let Some((_, v)) = metadata.iter().find(|(n, _)| n == k) {
            return normalize_level(v);
        }
    }
    if let Some(v) = metadata
        .iter()
        .find(|(n, _)| n == "severity_text")
        .map(|(_, v)| v)
    {
        return normalize_level(v);
    }
    if let Some(v) = level_field(line) {
        return normalize_level(v);
    }
    level_from_keywords(line)
}

fn level_field(line: &str) -> Option<&str> {
    let b = line.as_bytes();
    for key in ["level", "lvl", "severity"] {
        let mut from = 0;
        while let Some(pos) = memchr::memmem::find(&b[from..], key.as_bytes()) {
            let start = from + pos;
            from = start + key.len();
            let before_ok = start == 0 || !b[start - 1].is_ascii_alphanumeric();
            if !before_ok {
                continue;
            }
            let mut i = from;
            if b.get(i) == Some(&b'"') {
                i += 1;
            }
            match b.get(i) {
                Some(b'=') | Some(b':') => i += 1,
                _ => continue,
            }
            while b.get(i) == Some(&b' ') {
                i += 1;
            }
            if b.get(i) == Some(&b'"') {
                i += 1;
            }
            let end = b[i..]
                .iter()
                .position(|c| !c.is_ascii_alphabetic())
                .map_or(b.len(), |p| i + p);
            if end > i {
                return Some(&line[i..end]);
            }
        }
    }
    None
}

/// Level keywords in order of severity, each in lower, upper and capitalised spelling, with
/// their searchers built once.
static KEYWORDS: std::sync::LazyLock<Vec<(&'static str, Vec<memchr::memmem::Finder<'static>>)>> =
    std::sync::LazyLock::new(|| {
        [
            ("critical", &["critical", "fatal"][..]),
            ("error", &["err"][..]),
            ("warn", &["warn"][..]),
            ("info", &["info"][..]),
            ("debug", &["debug"][..]),
            ("trace", &["trace"][..]),
        ]
        .into_iter()
        .map(|(level, words)| {
            let finders = words
                .iter()
                .flat_map(|w| {
                    let mut cap = w.to_string();
                    cap[..1].make_ascii_uppercase();
                    [w.to_string(), w.to_ascii_uppercase(), cap]
                })
                .map(|w| memchr::memmem::Finder::new(w.as_bytes()).into_owned())
                .collect();
            (level, finders)
        })
        .collect()
    });

fn level_from_keywords(line: &str) -> &'static str {
    let b = line.as_bytes();
    KEYWORDS
        .iter()
        .find(|(_, finders)| finders.iter().any(|f| f.find(b).is_some()))
        .map_or("unknown", |(level, _)| level)
}

pub use common::loglevel::normalize_level;

/// Formats unix ns as RFC 3339 (what Loki prints in validation errors).
pub fn fmt_ts(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, nanos)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| ns.to_string())
}

/// Applies Loki's validation to decoded streams. `now_ns` is the server clock.
pub fn validate(raw: Vec<RawStream>, limits: &Limits, now_ns: i64) -> Result<Validated, Error> {
    let mut out = Validated::default();
    if raw.is_empty() {
        return Err(Error::BadRequest(
            "error at least one valid stream is required for ingestion".into(),
        ));
    }
    let oldest = if limits.reject_old_samples_max_age.as_millis() > 0 {
        now_ns.saturating_sub(limits.reject_old_samples_max_age.as_millis() * 1_000_000)
    } else {
        i64::MIN
    };
    let newest = now_ns.saturating_add(limits.creation_grace_period.as_millis() * 1_000_000);
    let note = |out: &mut Validated, msg: String| {
        if out.errors.len() < MAX_ERRORS {
            out.errors.push(msg);
        }
    };
    // Several request streams may share a label set; merge them so the store sees each once.
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in raw {
        out.total += s.entries.len();
        let mut labels = s.labels;
        let stream_str = labels.to_string();
        if let Some(msg) = label_problem(&labels, &stream_str, limits) {
            out.rejected += s.entries.len();
            note(&mut out, msg);
            continue;
        }
        discover_service_name(&mut labels);
        let mut accepted = Vec::with_capacity(s.entries.len());
        for mut e in s.entries {
            if e.ts < oldest {
                out.rejected += 1;
                note(
                    &mut out,
                    format!(
                        "entry for stream '{stream_str}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                        fmt_ts(e.ts),
                        fmt_ts(oldest)
                    ),
                );
                continue;
            }
            if e.ts > newest {
                out.rejected += 1;
                note(
                    &mut out,
                    format!(
                        "entry for stream '{stream_str}' has timestamp too new: {}",
                        fmt_ts(e.ts)
                    ),
                );
                continue;
            }
            if limits.max_line_size > 0 && e.line.len() > limits.max_line_size {
                if limits.max_line_size_truncate {
                    let mut cut = limits.max_line_size;
                    while !e.line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    e.line.truncate(cut);
                } else {
                    out.rejected += 1;
                    note(
                        &mut out,
                        format!(
                            "Max entry size '{}' bytes exceeded for stream '{stream_str}' while adding an entry with length '{}' bytes",
                            limits.max_line_size,
                            e.line.len()
                        ),
                    );
                    continue;
                }
            }
            if !e.metadata.is_empty() {
                if let Some(msg) = metadata_problem(&e.metadata, &stream_str, limits) {
                    out.rejected += 1;
                    note(&mut out, msg);
                    continue;
                }
            }
            if limits.allow_structured_metadata
                && !e.metadata.iter().any(|(n, _)| n == "detected_level")
                && labels.get("detected_level").is_none()
                && labels.get("level").is_none()
            {
                let level = detect_level(&labels, &e.metadata, &e.line);
                e.metadata.push(("detected_level".into(), level.into()));
            }
            out.bytes += e.line.len();
            accepted.push(e);
        }
        out.entries += accepted.len();
        if accepted.is_empty() {
            continue;
        }
        match index.get(&labels) {
            Some(&i) => out.streams[i].entries.extend(accepted),
            None => {
                index.insert(labels.clone(), out.streams.len());
                out.streams.push(StreamPush {
                    labels,
                    entries: accepted,
                });
            }
        }
    }
    Ok(out)
}

fn label_problem(labels: &Labels, stream: &str, limits: &Limits) -> Option<String> {
    if labels.is_empty() {
        return Some("error at least one label pair is required per stream".into());
    }
    if labels.len() > limits.max_label_names_per_series {
        return Some(format!(
            "entry for stream '{stream}' has {} label names; limit {}",
            labels.len(),
            limits.max_label_names_per_series
        ));
    }
    for l in labels.iter() {
        if l.name.len() > limits.max_label_name_length {
            return Some(format!(
                "stream '{stream}' has label name too long: '{}'",
                l.name
            ));
        }
        if l.value.len() > limits.max_label_value_length {
            return Some(format!(
                "stream '{stream}' has label value too long: '{}'",
                l.value
            ));
        }
    }
    None
}

fn metadata_problem(meta: &Metadata, stream: &str, limits: &Limits) -> Option<String> {
    if !limits.allow_structured_metadata {
        return Some(format!(
            "stream '{stream}' includes structured metadata, but this feature is disallowed. Please see `limits_config.allow_structured_metadata` or contact your Loki administrator to enable it."
        ));
    }
    let size: usize = meta.iter().map(|(n, v)| n.len() + v.len()).sum();
    if limits.max_structured_metadata_size > 0 && size > limits.max_structured_metadata_size {
        return Some(format!(
            "stream '{stream}' has structured metadata too large: '{size}' bytes, limit: '{}' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it.",
            limits.max_structured_metadata_size
        ));
    }
    if limits.max_structured_metadata_entries_count > 0
        && meta.len() > limits.max_structured_metadata_entries_count
    {
        return Some(format!(
            "stream '{stream}' has too many structured metadata labels: '{}', limit: '{}'. Please see `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to increase it.",
            meta.len(),
            limits.max_structured_metadata_entries_count
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn push_pb(streams: &[(&str, &[(i64, &str)])]) -> Vec<u8> {
        let req = proto::loki::PushRequest {
            streams: streams
                .iter()
                .map(|(l, es)| proto::loki::StreamAdapter {
                    labels: l.to_string(),
                    entries: es
                        .iter()
                        .map(|(ts, line)| proto::loki::EntryAdapter {
                            timestamp: Some(proto::loki::Timestamp {
                                seconds: ts / 1_000_000_000,
                                nanos: (ts % 1_000_000_000) as i32,
                            }),
                            line: line.to_string(),
                            structured_metadata: vec![proto::loki::LabelPairAdapter {
                                name: "trace_id".into(),
                                value: "abc".into(),
                            }],
                            parsed: vec![],
                        })
                        .collect(),
                    hash: 0,
                })
                .collect(),
        };
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap()
    }

    #[test]
    fn protobuf_and_json_decode_to_the_same_streams() {
        let pb = push_pb(&[(r#"{app="api", env="prod"}"#, &[(NOW, "hello")])]);
        let a = decode_push(&pb, Some("application/x-protobuf"), None, 1 << 20).unwrap();
        let json = format!(
            r#"{{"streams":[{{"stream":{{"env":"prod","app":"api"}},"values":[["{NOW}","hello",{{"trace_id":"abc"}}]]}}]}}"#
        );
        let b = decode_push(json.as_bytes(), Some("application/json"), None, 1 << 20).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].entries[0].ts, NOW);
    }

    #[test]
    fn json_timestamp_must_be_a_string() {
        let e =
            decode_json(br#"{"streams":[{"stream":{"a":"b"},"values":[[1,"x"]]}]}"#).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("timestamp"), "{e}");
    }

    #[test]
    fn gzip_json_and_bad_encodings() {
        use std::io::Write;
        let json = br#"{"streams":[{"stream":{"a":"b"},"values":[["1","x"]]}]}"#;
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        g.write_all(json).unwrap();
        let gz = g.finish().unwrap();
        assert_eq!(
            decode_push(&gz, Some("application/json"), Some("gzip"), 1 << 20)
                .unwrap()
                .len(),
            1
        );
        let e = decode_push(json, Some("application/json"), Some("br"), 1 << 20).unwrap_err();
        assert_eq!(e.status(), 415);
        let e = decode_push(json, Some("text/plain"), None, 1 << 20).unwrap_err();
        assert_eq!(e.status(), 415);
        let e = decode_push(json, Some("application/json"), None, 10).unwrap_err();
        assert_eq!(e.status(), 413);
        let e = decode_push(b"\xff\xff\xff\xff\x0f", None, None, 1 << 20).unwrap_err();
        assert_eq!(e.status(), 413);
        let e = decode_push(b"not snappy", None, None, 1 << 20).unwrap_err();
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn validation_rejects_per_entry_and_keeps_the_rest() {
        let limits = Limits {
            max_line_size: 10,
            ..Limits::default()
        };
        let raw = decode_protobuf(
            &snap::raw::Decoder::new()
                .decompress_vec(&push_pb(&[(
                    r#"{app="api"}"#,
                    &[
                        (NOW, "ok"),
                        (NOW, "this line is too long"),
                        (NOW - 30 * 86_400 * 1_000_000_000, "old"),
                        (NOW + 3_600 * 1_000_000_000, "future"),
                    ],
                )]))
                .unwrap(),
        )
        .unwrap();
        let v = validate(raw, &limits, NOW).unwrap();
        assert_eq!(v.entries, 1);
        assert_eq!(v.rejected, 3);
        let msg = v.error_message().unwrap();
        assert!(
            msg.contains("Max entry size '10' bytes exceeded for stream '{app=\"api\"}'"),
            "{msg}"
        );
        assert!(msg.contains("has timestamp too old"), "{msg}");
        assert!(msg.contains("has timestamp too new"), "{msg}");
        assert!(msg.ends_with("total ignored: 3 out of 4"), "{msg}");
        let s = &v.streams[0];
        assert_eq!(s.labels.get("service_name"), Some("api"));
        assert!(s.entries[0]
            .metadata
            .contains(&("detected_level".to_string(), "unknown".to_string())));
    }

    #[test]
    fn truncation_keeps_char_boundaries() {
        let limits = Limits {
            max_line_size: 4,
            max_line_size_truncate: true,
            ..Limits::default()
        };
        let raw = vec![RawStream {
            labels: Labels::from_pairs([("a", "b")]),
            entries: vec![Entry {
                ts: NOW,
                line: "aaé€".into(),
                metadata: vec![],
            }],
        }];
        let v = validate(raw, &limits, NOW).unwrap();
        assert_eq!(v.streams[0].entries[0].line, "aaé");
    }

    #[test]
    fn label_limits_and_service_name() {
        let limits = Limits {
            max_label_names_per_series: 2,
            ..Limits::default()
        };
        let raw = vec![RawStream {
            labels: Labels::from_pairs([("a", "1"), ("b", "2"), ("c", "3")]),
            entries: vec![Entry {
                ts: NOW,
                line: "x".into(),
                metadata: vec![],
            }],
        }];
        let v = validate(raw, &limits, NOW).unwrap();
        assert!(v.streams.is_empty());
        assert!(v.errors[0].contains("has 3 label names; limit 2"));
        let mut l = Labels::from_pairs([("job", "j"), ("container", "c")]);
        discover_service_name(&mut l);
        assert_eq!(l.get("service_name"), Some("c"));
        let mut l = Labels::from_pairs([("foo", "x")]);
        discover_service_name(&mut l);
        assert_eq!(l.get("service_name"), Some("unknown_service"));
    }

    #[test]
    fn levels() {
        let l = Labels::from_pairs([("a", "b")]);
        assert_eq!(detect_level(&l, &vec![], "ts=1 level=WARN msg=x"), "warn");
        assert_eq!(
            detect_level(&l, &vec![], r#"{"level":"error","m":1}"#),
            "error"
        );
        assert_eq!(
            detect_level(&l, &vec![], "something failed: ERROR"),
            "error"
        );
        assert_eq!(detect_level(&l, &vec![], "all good"), "unknown");
        assert_eq!(
            detect_level(
                &l,
                &vec![("severity_text".into(), "Information".into())],
                "x"
            ),
            "info"
        );
    }
}
