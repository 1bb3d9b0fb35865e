//! The log store (placeholder).
