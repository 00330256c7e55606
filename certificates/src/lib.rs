//! certificates crate (work in progress).
