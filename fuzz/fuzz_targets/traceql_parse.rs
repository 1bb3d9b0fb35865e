//! TraceQL parsing of arbitrary UTF-8 through `traces::traceql::parse`, plus the printer round
//! trip: whatever parses must print to TraceQL that parses back to the same AST.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(q) = traces::traceql::parse(s) {
            let printed = q.to_string();
            let again = traces::traceql::parse(&printed)
                .or_else(|e| {
                    // Printing may add parentheses; at the parser's nesting limit that alone can
                    // push the printed form over it. Anything else is a printer bug.
                    if e.to_string().contains("deeply") || e.to_string().contains("too many") {
                        Err(())
                    } else {
                        panic!("printed form {printed:?} does not parse: {e}")
                    }
                });
            let Ok(again) = again else { return };
            assert_eq!(again, q, "round trip through {printed:?}");
        }
    }
});
