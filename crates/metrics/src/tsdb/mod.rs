//! The metrics TSDB (work in progress).
#![allow(dead_code)]

mod encoding;
