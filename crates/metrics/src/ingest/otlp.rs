//! OTLP metrics ingestion (work in progress).
