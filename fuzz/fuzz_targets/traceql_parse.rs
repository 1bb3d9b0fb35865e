//! TraceQL parsing of arbitrary UTF-8 through `traces::traceql::parse`, plus the printer round
//! trip: whatever parses must print to TraceQL that parses back to the same AST.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(q) = traces::traceql::parse(s) {
            let printed = q.to_string();
            let again = traces::traceql::parse(&printed)
                .unwrap_or_else(|e| panic!("printed form {printed:?} does not parse: {e}"));
            assert_eq!(again, q, "round trip through {printed:?}");
        }
    }
});
