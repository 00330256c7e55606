//! Skills-based routing for Sportello: which operator gets which kiosk call.
//!
//! # Design
//! The decisions live in a pure core ([`core::TenantState::apply`]): it takes a [`Command`], the
//! [`QueueConfig`] and `now`, and returns [`Effect`]s — offers to send, offers closed, queue position
//! updates, calls ended, operator state changes and metric events. It owns no socket, thread or clock, so
//! tests drive whole scenarios with a fake clock in milliseconds ([`Time`]).
//!
//! A [`Store`] applies commands atomically to a tenant's state. Two stores share the core and therefore
//! the behaviour: [`MemoryStore`] for one process (the embedded default) and [`RedisStore`] for several
//! nodes sharing one Redis, with compare-and-commit Lua scripts under the tenant's hash tag.
//!
//! The server talks to a [`Queue`], which has one async method per protocol action, delivers the
//! effects of [`Queue::subscribe`] to the connections it holds, feeds the returned batches to
//! [`QueueMetrics::observe`], and calls [`Queue::tick`] and [`Queue::heartbeat`] on a timer.
//!
//! **Architecture invariant:** the queue knows nothing about the wire protocol, HTTP or media. It deals in
//! calls, operators and time only.

pub mod core;
pub mod effect;
pub mod error;
pub mod estimate;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod redis_conn;
pub mod redis_shared;
pub mod redis_store;
pub mod shared;
pub mod snapshot;
pub mod store;
mod stream_fanout;
pub mod windows;

pub use crate::core::{Command, TenantState, MISSED_OFFERS_REASON};
pub use crate::effect::{
    Applied, CallRecord, Effect, EndReason, MetricEvent, OfferOutcome, RequeueReason,
};
pub use crate::error::Error;
pub use crate::memory::MemoryStore;
pub use crate::metrics::QueueMetrics;
pub use crate::model::{
    waiting_score, Call, CallId, CallLog, CallState, KioskId, Language, NewCall, NodeId, Operator,
    OperatorId, OperatorLogin, OperatorState, Presence, QueueConfig, Service, Tenant, Time,
    TransferTarget, WrapupPolicy,
};
pub use crate::redis_shared::RedisShared;
pub use crate::redis_store::RedisStore;
pub use crate::shared::{AnyShared, BusReceiver, MemoryShared, Shared};
pub use crate::snapshot::{CallSummary, OperatorSnapshot, ServiceSnapshot, Snapshot, WindowStats};
pub use crate::store::{AnyStore, EffectReceiver, Queue, Store};
