//! The compiled log pipeline: line filters, parsers, label filters and formatters applied to one
//! entry at a time, with a batch fast path for leading substring filters.
//!
//! Labels of an entry come from three places, as in Loki: the stream's labels, the entry's
//! structured metadata, and labels extracted by parsers. A parser label whose name is already a
//! stream label gets the suffix `_extracted`. Parser failures set `__error__` (and
//! `__error_details__`); numeric label filters let entries with an error through so that only
//! `__error__` matchers decide about them.

use std::borrow::Cow;

use common::{Label, Labels, Matcher};
use memchr::memmem::Finder;
use regex::bytes::Regex as BytesRegex;
use regex::Regex;

use super::ast::{
    CmpOp, FilterValue, LabelFilterExpr, LabelFmt, LabelSel, LineFilter, LineFilterOp, Stage,
};
use super::ip::IpFilter;
use super::json::{self, JsonPath};
use super::pattern::Pattern;
use super::template::{Template, TemplateContext};
use super::{logfmt, units};
use crate::model::{Batch, Meta, StreamInfo};
use crate::Error;

/// Name of the error label set by failing stages.
pub const ERROR_LABEL: &str = "__error__";
/// Name of the error details label.
pub const ERROR_DETAILS_LABEL: &str = "__error_details__";

/// Where a label of an entry came from (for `categorize-labels` responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A stream label.
    Stream,
    /// Structured metadata of the entry.
    Metadata,
    /// Extracted by a parser or set by a formatter.
    Parsed,
}

/// The labels of one entry while it runs through the pipeline.
#[derive(Debug, Clone, Default)]
pub struct EntryLabels {
    /// `(name, value, origin)`; names are unique.
    pub labels: Vec<(String, String, Origin)>,
}

impl EntryLabels {
    fn from_entry(stream: &Labels, meta: Meta<'_>) -> Self {
        let mut labels = Vec::with_capacity(stream.len() + meta.len() + 8);
        for l in stream.iter() {
            labels.push((l.name.clone(), l.value.clone(), Origin::Stream));
        }
        let mut out = EntryLabels { labels };
        for (n, v) in meta.iter() {
            out.set(n, v.to_string(), Origin::Metadata);
        }
        out
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.as_str())
    }

    /// Sets `name`, replacing any previous value (and origin).
    pub fn set(&mut self, name: &str, value: String, origin: Origin) {
        match self.labels.iter_mut().find(|(n, _, _)| n == name) {
            Some(slot) => {
                slot.1 = value;
                slot.2 = origin;
            }
            None => self.labels.push((name.to_string(), value, origin)),
        }
    }

    /// Adds a parser-extracted label: a name taken by a stream label gets `_extracted`.
    fn set_extracted(&mut self, name: &str, value: String) {
        if name.is_empty() {
            return;
        }
        let taken = self
            .labels
            .iter()
            .any(|(n, _, o)| n == name && *o == Origin::Stream);
        if taken {
            self.set(&format!("{name}_extracted"), value, Origin::Parsed);
        } else {
            self.set(name, value, Origin::Parsed);
        }
    }

    /// [`Self::set_extracted`] without copying `name` when it is new.
    fn set_extracted_owned(&mut self, name: String, value: String) {
        if name.is_empty() {
            return;
        }
        match self.labels.iter().position(|(n, _, _)| *n == name) {
            None => self.labels.push((name, value, Origin::Parsed)),
            Some(_) => self.set_extracted(&name, value),
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.labels.retain(|(n, _, _)| n != name);
    }

    fn has_error(&self) -> bool {
        self.get(ERROR_LABEL).is_some()
    }

    fn set_error(&mut self, kind: &str, details: String) {
        if self.has_error() {
            return;
        }
        self.set(ERROR_LABEL, kind.to_string(), Origin::Parsed);
        self.set(ERROR_DETAILS_LABEL, details, Origin::Parsed);
    }

    /// All labels as one sorted set (what a response without `categorize-labels` shows).
    pub fn to_labels(&self) -> Labels {
        let mut v: Vec<Label> = self
            .labels
            .iter()
            .filter(|(_, v, o)| !v.is_empty() || *o == Origin::Parsed)
            .map(|(n, v, _)| Label::new(n.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Labels::from_sorted(v)
    }

    /// Only the labels of one origin, sorted.
    pub fn of_origin(&self, origin: Origin) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = self
            .labels
            .iter()
            .filter(|(_, v, o)| *o == origin && !v.is_empty())
            .map(|(n, v, _)| (n.as_str(), v.as_str()))
            .collect();
        v.sort();
        v
    }
}

enum ValueMatcher {
    All,
    Substr(Box<Finder<'static>>),
    Regex(BytesRegex),
    Pattern(Pattern),
    Ip(IpFilter),
}

impl ValueMatcher {
    fn matches(&self, line: &[u8]) -> bool {
        match self {
            ValueMatcher::All => true,
            ValueMatcher::Substr(f) => f.find(line).is_some(),
            ValueMatcher::Regex(r) => r.is_match(line),
            ValueMatcher::Pattern(p) => p.is_match(line),
            ValueMatcher::Ip(ip) => ip.line_contains_match(line),
        }
    }
}

struct LineMatch {
    negate: bool,
    values: Vec<ValueMatcher>,
}

impl LineMatch {
    fn compile(f: &LineFilter) -> Result<Self, Error> {
        let values = f
            .values
            .iter()
            .map(|v| match (f.op, v) {
                (_, FilterValue::Ip(p)) => IpFilter::parse(p)
                    .map(ValueMatcher::Ip)
                    .map_err(|e| Error::BadRequest(format!("invalid ip filter {p:?}: {e}"))),
                (LineFilterOp::Contains | LineFilterOp::NotContains, FilterValue::Str(s)) => {
                    Ok(if s.is_empty() {
                        ValueMatcher::All
                    } else {
                        ValueMatcher::Substr(Box::new(Finder::new(s.as_bytes()).into_owned()))
                    })
                }
                (LineFilterOp::Regex | LineFilterOp::NotRegex, FilterValue::Str(s)) => {
                    BytesRegex::new(s)
                        .map(ValueMatcher::Regex)
                        .map_err(|e| Error::BadRequest(format!("invalid regex {s:?}: {e}")))
                }
                (LineFilterOp::Pattern | LineFilterOp::NotPattern, FilterValue::Str(s)) => {
                    Pattern::parse_filter(s)
                        .map(ValueMatcher::Pattern)
                        .map_err(|e| Error::BadRequest(format!("invalid pattern {s:?}: {e}")))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LineMatch {
            negate: f.op.is_negative(),
            values,
        })
    }

    fn matches(&self, line: &[u8]) -> bool {
        let any = self.values.iter().any(|v| v.matches(line));
        any != self.negate
    }
}

enum LabelTest {
    And(Box<LabelTest>, Box<LabelTest>),
    Or(Box<LabelTest>, Box<LabelTest>),
    Str(Matcher),
    Num {
        name: String,
        op: CmpOp,
        value: f64,
        kind: NumKind,
    },
    Ip {
        name: String,
        negate: bool,
        filter: IpFilter,
    },
}

#[derive(Clone, Copy)]
enum NumKind {
    Number,
    Duration,
    Bytes,
}

impl LabelTest {
    fn compile(e: &LabelFilterExpr) -> Result<Self, Error> {
        Ok(match e {
            LabelFilterExpr::And(a, b) => {
                LabelTest::And(Box::new(Self::compile(a)?), Box::new(Self::compile(b)?))
            }
            LabelFilterExpr::Or(a, b) => {
                LabelTest::Or(Box::new(Self::compile(a)?), Box::new(Self::compile(b)?))
            }
            LabelFilterExpr::Str(m) => LabelTest::Str(m.clone()),
            LabelFilterExpr::Number { name, op, value } => LabelTest::Num {
                name: name.clone(),
                op: *op,
                value: *value,
                kind: NumKind::Number,
            },
            LabelFilterExpr::Duration { name, op, seconds } => LabelTest::Num {
                name: name.clone(),
                op: *op,
                value: *seconds,
                kind: NumKind::Duration,
            },
            LabelFilterExpr::Bytes { name, op, value } => LabelTest::Num {
                name: name.clone(),
                op: *op,
                value: *value,
                kind: NumKind::Bytes,
            },
            LabelFilterExpr::Ip {
                name,
                negate,
                pattern,
            } => LabelTest::Ip {
                name: name.clone(),
                negate: *negate,
                filter: IpFilter::parse(pattern).map_err(|e| {
                    Error::BadRequest(format!("invalid ip filter {pattern:?}: {e}"))
                })?,
            },
        })
    }

    /// Evaluates the test; a value that does not convert sets `LabelFilterErr` and passes.
    fn eval(&self, labels: &mut EntryLabels) -> bool {
        match self {
            LabelTest::And(a, b) => a.eval(labels) && b.eval(labels),
            LabelTest::Or(a, b) => a.eval(labels) || b.eval(labels),
            LabelTest::Str(m) => m.matches(labels.get(&m.name).unwrap_or("")),
            LabelTest::Num {
                name,
                op,
                value,
                kind,
            } => {
                if labels.has_error() {
                    return true;
                }
                let Some(raw) = labels.get(name) else {
                    return false;
                };
                let parsed = match kind {
                    NumKind::Number => raw.trim().parse::<f64>().ok(),
                    NumKind::Duration => units::parse_go_duration(raw),
                    NumKind::Bytes => units::parse_bytes(raw),
                };
                match parsed {
                    Some(v) => op.apply(v, *value),
                    None => {
                        let details = format!("{name}: cannot convert {raw:?}");
                        labels.set_error("LabelFilterErr", details);
                        true
                    }
                }
            }
            LabelTest::Ip {
                name,
                negate,
                filter,
            } => {
                let Some(v) = labels.get(name) else {
                    return *negate;
                };
                filter.matches_value(v) != *negate
            }
        }
    }
}

enum LabelFormatOp {
    Rename { dst: String, src: String },
    Template { dst: String, tmpl: Template },
}

enum Step {
    Line(LineMatch),
    JsonAll,
    JsonPaths(Vec<String>, Vec<JsonPath>),
    Logfmt {
        strict: bool,
        keep_empty: bool,
        params: Vec<(String, String)>,
    },
    Pattern(Pattern),
    Regexp(Regex, Vec<Option<String>>),
    Unpack,
    Labels(LabelTest),
    LineFormat(Template),
    LabelFormat(Vec<LabelFormatOp>),
    Drop(Vec<LabelSel>),
    Keep(Vec<LabelSel>),
    Decolorize,
}

/// A compiled pipeline, shared by every entry of a query.
pub struct Pipeline {
    steps: Vec<Step>,
    /// Leading `|= "literal"` filters, applied to whole batches with one substring search.
    leading: Vec<Finder<'static>>,
    /// True when no step needs labels or rewrites the line (only line filters).
    line_only: bool,
}

/// What the pipeline produced for one entry.
pub struct Processed<'a> {
    /// The (possibly rewritten) line.
    pub line: Cow<'a, [u8]>,
    /// The entry's labels; `None` when the pipeline has only line filters (then the labels are
    /// the stream labels plus structured metadata, see [`Pipeline::labels_of`]).
    pub labels: Option<EntryLabels>,
}

struct Ctx<'a> {
    labels: &'a EntryLabels,
    line: &'a str,
    ts: i64,
}

impl TemplateContext for Ctx<'_> {
    fn label(&self, name: &str) -> Option<Cow<'_, str>> {
        self.labels.get(name).map(Cow::Borrowed)
    }
    fn line(&self) -> &str {
        self.line
    }
    fn timestamp_ns(&self) -> i64 {
        self.ts
    }
}

fn sel_matches(sel: &LabelSel, name: &str, value: &str) -> bool {
    match sel {
        LabelSel::Name(n) => n == name,
        LabelSel::Matcher(m) => m.name == name && m.matches(value),
    }
}

impl Pipeline {
    /// Compiles `stages` (regexes, templates, patterns, JSON paths once per query).
    pub fn new(stages: &[Stage]) -> Result<Self, Error> {
        let mut steps = Vec::with_capacity(stages.len());
        let mut leading = Vec::new();
        let mut in_leading = true;
        for st in stages {
            if in_leading {
                match st {
                    Stage::LineFilter(LineFilter {
                        op: LineFilterOp::Contains,
                        values,
                    }) if values.len() == 1 => {
                        if let FilterValue::Str(s) = &values[0] {
                            if !s.is_empty() {
                                leading.push(Finder::new(s.as_bytes()).into_owned());
                            }
                            continue;
                        }
                    }
                    Stage::LineFilter(_) => {}
                    _ => in_leading = false,
                }
            }
            steps.push(match st {
                Stage::LineFilter(f) => Step::Line(LineMatch::compile(f)?),
                Stage::Json(params) if params.is_empty() => Step::JsonAll,
                Stage::Json(params) => {
                    let mut names = Vec::with_capacity(params.len());
                    let mut paths = Vec::with_capacity(params.len());
                    for (label, path) in params {
                        names.push(label.clone());
                        paths.push(JsonPath::parse(path).map_err(|e| {
                            Error::BadRequest(format!("invalid json path {path:?}: {e}"))
                        })?);
                    }
                    Step::JsonPaths(names, paths)
                }
                Stage::Logfmt {
                    strict,
                    keep_empty,
                    params,
                } => Step::Logfmt {
                    strict: *strict,
                    keep_empty: *keep_empty,
                    params: params
                        .iter()
                        .map(|(l, k)| (l.clone(), units::sanitize_label_name(k)))
                        .collect(),
                },
                Stage::Pattern(p) => Step::Pattern(
                    Pattern::parse(p)
                        .map_err(|e| Error::BadRequest(format!("invalid pattern {p:?}: {e}")))?,
                ),
                Stage::Regexp(r) => {
                    let re = Regex::new(r)
                        .map_err(|e| Error::BadRequest(format!("invalid regexp {r:?}: {e}")))?;
                    let names = re.capture_names().map(|n| n.map(str::to_string)).collect();
                    Step::Regexp(re, names)
                }
                Stage::Unpack => Step::Unpack,
                Stage::LabelFilter(f) => Step::Labels(LabelTest::compile(f)?),
                Stage::LineFormat(t) => Step::LineFormat(Template::parse(t).map_err(|e| {
                    Error::BadRequest(format!("invalid line_format template: {e}"))
                })?),
                Stage::LabelFormat(ops) => Step::LabelFormat(
                    ops.iter()
                        .map(|op| match op {
                            LabelFmt::Rename { dst, src } => Ok(LabelFormatOp::Rename {
                                dst: dst.clone(),
                                src: src.clone(),
                            }),
                            LabelFmt::Template { dst, tmpl } => Ok(LabelFormatOp::Template {
                                dst: dst.clone(),
                                tmpl: Template::parse(tmpl).map_err(|e| {
                                    Error::BadRequest(format!("invalid label_format template: {e}"))
                                })?,
                            }),
                        })
                        .collect::<Result<Vec<_>, Error>>()?,
                ),
                Stage::Drop(sels) => Step::Drop(sels.clone()),
                Stage::Keep(sels) => Step::Keep(sels.clone()),
                Stage::Decolorize => Step::Decolorize,
            });
        }
        let line_only = steps.iter().all(|s| matches!(s, Step::Line(_)));
        Ok(Pipeline {
            steps,
            leading,
            line_only,
        })
    }

    /// True when the pipeline has only line filters (labels are untouched).
    pub fn is_line_only(&self) -> bool {
        self.line_only
    }

    /// The labels of an entry when the pipeline does not touch labels.
    pub fn labels_of(stream: &Labels, meta: Meta<'_>) -> EntryLabels {
        EntryLabels::from_entry(stream, meta)
    }

    /// Calls `f(i)` for every entry of `batch` that passes the leading substring filters, in
    /// order. With several leading filters the rarest-first order does not matter: the first
    /// one drives a whole-batch search and the others check the candidate line.
    pub fn candidates(&self, batch: &Batch, f: &mut dyn FnMut(usize)) {
        let n = batch.len();
        let Some((first, rest)) = self.leading.split_first() else {
            for i in 0..n {
                f(i);
            }
            return;
        };
        let lines = &batch.lines;
        let mut pos = 0usize;
        while pos < lines.len() {
            let Some(hit) = first.find(&lines[pos..]) else {
                break;
            };
            let at = pos + hit;
            // The entry containing byte `at`: first line end strictly greater than `at`.
            let i = batch.line_ends.partition_point(|&e| (e as usize) <= at);
            if i >= n {
                break;
            }
            let start = if i == 0 {
                0
            } else {
                batch.line_ends[i - 1] as usize
            };
            let end = batch.line_ends[i] as usize;
            // A match that straddles two lines is not a match of either.
            if at + first.needle().len() <= end {
                let line = &lines[start..end];
                if rest.iter().all(|g| g.find(line).is_some()) {
                    f(i);
                }
                pos = end;
            } else {
                pos = at + 1;
            }
        }
    }

    /// Runs only the label filters on already built labels (the filters after `unwrap`).
    pub fn process_labels(&self, labels: &mut EntryLabels) -> bool {
        self.steps.iter().all(|s| match s {
            Step::Labels(t) => t.eval(labels),
            _ => true,
        })
    }

    /// Runs the non-leading steps on one entry. `None` when the entry is filtered out.
    pub fn process<'a>(
        &self,
        ts: i64,
        line: &'a [u8],
        stream: &StreamInfo,
        meta: Meta<'_>,
    ) -> Option<Processed<'a>> {
        if self.line_only {
            for s in &self.steps {
                if let Step::Line(m) = s {
                    if !m.matches(line) {
                        return None;
                    }
                }
            }
            return Some(Processed {
                line: Cow::Borrowed(line),
                labels: None,
            });
        }
        let mut labels = EntryLabels::from_entry(&stream.labels, meta);
        let mut line: Cow<'a, [u8]> = Cow::Borrowed(line);
        for s in &self.steps {
            match s {
                Step::Line(m) => {
                    if !m.matches(&line) {
                        return None;
                    }
                }
                Step::JsonAll => {
                    let mut out: Vec<(String, String)> = Vec::new();
                    let r = json::extract_all(&line, &mut |k, v| {
                        // A key repeated in one object: the first value wins (Loki). Objects
                        // have few keys, so a linear check beats hashing.
                        if !out.iter().any(|(seen, _)| seen == k) {
                            out.push((k.to_string(), v.into_owned()))
                        }
                    });
                    match r {
                        Ok(()) => {
                            for (k, v) in out {
                                labels.set_extracted_owned(k, v);
                            }
                        }
                        Err(e) => labels.set_error("JSONParserErr", e.to_string()),
                    }
                }
                Step::JsonPaths(names, paths) => {
                    let mut out = Vec::new();
                    let r = json::extract_paths(&line, paths, &mut |i, v| {
                        out.push((i, v.into_owned()))
                    });
                    match r {
                        Ok(()) => {
                            for (i, v) in out {
                                labels.set_extracted(&names[i], v);
                            }
                        }
                        Err(e) => labels.set_error("JSONParserErr", e.to_string()),
                    }
                }
                Step::Logfmt {
                    strict,
                    keep_empty,
                    params,
                } => {
                    let mut out = Vec::new();
                    let r = logfmt::parse(&line, *strict, *keep_empty, &mut |k, v| {
                        if params.is_empty() {
                            out.push((k.to_string(), v.into_owned()));
                        } else {
                            for (label, key) in params {
                                if key == k {
                                    out.push((label.clone(), v.to_string()));
                                }
                            }
                        }
                    });
                    for (k, v) in out {
                        labels.set_extracted(&k, v);
                    }
                    if let Err(e) = r {
                        labels.set_error("LogfmtParserErr", e.to_string());
                    }
                }
                Step::Pattern(p) => {
                    if let Some(caps) = p.matches(&line) {
                        let caps: Vec<(String, String)> = caps
                            .into_iter()
                            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
                            .collect();
                        for (n, v) in caps {
                            labels.set_extracted(&n, v);
                        }
                    }
                }
                Step::Regexp(re, names) => {
                    let text = String::from_utf8_lossy(&line);
                    if let Some(c) = re.captures(&text) {
                        for (i, n) in names.iter().enumerate() {
                            if let (Some(n), Some(m)) = (n, c.get(i)) {
                                labels.set_extracted(n, m.as_str().to_string());
                            }
                        }
                    }
                }
                Step::Unpack => {
                    let mut out = Vec::new();
                    match json::unpack(&line, &mut |k, v| out.push((k.to_string(), v.into_owned())))
                    {
                        Ok(new_line) => {
                            for (k, v) in out {
                                labels.set_extracted(&k, v);
                            }
                            if let Some(l) = new_line {
                                line = Cow::Owned(l.into_bytes());
                            }
                        }
                        Err(e) => labels.set_error("JSONParserErr", e.to_string()),
                    }
                }
                Step::Labels(t) => {
                    if !t.eval(&mut labels) {
                        return None;
                    }
                }
                Step::LineFormat(t) => {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    let mut out = String::new();
                    let ctx = Ctx {
                        labels: &labels,
                        line: &text,
                        ts,
                    };
                    match t.render(&ctx, &mut out) {
                        Ok(()) => line = Cow::Owned(out.into_bytes()),
                        Err(e) => labels.set_error("TemplateFormatErr", e),
                    }
                }
                Step::LabelFormat(ops) => {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    let mut updates: Vec<(String, Option<String>, Option<String>)> = Vec::new();
                    for op in ops {
                        match op {
                            LabelFormatOp::Rename { dst, src } => {
                                let v = labels.get(src).unwrap_or("").to_string();
                                updates.push((dst.clone(), Some(v), Some(src.clone())));
                            }
                            LabelFormatOp::Template { dst, tmpl } => {
                                let mut out = String::new();
                                let ctx = Ctx {
                                    labels: &labels,
                                    line: &text,
                                    ts,
                                };
                                match tmpl.render(&ctx, &mut out) {
                                    Ok(()) => updates.push((dst.clone(), Some(out), None)),
                                    Err(e) => {
                                        updates.push((dst.clone(), None, None));
                                        labels.set_error("TemplateFormatErr", e);
                                    }
                                }
                            }
                        }
                    }
                    for (dst, value, renamed_from) in updates {
                        if let Some(src) = renamed_from {
                            if src != dst {
                                labels.remove(&src);
                            }
                        }
                        if let Some(v) = value {
                            labels.set(&dst, v, Origin::Parsed);
                        }
                    }
                }
                Step::Drop(sels) => labels
                    .labels
                    .retain(|(n, v, _)| !sels.iter().any(|s| sel_matches(s, n, v))),
                // `keep` never removes the error labels (Loki).
                Step::Keep(sels) => labels.labels.retain(|(n, v, _)| {
                    n == ERROR_LABEL
                        || n == ERROR_DETAILS_LABEL
                        || sels.iter().any(|s| sel_matches(s, n, v))
                }),
                Step::Decolorize => {
                    let text = String::from_utf8_lossy(&line);
                    if let Cow::Owned(s) = units::decolorize(&text) {
                        line = Cow::Owned(s.into_bytes());
                    }
                }
            }
        }
        Some(Processed {
            line,
            labels: Some(labels),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::logql::ast::Expr;
    use crate::logql::parser::parse;
    use common::TenantId;

    fn pipeline(q: &str) -> Pipeline {
        let Expr::Log(l) = parse(q).unwrap() else {
            panic!("not a log query")
        };
        Pipeline::new(&l.stages).unwrap()
    }

    fn stream(pairs: &[(&str, &str)]) -> StreamInfo {
        let labels = Labels::from_pairs(pairs.iter().copied());
        StreamInfo {
            tenant: TenantId::anonymous(),
            fingerprint: labels.stable_hash(),
            labels: Arc::new(labels),
        }
    }

    fn run(q: &str, line: &str) -> Option<(String, String)> {
        let p = pipeline(q);
        let s = stream(&[("app", "api")]);
        let meta: Vec<(Arc<str>, Arc<str>)> = vec![(Arc::from("trace_id"), Arc::from("t1"))];
        let mut b = Batch::default();
        b.push(1, line.as_bytes(), &meta);
        let meta = b.metadata(0);
        let mut hit = false;
        p.candidates(&b, &mut |_| hit = true);
        if !hit {
            return None;
        }
        let out = p.process(1, line.as_bytes(), &s, meta)?;
        let labels = out
            .labels
            .unwrap_or_else(|| Pipeline::labels_of(&s.labels, meta))
            .to_labels()
            .to_string();
        Some((String::from_utf8(out.line.into_owned()).unwrap(), labels))
    }

    #[test]
    fn line_filters() {
        assert!(run(r#"{app="api"} |= "err""#, "an error").is_some());
        assert!(run(r#"{app="api"} |= "err""#, "fine").is_none());
        assert!(run(r#"{app="api"} != "err""#, "an error").is_none());
        assert!(run(r#"{app="api"} |~ "e(r)+or""#, "an error").is_some());
        assert!(run(r#"{app="api"} !~ "e(r)+or""#, "an error").is_none());
        assert!(run(r#"{app="api"} |= "a" or "zz""#, "zz top").is_some());
        assert!(run(r#"{app="api"} != "a" or "zz""#, "zz top").is_none());
        assert!(run(r#"{app="api"} |= "an" |= "err""#, "an error").is_some());
        assert!(run(r#"{app="api"} |= "an" |= "xyz""#, "an error").is_none());
    }

    #[test]
    fn batch_candidates_do_not_straddle_lines() {
        let p = pipeline(r#"{a="b"} |= "ab""#);
        let mut b = Batch::default();
        for l in ["xa", "bx", "zab", "ab", "none"] {
            b.push(0, l.as_bytes(), &[]);
        }
        let mut got = Vec::new();
        p.candidates(&b, &mut |i| got.push(i));
        assert_eq!(got, vec![2, 3]);
    }

    #[test]
    fn parsers_and_label_filters() {
        let (_, l) = run(
            r#"{app="api"} | json | status >= 500"#,
            r#"{"status":503,"app":"x","req":{"path":"/a"}}"#,
        )
        .unwrap();
        assert_eq!(
            l,
            r#"{app="api", app_extracted="x", req_path="/a", status="503", trace_id="t1"}"#
        );
        assert!(run(r#"{app="api"} | json | status >= 500"#, r#"{"status":200}"#).is_none());
        let (_, l) = run(r#"{app="api"} | json"#, "not json").unwrap();
        assert!(l.contains(r#"__error__="JSONParserErr""#), "{l}");
        assert!(run(r#"{app="api"} | json | __error__="""#, "not json").is_none());
        let (_, l) = run(r#"{app="api"} | logfmt | dur > 1s"#, "level=info dur=1.5s").unwrap();
        assert!(l.contains(r#"dur="1.5s""#), "{l}");
        assert!(run(r#"{app="api"} | logfmt | dur > 2s"#, "level=info dur=1.5s").is_none());
        let (_, l) = run(
            r#"{app="api"} | pattern "<ip> - <method> <_>""#,
            "1.2.3.4 - GET /x",
        )
        .unwrap();
        assert!(
            l.contains(r#"ip="1.2.3.4""#) && l.contains(r#"method="GET""#),
            "{l}"
        );
        let (_, l) = run(
            r#"{app="api"} | regexp "(?P<verb>[A-Z]+) (?P<path>\\S+)""#,
            "GET /x",
        )
        .unwrap();
        assert!(
            l.contains(r#"verb="GET""#) && l.contains(r#"path="/x""#),
            "{l}"
        );
        // A non-numeric value with a numeric filter passes with an error label.
        let (_, l) = run(r#"{app="api"} | logfmt | n > 1"#, "n=abc").unwrap();
        assert!(l.contains("LabelFilterErr"), "{l}");
    }

    #[test]
    fn formatters_drop_keep() {
        let (line, _) = run(
            r#"{app="api"} | logfmt | line_format "{{.level}}: {{.msg}}""#,
            "level=warn msg=disk",
        )
        .unwrap();
        assert_eq!(line, "warn: disk");
        let (_, l) = run(
            r#"{app="api"} | logfmt | label_format lvl=level"#,
            "level=warn",
        )
        .unwrap();
        assert!(l.contains(r#"lvl="warn""#) && !l.contains("level="), "{l}");
        let (_, l) = run(
            r#"{app="api"} | logfmt | drop level, trace_id"#,
            "level=warn x=1",
        )
        .unwrap();
        assert_eq!(l, r#"{app="api", x="1"}"#);
        let (_, l) = run(r#"{app="api"} | logfmt | keep app, x"#, "level=warn x=1").unwrap();
        assert_eq!(l, r#"{app="api", x="1"}"#);
        let (line, _) = run(r#"{app="api"} | decolorize"#, "\u{1b}[31mred\u{1b}[0m").unwrap();
        assert_eq!(line, "red");
        let (line, l) = run(
            r#"{app="api"} | unpack"#,
            r#"{"_entry":"inner","pod":"p1"}"#,
        )
        .unwrap();
        assert_eq!(line, "inner");
        assert!(l.contains(r#"pod="p1""#), "{l}");
    }
}
