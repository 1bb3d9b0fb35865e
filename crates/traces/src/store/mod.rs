//! The trace store (placeholder).
