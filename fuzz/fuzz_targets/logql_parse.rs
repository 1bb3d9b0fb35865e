//! LogQL parsing of arbitrary UTF-8 through `logs::logql::parser::parse`, plus the printer round
//! trip: whatever parses must print to LogQL that parses back to the same AST.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(expr) = logs::logql::parser::parse(s) {
            let printed = expr.to_string();
            let again = logs::logql::parser::parse(&printed)
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
            assert_eq!(again, expr, "round trip through {printed:?}");
        }
    }
});
