//! The Sportello server: configuration, accounts and login tokens, the HTTP API, the WebSocket
//! signalling endpoint, metrics, health, TLS and graceful shutdown. The `sportello` binary
//! (`src/main.rs`) is a thin command line over [`server::start`].
//!
//! Only this crate and the clients know the wire protocol (`protocol` crate). The cores here
//! ([`ws::connection`], [`sessions`], [`throttle`], [`calls::events`]) do no I/O and take `now` as an argument; the
//! tokio drivers around them own the sockets and timers.

pub mod accounts;
pub mod calls;
pub mod client_addr;
pub mod commands;
pub mod config;
pub mod datadir;
pub mod documents;
pub mod error;
pub mod headers;
pub mod http;
pub mod limits;
pub mod login;
pub mod mail;
pub mod marche;
pub mod media_node;
pub mod metrics;
pub mod pages;
pub mod readiness;
pub mod reports;
pub mod revocation;
pub mod routing;
pub mod server;
pub mod sessions;
pub mod shutdown;
pub mod state;
pub mod throttle;
pub mod tokens;
pub mod verification;
pub mod web;
pub mod ws;
