//! ICE servers (extension): the `ice_servers` of the `auth` reply and the `ice.servers` event,
//! in the browser's `RTCIceServer` / `iceTransportPolicy` form, with time-limited TURN credentials
//! (`docs/protocol.md`, "ICE servers and TURN").

use serde::{Deserialize, Serialize};

/// One ICE server, in the form of the browser's `RTCIceServer` (extension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URLs that share these credentials.
    pub urls: Vec<String>,
    /// The TURN user name: `"{expiry_unix_s}:{principal_id}"` (TURN REST API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The TURN password: base64 of HMAC-SHA1(shared secret, username).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The ICE transport policy of the browser's `RTCConfiguration.iceTransportPolicy` (extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IceTransportPolicy {
    /// Every candidate: host, server-reflexive and relayed.
    #[default]
    All,
    /// Only relayed candidates, through TURN (direct media is known to be blocked).
    Relay,
}

impl IceTransportPolicy {
    /// The wire name (`all` or `relay`).
    pub fn as_str(self) -> &'static str {
        match self {
            IceTransportPolicy::All => "all",
            IceTransportPolicy::Relay => "relay",
        }
    }
}

/// `ice.servers` (extension, every role): fresh TURN credentials for a long session, sent every
/// half of `ice_servers_ttl_s` after `auth` to sessions whose `auth` reply carried `ice_servers`.
/// A client uses them for the peer connections it creates from then on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServers {
    /// The ICE servers, as in the `auth` reply.
    pub ice_servers: Vec<IceServer>,
    /// The ICE transport policy; absent means `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ice_transport_policy: Option<IceTransportPolicy>,
    /// How long these credentials stay valid, in seconds.
    pub ice_servers_ttl_s: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_server_frame, AuthOk, Event, Role, ServerFrame, ServerMessage};
    use serde_json::Value;

    #[test]
    fn ice_servers_serialize_in_rtc_ice_server_form() {
        let server = IceServer {
            urls: vec!["turn:turn.example.it:3478?transport=udp".into()],
            username: Some("1700000000:k1".into()),
            credential: Some("c2VjcmV0".into()),
        };
        let ok = ServerFrame::ok_with(
            "1",
            &AuthOk {
                session_id: "s".into(),
                role: Role::Kiosk,
                principal_id: "k1".into(),
                heartbeat_s: 15,
                resumed: false,
                ice_servers: Some(vec![server.clone()]),
                ice_transport_policy: Some(IceTransportPolicy::Relay),
                ice_servers_ttl_s: Some(600),
            },
        );
        let v: Value = serde_json::from_str(&ok.to_json()).unwrap();
        assert_eq!(
            v["ice_servers"],
            serde_json::json!([{"urls":["turn:turn.example.it:3478?transport=udp"],
                "username":"1700000000:k1","credential":"c2VjcmV0"}])
        );
        assert_eq!(v["ice_transport_policy"], "relay");
        assert_eq!(v["ice_servers_ttl_s"], 600);
        let back: AuthOk = serde_json::from_value(v).unwrap();
        assert_eq!(back.ice_servers, Some(vec![server.clone()]));
        // A STUN server has no credentials, and they are omitted.
        let stun = IceServer {
            urls: vec!["stun:stun.example.it".into()],
            username: None,
            credential: None,
        };
        assert_eq!(
            serde_json::to_value(&stun).unwrap(),
            serde_json::json!({"urls":["stun:stun.example.it"]})
        );
        let event = Event::IceServers(IceServers {
            ice_servers: vec![server],
            ice_transport_policy: None,
            ice_servers_ttl_s: 600,
        });
        let text = ServerFrame::Event(event.clone()).to_json();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "ice.servers");
        assert!(v.get("ice_transport_policy").is_none());
        assert_eq!(event.kind(), "ice.servers");
        assert!(matches!(
            parse_server_frame(&text),
            Ok(ServerMessage::Frame(ServerFrame::Event(e))) if e == event
        ));
    }
}
