//! Line formats: CRI (`<RFC3339Nano> <stdout|stderr> <P|F> <message>`), Docker json-file
//! (`{"log":"…\n","stream":"stdout","time":"…"}`) and plain lines.
//!
//! Like Grafana Alloy's `stage.cri` / `stage.docker`, the entry time is the runtime's timestamp,
//! `stream` becomes a label, and the message is the line. Partial lines (CRI `P`, Docker `log`
//! without a trailing newline) are joined, per stream, until the line that ends them. A line that
//! does not parse is shipped unchanged with the read time (Alloy does the same).

use std::borrow::Cow;

/// How the lines of a file are parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Container runtime logs: CRI lines, or Docker json-file lines (those starting with `{`).
    Container,
    /// Plain text; the entry time is the read time.
    Plain,
}

/// `stdout` or `stderr` of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The `stream` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn parse(s: &[u8]) -> Option<Self> {
        match s {
            b"stdout" => Some(Stream::Stdout),
            b"stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// One container log line, parsed.
#[derive(Debug, PartialEq)]
pub struct ContainerLine<'a> {
    /// Runtime timestamp, ns since the epoch.
    pub ts_ns: i64,
    /// Which stream the line came from.
    pub stream: Stream,
    /// More of this line follows on the next line of the same stream.
    pub partial: bool,
    /// The message (without the newline that ends it).
    pub content: Cow<'a, [u8]>,
}

/// Parses an RFC 3339 timestamp (any precision, any offset) to ns since the epoch.
pub fn parse_rfc3339_ns(s: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(s).ok()?;
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    t.timestamp_nanos_opt()
}

/// Parses a CRI log line: `time stream flags content` (single spaces; flags `P` or `F`, possibly
/// followed by `:`-separated tags).
pub fn parse_cri(line: &[u8]) -> Option<ContainerLine<'_>> {
    let mut it = line.splitn(4, |&b| b == b' ');
    let ts_ns = parse_rfc3339_ns(it.next()?)?;
    let stream = Stream::parse(it.next()?)?;
    let flags = it.next()?;
    if flags.is_empty() {
        return None;
    }
    let content = it.next().unwrap_or_default();
    let partial = flags.split(|&b| b == b':').next() == Some(b"P");
    Some(ContainerLine {
        ts_ns,
        stream,
        partial,
        content: Cow::Borrowed(content),
    })
}

#[derive(serde::Deserialize)]
struct DockerLine {
    log: String,
    stream: String,
    time: String,
}

/// Parses a Docker json-file line. Docker splits long lines into several json lines; all but the
/// last lack the trailing newline, so those are partial.
pub fn parse_docker(line: &[u8]) -> Option<ContainerLine<'static>> {
    let d: DockerLine = serde_json::from_slice(line).ok()?;
    let stream = Stream::parse(d.stream.as_bytes())?;
    let ts_ns = parse_rfc3339_ns(d.time.as_bytes())?;
    let mut log = d.log.into_bytes();
    let partial = log.last() != Some(&b'\n');
    if !partial {
        log.pop();
        if log.last() == Some(&b'\r') {
            log.pop();
        }
    }
    Some(ContainerLine {
        ts_ns,
        stream,
        partial,
        content: Cow::Owned(log),
    })
}

/// A decoded log entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Entry time, ns since the epoch.
    pub ts_ns: i64,
    /// The message.
    pub line: String,
    /// Container stream, when the format has one.
    pub stream: Option<Stream>,
}

/// A partial container line waiting for the rest.
struct Partial {
    /// File offset of the first raw line of the entry: reading resumes here after a restart.
    start: u64,
    buf: Vec<u8>,
    truncated: bool,
}

/// Per-file decoder: turns raw lines into entries, joining partial lines.
pub struct Decoder {
    format: Format,
    max_line: usize,
    /// Partial lines per stream (stdout, stderr).
    partial: [Option<Partial>; 2],
}

/// What [`Decoder::push`] made of a raw line.
#[derive(Debug, Default, PartialEq)]
pub struct Pushed {
    /// The entry, unless the line was partial.
    pub entry: Option<Entry>,
    /// The line did not parse and was taken as plain text.
    pub malformed: bool,
    /// The entry was cut at the maximum line size.
    pub truncated: bool,
}

fn to_string(b: Cow<'_, [u8]>) -> String {
    match b {
        Cow::Borrowed(b) => String::from_utf8_lossy(b).into_owned(),
        Cow::Owned(v) => String::from_utf8(v)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

impl Decoder {
    /// A decoder cutting entries at `max_line` bytes.
    pub fn new(format: Format, max_line: usize) -> Self {
        Self {
            format,
            max_line,
            partial: [None, None],
        }
    }

    /// Decodes one raw line (without its newline) that starts at file offset `offset`, read at
    /// `now_ns`. `raw_truncated`: the raw line was longer than the maximum and was cut.
    pub fn push(&mut self, raw: &[u8], offset: u64, now_ns: i64, raw_truncated: bool) -> Pushed {
        let parsed = match self.format {
            Format::Plain => None,
            Format::Container if raw.first() == Some(&b'{') => parse_docker(raw),
            Format::Container => parse_cri(raw),
        };
        let Some(c) = parsed else {
            let mut raw = raw;
            if raw.last() == Some(&b'\r') {
                raw = &raw[..raw.len() - 1];
            }
            let cut = raw.len() > self.max_line;
            raw = &raw[..raw.len().min(self.max_line)];
            return Pushed {
                entry: Some(Entry {
                    ts_ns: now_ns,
                    line: String::from_utf8_lossy(raw).into_owned(),
                    stream: None,
                }),
                malformed: self.format == Format::Container,
                truncated: raw_truncated || cut,
            };
        };
        let slot = &mut self.partial[c.stream as usize];
        let max = self.max_line;
        if c.partial {
            let p = slot.get_or_insert_with(|| Partial {
                start: offset,
                buf: Vec::new(),
                truncated: false,
            });
            append_capped(&mut p.buf, &c.content, max, &mut p.truncated);
            p.truncated |= raw_truncated;
            return Pushed::default();
        }
        let (line, truncated) = match slot.take() {
            None => {
                let mut t = raw_truncated;
                let mut content = c.content;
                if content.len() > max {
                    content.to_mut().truncate(max);
                    t = true;
                }
                (to_string(content), t)
            }
            Some(mut p) => {
                let mut t = p.truncated | raw_truncated;
                append_capped(&mut p.buf, &c.content, max, &mut t);
                (to_string(Cow::Owned(p.buf)), t)
            }
        };
        Pushed {
            entry: Some(Entry {
                ts_ns: c.ts_ns,
                line,
                stream: Some(c.stream),
            }),
            malformed: false,
            truncated,
        }
    }

    /// File offset of the oldest partial line still waiting for its end.
    pub fn pending_start(&self) -> Option<u64> {
        self.partial.iter().flatten().map(|p| p.start).min()
    }

    /// Emits waiting partial lines as they are (the file is finished), stamped `now_ns`.
    pub fn finish(&mut self, now_ns: i64) -> Vec<Entry> {
        let mut out: Vec<(u64, Entry)> = Vec::new();
        for (i, slot) in self.partial.iter_mut().enumerate() {
            if let Some(p) = slot.take() {
                out.push((
                    p.start,
                    Entry {
                        ts_ns: now_ns,
                        line: to_string(Cow::Owned(p.buf)),
                        stream: Some(if i == 0 {
                            Stream::Stdout
                        } else {
                            Stream::Stderr
                        }),
                    },
                ));
            }
        }
        out.sort_by_key(|(s, _)| *s);
        out.into_iter().map(|(_, e)| e).collect()
    }

    /// Forgets waiting partial lines (the file was truncated).
    pub fn reset(&mut self) {
        self.partial = [None, None];
    }
}

fn append_capped(buf: &mut Vec<u8>, more: &[u8], max: usize, truncated: &mut bool) {
    let room = max.saturating_sub(buf.len());
    if more.len() > room {
        *truncated = true;
    }
    buf.extend_from_slice(&more[..more.len().min(room)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_704_067_200_000_000_000; // 2024-01-01T00:00:00Z

    #[test]
    fn cri_lines() {
        let l = parse_cri(b"2024-01-01T00:00:00.123456789Z stdout F hello world").unwrap();
        assert_eq!(l.ts_ns, T0 + 123_456_789);
        assert_eq!(l.stream, Stream::Stdout);
        assert!(!l.partial);
        assert_eq!(&*l.content, b"hello world");
        let l = parse_cri(b"2024-01-01T01:00:00+01:00 stderr P part").unwrap();
        assert_eq!(l.ts_ns, T0);
        assert_eq!(l.stream, Stream::Stderr);
        assert!(l.partial);
        // Empty message, with or without the separating space; extra flags after ':'.
        assert_eq!(
            &*parse_cri(b"2024-01-01T00:00:00Z stdout F").unwrap().content,
            b""
        );
        assert_eq!(
            &*parse_cri(b"2024-01-01T00:00:00Z stdout F ")
                .unwrap()
                .content,
            b""
        );
        assert!(
            parse_cri(b"2024-01-01T00:00:00Z stdout P:x y")
                .unwrap()
                .partial
        );
        // Malformed: the examples of the Promtail docs, bad stream, bad time.
        assert!(parse_cri(b"2019-01-01 T01:00:00.000000001Z stderr testgood").is_none());
        assert!(parse_cri(b"2019-01-01T01:00:00.000000001Z testgood").is_none());
        assert!(parse_cri(b"2024-01-01T00:00:00Z stdin F x").is_none());
        assert!(parse_cri(b"yesterday stdout F x").is_none());
        assert!(parse_cri(b"").is_none());
    }

    #[test]
    fn docker_lines() {
        let l = parse_docker(
            br#"{"log":"hello \"x\"\n","stream":"stderr","time":"2024-01-01T00:00:00.5Z"}"#,
        )
        .unwrap();
        assert_eq!(l.ts_ns, T0 + 500_000_000);
        assert_eq!(l.stream, Stream::Stderr);
        assert!(!l.partial);
        assert_eq!(&*l.content, br#"hello "x""#);
        let l = parse_docker(br#"{"log":"part","stream":"stdout","time":"2024-01-01T00:00:00Z"}"#)
            .unwrap();
        assert!(l.partial);
        assert!(parse_docker(br#"{"log":"x\n","stream":"stdout"}"#).is_none());
        assert!(parse_docker(br#"{"log":"x\n","stream":"stdout","time":"nope"}"#).is_none());
        assert!(parse_docker(b"{not json").is_none());
    }

    #[test]
    fn cri_partials_join_per_stream_and_track_offsets() {
        let mut d = Decoder::new(Format::Container, 1024);
        let now = 42;
        let p = d.push(b"2024-01-01T00:00:00Z stdout P hel", 0, now, false);
        assert_eq!(p, Pushed::default());
        assert_eq!(d.pending_start(), Some(0));
        // An stderr line in between is complete on its own.
        let p = d.push(b"2024-01-01T00:00:01Z stderr F oops", 40, now, false);
        assert_eq!(p.entry.unwrap().line, "oops");
        assert!(d
            .push(b"2024-01-01T00:00:02Z stdout P lo ", 80, now, false)
            .entry
            .is_none());
        assert_eq!(d.pending_start(), Some(0));
        let e = d
            .push(b"2024-01-01T00:00:03Z stdout F world", 120, now, false)
            .entry
            .unwrap();
        assert_eq!(e.line, "hello world");
        assert_eq!(e.ts_ns, T0 + 3_000_000_000, "the F line's time, as Alloy");
        assert_eq!(e.stream, Some(Stream::Stdout));
        assert_eq!(d.pending_start(), None);
    }

    #[test]
    fn docker_partials_join() {
        let mut d = Decoder::new(Format::Container, 1024);
        assert!(d
            .push(
                br#"{"log":"ab","stream":"stdout","time":"2024-01-01T00:00:00Z"}"#,
                0,
                1,
                false
            )
            .entry
            .is_none());
        let e = d
            .push(
                br#"{"log":"c\n","stream":"stdout","time":"2024-01-01T00:00:01Z"}"#,
                60,
                1,
                false,
            )
            .entry
            .unwrap();
        assert_eq!(e.line, "abc");
        assert_eq!(e.ts_ns, T0 + 1_000_000_000);
    }

    #[test]
    fn joined_partials_are_capped() {
        let mut d = Decoder::new(Format::Container, 8);
        d.push(b"2024-01-01T00:00:00Z stdout P 12345", 0, 0, false);
        d.push(b"2024-01-01T00:00:00Z stdout P 67890", 1, 0, false);
        let p = d.push(b"2024-01-01T00:00:00Z stdout F abc", 2, 0, false);
        assert_eq!(p.entry.unwrap().line, "12345678");
        assert!(p.truncated);
        let p = d.push(b"2024-01-01T00:00:00Z stdout F 0123456789", 3, 0, false);
        assert_eq!(p.entry.unwrap().line, "01234567");
        assert!(p.truncated);
    }

    #[test]
    fn malformed_and_plain_lines_use_read_time() {
        let mut d = Decoder::new(Format::Container, 1024);
        let p = d.push(b"not a cri line", 0, 7, false);
        assert!(p.malformed);
        assert_eq!(
            p.entry.unwrap(),
            Entry {
                ts_ns: 7,
                line: "not a cri line".into(),
                stream: None
            }
        );
        let mut d = Decoder::new(Format::Plain, 1024);
        let p = d.push(b"2024-01-01T00:00:00Z stdout F x\r", 0, 9, false);
        assert!(!p.malformed);
        let e = p.entry.unwrap();
        assert_eq!(e.line, "2024-01-01T00:00:00Z stdout F x");
        assert_eq!(e.ts_ns, 9);
        // Invalid UTF-8 is replaced, not dropped.
        let e = d.push(b"a\xffb", 0, 9, false).entry.unwrap();
        assert_eq!(e.line, "a\u{fffd}b");
    }

    #[test]
    fn finish_flushes_and_reset_forgets() {
        let mut d = Decoder::new(Format::Container, 1024);
        d.push(b"2024-01-01T00:00:00Z stderr P late", 50, 0, false);
        d.push(b"2024-01-01T00:00:00Z stdout P early", 10, 0, false);
        let out = d.finish(5);
        assert_eq!(
            out.iter().map(|e| e.line.as_str()).collect::<Vec<_>>(),
            ["early", "late"]
        );
        assert_eq!(d.pending_start(), None);
        d.push(b"2024-01-01T00:00:00Z stdout P x", 0, 0, false);
        d.reset();
        assert!(d.finish(0).is_empty());
    }
}
