//! Trace blocks: one Parquet file of spans sorted by (trace id, start) plus a trace-id index.
//! Building runs on a blocking thread; reading needs only ranged GETs (footer and index cached).
//! Format: `crates/traces/DESIGN.md`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, FixedSizeBinaryBuilder, Int32Builder, Int64Builder, StringBuilder, UInt64Builder,
};
use arrow_array::types::Int32Type;
use arrow_array::{
    Array, ArrayRef, BinaryArray, DictionaryArray, FixedSizeBinaryArray, Int32Array, Int64Array,
    RecordBatch, StringArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{ChunkReader, Length};
use parquet::schema::types::ColumnPath;
use proto::otlp::tonic::common::v1::{any_value, AnyValue, KeyValue};

use super::codec::{
    corrupt, decode_attrs, decode_extra, decode_origin, dedicated_value, encode_attrs,
    encode_extra, encode_resource, encode_scope, put_bytes, put_uvarint, Dedicated, Reader,
    DEDICATED_SPAN_ATTRS,
};
use crate::model::{Span, SpanOrigin, TraceId};
use crate::Error;

/// Format version of trace blocks (`meta.json` `version`).
pub(crate) const FORMAT_VERSION: u32 = 1;
/// The Parquet file of a block.
pub(crate) const DATA_FILE: &str = "data.parquet";
/// The trace-id index of a block.
pub(crate) const INDEX_FILE: &str = "index";
const INDEX_MAGIC: &[u8; 4] = b"HTIX";
const INDEX_V1: u8 = 1;
/// Above this many distinct span names a block's index keeps no name sets (no pruning by name).
const MAX_INDEX_NAMES: usize = 4096;
/// Data page size limit: a page is the unit of zstd compression, bigger pages compress better.
const PAGE_BYTES: usize = 8 << 20;
/// zstd level of the blob and URL columns (see `writer_props`).
const STRONG_ZSTD_LEVEL: i32 = 6;
/// Bytes fetched from the end of the data file to get the footer in one GET, usually.
const FOOTER_GUESS: u64 = 256 << 10;

fn pq(e: parquet::errors::ParquetError) -> Error {
    Error::Corrupt(format!("parquet: {e}"))
}

fn ar(e: arrow_schema::ArrowError) -> Error {
    Error::Corrupt(format!("arrow: {e}"))
}

/// Resource attributes copied into columns of their own (the `resource` blob keeps them too).
const DEDICATED_RESOURCE_ATTRS: [&str; 3] = ["service.name", "k8s.namespace.name", "k8s.pod.name"];

/// Column names of the dedicated span attributes, in [`DEDICATED_SPAN_ATTRS`] order.
const SPAN_ATTR_COLUMNS: [&str; 4] = ["http_method", "http_route", "http_url", "http_status_code"];

pub(crate) fn schema() -> SchemaRef {
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Binary));
    Arc::new(Schema::new(vec![
        Field::new("trace_id", DataType::FixedSizeBinary(16), false),
        Field::new("span_id", DataType::FixedSizeBinary(8), false),
        Field::new("parent_span_id", DataType::FixedSizeBinary(8), false),
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Int32, false),
        Field::new("start_unix_nano", DataType::UInt64, false),
        Field::new("duration_nano", DataType::Int64, false),
        Field::new("status_code", DataType::Int32, false),
        Field::new("status_message", DataType::Utf8, false),
        Field::new("service_name", DataType::Utf8, true),
        Field::new("k8s_namespace_name", DataType::Utf8, true),
        Field::new("k8s_pod_name", DataType::Utf8, true),
        Field::new("http_method", DataType::Utf8, true),
        Field::new("http_route", DataType::Utf8, true),
        Field::new("http_url", DataType::Utf8, true),
        Field::new("http_status_code", DataType::Int64, true),
        Field::new("attribute_keys", DataType::Binary, false),
        Field::new("attributes", DataType::Binary, false),
        Field::new("attribute_numbers", DataType::Binary, false),
        Field::new("extra", DataType::Binary, false),
        Field::new("resource", dict.clone(), false),
        Field::new("scope", dict, false),
    ]))
}

fn writer_props(zstd_level: i32) -> Result<WriterProperties, Error> {
    let level = ZstdLevel::try_new(zstd_level).map_err(pq)?;
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        // Row groups are closed by hand at trace boundaries.
        .set_max_row_group_size(usize::MAX)
        .set_data_page_size_limit(PAGE_BYTES);
    // High-entropy columns: a dictionary only costs time.
    for c in [
        "span_id",
        "attributes",
        "attribute_numbers",
        "extra",
        "http_url",
    ] {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), false);
    }
    // The string-heavy columns are most of a block: a higher level pays there.
    let strong = ZstdLevel::try_new(zstd_level.max(STRONG_ZSTD_LEVEL)).map_err(pq)?;
    for c in ["attributes", "attribute_numbers", "extra", "http_url"] {
        b = b.set_column_compression(ColumnPath::from(c), Compression::ZSTD(strong));
    }
    // Times: the high bytes are shared by the block, the low ones random; split into byte streams
    // zstd removes the former (DELTA_BINARY_PACKED pays the jumps between traces on every value).
    for c in ["start_unix_nano", "duration_nano"] {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(c), false)
            .set_column_encoding(ColumnPath::from(c), Encoding::BYTE_STREAM_SPLIT);
    }
    Ok(b.build())
}

/// Per row group: which services and span names occur (ids into the block's dictionaries).
#[derive(Debug, Default)]
pub(crate) struct RowGroupInfo {
    /// First trace (index into the trace arrays) of the row group.
    pub first_trace: u32,
    pub services: Vec<u32>,
    pub names: Vec<u32>,
}

/// The trace-id index of a block: every trace id, sorted, with its row group, rows and times.
#[derive(Debug, Default)]
pub(crate) struct TraceIndex {
    pub ids: Vec<TraceId>,
    /// First row of each trace within its row group.
    pub row: Vec<u32>,
    pub spans: Vec<u32>,
    pub start: Vec<u64>,
    pub end: Vec<u64>,
    pub row_groups: Vec<RowGroupInfo>,
    pub services: Vec<String>,
    /// `None` when the block has too many distinct names to keep.
    pub names: Option<Vec<String>>,
}

impl TraceIndex {
    /// Row group and trace position of `id`.
    pub(crate) fn find(&self, id: &TraceId) -> Option<(usize, usize)> {
        let i = self.ids.binary_search(id).ok()?;
        Some((self.row_group_of(i), i))
    }

    pub(crate) fn row_group_of(&self, trace: usize) -> usize {
        self.row_groups
            .partition_point(|g| g.first_trace as usize <= trace)
            .saturating_sub(1)
    }

    fn encode(&self, base: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.ids.len() * 24);
        out.extend_from_slice(INDEX_MAGIC);
        out.push(INDEX_V1);
        put_uvarint(&mut out, base);
        put_uvarint(&mut out, self.services.len() as u64);
        for s in &self.services {
            put_bytes(&mut out, s.as_bytes());
        }
        match &self.names {
            Some(names) => {
                out.push(1);
                put_uvarint(&mut out, names.len() as u64);
                for s in names {
                    put_bytes(&mut out, s.as_bytes());
                }
            }
            None => out.push(0),
        }
        put_uvarint(&mut out, self.row_groups.len() as u64);
        for (g, rg) in self.row_groups.iter().enumerate() {
            let end = self
                .row_groups
                .get(g + 1)
                .map_or(self.ids.len(), |n| n.first_trace as usize);
            put_uvarint(&mut out, (end - rg.first_trace as usize) as u64);
            put_uvarint(&mut out, rg.services.len() as u64);
            for s in &rg.services {
                put_uvarint(&mut out, u64::from(*s));
            }
            if self.names.is_some() {
                put_uvarint(&mut out, rg.names.len() as u64);
                for s in &rg.names {
                    put_uvarint(&mut out, u64::from(*s));
                }
            }
        }
        for i in 0..self.ids.len() {
            out.extend_from_slice(&self.ids[i]);
            put_uvarint(&mut out, u64::from(self.spans[i]));
            put_uvarint(&mut out, self.start[i].wrapping_sub(base));
            put_uvarint(&mut out, self.end[i] - self.start[i]);
        }
        out
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self, Error> {
        if buf.len() < 5 || &buf[..4] != INDEX_MAGIC {
            return Err(corrupt("trace block index: bad magic"));
        }
        if buf[4] != INDEX_V1 {
            return Err(corrupt(format!(
                "trace block index: unknown version {}",
                buf[4]
            )));
        }
        let mut r = Reader::new(&buf[5..]);
        let base = r.uvarint()?;
        let mut ix = TraceIndex::default();
        let n = r.count()?;
        for _ in 0..n {
            ix.services.push(r.string()?);
        }
        if r.u8()? == 1 {
            let n = r.count()?;
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(r.string()?);
            }
            ix.names = Some(names);
        }
        let groups = r.count()?;
        let mut counts = Vec::with_capacity(groups);
        let mut total = 0usize;
        for _ in 0..groups {
            let traces = r.count()?;
            let mut rg = RowGroupInfo {
                first_trace: total as u32,
                ..Default::default()
            };
            total += traces;
            let n = r.count()?;
            for _ in 0..n {
                rg.services.push(r.uvarint()? as u32);
            }
            if ix.names.is_some() {
                let n = r.count()?;
                for _ in 0..n {
                    rg.names.push(r.uvarint()? as u32);
                }
            }
            counts.push(traces);
            ix.row_groups.push(rg);
        }
        if total > r.remaining() {
            return Err(corrupt("trace block index: more traces than data"));
        }
        for v in [&mut ix.row, &mut ix.spans] {
            v.reserve_exact(total);
        }
        for v in [&mut ix.start, &mut ix.end] {
            v.reserve_exact(total);
        }
        ix.ids.reserve_exact(total);
        for traces in counts {
            let mut row = 0u32;
            for _ in 0..traces {
                ix.ids.push(r.array::<16>()?);
                let spans = u32::try_from(r.uvarint()?)
                    .map_err(|_| corrupt("trace block index: span count"))?;
                let start = base.wrapping_add(r.uvarint()?);
                let end = start.saturating_add(r.uvarint()?);
                ix.row.push(row);
                ix.spans.push(spans);
                ix.start.push(start);
                ix.end.push(end);
                row = row.saturating_add(spans);
            }
        }
        if !r.is_empty() {
            return Err(corrupt("trace block index: trailing bytes"));
        }
        if ix.ids.windows(2).any(|w| w[0] >= w[1]) {
            return Err(corrupt("trace block index: ids not sorted"));
        }
        Ok(ix)
    }
}

/// A block built in memory.
pub(crate) struct Built {
    pub data: Vec<u8>,
    pub index: Vec<u8>,
    pub reader_meta: ArrowReaderMetadata,
    pub trace_index: TraceIndex,
    pub min_ns: u64,
    pub max_ns: u64,
    pub spans: u64,
    pub traces: u64,
}

/// Columns of one row group being built.
struct Cols {
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    parent: FixedSizeBinaryBuilder,
    name: StringBuilder,
    kind: Int32Builder,
    start: UInt64Builder,
    duration: Int64Builder,
    status_code: Int32Builder,
    status_message: StringBuilder,
    res_attrs: [StringBuilder; 3],
    span_str: [StringBuilder; 3],
    http_status: Int64Builder,
    attr_keys: BinaryBuilder,
    attributes: BinaryBuilder,
    attr_nums: BinaryBuilder,
    extra: BinaryBuilder,
    res_keys: Vec<i32>,
    res_values: BinaryBuilder,
    scope_keys: Vec<i32>,
    scope_values: BinaryBuilder,
    /// Keyed by `Arc` address.
    origins: HashMap<usize, (i32, i32)>,
    scratch: Vec<u8>,
    scratch2: Vec<u8>,
    scratch3: Vec<u8>,
}

impl Cols {
    fn new(n: usize) -> Self {
        Self {
            trace_id: FixedSizeBinaryBuilder::with_capacity(n, 16),
            span_id: FixedSizeBinaryBuilder::with_capacity(n, 8),
            parent: FixedSizeBinaryBuilder::with_capacity(n, 8),
            name: StringBuilder::with_capacity(n, n * 16),
            kind: Int32Builder::with_capacity(n),
            start: UInt64Builder::with_capacity(n),
            duration: Int64Builder::with_capacity(n),
            status_code: Int32Builder::with_capacity(n),
            status_message: StringBuilder::new(),
            res_attrs: std::array::from_fn(|_| StringBuilder::new()),
            span_str: std::array::from_fn(|_| StringBuilder::new()),
            http_status: Int64Builder::with_capacity(n),
            attr_keys: BinaryBuilder::with_capacity(n, n * 128),
            attributes: BinaryBuilder::with_capacity(n, n * 64),
            attr_nums: BinaryBuilder::with_capacity(n, n * 8),
            extra: BinaryBuilder::with_capacity(n, n * 16),
            res_keys: Vec::with_capacity(n),
            res_values: BinaryBuilder::new(),
            scope_keys: Vec::with_capacity(n),
            scope_values: BinaryBuilder::new(),
            origins: HashMap::new(),
            scratch: Vec::with_capacity(4096),
            scratch2: Vec::with_capacity(4096),
            scratch3: Vec::with_capacity(256),
        }
    }

    fn push(&mut self, s: &Span) -> Result<(), Error> {
        self.trace_id.append_value(s.trace_id).map_err(ar)?;
        self.span_id.append_value(s.span_id).map_err(ar)?;
        self.parent.append_value(s.parent_span_id).map_err(ar)?;
        self.name.append_value(&s.name);
        self.kind.append_value(s.kind);
        self.start.append_value(s.start_ns);
        self.duration
            .append_value(s.end_ns.wrapping_sub(s.start_ns) as i64);
        self.status_code.append_value(s.status_code);
        self.status_message.append_value(&s.status_message);
        for (k, col) in DEDICATED_RESOURCE_ATTRS.iter().zip(&mut self.res_attrs) {
            match s
                .origin
                .resource
                .attributes
                .iter()
                .find(|kv| kv.key == *k)
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| v.value.as_ref())
            {
                Some(any_value::Value::StringValue(v)) => col.append_value(v),
                _ => col.append_null(),
            }
        }
        self.scratch.clear();
        self.scratch2.clear();
        self.scratch3.clear();
        let taken = encode_attrs(
            &s.attributes,
            &mut self.scratch,
            &mut self.scratch2,
            &mut self.scratch3,
        );
        self.attr_keys.append_value(&self.scratch);
        self.attributes.append_value(&self.scratch2);
        self.attr_nums.append_value(&self.scratch3);
        for (c, col) in self.span_str.iter_mut().enumerate() {
            match taken[c].and_then(|i| dedicated_value(c, &s.attributes[i])) {
                Some(Dedicated::Str(v)) => col.append_value(v),
                _ => col.append_null(),
            }
        }
        match taken[3].and_then(|i| dedicated_value(3, &s.attributes[i])) {
            Some(Dedicated::Int(v)) => self.http_status.append_value(v),
            _ => self.http_status.append_null(),
        }
        self.scratch.clear();
        encode_extra(s, &mut self.scratch);
        self.extra.append_value(&self.scratch);
        let key = Arc::as_ptr(&s.origin) as usize;
        let (r, sc) = match self.origins.get(&key) {
            Some(k) => *k,
            None => {
                self.scratch.clear();
                encode_resource(&s.origin, &mut self.scratch);
                self.res_values.append_value(&self.scratch);
                self.scratch.clear();
                encode_scope(&s.origin, &mut self.scratch);
                self.scope_values.append_value(&self.scratch);
                let k = (self.origins.len() as i32, self.origins.len() as i32);
                self.origins.insert(key, k);
                k
            }
        };
        self.res_keys.push(r);
        self.scope_keys.push(sc);
        Ok(())
    }

    fn finish(mut self, schema: &SchemaRef) -> Result<RecordBatch, Error> {
        let dict = |keys: Vec<i32>, mut values: BinaryBuilder| -> Result<ArrayRef, Error> {
            Ok(Arc::new(
                DictionaryArray::<Int32Type>::try_new(
                    Int32Array::from(keys),
                    Arc::new(values.finish()),
                )
                .map_err(ar)?,
            ))
        };
        let [r0, r1, r2] = &mut self.res_attrs;
        let [s0, s1, s2] = &mut self.span_str;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.duration.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.status_message.finish()),
            Arc::new(r0.finish()),
            Arc::new(r1.finish()),
            Arc::new(r2.finish()),
            Arc::new(s0.finish()),
            Arc::new(s1.finish()),
            Arc::new(s2.finish()),
            Arc::new(self.http_status.finish()),
            Arc::new(self.attr_keys.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.attr_nums.finish()),
            Arc::new(self.extra.finish()),
            dict(self.res_keys, self.res_values)?,
            dict(self.scope_keys, self.scope_values)?,
        ];
        RecordBatch::try_new(schema.clone(), cols).map_err(ar)
    }
}

/// Interns strings into ids (for the index's service and name sets).
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    list: Vec<String>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(i) = self.ids.get(s) {
            return *i;
        }
        let i = self.list.len() as u32;
        self.ids.insert(s.to_string(), i);
        self.list.push(s.to_string());
        i
    }
}

/// Builds a block from traces sorted by id, each trace's spans sorted by (start, span id). A
/// row group is closed at the first trace boundary after `rg_spans` rows, so that every trace is
/// in exactly one row group.
pub(crate) fn build_block(
    traces: &[(TraceId, Vec<&Span>)],
    rg_spans: usize,
    zstd_level: i32,
) -> Result<Built, Error> {
    let schema = schema();
    let mut w = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(writer_props(zstd_level)?))
        .map_err(pq)?;
    let mut ix = TraceIndex::default();
    let mut services = Interner::default();
    let mut names = Interner::default();
    let mut names_ok = true;
    let (mut min_ns, mut max_ns, mut spans) = (u64::MAX, 0u64, 0u64);
    let mut i = 0;
    while i < traces.len() {
        let mut rows = 0usize;
        let mut j = i;
        while j < traces.len() && (rows < rg_spans || j == i) {
            rows += traces[j].1.len();
            j += 1;
        }
        let mut cols = Cols::new(rows);
        let mut rg = RowGroupInfo {
            first_trace: ix.ids.len() as u32,
            ..Default::default()
        };
        let (mut svc_set, mut name_set) = (HashSet::new(), HashSet::new());
        for (id, ss) in &traces[i..j] {
            let (mut s0, mut e0) = (u64::MAX, 0u64);
            ix.ids.push(*id);
            ix.row.push(cols.res_keys.len() as u32);
            ix.spans.push(ss.len() as u32);
            for s in ss {
                cols.push(s)?;
                s0 = s0.min(s.start_ns);
                e0 = e0.max(s.end_ns);
                svc_set.insert(services.id(s.origin.service_name()));
                if names_ok {
                    name_set.insert(names.id(&s.name));
                    if names.list.len() > MAX_INDEX_NAMES {
                        names_ok = false;
                    }
                }
            }
            ix.start.push(s0);
            ix.end.push(e0.max(s0));
            min_ns = min_ns.min(s0);
            max_ns = max_ns.max(e0);
            spans += ss.len() as u64;
        }
        rg.services = svc_set.into_iter().collect();
        rg.services.sort_unstable();
        if names_ok {
            rg.names = name_set.into_iter().collect();
            rg.names.sort_unstable();
        }
        ix.row_groups.push(rg);
        let batch = cols.finish(&schema)?;
        w.write(&batch).map_err(pq)?;
        w.flush().map_err(pq)?;
        i = j;
    }
    ix.services = services.list;
    if names_ok {
        ix.names = Some(names.list);
    } else {
        for rg in &mut ix.row_groups {
            rg.names.clear();
        }
    }
    let data = w.into_inner().map_err(pq)?;
    let min_ns = if min_ns == u64::MAX { 0 } else { min_ns };
    let index = ix.encode(min_ns);
    let meta = footer_from_tail(&data, data.len() as u64)?
        .ok_or_else(|| corrupt("parquet footer not in the written file"))?;
    Ok(Built {
        reader_meta: reader_meta(meta)?,
        data,
        index,
        trace_index: ix,
        min_ns,
        max_ns: max_ns.max(min_ns),
        spans,
        traces: traces.len() as u64,
    })
}

fn reader_meta(meta: ParquetMetaData) -> Result<ArrowReaderMetadata, Error> {
    ArrowReaderMetadata::try_new(Arc::new(meta), ArrowReaderOptions::new()).map_err(pq)
}

/// Parses the footer from `tail`, the last bytes of a file of `file_len` bytes; `Ok(None)` when
/// `tail` is too short to hold the whole metadata.
fn footer_from_tail(tail: &[u8], file_len: u64) -> Result<Option<ParquetMetaData>, Error> {
    if tail.len() < 8 {
        return Err(corrupt("parquet file too short"));
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&tail[tail.len() - 8..]);
    let len = FooterTail::try_from(t).map_err(pq)?.metadata_length();
    if len as u64 + 8 > file_len {
        return Err(corrupt("parquet metadata longer than the file"));
    }
    if len + 8 > tail.len() {
        return Ok(None);
    }
    let m = &tail[tail.len() - 8 - len..tail.len() - 8];
    Ok(Some(ParquetMetaDataReader::decode_metadata(m).map_err(pq)?))
}

/// The cached part of a block: its index and Parquet footer.
pub(crate) struct BlockReader {
    pub index: TraceIndex,
    pub meta: ArrowReaderMetadata,
    pub data_len: u64,
}

impl BlockReader {
    pub(crate) fn from_built(b: &mut Built) -> Self {
        Self {
            index: std::mem::take(&mut b.trace_index),
            meta: b.reader_meta.clone(),
            data_len: b.data.len() as u64,
        }
    }

    /// Loads index and footer with `get(name, range)` (ranged GETs) and `len` the data file size.
    pub(crate) async fn load<F, Fut>(index: Bytes, data_len: u64, get: F) -> Result<Self, Error>
    where
        F: Fn(std::ops::Range<u64>) -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, Error>>,
    {
        let index = TraceIndex::decode(&index)?;
        let guess = FOOTER_GUESS.min(data_len);
        let tail = get(data_len - guess..data_len).await?;
        let meta = match footer_from_tail(&tail, data_len)? {
            Some(m) => m,
            None => {
                let mut t = [0u8; 8];
                t.copy_from_slice(&tail[tail.len() - 8..]);
                let len = FooterTail::try_from(t).map_err(pq)?.metadata_length() as u64;
                let all = get(data_len - len - 8..data_len).await?;
                footer_from_tail(&all, data_len)?
                    .ok_or_else(|| corrupt("parquet footer incomplete"))?
            }
        };
        if meta.num_row_groups() != index.row_groups.len() {
            return Err(corrupt(
                "trace block index and parquet file disagree on row groups",
            ));
        }
        Ok(Self {
            index,
            meta: reader_meta(meta)?,
            data_len,
        })
    }

    /// Byte range of a row group's column chunks in the data file.
    pub(crate) fn row_group_range(&self, rg: usize) -> std::ops::Range<u64> {
        let g = self.meta.metadata().row_group(rg);
        let mut lo = u64::MAX;
        let mut hi = 0;
        for c in g.columns() {
            let (s, l) = c.byte_range();
            lo = lo.min(s);
            hi = hi.max(s + l);
        }
        lo.min(hi)..hi
    }

    /// Decodes rows `sel` (sorted, disjoint `(first row, rows)` within the row group) of row
    /// group `rg`, whose bytes `data` start at file offset `range.start`.
    pub(crate) fn read_rows(
        &self,
        rg: usize,
        data: Bytes,
        offset: u64,
        sel: &[(u32, u32)],
    ) -> Result<Vec<Span>, Error> {
        let total = self.meta.metadata().row_group(rg).num_rows() as usize;
        let (selectors, wanted) = selectors(sel, total)?;
        let input = RangeBytes {
            parts: vec![(offset, data)],
            len: self.data_len,
        };
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(input, self.meta.clone())
            .with_row_groups(vec![rg])
            .with_row_selection(RowSelection::from(selectors))
            .with_batch_size(wanted.clamp(1, 8192))
            .build()
            .map_err(pq)?;
        let mut out = Vec::with_capacity(wanted);
        for batch in reader {
            batch_to_spans(&batch.map_err(ar)?, &mut out)?;
        }
        Ok(out)
    }

    /// Leaf indices of the named columns (unknown names are skipped).
    fn column_indices(&self, columns: &[&str]) -> Vec<usize> {
        let schema = self.meta.metadata().file_metadata().schema_descr();
        (0..schema.num_columns())
            .filter(|&i| columns.contains(&schema.column(i).name()))
            .collect()
    }

    /// Byte ranges of the named columns' chunks in row group `rg`.
    pub(crate) fn column_ranges(&self, rg: usize, columns: &[&str]) -> Vec<std::ops::Range<u64>> {
        let g = self.meta.metadata().row_group(rg);
        self.column_indices(columns)
            .into_iter()
            .map(|i| {
                let (s, l) = g.column(i).byte_range();
                s..s + l
            })
            .collect()
    }

    /// Decodes the named columns of rows `sel` (as in [`BlockReader::read_rows`]) of row group
    /// `rg`, from the chunks `parts` (file offset, bytes) fetched by [`BlockReader::column_ranges`].
    pub(crate) fn read_columns(
        &self,
        rg: usize,
        parts: Vec<(u64, Bytes)>,
        columns: &[&str],
        sel: &[(u32, u32)],
    ) -> Result<Vec<RecordBatch>, Error> {
        let total = self.meta.metadata().row_group(rg).num_rows() as usize;
        let (selectors, wanted) = selectors(sel, total)?;
        let input = RangeBytes {
            parts,
            len: self.data_len,
        };
        let mask = ProjectionMask::leaves(
            self.meta.metadata().file_metadata().schema_descr(),
            self.column_indices(columns),
        );
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(input, self.meta.clone())
            .with_row_groups(vec![rg])
            .with_projection(mask)
            .with_row_selection(RowSelection::from(selectors))
            .with_batch_size(wanted.clamp(1, 8192))
            .build()
            .map_err(pq)?;
        reader.map(|b| b.map_err(ar)).collect::<Result<Vec<_>, _>>()
    }
}

/// Row selectors for `sel` (sorted, disjoint `(first row, rows)`) in a row group of `total`
/// rows, and the number of rows selected.
fn selectors(sel: &[(u32, u32)], total: usize) -> Result<(Vec<RowSelector>, usize), Error> {
    let mut selectors = Vec::with_capacity(sel.len() * 2 + 1);
    let mut at = 0usize;
    let mut wanted = 0usize;
    for &(first, n) in sel {
        let (first, n) = (first as usize, n as usize);
        if first < at || first + n > total {
            return Err(corrupt("row selection outside the row group"));
        }
        if first > at {
            selectors.push(RowSelector::skip(first - at));
        }
        selectors.push(RowSelector::select(n));
        at = first + n;
        wanted += n;
    }
    if at < total {
        selectors.push(RowSelector::skip(total - at));
    }
    Ok((selectors, wanted))
}

/// Parts of a file held in memory (file offset, bytes), served as a [`ChunkReader`].
struct RangeBytes {
    parts: Vec<(u64, Bytes)>,
    len: u64,
}

impl RangeBytes {
    fn part(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let end = start.checked_add(length as u64);
        for (offset, data) in &self.parts {
            if start >= *offset && end.is_some_and(|e| e <= offset + data.len() as u64) {
                let s = (start - offset) as usize;
                return Ok(data.slice(s..s + length));
            }
        }
        Err(parquet::errors::ParquetError::General(format!(
            "bytes {start}+{length} outside the fetched ranges"
        )))
    }
}

impl Length for RangeBytes {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for RangeBytes {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        // Parts may be adjacent: the one that holds byte `start` (else one ending there).
        let holds = |o: u64, l: usize| start >= o && start < o + l as u64;
        let ends = |o: u64, l: usize| start == o + l as u64;
        let found = (self.parts.iter())
            .find(|(o, d)| holds(*o, d.len()))
            .or_else(|| self.parts.iter().find(|(o, d)| ends(*o, d.len())));
        match found {
            Some((offset, data)) => Ok(bytes::Buf::reader(data.slice((start - offset) as usize..))),
            None => Err(parquet::errors::ParquetError::General(format!(
                "byte {start} outside the fetched ranges"
            ))),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.part(start, length)
    }
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T, Error> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| corrupt(format!("trace block: column {name} missing or mistyped")))
}

fn fixed<const N: usize>(a: &FixedSizeBinaryArray, i: usize) -> Result<[u8; N], Error> {
    a.value(i)
        .try_into()
        .map_err(|_| corrupt("trace block: id of the wrong width"))
}

fn string_kv(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    }
}

fn batch_to_spans(b: &RecordBatch, out: &mut Vec<Span>) -> Result<(), Error> {
    let trace_id = col::<FixedSizeBinaryArray>(b, "trace_id")?;
    let span_id = col::<FixedSizeBinaryArray>(b, "span_id")?;
    let parent = col::<FixedSizeBinaryArray>(b, "parent_span_id")?;
    let name = col::<StringArray>(b, "name")?;
    let kind = col::<Int32Array>(b, "kind")?;
    let start = col::<UInt64Array>(b, "start_unix_nano")?;
    let duration = col::<Int64Array>(b, "duration_nano")?;
    let status_code = col::<Int32Array>(b, "status_code")?;
    let status_message = col::<StringArray>(b, "status_message")?;
    let span_str = [
        col::<StringArray>(b, SPAN_ATTR_COLUMNS[0])?,
        col::<StringArray>(b, SPAN_ATTR_COLUMNS[1])?,
        col::<StringArray>(b, SPAN_ATTR_COLUMNS[2])?,
    ];
    let http_status = col::<Int64Array>(b, SPAN_ATTR_COLUMNS[3])?;
    let attr_keys = col::<BinaryArray>(b, "attribute_keys")?;
    let attributes = col::<BinaryArray>(b, "attributes")?;
    let attr_nums = col::<BinaryArray>(b, "attribute_numbers")?;
    let extra = col::<BinaryArray>(b, "extra")?;
    let resource = col::<DictionaryArray<Int32Type>>(b, "resource")?;
    let scope = col::<DictionaryArray<Int32Type>>(b, "scope")?;
    let res_values = resource
        .values()
        .as_any()
        .downcast_ref::<BinaryArray>()
        .ok_or_else(|| corrupt("trace block: resource values mistyped"))?;
    let scope_values = scope
        .values()
        .as_any()
        .downcast_ref::<BinaryArray>()
        .ok_or_else(|| corrupt("trace block: scope values mistyped"))?;
    let mut origins: HashMap<(i32, i32), Arc<SpanOrigin>> = HashMap::new();
    for i in 0..b.num_rows() {
        let rk = resource.keys().value(i);
        let sk = scope.keys().value(i);
        let origin = match origins.get(&(rk, sk)) {
            Some(o) => o.clone(),
            None => {
                if rk < 0
                    || rk as usize >= res_values.len()
                    || sk < 0
                    || sk as usize >= scope_values.len()
                {
                    return Err(corrupt("trace block: dictionary key out of range"));
                }
                let o = Arc::new(decode_origin(
                    res_values.value(rk as usize),
                    scope_values.value(sk as usize),
                )?);
                origins.insert((rk, sk), o.clone());
                o
            }
        };
        let attrs = decode_attrs(
            attr_keys.value(i),
            attributes.value(i),
            attr_nums.value(i),
            |c| {
                let key = DEDICATED_SPAN_ATTRS[c];
                if c < 3 {
                    if span_str[c].is_null(i) {
                        return Err(corrupt("trace block: placeholder without value"));
                    }
                    Ok(string_kv(key, span_str[c].value(i)))
                } else {
                    if http_status.is_null(i) {
                        return Err(corrupt("trace block: placeholder without value"));
                    }
                    Ok(KeyValue {
                        key: key.to_string(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::IntValue(http_status.value(i))),
                        }),
                        ..Default::default()
                    })
                }
            },
        )?;
        let x = decode_extra(&mut Reader::new(extra.value(i)))?;
        let start_ns = start.value(i);
        out.push(Span {
            trace_id: fixed::<16>(trace_id, i)?,
            span_id: fixed::<8>(span_id, i)?,
            parent_span_id: fixed::<8>(parent, i)?,
            trace_state: x.trace_state,
            flags: x.flags,
            name: name.value(i).to_string(),
            kind: kind.value(i),
            start_ns,
            end_ns: start_ns.wrapping_add(duration.value(i) as u64),
            attributes: attrs,
            dropped_attributes_count: x.dropped_attributes_count,
            events: x.events,
            dropped_events_count: x.dropped_events_count,
            links: x.links,
            dropped_links_count: x.dropped_links_count,
            status_code: status_code.value(i),
            status_message: status_message.value(i).to_string(),
            origin,
        });
    }
    Ok(())
}
