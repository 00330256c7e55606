//! A media node: a `sportello` process that runs the SFU for calls placed on it by signalling
//! nodes, which reach it through an authenticated internal API.
//!
//! - [`auth`]: HMAC-SHA256 signatures of requests over a [`Secret`] the nodes share (a pure core
//!   that takes `now`).
//! - [`api`]: the internal API's JSON types, the media events a node publishes ([`NodeEvent`]) and
//!   what it advertises about itself ([`NodeInfo`]).
//! - [`placement`]: which live node takes a new call ([`choose`]), a pure function.
//! - [`server`]: the axum [`router`] over an [`sfu::Sfu`], every route behind the signature check.
//! - [`client`]: [`MediaNodeClient`], the same operations as [`sfu::Sfu`] for signalling nodes.
//!
//! It knows nothing about queues, users or sessions: its workspace dependencies are `sfu` and
//! `protocol` (for the error codes and the `media.stats` types).

pub mod api;
pub mod auth;
pub mod client;
pub mod placement;
pub mod server;

pub use api::{NodeEvent, NodeInfo, NodeLoad};
pub use auth::{AuthError, Secret, SecretError};
pub use client::MediaNodeClient;
pub use placement::choose;
pub use server::router;
