//! TraceQL (placeholder).
