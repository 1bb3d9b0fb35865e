//! LogQL: AST, parser and printer, the log pipeline (line filters, parsers, label filters,
//! formatters) and the query evaluator.
//!
//! Everything here is our own code: LogQL has no maintained Rust implementation, and the pipeline
//! and evaluator are the hot loop of every log query.

pub mod ast;
pub mod engine;
pub mod ip;
pub mod json;
pub mod lexer;
pub mod logfmt;
pub mod parser;
pub mod pattern;
pub mod pipeline;
pub mod print;
pub mod template;
#[cfg(test)]
mod test_util;
pub mod units;
