//! PromQL parsing of arbitrary UTF-8 through `metrics::promql::parse`, the entry point of the
//! query engine (it wraps `promql_parser::parser::parse`), so a guard added there is fuzzed too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = metrics::promql::parse(s);
    }
});
