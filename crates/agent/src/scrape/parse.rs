//! Parsing scraped expositions: the Prometheus text format 0.0.4 and OpenMetrics 1.0 text.
//!
//! Both formats share the sample line grammar (`name{label="value",…} value [timestamp]`); they
//! differ in what else may appear. The text format allows free comments, blank lines and integer
//! millisecond timestamps; OpenMetrics allows only `# HELP`, `# TYPE`, `# UNIT` and a final
//! `# EOF`, has float second timestamps and optional exemplars after a sample (skipped here).
//! Every sample is kept as written: `_bucket`, `_sum`, `_count`, `_created`, `_total`, `_info` and
//! stateset samples become series of their own, as Prometheus stores them. A malformed line fails
//! the whole exposition with its line number, like a Prometheus scrape.

use std::collections::HashMap;

use crate::Error;

/// The `Accept` header Prometheus 2.x sends when scraping: OpenMetrics preferred, then the text
/// format, then anything (parsed as text).
pub const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Which grammar a body is parsed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The format of a response by its `Content-Type`: OpenMetrics for
    /// `application/openmetrics-text`, otherwise the text format (which is also what Prometheus
    /// falls back to for a missing or unknown type).
    pub fn from_content_type(content_type: Option<&str>) -> Self {
        let media = content_type
            .and_then(|c| c.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase());
        match media.as_deref() {
            Some("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Text,
        }
    }
}

/// A metric family's type as declared by `# TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FamilyType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `gaugehistogram` (OpenMetrics).
    GaugeHistogram,
    /// `summary`.
    Summary,
    /// `info` (OpenMetrics).
    Info,
    /// `stateset` (OpenMetrics).
    StateSet,
    /// `untyped` (text) or `unknown` (OpenMetrics).
    Unknown,
}

impl FamilyType {
    fn parse(s: &str, format: Format) -> Option<Self> {
        Some(match (s, format) {
            ("counter", _) => Self::Counter,
            ("gauge", _) => Self::Gauge,
            ("histogram", _) => Self::Histogram,
            ("summary", _) => Self::Summary,
            ("untyped", Format::Text) | ("unknown", Format::OpenMetrics) => Self::Unknown,
            ("gaugehistogram", Format::OpenMetrics) => Self::GaugeHistogram,
            ("info", Format::OpenMetrics) => Self::Info,
            ("stateset", Format::OpenMetrics) => Self::StateSet,
            _ => return None,
        })
    }

    /// The remote_write 1.0 `MetricMetadata.MetricType` value.
    pub fn remote_write_type(self) -> i32 {
        use proto::prometheus::metric_metadata::MetricType as M;
        (match self {
            Self::Counter => M::Counter,
            Self::Gauge => M::Gauge,
            Self::Histogram => M::Histogram,
            Self::GaugeHistogram => M::Gaugehistogram,
            Self::Summary => M::Summary,
            Self::Info => M::Info,
            Self::StateSet => M::Stateset,
            Self::Unknown => M::Unknown,
        }) as i32
    }
}

/// What `# TYPE`, `# HELP` and `# UNIT` said about one family.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    /// Family name as written in the metadata lines (OpenMetrics counters: without `_total`).
    pub family: String,
    /// Declared type; [`FamilyType::Unknown`] when only HELP or UNIT was given.
    pub typ: FamilyType,
    /// Unescaped HELP text.
    pub help: String,
    /// UNIT (OpenMetrics only).
    pub unit: String,
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedSample {
    /// Series name, with any suffix (`_total`, `_bucket`, …).
    pub name: String,
    /// Labels sorted by name, unescaped; names are unique.
    pub labels: Vec<(String, String)>,
    /// Sample value.
    pub value: f64,
    /// Explicit timestamp in milliseconds, if the line had one.
    pub timestamp_ms: Option<i64>,
}

/// A parsed exposition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    /// Samples in the order of the body.
    pub samples: Vec<ParsedSample>,
    /// Families with metadata, in order of first mention.
    pub metadata: Vec<Metadata>,
}

/// Parses `body` in `format`. Errors name the line and what was wrong; nothing panics.
pub fn parse(body: &[u8], format: Format) -> Result<Exposition, Error> {
    let text = std::str::from_utf8(body).map_err(|e| {
        Error::Scrape(format!(
            "exposition is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    Parser::new(format)
        .run(text)
        .map_err(|(line, msg)| Error::Scrape(format!("line {line}: {msg}")))
}

struct Parser {
    format: Format,
    out: Exposition,
    meta_index: HashMap<String, usize>,
    /// Which metadata lines each family had (help, type, unit), to reject repeats in OpenMetrics.
    seen: HashMap<String, [bool; 3]>,
}

type ParseResult<T> = Result<T, String>;

impl Parser {
    fn new(format: Format) -> Self {
        Self {
            format,
            out: Exposition::default(),
            meta_index: HashMap::new(),
            seen: HashMap::new(),
        }
    }

    fn run(mut self, text: &str) -> Result<Exposition, (usize, String)> {
        let om = self.format == Format::OpenMetrics;
        let lines: Vec<&str> = text.split('\n').collect();
        let last = lines.len() - 1;
        let mut eof = false;
        for (i, raw) in lines.iter().enumerate() {
            let n = i + 1;
            if eof {
                if i == last && raw.is_empty() {
                    break;
                }
                return Err((n, "content after \"# EOF\"".into()));
            }
            if om {
                if raw.is_empty() {
                    if i == last {
                        break;
                    }
                    return Err((n, "blank lines are not allowed in OpenMetrics".into()));
                }
                if *raw == "# EOF" {
                    eof = true;
                    continue;
                }
                let r = if raw.starts_with('#') {
                    self.om_metadata(raw)
                } else {
                    self.sample(raw)
                };
                r.map_err(|e| (n, e))?;
            } else {
                let line = raw.strip_suffix('\r').unwrap_or(raw);
                let line = line.trim_start_matches([' ', '\t']);
                if line.trim_end_matches([' ', '\t']).is_empty() {
                    continue;
                }
                let r = if let Some(rest) = line.strip_prefix('#') {
                    self.text_comment(rest)
                } else {
                    self.sample(line)
                };
                r.map_err(|e| (n, e))?;
            }
        }
        if om && !eof {
            return Err((
                lines.len(),
                "OpenMetrics exposition does not end with \"# EOF\"".into(),
            ));
        }
        Ok(self.out)
    }

    /// A text-format comment line (after `#`): `HELP` and `TYPE` are metadata, the rest is ignored.
    fn text_comment(&mut self, rest: &str) -> ParseResult<()> {
        let Some(body) = rest.strip_prefix([' ', '\t']) else {
            return Ok(());
        };
        let body = body.trim_start_matches([' ', '\t']);
        let (keyword, args) = split_token(body);
        match keyword {
            "HELP" => self.help(args),
            "TYPE" => self.typ(args),
            _ => Ok(()),
        }
    }

    /// An OpenMetrics line starting with `#` (other than `# EOF`).
    fn om_metadata(&mut self, line: &str) -> ParseResult<()> {
        if let Some(args) = line.strip_prefix("# HELP ") {
            self.help(args)
        } else if let Some(args) = line.strip_prefix("# TYPE ") {
            self.typ(args)
        } else if let Some(args) = line.strip_prefix("# UNIT ") {
            self.unit(args)
        } else {
            Err(format!(
                "unexpected comment {:?}; OpenMetrics allows only # HELP, # TYPE, # UNIT and # EOF",
                truncate(line)
            ))
        }
    }

    fn help(&mut self, args: &str) -> ParseResult<()> {
        let (name, text) = split_token(args);
        check_metric_name(name)?;
        let help = unescape_help(text, self.format);
        self.mark(name, 0)?;
        let m = self.meta(name);
        if m.help.is_empty() {
            m.help = help;
        }
        Ok(())
    }

    fn typ(&mut self, args: &str) -> ParseResult<()> {
        let (name, rest) = split_token(args);
        check_metric_name(name)?;
        let t = rest.trim_end_matches([' ', '\t', '\r']);
        let typ = FamilyType::parse(t, self.format)
            .ok_or_else(|| format!("unknown metric type {:?} for {name}", truncate(t)))?;
        self.mark(name, 1)?;
        self.meta(name).typ = typ;
        Ok(())
    }

    fn unit(&mut self, args: &str) -> ParseResult<()> {
        let (name, unit) = split_token(args);
        check_metric_name(name)?;
        if !unit.is_empty() && !name.ends_with(&format!("_{unit}")) {
            return Err(format!(
                "family {name} does not end with its unit \"_{unit}\""
            ));
        }
        self.mark(name, 2)?;
        self.meta(name).unit = unit.to_string();
        Ok(())
    }

    /// Records that `family` had metadata line `which`; OpenMetrics forbids repeating one.
    fn mark(&mut self, family: &str, which: usize) -> ParseResult<()> {
        let seen = self.seen.entry(family.to_string()).or_default();
        if seen[which] && self.format == Format::OpenMetrics {
            let kind = ["HELP", "TYPE", "UNIT"][which];
            return Err(format!("second {kind} line for {family}"));
        }
        seen[which] = true;
        Ok(())
    }

    fn meta(&mut self, family: &str) -> &mut Metadata {
        let idx = match self.meta_index.get(family) {
            Some(&i) => i,
            None => {
                self.out.metadata.push(Metadata {
                    family: family.to_string(),
                    typ: FamilyType::Unknown,
                    help: String::new(),
                    unit: String::new(),
                });
                let i = self.out.metadata.len() - 1;
                self.meta_index.insert(family.to_string(), i);
                i
            }
        };
        &mut self.out.metadata[idx]
    }

    fn sample(&mut self, line: &str) -> ParseResult<()> {
        let om = self.format == Format::OpenMetrics;
        let mut c = Cursor::new(line);
        let name = c.metric_name()?;
        // The text format allows blanks between the name and '{'; OpenMetrics does not.
        let mut blanks = if om { 0 } else { c.skip_ws() };
        let mut labels = Vec::new();
        if c.peek() == Some(b'{') {
            c.advance(1);
            labels = c.labels().map_err(|e| format!("{name}: {e}"))?;
            blanks = 0;
        }
        blanks += c.skip_ws();
        if blanks == 0 {
            return Err(match c.peek() {
                None => format!("{name}: missing value"),
                Some(_) => format!(
                    "{name}: expected a space before the value, found {:?}",
                    truncate(c.rest())
                ),
            });
        }
        let value_tok = c.token();
        if value_tok.is_empty() {
            return Err(format!("{name}: missing value"));
        }
        let value = parse_value(value_tok).map_err(|e| format!("{name}: {e}"))?;
        let mut timestamp_ms = None;
        let had_ws = c.skip_ws() > 0;
        if let Some(b) = c.peek() {
            if !had_ws {
                return Err(format!(
                    "{name}: unexpected {:?} after the value",
                    truncate(c.rest())
                ));
            }
            if !(om && b == b'#') {
                let tok = c.token();
                timestamp_ms = Some(
                    if om {
                        parse_om_timestamp(tok)
                    } else {
                        parse_text_timestamp(tok)
                    }
                    .map_err(|e| format!("{name}: {e}"))?,
                );
                c.skip_ws();
            }
        }
        match c.peek() {
            None => {}
            // An exemplar; its content is not used.
            Some(b'#') if om => {
                check_exemplar(&c.rest()[1..]).map_err(|e| format!("{name}: {e}"))?
            }
            Some(_) => {
                return Err(format!(
                    "{name}: unexpected {:?} after the timestamp",
                    truncate(c.rest())
                ))
            }
        }
        self.out.samples.push(ParsedSample {
            name: name.to_string(),
            labels,
            value,
            timestamp_ms,
        });
        Ok(())
    }
}

/// A byte cursor over one line; names and delimiters are ASCII, so slicing at their positions stays
/// on character boundaries.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, i: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn advance(&mut self, n: usize) {
        self.i = (self.i + n).min(self.s.len());
    }

    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    /// Skips spaces and tabs; returns how many.
    fn skip_ws(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        self.i - start
    }

    /// Everything up to the next space, tab or end.
    fn token(&mut self) -> &'a str {
        let start = self.i;
        while !matches!(self.peek(), None | Some(b' ' | b'\t')) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn metric_name(&mut self) -> ParseResult<&'a str> {
        let name = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
        if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
            return Err(format!(
                "expected a metric name, found {:?}",
                truncate(self.s)
            ));
        }
        Ok(name)
    }

    /// The label list after `{`, through `}`; sorted, duplicates rejected.
    fn labels(&mut self) -> ParseResult<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'}') => {
                    self.advance(1);
                    break;
                }
                None => return Err("unterminated label set (missing '}')".into()),
                _ => {}
            }
            let name = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'_');
            if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
                return Err(format!(
                    "expected a label name, found {:?}",
                    truncate(self.rest())
                ));
            }
            self.skip_ws();
            if self.peek() != Some(b'=') {
                return Err(format!("expected '=' after label name {name:?}"));
            }
            self.advance(1);
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(format!("expected '\"' to open the value of label {name:?}"));
            }
            self.advance(1);
            let value = self.label_value(name)?;
            out.push((name.to_string(), value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.advance(1),
                Some(b'}') => {}
                None => return Err("unterminated label set (missing '}')".into()),
                _ => {
                    return Err(format!(
                        "expected ',' or '}}' after the value of label {name:?}, found {:?}",
                        truncate(self.rest())
                    ))
                }
            }
        }
        out.sort();
        if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(format!("duplicate label name {:?}", w[0].0));
        }
        Ok(out)
    }

    /// A label value after its opening quote, through the closing quote, unescaped (`\\`, `\"`,
    /// `\n`; other backslashes are kept, as Prometheus does).
    fn label_value(&mut self, name: &str) -> ParseResult<String> {
        let bytes = self.s.as_bytes();
        let mut out = String::new();
        let mut start = self.i;
        while let Some(&b) = bytes.get(self.i) {
            match b {
                b'"' => {
                    out.push_str(&self.s[start..self.i]);
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.s[start..self.i]);
                    match bytes.get(self.i + 1) {
                        Some(b'\\') => out.push('\\'),
                        Some(b'"') => out.push('"'),
                        Some(b'n') => out.push('\n'),
                        _ => {
                            out.push('\\');
                            self.i += 1;
                            start = self.i;
                            continue;
                        }
                    }
                    self.i += 2;
                    start = self.i;
                }
                _ => self.i += 1,
            }
        }
        Err(format!("unterminated value of label {name:?}"))
    }
}

/// Splits at the first run of spaces/tabs: (first token, rest without the separator).
fn split_token(s: &str) -> (&str, &str) {
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], s[i..].trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

fn check_metric_name(name: &str) -> ParseResult<()> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b':');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid metric name {:?}", truncate(name)))
    }
}

/// HELP unescaping: `\\` and `\n` (and `\"` in OpenMetrics); other backslashes are kept.
fn unescape_help(s: &str, format: Format) -> String {
    let s = s.strip_suffix('\r').unwrap_or(s);
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if format == Format::OpenMetrics => out.push('"'),
            _ => {
                out.push('\\');
                continue;
            }
        }
        chars.next();
    }
    out
}

/// A sample value as Go's `strconv.ParseFloat` reads it (`NaN`, `+Inf`, `-Inf`, exponents).
fn parse_value(tok: &str) -> ParseResult<f64> {
    tok.parse::<f64>()
        .map_err(|_| format!("invalid sample value {:?}", truncate(tok)))
}

/// Text format: integer milliseconds.
fn parse_text_timestamp(tok: &str) -> ParseResult<i64> {
    tok.parse::<i64>().map_err(|_| {
        format!(
            "invalid timestamp {:?} (want integer milliseconds)",
            truncate(tok)
        )
    })
}

/// OpenMetrics: seconds, possibly fractional.
fn parse_om_timestamp(tok: &str) -> ParseResult<i64> {
    let secs: f64 = tok
        .parse()
        .map_err(|_| format!("invalid timestamp {:?} (want seconds)", truncate(tok)))?;
    let ms = (secs * 1000.0).round();
    if !ms.is_finite() || ms.abs() >= 9.2e18 {
        return Err(format!("timestamp {:?} out of range", truncate(tok)));
    }
    Ok(ms as i64)
}

/// An exemplar after `#`: ` {labels} value [timestamp]`. Checked for shape, then discarded.
fn check_exemplar(s: &str) -> ParseResult<()> {
    let mut c = Cursor::new(s);
    if c.skip_ws() == 0 || c.peek() != Some(b'{') {
        return Err(format!("malformed exemplar {:?}", truncate(s)));
    }
    c.advance(1);
    c.labels().map_err(|e| format!("exemplar: {e}"))?;
    if c.skip_ws() == 0 {
        return Err("exemplar: missing value".into());
    }
    parse_value(c.token()).map_err(|e| format!("exemplar: {e}"))?;
    if c.skip_ws() > 0 && c.peek().is_some() {
        parse_om_timestamp(c.token()).map_err(|e| format!("exemplar: {e}"))?;
        c.skip_ws();
    }
    if c.peek().is_some() {
        return Err(format!("exemplar: unexpected {:?}", truncate(c.rest())));
    }
    Ok(())
}

/// At most 64 characters of `s`, for error messages.
fn truncate(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(64).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Exposition {
        parse(s.as_bytes(), Format::Text).unwrap_or_else(|e| panic!("{e}\n{s}"))
    }

    fn om(s: &str) -> Exposition {
        parse(s.as_bytes(), Format::OpenMetrics).unwrap_or_else(|e| panic!("{e}\n{s}"))
    }

    fn err(s: &str, f: Format) -> String {
        match parse(s.as_bytes(), f) {
            Ok(e) => panic!("{s:?} parsed: {e:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn content_type_negotiation() {
        assert_eq!(
            Format::from_content_type(Some(
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type(Some("Application/OpenMetrics-Text")),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type(Some("text/plain; version=0.0.4; charset=utf-8")),
            Format::Text
        );
        assert_eq!(Format::from_content_type(Some("text/html")), Format::Text);
        assert_eq!(Format::from_content_type(None), Format::Text);
        assert!(ACCEPT.starts_with("application/openmetrics-text;version=1.0.0,"));
    }

    #[test]
    fn text_format_all_types() {
        let e = text(
            "# HELP http_requests_total The total number of HTTP requests.\n\
             # TYPE http_requests_total counter\n\
             http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
             http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
             \n\
             # Escaping in label values:\n\
             msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
             metric_without_timestamp_and_labels 12.47\n\
             # A weird metric from before the epoch:\n\
             something_weird{problem=\"division by zero\"} +Inf -3982045\n\
             # TYPE http_request_duration_seconds histogram\n\
             http_request_duration_seconds_bucket{le=\"0.05\"} 24054\n\
             http_request_duration_seconds_bucket{le=\"+Inf\"} 144320\n\
             http_request_duration_seconds_sum 53423\n\
             http_request_duration_seconds_count 144320\n\
             # TYPE rpc_duration_seconds summary\n\
             rpc_duration_seconds{quantile=\"0.5\"} 4773\n\
             rpc_duration_seconds_sum 1.7560473e+07\n\
             rpc_duration_seconds_count 2693\n\
             # TYPE plain untyped\n\
             plain NaN\n\
             # TYPE g gauge\n\
             g -Inf\n",
        );
        assert_eq!(e.samples.len(), 14);
        assert_eq!(e.samples[0].name, "http_requests_total");
        assert_eq!(
            e.samples[0].labels,
            l(&[("code", "200"), ("method", "post")])
        );
        assert_eq!(e.samples[0].value, 1027.0);
        assert_eq!(e.samples[0].timestamp_ms, Some(1395066363000));
        assert_eq!(e.samples[1].value, 3.0);
        assert_eq!(
            e.samples[2].labels,
            l(&[
                ("error", "Cannot find file:\n\"FILE.TXT\""),
                ("path", "C:\\DIR\\FILE.TXT")
            ])
        );
        assert_eq!(e.samples[2].value, 1.458255915e9);
        assert_eq!(e.samples[3].labels, vec![]);
        assert_eq!(e.samples[3].timestamp_ms, None);
        assert_eq!(e.samples[4].value, f64::INFINITY);
        assert_eq!(e.samples[4].timestamp_ms, Some(-3982045));
        assert!(e.samples[12].value.is_nan());
        assert_eq!(e.samples[13].value, f64::NEG_INFINITY);
        let types: Vec<(&str, FamilyType)> = e
            .metadata
            .iter()
            .map(|m| (m.family.as_str(), m.typ))
            .collect();
        assert_eq!(
            types,
            vec![
                ("http_requests_total", FamilyType::Counter),
                ("http_request_duration_seconds", FamilyType::Histogram),
                ("rpc_duration_seconds", FamilyType::Summary),
                ("plain", FamilyType::Unknown),
                ("g", FamilyType::Gauge),
            ]
        );
        assert_eq!(e.metadata[0].help, "The total number of HTTP requests.");
    }

    #[test]
    fn text_format_lenient_whitespace_and_comments() {
        let e = text(
            "#no space is a comment\n#\n  # HELP a  help with \\\\ and \\n and \\q\r\n\
             \t a { x = \"1\" , y=\"2\", } 5 \r\n\
             b{} 1\n\
             c\t2\t3\n# TYPE a gauge",
        );
        assert_eq!(e.samples.len(), 3);
        assert_eq!(e.samples[0].labels, l(&[("x", "1"), ("y", "2")]));
        assert_eq!(e.samples[0].value, 5.0);
        assert_eq!(e.samples[1].labels, vec![]);
        assert_eq!(e.samples[2].timestamp_ms, Some(3));
        assert_eq!(e.metadata[0].help, "help with \\ and \n and \\q");
        assert_eq!(e.metadata[0].typ, FamilyType::Gauge);
        // Empty bodies are valid and empty.
        assert_eq!(text(""), Exposition::default());
        assert_eq!(text("\n\n# just a comment\n").samples.len(), 0);
        // "# EOF" is only a comment in the text format.
        assert_eq!(text("a 1\n# EOF\nb 2\n").samples.len(), 2);
        // Unknown escapes in label values are kept.
        assert_eq!(text("a{x=\"\\t\"} 1").samples[0].labels, l(&[("x", "\\t")]));
        // Non-ASCII label values.
        assert_eq!(
            text("a{x=\"grüße \\\"ß\\\"\"} 1").samples[0].labels,
            l(&[("x", "grüße \"ß\"")])
        );
    }

    #[test]
    fn openmetrics_all_types() {
        let e = om("# TYPE acme_http_router_request_seconds summary\n\
             # UNIT acme_http_router_request_seconds seconds\n\
             # HELP acme_http_router_request_seconds Latency though all of ACME's \\\"HTTP\\\" router.\n\
             acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32\n\
             acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0\n\
             acme_http_router_request_seconds_created{path=\"/api/v1\",method=\"GET\"} 1605281325.0\n\
             # TYPE go_goroutines gauge\n\
             go_goroutines 69\n\
             # TYPE process_cpu_seconds counter\n\
             # UNIT process_cpu_seconds seconds\n\
             process_cpu_seconds_total 4.20072246e+06 1605281325.5\n\
             # TYPE foo histogram\n\
             foo_bucket{le=\"0.01\"} 0\n\
             foo_bucket{le=\"+Inf\"} 17 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n\
             foo_count 17\n\
             foo_sum 324789.3\n\
             foo_created 1520430000.123\n\
             # TYPE gh gaugehistogram\n\
             gh_bucket{le=\"+Inf\"} 3\n\
             gh_gcount 3\n\
             gh_gsum 2\n\
             # TYPE build info\n\
             build_info{version=\"1.2\"} 1\n\
             # TYPE state stateset\n\
             state{state=\"a\"} 1\n\
             state{state=\"b\"} 0\n\
             # TYPE u unknown\n\
             u 1 # {a=\"b\"} 2 1605281325\n\
             # EOF\n");
        assert_eq!(e.samples.len(), 17);
        let s = &e.samples[0];
        assert_eq!(s.name, "acme_http_router_request_seconds_sum");
        assert_eq!(s.labels, l(&[("method", "GET"), ("path", "/api/v1")]));
        assert_eq!(e.samples[4].name, "process_cpu_seconds_total");
        assert_eq!(e.samples[4].timestamp_ms, Some(1_605_281_325_500));
        assert_eq!(e.samples[6].value, 17.0, "exemplar skipped");
        assert_eq!(e.samples[9].timestamp_ms, None);
        assert_eq!(e.samples[16].value, 1.0);
        let m = &e.metadata[0];
        assert_eq!(m.typ, FamilyType::Summary);
        assert_eq!(m.unit, "seconds");
        assert_eq!(m.help, "Latency though all of ACME's \"HTTP\" router.");
        let types: Vec<FamilyType> = e.metadata.iter().map(|m| m.typ).collect();
        assert_eq!(
            types,
            vec![
                FamilyType::Summary,
                FamilyType::Gauge,
                FamilyType::Counter,
                FamilyType::Histogram,
                FamilyType::GaugeHistogram,
                FamilyType::Info,
                FamilyType::StateSet,
                FamilyType::Unknown
            ]
        );
        assert_eq!(e.metadata[2].family, "process_cpu_seconds");
        // "# EOF" may be the last line without a newline; empty expositions are just "# EOF".
        assert_eq!(om("a 1\n# EOF").samples.len(), 1);
        assert_eq!(om("# EOF\n"), Exposition::default());
    }

    #[test]
    fn malformed_text() {
        let t = Format::Text;
        for (body, want) in [
            ("a{b=\"c\"", "line 1: a: unterminated label set"),
            ("a{b=\"c} 1", "unterminated value of label \"b\""),
            ("a{b} 1", "expected '=' after label name \"b\""),
            ("a{b=c} 1", "expected '\"' to open the value of label \"b\""),
            ("a{1b=\"c\"} 1", "expected a label name"),
            ("a{b=\"c\" d=\"e\"} 1", "expected ',' or '}'"),
            ("a{b=\"1\",b=\"2\"} 1", "duplicate label name \"b\""),
            ("a", "a: missing value"),
            ("a ", "a: missing value"),
            ("a{}", "a: missing value"),
            ("a x", "invalid sample value \"x\""),
            ("a 1 1.5", "invalid timestamp \"1.5\""),
            ("a 1 2 3", "unexpected \"3\" after the timestamp"),
            ("1a 1", "expected a metric name"),
            ("{a=\"b\"} 1", "expected a metric name"),
            ("a{b=\"c\"}1", "expected a space before the value"),
            (
                "ok 1\n# TYPE a gauge2\n",
                "line 2: unknown metric type \"gauge2\" for a",
            ),
            ("# TYPE a info\n", "unknown metric type \"info\""),
            ("# HELP 1a x\n", "invalid metric name \"1a\""),
        ] {
            let e = err(body, t);
            assert!(e.contains(want), "{body:?}: {e}");
            assert!(e.starts_with("scrape: line "), "{e}");
        }
        let e = parse(b"a{b=\"\xff\"} 1", t).unwrap_err().to_string();
        assert!(e.contains("not valid UTF-8"), "{e}");
    }

    #[test]
    fn malformed_openmetrics() {
        let o = Format::OpenMetrics;
        for (body, want) in [
            ("a 1\n", "does not end with \"# EOF\""),
            ("a 1\n# EOF\nb 1\n", "line 3: content after \"# EOF\""),
            ("a 1\n# EOF\n\n", "line 3: content after \"# EOF\""),
            ("a 1\n\n# EOF\n", "line 2: blank lines are not allowed"),
            ("# random comment\n# EOF\n", "unexpected comment"),
            (
                "# TYPE a untyped\n# EOF\n",
                "unknown metric type \"untyped\"",
            ),
            (
                "# TYPE a gauge\n# TYPE a gauge\n# EOF\n",
                "second TYPE line for a",
            ),
            (
                "# UNIT a_bytes seconds\n# EOF\n",
                "does not end with its unit",
            ),
            ("a 1 x\n# EOF\n", "invalid timestamp \"x\" (want seconds)"),
            ("a 1 # nope\n# EOF\n", "malformed exemplar"),
            ("a 1 # {a=\"b\"}\n# EOF\n", "exemplar: missing value"),
            (
                "a 1 # {a=\"b\"} 1 2 3\n# EOF\n",
                "exemplar: unexpected \"3\"",
            ),
            ("a  {b=\"c\"} 1\n# EOF\n", "invalid sample value"),
        ] {
            let e = err(body, o);
            assert!(e.contains(want), "{body:?}: {e}");
        }
    }

    #[test]
    fn never_panics_on_prefixes_and_garbage() {
        let body =
            "# HELP a \\\\x\n# TYPE a histogram\na_bucket{le=\"1\",x=\"\\\"\\n\"} 1 2\n# EOF\n";
        for f in [Format::Text, Format::OpenMetrics] {
            for i in 0..=body.len() {
                let _ = parse(&body.as_bytes()[..i], f);
            }
            for garbage in [
                &b"\\\\\\"[..],
                b"{{{{",
                b"a{\"",
                b"a{b=\"\\",
                b"# TYPE",
                b"# HELP",
                b"# UNIT",
                b"#",
                b"a 1 #",
                b"a 1 # {",
                b"\xe2\x82",
            ] {
                let _ = parse(garbage, f);
            }
        }
    }
}
