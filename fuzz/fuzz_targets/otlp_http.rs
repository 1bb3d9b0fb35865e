//! OTLP/HTTP metrics bodies: decompression, protobuf or JSON decoding and the OTel → Prometheus
//! translation. The first input byte picks the variant (bit 0: JSON, bit 1: gzip); the rest is
//! the body.
#![no_main]

use common::config::MetricsConfig;
use common::limits::Limits;
use libfuzzer_sys::fuzz_target;
use metrics::ingest::otlp::decode_http;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let content_type = if mode & 1 == 1 {
        "application/json"
    } else {
        "application/x-protobuf"
    };
    let encoding = (mode & 2 == 2).then_some("gzip");
    let limits = Limits {
        max_request_size_bytes: 4 << 20,
        ..Default::default()
    };
    let _ = decode_http(
        body,
        Some(content_type),
        encoding,
        &limits,
        &MetricsConfig::default(),
    );
});
