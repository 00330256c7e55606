//! Web channel: session (being built).
