//! Log level spellings normalised to Loki's values (`detected_level`, and the agent's `level`
//! label), shared so the server and the agent agree.

/// Maps a level spelling (any case, surrounding blanks ignored) to one of Loki's normalised
/// values: `trace`, `debug`, `info`, `warn`, `error`, `critical`, `fatal`, else `unknown`.
pub fn normalize_level(v: &str) -> &'static str {
    match v.trim().to_ascii_lowercase().as_str() {
        "trace" | "trc" => "trace",
        "debug" | "dbg" => "debug",
        "info" | "inf" | "information" | "informational" | "notice" => "info",
        "warn" | "wrn" | "warning" => "warn",
        "error" | "err" | "eror" => "error",
        "critical" | "crit" => "critical",
        "fatal" | "ftl" | "panic" | "emerg" | "emergency" | "alert" => "fatal",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        for (raw, want) in [
            ("INFO", "info"),
            (" Warning ", "warn"),
            ("err", "error"),
            ("CRIT", "critical"),
            ("panic", "fatal"),
            ("dbg", "debug"),
            ("verbose", "unknown"),
            ("", "unknown"),
        ] {
            assert_eq!(normalize_level(raw), want, "{raw:?}");
        }
    }
}
