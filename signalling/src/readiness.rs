//! Readiness: whether this process can serve now. It checks the shared store (Redis, when
//! configured) with a short timeout and reports the reason when something is not usable.

use std::time::Duration;

use serde::Serialize;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What it found.
    pub detail: String,
}

/// The store behind the queue, as far as readiness is concerned.
#[derive(Debug, Clone)]
pub enum StoreProbe {
    /// The embedded in-memory store: always usable.
    Memory,
    /// A Redis server.
    Redis(redis::Client),
}

impl StoreProbe {
    /// Builds the probe for an optional Redis URL.
    pub fn new(redis_url: Option<&str>) -> anyhow::Result<Self> {
        match redis_url {
            None => Ok(StoreProbe::Memory),
            Some(url) => Ok(StoreProbe::Redis(redis::Client::open(url)?)),
        }
    }

    /// Checks the store.
    pub async fn check(&self) -> Check {
        match self {
            StoreProbe::Memory => Check {
                name: "store",
                ok: true,
                detail: "in-memory".into(),
            },
            StoreProbe::Redis(client) => {
                let ping = async {
                    let mut conn = client.get_multiplexed_async_connection().await?;
                    redis::cmd("PING").query_async::<String>(&mut conn).await
                };
                match tokio::time::timeout(Duration::from_secs(1), ping).await {
                    Ok(Ok(_)) => Check {
                        name: "store",
                        ok: true,
                        detail: "redis reachable".into(),
                    },
                    Ok(Err(e)) => Check {
                        name: "store",
                        ok: false,
                        detail: format!("redis unreachable: {e}"),
                    },
                    Err(_) => Check {
                        name: "store",
                        ok: false,
                        detail: "redis did not answer PING within 1 s".into(),
                    },
                }
            }
        }
    }
}
