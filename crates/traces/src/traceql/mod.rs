//! TraceQL: the syntax tree ([`ast`]), lexer, parser and canonical printer (`Display` on
//! [`Query`]; `parse(&q.to_string()) == Ok(q)`), the search evaluator over in-memory traces
//! ([`eval`]) and the metrics evaluator ([`metrics`]).
//!
//! - [`parse`] turns a query into a [`Query`]; errors are `Error::Parse` with Tempo's message
//!   shape (`parse error at line 1, col 8: syntax error: unexpected CLOSE_BRACE`).
//! - [`eval_trace`] (or a reusable [`Evaluator`]) gives the matching [`Spanset`]s of one trace.
//! - [`hints`] gives the service and span names a store may use to skip traces.
//! - [`extract_conditions`] leniently reads the ANDed conditions of a partial query (tag-value
//!   autocomplete).
//! - [`eval_metrics`] (or a streaming [`MetricsEvaluator`]) computes `rate()` and friends,
//!   `compare()`, and exemplars.

pub mod ast;
pub mod eval;
pub mod lexer;
pub mod metrics;
pub mod parser;
mod print;

#[cfg(test)]
mod eval_tests;
#[cfg(test)]
pub(crate) mod golden_tests;
#[cfg(test)]
mod metrics_tests;
#[cfg(test)]
mod parser_tests;

pub use ast::Query;
pub use eval::{eval_trace, hints, Evaluator, SpanMatch, Spanset};
pub use metrics::{eval_metrics, Exemplar, MetricsEvaluator, MetricsResult, Series};
pub use parser::{extract_conditions, parse, Condition};
