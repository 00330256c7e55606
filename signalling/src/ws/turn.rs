//! Time-limited TURN credentials (the TURN REST API of coturn's `use-auth-secret`): the user name
//! is `"{expiry_unix_s}:{principal_id}"` and the password is base64(HMAC-SHA1(secret, user name)).
//! [`credentials`] is pure (it takes `now`); [`TurnIssuer`] pairs it with the `[turn]` settings.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use protocol::{IceServer, IceServers, IceTransportPolicy};
use sha1::Sha1;

use crate::config::turn::{parse_secret, TurnSecret};
use crate::config::TurnSettings;

/// One set of TURN credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `"{expiry_unix_s}:{principal_id}"`.
    pub username: String,
    /// base64(HMAC-SHA1(secret, username)).
    pub credential: String,
    /// When they stop being valid, in Unix seconds.
    pub expires_at: u64,
}

/// The credentials for `principal_id` at `now_unix_s`, valid for `ttl_s` seconds.
pub fn credentials(secret: &[u8], principal_id: &str, now_unix_s: u64, ttl_s: u64) -> Credentials {
    let expires_at = now_unix_s.saturating_add(ttl_s);
    let username = format!("{expires_at}:{principal_id}");
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Credentials {
        username,
        credential,
        expires_at,
    }
}

/// The `[turn]` settings with the secret read: issues the ICE servers of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnIssuer {
    urls: Vec<String>,
    secret: TurnSecret,
    ttl_s: u64,
    policy: IceTransportPolicy,
}

impl TurnIssuer {
    /// An issuer from the settings and the secret file's bytes.
    pub fn new(settings: &TurnSettings, secret_bytes: &[u8]) -> Result<TurnIssuer, String> {
        let path = settings.secret_file.clone().unwrap_or_default();
        Ok(TurnIssuer {
            urls: settings.urls.clone(),
            secret: parse_secret(&path, secret_bytes)?,
            ttl_s: settings.ttl_s.max(1),
            policy: settings.policy,
        })
    }

    /// Reads the secret file (asynchronously) and builds the issuer; `None` without `[turn]`.
    /// A secret that cannot be read at run time is logged, and the session gets no ICE servers.
    pub async fn load(settings: Option<&TurnSettings>) -> Option<TurnIssuer> {
        let settings = settings?;
        let path = settings.secret_file.as_ref()?;
        let issuer = match tokio::fs::read(path).await {
            Ok(bytes) => TurnIssuer::new(settings, &bytes),
            Err(e) => Err(format!(
                "turn.secret_file: cannot read {}: {e}",
                path.display()
            )),
        };
        issuer
            .map_err(|e| tracing::error!(error = %e, "no TURN credentials for this session"))
            .ok()
    }

    /// How long credentials stay valid.
    pub fn ttl_s(&self) -> u64 {
        self.ttl_s
    }

    /// The ICE servers for `principal_id` at `now_unix_s`.
    pub fn ice_servers(&self, principal_id: &str, now_unix_s: u64) -> IceServers {
        let c = credentials(self.secret.as_bytes(), principal_id, now_unix_s, self.ttl_s);
        // STUN URLs need no credentials; they go in an entry of their own.
        let (stun, turn): (Vec<String>, Vec<String>) = self
            .urls
            .iter()
            .cloned()
            .partition(|u| u.starts_with("stun:"));
        let mut ice_servers = Vec::new();
        if !turn.is_empty() {
            ice_servers.push(IceServer {
                urls: turn,
                username: Some(c.username),
                credential: Some(c.credential),
            });
        }
        if !stun.is_empty() {
            ice_servers.push(IceServer {
                urls: stun,
                username: None,
                credential: None,
            });
        }
        IceServers {
            ice_servers,
            ice_transport_policy: (self.policy != IceTransportPolicy::All).then_some(self.policy),
            ice_servers_ttl_s: self.ttl_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_match_coturns_rest_api() {
        // Cross-checked with Python:
        // base64.b64encode(hmac.new(b"north-pole-secret", b"1700086400:kiosk-1", hashlib.sha1).digest())
        let c = credentials(b"north-pole-secret", "kiosk-1", 1_700_000_000, 86_400);
        assert_eq!(c.username, "1700086400:kiosk-1");
        assert_eq!(c.credential, "TAA7zPKgPkr/RQ/8chdEwl3Vh1I=");
        assert_eq!(c.expires_at, 1_700_086_400);
        // The example of docs/protocol.md.
        assert_eq!(
            credentials(b"example-secret", "municipio", 1_767_225_600, 86_400).credential,
            "gtZByhhIJEjxpBBYi0ViagilgOc="
        );
        // Another secret, another time: another credential.
        assert_ne!(
            credentials(b"other", "kiosk-1", 1_700_000_000, 86_400).credential,
            c.credential
        );
        assert_eq!(
            credentials(b"north-pole-secret", "kiosk-1", 1_700_000_001, 86_400).username,
            "1700086401:kiosk-1"
        );
    }

    #[test]
    fn the_issuer_gives_turn_urls_credentials_and_stun_urls_none() {
        let settings = TurnSettings {
            urls: vec![
                "turn:t.example.it:3478?transport=udp".into(),
                "stun:t.example.it:3478".into(),
                "turns:t.example.it:443?transport=tcp".into(),
            ],
            secret_file: Some("/etc/sportello/turn.secret".into()),
            ttl_s: 600,
            policy: IceTransportPolicy::Relay,
        };
        let issuer = TurnIssuer::new(&settings, b"north-pole-secret\n").unwrap();
        let servers = issuer.ice_servers("kiosk-1", 1_700_085_800);
        assert_eq!(
            servers.ice_transport_policy,
            Some(IceTransportPolicy::Relay)
        );
        assert_eq!(servers.ice_servers_ttl_s, 600);
        assert_eq!(servers.ice_servers.len(), 2);
        let turn = &servers.ice_servers[0];
        assert_eq!(
            turn.urls,
            [
                "turn:t.example.it:3478?transport=udp",
                "turns:t.example.it:443?transport=tcp"
            ]
        );
        assert_eq!(turn.username.as_deref(), Some("1700086400:kiosk-1"));
        assert_eq!(
            turn.credential.as_deref(),
            Some("TAA7zPKgPkr/RQ/8chdEwl3Vh1I=")
        );
        assert_eq!(servers.ice_servers[1].urls, ["stun:t.example.it:3478"]);
        assert_eq!(servers.ice_servers[1].username, None);
        // "all" is the default and is omitted.
        let all = TurnIssuer::new(
            &TurnSettings {
                policy: IceTransportPolicy::All,
                ..settings.clone()
            },
            b"x",
        )
        .unwrap();
        assert_eq!(all.ice_servers("k", 0).ice_transport_policy, None);
        assert!(TurnIssuer::new(&settings, b" \n").is_err());
    }
}
