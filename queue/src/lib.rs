//! queue crate (work in progress).
