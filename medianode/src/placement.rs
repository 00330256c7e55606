//! Where a new call's media goes: the least loaded live media node with room. A pure function of
//! the advertised [`NodeInfo`]s and the time, tested exactly.

use std::cmp::Ordering;

use crate::api::NodeInfo;

/// The node a new call's media should be placed on, or `None` when no node can take it.
///
/// A node is a candidate when it is live (`seen_ms + ttl_ms > now_ms`), not draining, and below
/// its capacity (`calls < capacity`). Among candidates the least loaded wins: the lowest share of
/// its capacity in use (`calls / capacity`, compared exactly), then the lowest `busy_ratio`, then
/// the smallest `id`, so every signalling node makes the same choice from the same list.
pub fn choose(nodes: &[NodeInfo], now_ms: u64, ttl_ms: u64) -> Option<&NodeInfo> {
    nodes
        .iter()
        .filter(|n| n.is_live(now_ms, ttl_ms) && n.has_room())
        .min_by(|a, b| compare(a, b))
}

/// The placement order: less loaded first.
fn compare(a: &NodeInfo, b: &NodeInfo) -> Ordering {
    // a.calls / a.capacity against b.calls / b.capacity without division (capacity > 0 here, as
    // calls < capacity).
    let share = (u128::from(a.calls) * u128::from(b.capacity))
        .cmp(&(u128::from(b.calls) * u128::from(a.capacity)));
    share
        .then_with(|| busy(a).total_cmp(&busy(b)))
        .then_with(|| a.id.cmp(&b.id))
}

/// The busy ratio, with a value that is not a number counted as fully busy.
fn busy(n: &NodeInfo) -> f64 {
    if n.busy_ratio.is_nan() {
        1.0
    } else {
        n.busy_ratio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;
    const TTL: u64 = 10_000;

    fn node(id: &str, calls: u64, capacity: u64, busy_ratio: f64) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            internal_url: format!("http://{id}:8081"),
            media_udp: None,
            media_tcp: None,
            capacity,
            calls,
            connections: calls.saturating_mul(2),
            packets_per_s: 0.0,
            busy_ratio,
            draining: false,
            leaving: false,
            version: "0.1.0".into(),
            seen_ms: NOW,
            instance: String::new(),
        }
    }

    fn chosen(nodes: &[NodeInfo]) -> Option<&str> {
        choose(nodes, NOW, TTL).map(|n| n.id.as_str())
    }

    #[test]
    fn no_nodes_no_choice() {
        assert_eq!(chosen(&[]), None);
    }

    #[test]
    fn the_lowest_share_of_capacity_wins() {
        let nodes = [
            node("a", 5, 10, 0.0),  // 50 %
            node("b", 9, 100, 0.9), // 9 %
            node("c", 1, 4, 0.0),   // 25 %
        ];
        assert_eq!(chosen(&nodes), Some("b"));
        // Shares compare exactly: 1/3 against 333/1000.
        let nodes = [node("a", 1, 3, 0.0), node("b", 333, 1000, 0.5)];
        assert_eq!(chosen(&nodes), Some("b"));
        // Large figures do not overflow.
        let nodes = [
            node("a", u64::MAX - 1, u64::MAX, 0.0),
            node("b", u64::MAX - 2, u64::MAX, 0.0),
        ];
        assert_eq!(chosen(&nodes), Some("b"));
    }

    #[test]
    fn equal_shares_go_to_the_less_busy_node_then_the_smaller_id() {
        let nodes = [node("a", 2, 10, 0.5), node("b", 1, 5, 0.2)];
        assert_eq!(chosen(&nodes), Some("b"));
        let nodes = [
            node("z", 0, 10, 0.1),
            node("m", 0, 10, 0.1),
            node("x", 0, 5, 0.1),
        ];
        assert_eq!(chosen(&nodes), Some("m"));
        // The order of the list does not matter.
        let mut reversed = nodes.to_vec();
        reversed.reverse();
        assert_eq!(chosen(&reversed), Some("m"));
        // A busy ratio that is not a number counts as fully busy.
        let nodes = [node("a", 0, 10, f64::NAN), node("b", 0, 10, 0.99)];
        assert_eq!(chosen(&nodes), Some("b"));
    }

    #[test]
    fn full_draining_and_dead_nodes_are_never_chosen() {
        let mut full = node("full", 10, 10, 0.0);
        let mut over = node("over", 11, 10, 0.0);
        let zero = node("zero", 0, 0, 0.0);
        let mut draining = node("draining", 0, 10, 0.0);
        draining.draining = true;
        let mut dead = node("dead", 0, 10, 0.0);
        dead.seen_ms = NOW - TTL; // seen_ms + ttl == now: expired
        let mut loaded = node("loaded", 9, 10, 0.99);
        loaded.seen_ms = NOW - TTL + 1; // still live
        let nodes = [
            full.clone(),
            over.clone(),
            zero,
            draining,
            dead,
            loaded.clone(),
        ];
        assert_eq!(chosen(&nodes), Some("loaded"));
        loaded.seen_ms = NOW - TTL;
        full.calls = 9;
        over.capacity = 12;
        let nodes = [full, over, loaded];
        // full: 9/10; over: 11/12 — full is less loaded.
        assert_eq!(chosen(&nodes), Some("full"));
        assert_eq!(chosen(&nodes[1..2]), Some("over"));
        assert_eq!(chosen(&nodes[2..]), None);
    }

    #[test]
    fn a_heartbeat_from_the_future_is_live() {
        let mut n = node("a", 0, 1, 0.0);
        n.seen_ms = NOW + 5_000;
        assert_eq!(chosen(&[n]), Some("a"));
    }
}
