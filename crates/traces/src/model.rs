//! The span model shared by ingest, storage and TraceQL, and the read/write seams
//! ([`TraceSource`], [`TraceWriter`]) through which the API and engines reach storage.
//!
//! Spans keep OTLP's own attribute, event and link types so that a trace read back is exactly
//! what was sent (ids, times, attributes, status), in both OTLP encodings.

use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use common::{TenantId, TenantSet};
use proto::otlp::tonic::common::v1::{InstrumentationScope, KeyValue};
use proto::otlp::tonic::resource::v1::Resource;
use proto::otlp::tonic::trace::v1::span::{Event, Link};

use crate::traceql::ast::{BinaryOp, Static};
use crate::Error;

/// A 16-byte trace id.
pub type TraceId = [u8; 16];
/// An 8-byte span id.
pub type SpanId = [u8; 8];

/// The resource and instrumentation scope a span was sent with (shared by the spans of a batch).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanOrigin {
    /// OTLP resource (attributes include `service.name`).
    pub resource: Resource,
    /// Resource schema URL.
    pub resource_schema_url: String,
    /// Instrumentation scope.
    pub scope: InstrumentationScope,
    /// Scope schema URL.
    pub scope_schema_url: String,
}

impl SpanOrigin {
    /// The `service.name` resource attribute (empty when absent).
    pub fn service_name(&self) -> &str {
        self.resource
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(proto::otlp::tonic::common::v1::any_value::Value::StringValue(s)) => {
                    Some(s.as_str())
                }
                _ => None,
            })
            .unwrap_or("")
    }
}

/// One span, flattened with its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Trace id.
    pub trace_id: TraceId,
    /// Span id.
    pub span_id: SpanId,
    /// Parent span id; all zero for a root span.
    pub parent_span_id: SpanId,
    /// W3C trace state.
    pub trace_state: String,
    /// Span flags.
    pub flags: u32,
    /// Span name.
    pub name: String,
    /// OTLP `SpanKind` (0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer).
    pub kind: i32,
    /// Start, unix ns.
    pub start_ns: u64,
    /// End, unix ns.
    pub end_ns: u64,
    /// Span attributes.
    pub attributes: Vec<KeyValue>,
    /// Dropped attribute count.
    pub dropped_attributes_count: u32,
    /// Events.
    pub events: Vec<Event>,
    /// Dropped event count.
    pub dropped_events_count: u32,
    /// Links.
    pub links: Vec<Link>,
    /// Dropped link count.
    pub dropped_links_count: u32,
    /// OTLP status code (0 unset, 1 ok, 2 error).
    pub status_code: i32,
    /// Status message.
    pub status_message: String,
    /// Resource and scope.
    pub origin: Arc<SpanOrigin>,
}

impl Span {
    /// Whether the span has no parent.
    pub fn is_root(&self) -> bool {
        self.parent_span_id == [0; 8]
    }

    /// Duration in ns (0 when end < start).
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// All spans of one trace known to the store (order unspecified).
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Trace id.
    pub trace_id: TraceId,
    /// Spans.
    pub spans: Vec<Span>,
}

impl Trace {
    /// The root span (no parent), if present; the earliest-starting one if there are several.
    pub fn root(&self) -> Option<&Span> {
        self.spans
            .iter()
            .filter(|s| s.is_root())
            .min_by_key(|s| s.start_ns)
    }

    /// Earliest span start, unix ns.
    pub fn start_ns(&self) -> u64 {
        self.spans.iter().map(|s| s.start_ns).min().unwrap_or(0)
    }

    /// Latest span end, unix ns.
    pub fn end_ns(&self) -> u64 {
        self.spans.iter().map(|s| s.end_ns).max().unwrap_or(0)
    }
}

/// What a search wants read. Hints are optimisations only: the engine checks every predicate
/// again, so a store may ignore them.
#[derive(Debug, Clone, Default)]
pub struct TraceScan {
    /// Tenants to read (one, or several when federated).
    pub tenants: Option<TenantSet>,
    /// Traces overlapping `[start_ns, end_ns)` (0 and `u64::MAX` for all time).
    pub start_ns: u64,
    /// See `start_ns`.
    pub end_ns: u64,
    /// Every matching trace has a span whose resource `service.name` is one of these (empty: no hint).
    pub service_names: Vec<String>,
    /// Every matching trace has a span with one of these names (empty: no hint).
    pub span_names: Vec<String>,
    /// Every trace the search can match satisfies this (`None`: no condition). A store may skip
    /// traces that cannot satisfy it, never one that can; the engine checks the query again.
    pub filter: Option<TracePred>,
}

/// A span field a store can evaluate without materialising spans (pushed-down TraceQL).
#[derive(Debug, Clone, PartialEq)]
pub enum SpanField {
    /// `name`
    Name,
    /// `status` (values are [`Static::Status`]).
    Status,
    /// `statusMessage`
    StatusMessage,
    /// `kind` (values are [`Static::Kind`]).
    Kind,
    /// `duration` (values are [`Static::Duration`]).
    Duration,
    /// `span.<key>`
    SpanAttr(String),
    /// `resource.<key>`
    ResourceAttr(String),
    /// `.<key>`: the span's values of the attribute, or the resource's when the span has none.
    AnyAttr(String),
}

/// `field op value` on one span, with TraceQL's semantics: true when the comparison holds for
/// any value of the field (missing values: false); `op` is a comparison or `=~`/`!~` (fully
/// anchored regex, `value` a string).
#[derive(Debug, Clone, PartialEq)]
pub struct SpanCond {
    /// The field.
    pub field: SpanField,
    /// The operator.
    pub op: BinaryOp,
    /// The literal (never `nil`).
    pub value: Static,
}

/// A condition on one span built from [`SpanCond`]s (no negation: every part is monotone).
#[derive(Debug, Clone, PartialEq)]
pub enum SpanPred {
    /// One condition.
    Cond(SpanCond),
    /// All of them.
    And(Vec<SpanPred>),
    /// Any of them.
    Or(Vec<SpanPred>),
}

/// A condition on a whole trace, pushed down from a query (see [`TraceScan::filter`]).
#[derive(Debug, Clone, PartialEq)]
pub enum TracePred {
    /// Some span of the trace satisfies this.
    Span(SpanPred),
    /// The trace's duration (latest span end − earliest span start) is above `ns` (`or_equal`:
    /// at least `ns`).
    MinDuration {
        /// Bound, ns.
        ns: u64,
        /// `>=` instead of `>`.
        or_equal: bool,
    },
    /// All of them.
    And(Vec<TracePred>),
    /// Any of them.
    Or(Vec<TracePred>),
}

/// Counters a scan reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanStats {
    /// Traces handed to the sink.
    pub traces: u64,
    /// Spans handed to the sink.
    pub spans: u64,
    /// Bytes read from storage (compressed), for `inspectedBytes`.
    pub bytes: u64,
    /// Blocks opened.
    pub blocks: u64,
    /// Row groups the filter ruled out by their column statistics (nothing read).
    pub row_groups_pruned: u64,
    /// Candidate traces the filter ruled out before their spans were decoded.
    pub traces_pruned: u64,
}

/// The read seam.
#[async_trait]
pub trait TraceSource: Send + Sync {
    /// The trace with `id` of any of `tenants` (spans of several blocks and the head merged).
    async fn trace_by_id(
        &self,
        tenants: &TenantSet,
        id: TraceId,
        start_ns: u64,
        end_ns: u64,
    ) -> Result<Option<Trace>, Error>;

    /// Calls `sink` with every trace overlapping the scan's range (each trace once, with all of
    /// its spans in that store), until it returns `Break`.
    async fn scan(
        &self,
        req: &TraceScan,
        sink: &mut (dyn for<'a, 'b> FnMut(&'a TenantId, &'b Trace) -> ControlFlow<()> + Send),
    ) -> Result<ScanStats, Error>;
}

/// Per-tenant limits the store enforces on a push.
#[derive(Debug, Clone, Copy, Default)]
pub struct PushLimits {
    /// Most bytes (encoded spans) one trace may hold; 0 = unlimited. Spans past it are refused.
    pub max_bytes_per_trace: usize,
}

/// What the store did with a push.
#[derive(Debug, Clone, Default)]
pub struct PushResult {
    /// Spans written.
    pub accepted: usize,
    /// Spans refused, with Tempo-style reasons (at most a few distinct messages).
    pub rejected: usize,
    /// Reasons for refused spans.
    pub errors: Vec<String>,
}

/// The write seam: ingest reaches storage only through this trait.
#[async_trait]
pub trait TraceWriter: Send + Sync {
    /// Durably writes `spans` for `tenant`; returns once the accepted spans are in the WAL.
    async fn push(
        &self,
        tenant: &TenantId,
        spans: Vec<Span>,
        limits: &PushLimits,
    ) -> Result<PushResult, Error>;
}
