//! Which nodes a principal has live sessions on, in the shared records, so that the lost-client
//! rules apply only when the **last** of them is gone.
//!
//! A kiosk's screen may be connected to node A while its agent is on node B, and an operator may
//! keep two consoles on two nodes. Each node writes a record `"<role>|<id>|<node>"` (namespace
//! [`NS`]) for every kiosk and operator with a session here, at `auth` and then every
//! [`REFRESH`], with a time to live of [`TTL`]; a node that dies stops refreshing and its records
//! expire. When a principal's last session on a node passes its grace period, that node first looks
//! for a live record of the same principal on another node. If there is one, it hands the
//! principal's calls (a kiosk) or registration (an operator) to that node instead of applying the
//! lost-client rules; otherwise the rules apply as before.

use std::collections::BTreeSet;
use std::time::Duration;

use protocol::Role;
use queue::{NodeId, Shared, Time};

use crate::accounts::Principal;
use crate::shutdown::Phase;
use crate::state::AppState;

/// The shared-records namespace of live sessions.
pub const NS: &str = "live-sessions";
/// How often a node renews its records.
pub const REFRESH: Duration = Duration::from_secs(5);
/// How long a record lives without renewal.
pub const TTL: Duration = Duration::from_secs(15);

fn prefix(principal: &Principal) -> String {
    format!("{}|{}|", principal.role.as_str(), principal.id)
}

fn counts(principal: &Principal) -> bool {
    matches!(principal.role, Role::Kiosk | Role::Operator)
}

/// Records that `principal` has a live session on this node.
pub async fn mark(state: &AppState, principal: &Principal) {
    if !counts(principal) {
        return;
    }
    let r = &state.routing;
    let key = format!("{}{}", prefix(principal), r.node);
    if let Err(e) = r
        .shared
        .put(&r.tenant, NS, &key, "1", TTL, Time::now())
        .await
    {
        tracing::debug!(error = %e, "cannot record a live session");
    }
}

/// Forgets this node's record of `principal` (its last session here is gone).
pub async fn unmark(state: &AppState, principal: &Principal) {
    let r = &state.routing;
    let key = format!("{}{}", prefix(principal), r.node);
    let _ = r.shared.delete(&r.tenant, NS, &key, Time::now()).await;
}

/// Another node where `principal` has a live session, if any.
pub async fn elsewhere(
    state: &AppState,
    principal: &Principal,
) -> Result<Option<NodeId>, queue::Error> {
    let r = &state.routing;
    let prefix = prefix(principal);
    let me = r.node.as_str();
    let records = r.shared.list(&r.tenant, NS, Time::now()).await?;
    Ok(records
        .iter()
        .filter_map(|(k, _)| k.strip_prefix(&prefix))
        .find(|node| *node != me)
        .and_then(|node| NodeId::new(node).ok()))
}

/// Renews this node's records until the server stops.
pub async fn run(state: AppState) {
    let mut phase = state.shutdown.subscribe();
    loop {
        let principals: BTreeSet<(String, String)> = state
            .events
            .sockets()
            .into_iter()
            .filter(|(_, p)| counts(p))
            .map(|(_, p)| (p.role.as_str().to_owned(), p.id))
            .collect();
        let r = &state.routing;
        for (role, id) in principals {
            let key = format!("{role}|{id}|{}", r.node);
            if let Err(e) = r
                .shared
                .put(&r.tenant, NS, &key, "1", TTL, Time::now())
                .await
            {
                tracing::debug!(error = %e, "cannot renew a live session");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = phase.wait_for(|p| *p == Phase::Stopping) => return,
        }
    }
}
