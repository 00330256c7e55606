//! Web channel: oidc (being built).
