//! Binary encodings of the trace store: varints, the WAL record and the per-span blobs of
//! blocks. Formats are described in `crates/traces/DESIGN.md`; decoders are bounds-checked and
//! never allocate more than the input can justify.

use std::collections::HashMap;
use std::sync::Arc;

use proto::otlp::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use proto::otlp::tonic::resource::v1::Resource;
use proto::otlp::tonic::trace::v1::span::{Event, Link};

use crate::model::{Span, SpanOrigin};
use crate::Error;

/// Version byte of WAL records.
pub(crate) const WAL_RECORD_V1: u8 = 1;

pub(crate) fn corrupt(msg: impl Into<String>) -> Error {
    Error::Corrupt(msg.into())
}

// ------------------------------------------------------------------------------------------------
// Varints

#[inline]
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Length-prefixed protobuf message.
#[inline]
pub(crate) fn put_msg<M: prost::Message>(out: &mut Vec<u8>, m: &M) {
    put_uvarint(out, m.encoded_len() as u64);
    m.encode_raw(out);
}

/// A bounds-checked cursor over encoded bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Bytes left; bounds counts read from the input (each element takes at least one byte).
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| corrupt("unexpected end of data"))?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(crate) fn uvarint(&mut self) -> Result<u64, Error> {
        let mut v = 0u64;
        let mut shift = 0u32;
        loop {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(corrupt("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(corrupt("varint too long"));
            }
        }
    }

    /// A count of elements that each take at least one byte of the rest of the input.
    pub(crate) fn count(&mut self) -> Result<usize, Error> {
        let n = self.uvarint()?;
        if n > self.remaining() as u64 {
            return Err(corrupt(format!(
                "count {n} exceeds the {} bytes left",
                self.remaining()
            )));
        }
        Ok(n as usize)
    }

    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.remaining() {
            return Err(corrupt("length exceeds data"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline]
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let n = self.uvarint()?;
        if n > self.remaining() as u64 {
            return Err(corrupt("length exceeds data"));
        }
        self.take(n as usize)
    }

    pub(crate) fn string(&mut self) -> Result<String, Error> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| corrupt("invalid utf-8"))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn msg<M: prost::Message + Default>(&mut self) -> Result<M, Error> {
        let b = self.bytes()?;
        M::decode(b).map_err(|e| corrupt(format!("protobuf: {e}")))
    }

    fn u32v(&mut self) -> Result<u32, Error> {
        u32::try_from(self.uvarint()?).map_err(|_| corrupt("value exceeds u32"))
    }
}

// ------------------------------------------------------------------------------------------------
// Origins

/// `resource` proto + schema url, the block's `resource` column and the WAL's origin table.
pub(crate) fn encode_resource(o: &SpanOrigin, out: &mut Vec<u8>) {
    put_msg(out, &o.resource);
    put_bytes(out, o.resource_schema_url.as_bytes());
}

/// `scope` proto + schema url.
pub(crate) fn encode_scope(o: &SpanOrigin, out: &mut Vec<u8>) {
    put_msg(out, &o.scope);
    put_bytes(out, o.scope_schema_url.as_bytes());
}

pub(crate) fn decode_origin(resource: &[u8], scope: &[u8]) -> Result<SpanOrigin, Error> {
    let mut r = Reader::new(resource);
    let res: Resource = r.msg()?;
    let resource_schema_url = r.string()?;
    let mut s = Reader::new(scope);
    let sc: InstrumentationScope = s.msg()?;
    let scope_schema_url = s.string()?;
    Ok(SpanOrigin {
        resource: res,
        resource_schema_url,
        scope: sc,
        scope_schema_url,
    })
}

// ------------------------------------------------------------------------------------------------
// Span parts shared by the WAL and the block blobs

fn put_list<M: prost::Message>(out: &mut Vec<u8>, items: &[M]) {
    put_uvarint(out, items.len() as u64);
    for m in items {
        put_msg(out, m);
    }
}

fn read_list<M: prost::Message + Default>(r: &mut Reader<'_>) -> Result<Vec<M>, Error> {
    let n = r.count()?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(r.msg()?);
    }
    Ok(v)
}

/// The `extra` blob of a block row (and the tail of a WAL span): flags, trace state, events and
/// links with their dropped counts.
pub(crate) fn encode_extra(s: &Span, out: &mut Vec<u8>) {
    put_uvarint(out, u64::from(s.flags));
    put_bytes(out, s.trace_state.as_bytes());
    put_uvarint(out, u64::from(s.dropped_attributes_count));
    put_list(out, &s.events);
    put_uvarint(out, u64::from(s.dropped_events_count));
    put_list(out, &s.links);
    put_uvarint(out, u64::from(s.dropped_links_count));
}

/// Fields of [`encode_extra`].
pub(crate) struct Extra {
    pub flags: u32,
    pub trace_state: String,
    pub dropped_attributes_count: u32,
    pub events: Vec<Event>,
    pub dropped_events_count: u32,
    pub links: Vec<Link>,
    pub dropped_links_count: u32,
}

pub(crate) fn decode_extra(r: &mut Reader<'_>) -> Result<Extra, Error> {
    Ok(Extra {
        flags: r.u32v()?,
        trace_state: r.string()?,
        dropped_attributes_count: r.u32v()?,
        events: read_list(r)?,
        dropped_events_count: r.u32v()?,
        links: read_list(r)?,
        dropped_links_count: r.u32v()?,
    })
}

/// Span attributes that have a column of their own in blocks, in column order.
pub(crate) const DEDICATED_SPAN_ATTRS: [&str; 4] =
    ["http.method", "http.route", "http.url", "http.status_code"];

/// The value of a dedicated span attribute when it has the column's type (strings; an int for
/// `http.status_code`); other types stay in the generic blob.
pub(crate) enum Dedicated<'a> {
    Str(&'a str),
    Int(i64),
}

pub(crate) fn dedicated_value(col: usize, kv: &KeyValue) -> Option<Dedicated<'_>> {
    match (col, kv.value.as_ref().and_then(|v| v.value.as_ref())) {
        (3, Some(any_value::Value::IntValue(i))) => Some(Dedicated::Int(*i)),
        (0..=2, Some(any_value::Value::StringValue(s))) => Some(Dedicated::Str(s)),
        _ => None,
    }
}

// Tags of the attribute shape (`attribute_keys` column); 0..=3 are dedicated-column placeholders.
const TAG_PROTO: u8 = 4;
const TAG_NO_VALUE: u8 = 5;
const TAG_EMPTY: u8 = 6;
const TAG_STR: u8 = 7;
const TAG_BOOL: u8 = 8;
const TAG_INT: u8 = 9;
const TAG_DOUBLE: u8 = 10;
const TAG_BYTES: u8 = 11;

/// Encodes span attributes column-wise: the *shape* (`keys`: per attribute a tag and its key),
/// which repeats across spans and is dictionary-encoded, and the *values* alone: strings and
/// bytes in `vals`, numbers and bools in `nums` (separate zstd contexts). The
/// first attribute of each dedicated key (with the column's type) becomes a placeholder tag that
/// keeps its position (its value is in the dedicated column); values that are not scalars (arrays,
/// kvlists) or that use `key_strindex` are kept as whole `KeyValue` protos. Returns which
/// attributes went to dedicated columns (by index).
pub(crate) fn encode_attrs(
    attrs: &[KeyValue],
    keys: &mut Vec<u8>,
    vals: &mut Vec<u8>,
    nums: &mut Vec<u8>,
) -> [Option<usize>; 4] {
    let mut taken = [None; 4];
    put_uvarint(keys, attrs.len() as u64);
    for (i, kv) in attrs.iter().enumerate() {
        let col = DEDICATED_SPAN_ATTRS.iter().position(|k| *k == kv.key);
        if let Some(c) = col {
            if taken[c].is_none() && kv.key_strindex == 0 && dedicated_value(c, kv).is_some() {
                taken[c] = Some(i);
                keys.push(c as u8);
                continue;
            }
        }
        if kv.key_strindex != 0 {
            keys.push(TAG_PROTO);
            put_msg(vals, kv);
            continue;
        }
        let tag = match &kv.value {
            None => TAG_NO_VALUE,
            Some(v) => match &v.value {
                None => TAG_EMPTY,
                Some(any_value::Value::StringValue(x)) => {
                    put_bytes(vals, x.as_bytes());
                    TAG_STR
                }
                Some(any_value::Value::BoolValue(x)) => {
                    nums.push(u8::from(*x));
                    TAG_BOOL
                }
                Some(any_value::Value::IntValue(x)) => {
                    put_uvarint(nums, ((x << 1) ^ (x >> 63)) as u64);
                    TAG_INT
                }
                Some(any_value::Value::DoubleValue(x)) => {
                    nums.extend_from_slice(&x.to_le_bytes());
                    TAG_DOUBLE
                }
                Some(any_value::Value::BytesValue(x)) => {
                    put_bytes(vals, x);
                    TAG_BYTES
                }
                Some(_) => {
                    keys.push(TAG_PROTO);
                    put_msg(vals, kv);
                    continue;
                }
            },
        };
        keys.push(tag);
        put_bytes(keys, kv.key.as_bytes());
    }
    taken
}

/// Inverse of [`encode_attrs`]; `fill(col)` gives the attribute of a placeholder's column.
pub(crate) fn decode_attrs(
    keys: &[u8],
    vals: &[u8],
    nums: &[u8],
    mut fill: impl FnMut(usize) -> Result<KeyValue, Error>,
) -> Result<Vec<KeyValue>, Error> {
    let mut k = Reader::new(keys);
    let mut v = Reader::new(vals);
    let mut m = Reader::new(nums);
    let n = k.count()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let tag = k.u8()?;
        if (tag as usize) < DEDICATED_SPAN_ATTRS.len() {
            out.push(fill(tag as usize)?);
            continue;
        }
        if tag == TAG_PROTO {
            out.push(v.msg()?);
            continue;
        }
        let key = k.string()?;
        let value = match tag {
            TAG_NO_VALUE => None,
            TAG_EMPTY => Some(AnyValue { value: None }),
            _ => Some(AnyValue {
                value: Some(match tag {
                    TAG_STR => any_value::Value::StringValue(v.string()?),
                    TAG_BOOL => any_value::Value::BoolValue(m.u8()? != 0),
                    TAG_INT => {
                        let z = m.uvarint()?;
                        any_value::Value::IntValue(((z >> 1) as i64) ^ -((z & 1) as i64))
                    }
                    TAG_DOUBLE => {
                        any_value::Value::DoubleValue(f64::from_le_bytes(m.array::<8>()?))
                    }
                    TAG_BYTES => any_value::Value::BytesValue(v.bytes()?.to_vec()),
                    t => return Err(corrupt(format!("unknown attribute tag {t}"))),
                }),
            }),
        };
        out.push(KeyValue {
            key,
            value,
            ..Default::default()
        });
    }
    if !k.is_empty() || !v.is_empty() || !m.is_empty() {
        return Err(corrupt("trailing bytes in span attributes"));
    }
    Ok(out)
}

/// One attribute value of an encoded attribute list, borrowed (see [`walk_attrs`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum AttrVal<'a> {
    /// A string value (UTF-8 when written; checked by the caller that uses it).
    Str(&'a [u8]),
    /// A bool.
    Bool(bool),
    /// An int.
    Int(i64),
    /// A double.
    Double(f64),
    /// Bytes, no value or an empty value: nothing TraceQL compares.
    Opaque,
    /// A whole `KeyValue` proto (arrays, kvlists, `key_strindex`); its key is inside.
    Proto(&'a [u8]),
    /// The value is in dedicated column `c` of the row.
    Dedicated(usize),
}

/// Walks attributes encoded by [`encode_attrs`] without allocating: `f(key, value)` per
/// attribute, in order (`key` is empty for [`AttrVal::Proto`]); stops early when `f` returns true
/// and then returns `Ok(true)`.
pub(crate) fn walk_attrs(
    keys: &[u8],
    vals: &[u8],
    nums: &[u8],
    mut f: impl FnMut(&[u8], AttrVal<'_>) -> bool,
) -> Result<bool, Error> {
    let mut k = Reader::new(keys);
    let mut v = Reader::new(vals);
    let mut m = Reader::new(nums);
    let n = k.count()?;
    for _ in 0..n {
        let tag = k.u8()?;
        if (tag as usize) < DEDICATED_SPAN_ATTRS.len() {
            if f(
                DEDICATED_SPAN_ATTRS[tag as usize].as_bytes(),
                AttrVal::Dedicated(tag as usize),
            ) {
                return Ok(true);
            }
            continue;
        }
        if tag == TAG_PROTO {
            if f(b"", AttrVal::Proto(v.bytes()?)) {
                return Ok(true);
            }
            continue;
        }
        let key = k.bytes()?;
        let val = match tag {
            TAG_NO_VALUE | TAG_EMPTY => AttrVal::Opaque,
            TAG_STR => AttrVal::Str(v.bytes()?),
            TAG_BYTES => {
                v.bytes()?;
                AttrVal::Opaque
            }
            TAG_BOOL => AttrVal::Bool(m.u8()? != 0),
            TAG_INT => {
                let z = m.uvarint()?;
                AttrVal::Int(((z >> 1) as i64) ^ -((z & 1) as i64))
            }
            TAG_DOUBLE => AttrVal::Double(f64::from_le_bytes(m.array::<8>()?)),
            t => return Err(corrupt(format!("unknown attribute tag {t}"))),
        };
        if f(key, val) {
            return Ok(true);
        }
    }
    Ok(false)
}

// ------------------------------------------------------------------------------------------------
// WAL record v1

/// Appends one span (without its origin) to a WAL record; see DESIGN.md.
fn encode_wal_span(s: &Span, origin: u64, out: &mut Vec<u8>) {
    put_uvarint(out, origin);
    out.extend_from_slice(&s.trace_id);
    out.extend_from_slice(&s.span_id);
    out.extend_from_slice(&s.parent_span_id);
    put_bytes(out, s.name.as_bytes());
    put_uvarint(out, u64::from(s.kind as u32));
    put_uvarint(out, s.start_ns);
    put_uvarint(out, s.end_ns);
    put_list(out, &s.attributes);
    encode_extra(s, out);
    put_uvarint(out, u64::from(s.status_code as u32));
    put_bytes(out, s.status_message.as_bytes());
}

/// A WAL record being built: origins are deduplicated by `Arc` identity.
pub(crate) struct WalRecord {
    origins: Vec<u8>,
    n_origins: u64,
    /// Keyed by `Arc` address.
    seen: HashMap<usize, u64>,
    spans: Vec<u8>,
    n_spans: u64,
}

impl WalRecord {
    pub(crate) fn new() -> Self {
        Self {
            origins: Vec::new(),
            n_origins: 0,
            seen: HashMap::new(),
            spans: Vec::with_capacity(64 << 10),
            n_spans: 0,
        }
    }

    /// Appends a span; returns its encoded size (what counts against the trace size limit).
    pub(crate) fn push(&mut self, s: &Span) -> usize {
        let key = Arc::as_ptr(&s.origin) as usize;
        let idx = match self.seen.get(&key) {
            Some(i) => *i,
            None => {
                let i = self.n_origins;
                encode_resource(&s.origin, &mut self.origins);
                encode_scope(&s.origin, &mut self.origins);
                self.seen.insert(key, i);
                self.n_origins += 1;
                i
            }
        };
        let before = self.spans.len();
        encode_wal_span(s, idx, &mut self.spans);
        self.n_spans += 1;
        self.spans.len() - before
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.origins.len() + self.spans.len() + 24);
        out.push(WAL_RECORD_V1);
        put_uvarint(&mut out, self.n_origins);
        out.extend_from_slice(&self.origins);
        put_uvarint(&mut out, self.n_spans);
        out.extend_from_slice(&self.spans);
        out
    }
}

/// Decodes a WAL record into spans and their encoded sizes.
pub(crate) fn decode_wal_record(rec: &[u8]) -> Result<Vec<(Span, usize)>, Error> {
    let mut r = Reader::new(rec);
    let v = r.u8()?;
    if v != WAL_RECORD_V1 {
        return Err(corrupt(format!("unknown traces wal record version {v}")));
    }
    let n = r.count()?;
    let mut origins = Vec::with_capacity(n);
    for _ in 0..n {
        let res = r.bytes()?;
        let url = r.string()?;
        let sc = r.bytes()?;
        let surl = r.string()?;
        origins.push(Arc::new(SpanOrigin {
            resource: prost::Message::decode(res).map_err(|e| corrupt(format!("protobuf: {e}")))?,
            resource_schema_url: url,
            scope: prost::Message::decode(sc).map_err(|e| corrupt(format!("protobuf: {e}")))?,
            scope_schema_url: surl,
        }));
    }
    let n = r.count()?;
    let mut spans = Vec::with_capacity(n);
    for _ in 0..n {
        let before = r.remaining();
        let o = r.uvarint()?;
        let origin = origins
            .get(o as usize)
            .ok_or_else(|| corrupt("span origin out of range"))?
            .clone();
        let trace_id = r.array::<16>()?;
        let span_id = r.array::<8>()?;
        let parent_span_id = r.array::<8>()?;
        let name = r.string()?;
        let kind = r.uvarint()? as u32 as i32;
        let start_ns = r.uvarint()?;
        let end_ns = r.uvarint()?;
        let attributes = read_list(&mut r)?;
        let x = decode_extra(&mut r)?;
        let status_code = r.uvarint()? as u32 as i32;
        let status_message = r.string()?;
        spans.push((
            Span {
                trace_id,
                span_id,
                parent_span_id,
                trace_state: x.trace_state,
                flags: x.flags,
                name,
                kind,
                start_ns,
                end_ns,
                attributes,
                dropped_attributes_count: x.dropped_attributes_count,
                events: x.events,
                dropped_events_count: x.dropped_events_count,
                links: x.links,
                dropped_links_count: x.dropped_links_count,
                status_code,
                status_message,
                origin,
            },
            before - r.remaining(),
        ));
    }
    if !r.is_empty() {
        return Err(corrupt("trailing bytes in traces wal record"));
    }
    Ok(spans)
}
