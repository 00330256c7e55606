//! Web channel: issue (being built).
