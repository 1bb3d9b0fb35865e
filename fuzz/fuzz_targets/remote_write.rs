//! Prometheus remote_write 1.0/2.0 bodies: the full HTTP path (Snappy block + protobuf +
//! validation) for both content types, and the same bytes as raw protobuf, so that the fuzzer
//! reaches validation without having to get Snappy right first.
#![no_main]

use common::limits::Limits;
use libfuzzer_sys::fuzz_target;
use metrics::ingest::remote_write::{
    decode, decode_decompressed, decode_v1, decode_v2, RwVersion, CONTENT_TYPE_V1, CONTENT_TYPE_V2,
};
use prost::Message;
use proto::{prometheus as v1, prometheus_v2 as v2};

/// A fixed clock keeps runs reproducible (the future-timestamp check depends on it).
const NOW_MS: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    // A small cap bounds decompression bombs and keeps executions fast.
    let limits = Limits {
        max_request_size_bytes: 4 << 20,
        ..Default::default()
    };
    let _ = decode(data, Some(CONTENT_TYPE_V1), Some("snappy"), &limits, NOW_MS);
    let _ = decode(data, Some(CONTENT_TYPE_V2), Some("snappy"), &limits, NOW_MS);
    // The zero-copy fast path the HTTP handler uses (falls back to prost when it declines).
    let _ = decode_decompressed(data, RwVersion::V1, &limits, NOW_MS);
    if let Ok(req) = v1::WriteRequest::decode(data) {
        let _ = decode_v1(req, &limits, NOW_MS);
    }
    if let Ok(req) = v2::Request::decode(data) {
        let _ = decode_v2(req, &limits, NOW_MS);
    }
});
