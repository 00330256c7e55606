//! The in-call state in the shared store ([`queue::Shared`]: in memory for one process, on the
//! queue's Redis for several), so every node sees and changes the same state.
//!
//! Records (namespace / key → JSON), each with a time to live:
//!
//! | namespace | key | value | lives |
//! |---|---|---|---|
//! | `incall-call` | call id | [`CallRecord`]: pending step, nonce, PEC challenge, identity, scan and document ids | [`CALL_TTL`], deleted when the call ends |
//! | `incall-scan` | `<call>\|<scan>` | [`Scan`] (base64 image) | [`SCAN_TTL`], deleted when the call ends |
//! | `incall-pec` | fiscal code | [`PecSends`] | [`PEC_WINDOW`] |
//! | `incall-job` | job id | [`Job`] | [`JOB_TTL`]; [`PRINTED_KEEP`] once printed |
//! | `incall-send` | job id | the node that sends it now | [`RESEND`]: one sending per job per interval |
//! | `incall-presence` | `<kiosk>\|<capability>\|<node>` | `1` | [`PRESENCE_TTL`], refreshed while the socket lives |
//!
//! A change is read → core rule → compare-and-set ([`queue::Shared::swap`]), again on a lost race,
//! so two nodes changing one record never lose a change and a one-shot step (a nonce, a PEC
//! attempt, a print state) is taken by one node only. The rules are the core's; this module only
//! moves records. Ids in keys are the queue's validated ids and the server's own ids, which never
//! contain `|`.
//!
//! The times in the records are [`queue::Time`]s (wall-clock milliseconds), read by every node
//! against its own clock, as the queue's records are. The nodes of the version before this one
//! wrote seconds under other names: this version still reads those records, but they cannot read
//! its records, so a rolling upgrade across the change may drop the in-call state of calls in
//! progress on the older nodes (their steps are refused as `unavailable` until the call ends).
//! Records live at most hours, except print jobs, which stay readable (no migration is needed).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use protocol::incall::PrintState;
use protocol::Capability;
use queue::{AnyShared, Shared, Tenant, Time};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::core::{CallRecord, Job, PecSends, Refused, PEC_WINDOW};

/// Namespace of the per-call records.
pub const NS_CALL: &str = "incall-call";
/// Namespace of the scans.
pub const NS_SCAN: &str = "incall-scan";
/// Namespace of the PEC sends per fiscal code.
pub const NS_PEC: &str = "incall-pec";
/// Namespace of the print jobs.
pub const NS_JOB: &str = "incall-job";
/// Namespace of the per-interval sending claims of print jobs.
pub const NS_SEND: &str = "incall-send";
/// Namespace of the kiosks' device sessions per node.
pub const NS_PRESENCE: &str = "incall-presence";

/// A call record outlives any call; it is deleted when the call ends.
pub const CALL_TTL: Duration = Duration::from_secs(12 * 3600);
/// A scan outlives any identification; it is deleted when the call ends.
pub const SCAN_TTL: Duration = Duration::from_secs(2 * 3600);
/// A job the kiosk has not finished is kept this long.
pub const JOB_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// A printed job is kept this long (the kiosk may still read its PDF).
pub const PRINTED_KEEP: Duration = Duration::from_secs(24 * 3600);
/// One sending of an unacknowledged job per this interval, by one node.
pub const RESEND: Duration = Duration::from_secs(5);
/// A device session's presence lasts this long unless refreshed.
pub const PRESENCE_TTL: Duration = Duration::from_secs(15);
/// Read → change → swap rounds before giving up (`unavailable`).
const ROUNDS: usize = 64;

/// Why a store operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A rule of the core refused it.
    Refused(Refused),
    /// The shared store did not answer, or kept losing the race (`unavailable`).
    Unavailable(String),
}

impl From<Refused> for StoreError {
    fn from(r: Refused) -> Self {
        StoreError::Refused(r)
    }
}

impl From<queue::Error> for StoreError {
    fn from(e: queue::Error) -> Self {
        StoreError::Unavailable(format!("the shared store failed: {e}"))
    }
}

/// An uploaded scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// `image/png` or `image/jpeg`.
    pub content_type: String,
    /// The image.
    pub bytes: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct ScanText {
    content_type: String,
    data: String,
}

fn scan_key(call: &str, scan_id: &str) -> String {
    format!("{call}|{scan_id}")
}

fn presence_key(kiosk: &str, cap: Capability) -> String {
    format!("{kiosk}|{}|", cap_name(cap))
}

fn cap_name(cap: Capability) -> &'static str {
    match cap {
        Capability::Printer => "printer",
        Capability::CardReader => "card_reader",
        Capability::Scanner => "scanner",
    }
}

fn job_ttl(job: &Job) -> Duration {
    if job.state == Some(PrintState::Printed) {
        PRINTED_KEEP
    } else {
        JOB_TTL
    }
}

fn decode<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Unavailable(format!("unreadable {what} record: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// The in-call records of one tenant. Cheap to clone.
#[derive(Clone, Debug)]
pub struct InCallStore {
    shared: AnyShared,
    tenant: Tenant,
}

impl InCallStore {
    /// The store on these shared records.
    pub fn new(shared: AnyShared, tenant: Tenant) -> Self {
        InCallStore { shared, tenant }
    }

    /// The shared records and the tenant under them, for records kept outside the calls (the
    /// marche da bollo used).
    pub fn shared(&self) -> (&AnyShared, &Tenant) {
        (&self.shared, &self.tenant)
    }

    async fn get<T: DeserializeOwned>(&self, ns: &str, key: &str) -> Result<Option<T>, StoreError> {
        match self.shared.get(&self.tenant, ns, key, Time::now()).await? {
            Some(text) => decode(ns, &text).map(Some),
            None => Ok(None),
        }
    }

    /// Read → `change` → compare-and-set, again while another node wins the race. `change` sees
    /// the live value (or `None`) and may set it; a refusal writes nothing. Nothing is written
    /// when the value stays as it was, or stays absent.
    async fn update<T, R>(
        &self,
        ns: &str,
        key: &str,
        ttl: impl Fn(&T) -> Duration,
        mut change: impl FnMut(&mut Option<T>) -> Result<R, Refused>,
    ) -> Result<R, StoreError>
    where
        T: Serialize + DeserializeOwned,
    {
        for _ in 0..ROUNDS {
            let now = Time::now();
            let old = self.shared.get(&self.tenant, ns, key, now).await?;
            let mut value: Option<T> = match &old {
                Some(text) => Some(decode(ns, text)?),
                None => None,
            };
            let out = change(&mut value)?;
            let Some(value) = value else {
                return Ok(out);
            };
            let text = encode(&value)?;
            if old.as_deref() == Some(text.as_str()) {
                return Ok(out);
            }
            let swapped = self
                .shared
                .swap(
                    &self.tenant,
                    ns,
                    key,
                    old.as_deref(),
                    &text,
                    ttl(&value),
                    now,
                )
                .await?;
            if swapped {
                return Ok(out);
            }
            tokio::task::yield_now().await;
        }
        Err(StoreError::Unavailable(format!(
            "{ns} {key} kept changing under this node; retry"
        )))
    }

    /// The call's record.
    pub async fn call(&self, call: &str) -> Result<Option<CallRecord>, StoreError> {
        self.get(NS_CALL, call).await
    }

    /// Applies a core rule to the call's record (a fresh one for `kiosk` when there is none).
    pub async fn change_call<R>(
        &self,
        call: &str,
        kiosk: &str,
        mut change: impl FnMut(&mut CallRecord) -> Result<R, Refused>,
    ) -> Result<R, StoreError> {
        self.update(
            NS_CALL,
            call,
            |_| CALL_TTL,
            |slot: &mut Option<CallRecord>| {
                let mut record = slot.take().unwrap_or_else(|| CallRecord::new(kiosk));
                let out = change(&mut record);
                *slot = Some(record);
                out
            },
        )
        .await
    }

    /// The call ended: its record and scans go. Returns how many scans were deleted. Every node
    /// may do it; the second time finds nothing.
    pub async fn end_call(&self, call: &str) -> Result<usize, StoreError> {
        let Some(record) = self.call(call).await? else {
            return Ok(0);
        };
        let now = Time::now();
        self.shared.delete(&self.tenant, NS_CALL, call, now).await?;
        let mut deleted = 0;
        for scan_id in &record.scans {
            if self
                .shared
                .delete(&self.tenant, NS_SCAN, &scan_key(call, scan_id), now)
                .await?
            {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Stores an uploaded scan for the call: the image first, then its id in the call's record
    /// (the core checks a document identification is pending and the bound on scans). A refused
    /// scan is deleted again.
    pub async fn add_scan(
        &self,
        call: &str,
        kiosk: &str,
        scan_id: &str,
        scan: &Scan,
    ) -> Result<(), StoreError> {
        let text = encode(&ScanText {
            content_type: scan.content_type.clone(),
            data: B64.encode(&scan.bytes),
        })?;
        let key = scan_key(call, scan_id);
        self.shared
            .put(&self.tenant, NS_SCAN, &key, &text, SCAN_TTL, Time::now())
            .await?;
        let added = self.change_call(call, kiosk, |c| c.add_scan(scan_id)).await;
        if added.is_err() {
            let _ = self
                .shared
                .delete(&self.tenant, NS_SCAN, &key, Time::now())
                .await;
        }
        added
    }

    /// A scan of the call (only one its record lists: none once the call ended).
    pub async fn scan(&self, call: &str, scan_id: &str) -> Result<Option<Scan>, StoreError> {
        let listed = self.call(call).await?.is_some_and(|c| c.has_scan(scan_id));
        if !listed {
            return Ok(None);
        }
        let Some(text) = self
            .get::<ScanText>(NS_SCAN, &scan_key(call, scan_id))
            .await?
        else {
            return Ok(None);
        };
        let bytes = B64
            .decode(text.data)
            .map_err(|e| StoreError::Unavailable(format!("unreadable scan record: {e}")))?;
        Ok(Some(Scan {
            content_type: text.content_type,
            bytes,
        }))
    }

    /// The PEC codes sent for a fiscal code in the last hour.
    pub async fn pec_sends(&self, fiscal_code: &str) -> Result<PecSends, StoreError> {
        Ok(self.get(NS_PEC, fiscal_code).await?.unwrap_or_default())
    }

    /// A PEC code was sent for the fiscal code at `now`.
    pub async fn pec_sent(&self, fiscal_code: &str, now: Time) -> Result<(), StoreError> {
        self.update(
            NS_PEC,
            fiscal_code,
            |_| PEC_WINDOW,
            |slot: &mut Option<PecSends>| {
                slot.get_or_insert_with(PecSends::default).record(now);
                Ok(())
            },
        )
        .await
    }

    /// A new print job; `false` if its id is taken (it is never overwritten).
    pub async fn create_job(&self, job: &Job) -> Result<bool, StoreError> {
        let text = encode(job)?;
        Ok(self
            .shared
            .put_new(
                &self.tenant,
                NS_JOB,
                &job.job_id,
                &text,
                job_ttl(job),
                Time::now(),
            )
            .await?)
    }

    /// A print job.
    pub async fn job(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        self.get(NS_JOB, job_id).await
    }

    /// Every print job (finished ones until they expire).
    pub async fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        let all = self.shared.list(&self.tenant, NS_JOB, Time::now()).await?;
        Ok(all
            .into_iter()
            .filter_map(|(key, text)| match serde_json::from_str::<Job>(&text) {
                Ok(job) => Some(job),
                Err(e) => {
                    tracing::warn!(job = %key, error = %e, "unreadable print job record skipped");
                    None
                }
            })
            .collect())
    }

    /// `print.status` from `kiosk`: the job after the change when its state moved on (exactly
    /// one node gets it for each change), `None` for a repeated or backwards state.
    pub async fn report_job(
        &self,
        kiosk: &str,
        job_id: &str,
        state: PrintState,
        detail: Option<String>,
        now: Time,
    ) -> Result<Option<Job>, StoreError> {
        self.update(NS_JOB, job_id, job_ttl, |slot: &mut Option<Job>| {
            let job = slot
                .as_mut()
                .ok_or_else(|| Refused::NotFound(format!("no print job {job_id}")))?;
            Ok(job
                .report(kiosk, state, detail.clone(), now)?
                .then(|| job.clone()))
        })
        .await
    }

    /// Forgets a print job.
    pub async fn delete_job(&self, job_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .shared
            .delete(&self.tenant, NS_JOB, job_id, Time::now())
            .await?)
    }

    /// Claims the sending of a job for the next [`RESEND`]: `true` for one node only.
    pub async fn claim_send(&self, job_id: &str, node: &str) -> Result<bool, StoreError> {
        Ok(self
            .shared
            .put_new(&self.tenant, NS_SEND, job_id, node, RESEND, Time::now())
            .await?)
    }

    /// `node` holds a live session of `kiosk` that declared `cap` (refresh within
    /// [`PRESENCE_TTL`]).
    pub async fn present(
        &self,
        kiosk: &str,
        cap: Capability,
        node: &str,
    ) -> Result<(), StoreError> {
        let key = format!("{}{node}", presence_key(kiosk, cap));
        Ok(self
            .shared
            .put(
                &self.tenant,
                NS_PRESENCE,
                &key,
                "1",
                PRESENCE_TTL,
                Time::now(),
            )
            .await?)
    }

    /// `node` no longer holds such a session.
    pub async fn absent(&self, kiosk: &str, cap: Capability, node: &str) -> Result<(), StoreError> {
        let key = format!("{}{node}", presence_key(kiosk, cap));
        self.shared
            .delete(&self.tenant, NS_PRESENCE, &key, Time::now())
            .await?;
        Ok(())
    }

    /// The nodes holding a live session of `kiosk` that declared `cap`.
    pub async fn device_nodes(
        &self,
        kiosk: &str,
        cap: Capability,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = presence_key(kiosk, cap);
        let all = self
            .shared
            .list(&self.tenant, NS_PRESENCE, Time::now())
            .await?;
        Ok(all
            .into_iter()
            .filter_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_owned))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    //! One suite, run on the in-memory records and on a real `redis-server`.

    use super::*;
    use crate::calls::incall::core::{CodeOutcome, PecLimits, MAX_SCANS_PER_CALL};
    use protocol::incall::IdentityMethod;
    use queue::{MemoryShared, QueueConfig, RedisShared, RedisStore};

    fn tenant() -> Tenant {
        Tenant::new(format!("t{}", uuid::Uuid::new_v4().simple())).unwrap()
    }

    fn job(id: &str, kiosk: &str) -> Job {
        Job {
            job_id: id.into(),
            call_id: "c1".into(),
            kiosk: kiosk.into(),
            operator: "op1".into(),
            document_id: "d1".into(),
            copies: 1,
            state: None,
            detail: None,
            sent_at: Time(0),
            printed_at: None,
        }
    }

    /// Two handles on the same shared records, as two nodes have.
    async fn suite(a: InCallStore, b: InCallStore) {
        let limits = PecLimits::default();
        let now = Time::now();

        // A nonce is spent once, whichever node the card answer reaches.
        a.change_call("c1", "k1", |c| {
            c.request(IdentityMethod::Cie, Some("n1".into()));
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(
            b.call("c1").await.unwrap().unwrap().waiting_device(),
            Some((IdentityMethod::Cie, "n1".into()))
        );
        let (x, y) = tokio::join!(
            a.change_call("c1", "k1", |c| c.take_nonce()),
            b.change_call("c1", "k1", |c| c.take_nonce()),
        );
        assert_eq!(
            [x.is_ok(), y.is_ok()].iter().filter(|ok| **ok).count(),
            1,
            "{x:?} {y:?}"
        );
        assert!(matches!(
            x.err().or(y.err()),
            Some(StoreError::Refused(Refused::NotPending(_)))
        ));

        // PEC attempts count down across nodes, none lost.
        a.change_call("c1", "k1", |c| {
            c.request(IdentityMethod::Pec, None);
            c.pec_may_send(&limits, now)?;
            c.pec_sent("RSSMRA80A01H501U", "123456", &limits, now);
            Ok(())
        })
        .await
        .unwrap();
        a.pec_sent("RSSMRA80A01H501U", now).await.unwrap();
        b.pec_sent("RSSMRA80A01H501U", now).await.unwrap();
        assert_eq!(b.pec_sends("RSSMRA80A01H501U").await.unwrap().sent.len(), 2);
        let (x, y) = tokio::join!(
            a.change_call("c1", "k1", |c| c.pec_code("000000", now)),
            b.change_call("c1", "k1", |c| c.pec_code("000001", now)),
        );
        let mut left = [x.unwrap(), y.unwrap()];
        left.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(left, [CodeOutcome::Wrong(1), CodeOutcome::Wrong(2)]);
        assert_eq!(
            a.change_call("c1", "k1", |c| c.pec_code("123456", now))
                .await
                .unwrap(),
            CodeOutcome::Verified("RSSMRA80A01H501U".into())
        );

        // Scans: bounded, seen from the other node, gone with the call.
        assert!(matches!(
            a.add_scan("c1", "k1", "s0", &png()).await,
            Err(StoreError::Refused(Refused::NotPending(_)))
        ));
        assert_eq!(
            b.scan("c1", "s0").await.unwrap(),
            None,
            "a refused scan is deleted"
        );
        a.change_call("c1", "k1", |c| {
            c.request(IdentityMethod::Document, None);
            Ok(())
        })
        .await
        .unwrap();
        for i in 0..MAX_SCANS_PER_CALL {
            let node = if i % 2 == 0 { &a } else { &b };
            node.add_scan("c1", "k1", &format!("s{i}"), &png())
                .await
                .unwrap();
        }
        assert!(a.add_scan("c1", "k1", "extra", &png()).await.is_err());
        assert_eq!(b.scan("c1", "s1").await.unwrap(), Some(png()));
        assert_eq!(b.scan("c2", "s1").await.unwrap(), None, "another call's");
        b.change_call("c1", "k1", |c| c.scan_submitted("s3"))
            .await
            .unwrap();
        assert_eq!(
            a.call("c1").await.unwrap().unwrap().judged_scan(),
            Ok("s3".into())
        );
        assert_eq!(a.end_call("c1").await.unwrap(), MAX_SCANS_PER_CALL);
        assert_eq!(b.end_call("c1").await.unwrap(), 0, "once");
        assert_eq!(b.scan("c1", "s1").await.unwrap(), None);
        assert_eq!(a.call("c1").await.unwrap(), None);

        // Print jobs: created once, acknowledged on either node, never backwards.
        assert!(a.create_job(&job("j1", "k1")).await.unwrap());
        assert!(
            !b.create_job(&job("j1", "k2")).await.unwrap(),
            "never replaced"
        );
        assert!(matches!(
            b.report_job("k2", "j1", PrintState::Received, None, now)
                .await,
            Err(StoreError::Refused(Refused::Forbidden(_)))
        ));
        assert!(matches!(
            b.report_job("k1", "nope", PrintState::Received, None, now)
                .await,
            Err(StoreError::Refused(Refused::NotFound(_)))
        ));
        let (x, y) = tokio::join!(
            a.report_job("k1", "j1", PrintState::Received, None, now),
            b.report_job("k1", "j1", PrintState::Received, None, now),
        );
        assert_eq!(
            [x.unwrap().is_some(), y.unwrap().is_some()]
                .iter()
                .filter(|c| **c)
                .count(),
            1,
            "one node reports the change"
        );
        let printed = b
            .report_job("k1", "j1", PrintState::Printed, None, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(printed.printed_at, Some(now));
        assert_eq!(
            a.report_job("k1", "j1", PrintState::Printing, None, now)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            a.job("j1").await.unwrap().unwrap().state,
            Some(PrintState::Printed)
        );
        assert!(a.create_job(&job("j2", "k1")).await.unwrap());
        let ids: Vec<String> = b
            .jobs()
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.job_id)
            .collect();
        assert_eq!(ids, ["j1", "j2"]);
        assert!(b.delete_job("j1").await.unwrap());

        // One node sends a job per interval.
        let (x, y) = tokio::join!(a.claim_send("j2", "A"), b.claim_send("j2", "B"));
        assert!(x.unwrap() ^ y.unwrap());

        // Device presence across nodes.
        assert!(a
            .device_nodes("k1", Capability::Printer)
            .await
            .unwrap()
            .is_empty());
        a.present("k1", Capability::Printer, "A").await.unwrap();
        b.present("k1", Capability::Printer, "B").await.unwrap();
        b.present("k1:x", Capability::Printer, "B").await.unwrap();
        b.present("k1", Capability::Scanner, "B").await.unwrap();
        assert_eq!(
            b.device_nodes("k1", Capability::Printer).await.unwrap(),
            ["A", "B"]
        );
        a.absent("k1", Capability::Printer, "A").await.unwrap();
        assert_eq!(
            a.device_nodes("k1", Capability::Printer).await.unwrap(),
            ["B"]
        );
        assert!(a
            .device_nodes("k1", Capability::CardReader)
            .await
            .unwrap()
            .is_empty());
    }

    fn png() -> Scan {
        Scan {
            content_type: "image/png".into(),
            bytes: vec![0x89, b'P', b'N', b'G', 0, 1, 2, 255],
        }
    }

    #[tokio::test]
    async fn on_memory() {
        let shared = AnyShared::Memory(MemoryShared::new());
        let t = tenant();
        suite(
            InCallStore::new(shared.clone(), t.clone()),
            InCallStore::new(shared, t),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_redis() {
        let redis = testkit::RedisServer::start().await;
        let node = || async {
            let store = RedisStore::connect(&redis.url(), QueueConfig::default())
                .await
                .unwrap();
            AnyShared::Redis(RedisShared::new(store))
        };
        let t = tenant();
        suite(
            InCallStore::new(node().await, t.clone()),
            InCallStore::new(node().await, t),
        )
        .await;
    }
}
