//! Bridges TraceQL evaluation to search results (filled in when the TraceQL engine lands).

use crate::search::Matcher;
use crate::Error;

/// A matcher for a TraceQL query.
pub fn matcher(q: &str) -> Result<Matcher, Error> {
    Err(Error::BadRequest(format!(
        "TraceQL query {q:?} is not supported yet"
    )))
}
