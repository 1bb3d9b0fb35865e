//! Loki push bodies and OTLP/HTTP logs: decompression, protobuf/JSON decoding, label parsing and
//! Loki's validation. The first input byte picks the variant (bits 0–1: Loki protobuf, Loki JSON,
//! OTLP protobuf, OTLP JSON; bit 2: gzip); the rest is the body.
#![no_main]

use common::limits::Limits;
use libfuzzer_sys::fuzz_target;
use logs::ingest::{decode_push, otlp, validate};

const NOW_NS: i64 = 1_700_000_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let encoding = (mode & 4 == 4).then_some("gzip");
    let limits = Limits {
        max_request_size_bytes: 4 << 20,
        max_line_size: 1024,
        max_line_size_truncate: mode & 8 == 8,
        ..Default::default()
    };
    let max = limits.max_request_size_bytes;
    let raw = match mode & 3 {
        0 => decode_push(body, Some("application/x-protobuf"), encoding, max),
        1 => decode_push(body, Some("application/json"), encoding, max),
        2 => otlp::decode_http(body, Some("application/x-protobuf"), encoding, max)
            .map(|r| otlp::to_streams(r, NOW_NS)),
        _ => otlp::decode_http(body, Some("application/json"), encoding, max)
            .map(|r| otlp::to_streams(r, NOW_NS)),
    };
    if let Ok(raw) = raw {
        let _ = validate(raw, &limits, NOW_NS);
    }
});
