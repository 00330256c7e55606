//! The in-call actions: identification (`identity.*`), `certificate.issue` and printing
//! (`print.*`), plus the scan upload and document download over HTTP.
//!
//! The state of each call (pending step, nonce, PEC challenge, identity, scans, documents) and
//! every print job are records in the shared store, so every node sees them and any node may
//! take a step of any call. The modules:
//!
//! - [`core`]: the rules, on plain records, with no I/O (takes `now` as a [`queue::Time`], like
//!   the queue core, since its records are shared by the nodes); also the ownership check "is
//!   this principal a party of this call in conversation" the other drivers reuse;
//! - [`store`]: the records in [`queue::Shared`] (read → rule → compare-and-set);
//! - [`identity`], [`scans`], [`certificate`], [`print`]: the drivers of each request;
//! - [`presence`]: which kiosk devices are connected to which node;
//! - `common`: the ownership check against the queue, events, audit, refusal codes.
//!
//! The drivers verify cards, mail PEC codes, issue certificates (in `spawn_blocking`), keep PDFs
//! under the data directory (shared by the nodes), write every attempt to the audit log and
//! deliver the events (through the hub, which reaches every node).

pub mod certificate;
mod common;
pub mod core;
pub mod identity;
pub mod presence;
pub mod print;
pub mod scans;
pub mod store;
mod wall;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use certificates::identity::CardVerifier;
use protocol::{Capability, Role};
use queue::Effect;

use crate::accounts::Principal;
use crate::mail::Mailer;
use crate::shutdown::Phase;
use crate::state::AppState;

pub use self::core::{Job, PecLimits};
pub use certificate::{document_for, document_meta, issue, preview, DocumentMeta};
pub use identity::{card, card_error, confirm, pec_code, pec_start, reject, request, scan};
pub use print::{print, print_status};
pub use scans::{decode_scan, get_scan, upload_scan, MAX_SCAN_BYTES, MAX_SCAN_SIDE};
pub use store::{InCallStore, Scan};

/// The in-call dependencies of a node: the shared store, the card CAs, the mailer, the folders.
pub struct InCall {
    store: InCallStore,
    node: String,
    limits: PecLimits,
    verifier: Option<CardVerifier>,
    mailer: Option<Mailer>,
    documents: PathBuf,
    /// Used marche da bollo (`crate::marche`).
    marche: PathBuf,
    jobs: PathBuf,
    presence: presence::Presence,
    /// Jobs read from `print-jobs` at start, put back into the store by [`run_resends`].
    to_restore: Mutex<Vec<Job>>,
}

impl std::fmt::Debug for InCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InCall")
            .field("node", &self.node)
            .field("card_cas", &self.verifier.as_ref().map(CardVerifier::len))
            .field("mail", &self.mailer.is_some())
            .field("documents", &self.documents)
            .finish_non_exhaustive()
    }
}

impl InCall {
    /// Builds a node's in-call side on `store`: cards are accepted only with a CA bundle, PEC
    /// codes only with a mailer. Issued PDFs live in `data_dir/documents`; print jobs also in
    /// `data_dir/print-jobs`, one file each, read here so a restart loses no job.
    pub fn new(
        store: InCallStore,
        node: String,
        limits: PecLimits,
        verifier: Option<CardVerifier>,
        mailer: Option<Mailer>,
        data_dir: &std::path::Path,
    ) -> std::io::Result<Self> {
        let jobs = data_dir.join("print-jobs");
        std::fs::create_dir_all(&jobs)?;
        let to_restore = print::read_job_files(&jobs)?;
        Ok(InCall {
            store,
            node,
            limits,
            verifier,
            mailer,
            documents: data_dir.join("documents"),
            marche: crate::marche::dir(data_dir),
            jobs,
            presence: presence::Presence::default(),
            to_restore: Mutex::new(to_restore),
        })
    }

    /// The shared in-call records.
    pub fn store(&self) -> &InCallStore {
        &self.store
    }

    /// How many nodes hold a session of `kiosk` that declared `device` (0 when the store does not
    /// answer).
    pub async fn device_nodes(&self, kiosk: &str, device: Capability) -> usize {
        self.store
            .device_nodes(kiosk, device)
            .await
            .map(|n| n.len())
            .unwrap_or(0)
    }
}

/// A socket opened on this node: a kiosk's device presence is published, and it gets what waits
/// for it in the shared records (card or scan requests for the devices it declares, unacknowledged
/// print jobs for a printer); an operator's console learns again who is identified in its calls.
pub fn on_socket(
    state: &AppState,
    principal: &Principal,
    socket: u64,
    capabilities: &[Capability],
) {
    let (state, principal, capabilities) =
        (state.clone(), principal.clone(), capabilities.to_vec());
    match principal.role {
        Role::Operator => {
            tokio::spawn(async move {
                identity::resend_identities(&state, &principal.id, socket).await;
            });
        }
        Role::Kiosk => {
            state.incall.presence.add(&principal, socket, &capabilities);
            tokio::spawn(async move {
                presence::refresh(&state).await;
                identity::resend_requests(&state, &principal.id, socket, &capabilities).await;
                if capabilities.is_empty() || capabilities.contains(&Capability::Printer) {
                    print::resend_jobs(&state, &principal.id, socket).await;
                }
            });
        }
        Role::Supervisor => {}
    }
}

/// Applies a committed queue effect (every node sees each): an ended call drops its
/// identification and scans from the shared store.
pub fn on_effect(state: &AppState, effect: &Effect) {
    if let Effect::CallEnded { call_id, .. } = effect {
        let (state, call) = (state.clone(), call_id.to_string());
        tokio::spawn(async move {
            match state.incall.store.end_call(&call).await {
                Ok(0) => {}
                Ok(scans) => tracing::info!(%call, scans, "call ended: scans deleted"),
                Err(e) => {
                    tracing::warn!(%call, error = ?e, "call ended: in-call state not deleted")
                }
            }
        });
    }
}

/// The node's in-call timer until the server stops: puts back the jobs of the files, keeps the
/// device presence fresh, re-sends unacknowledged print jobs every [`store::RESEND`] (one node per job
/// and interval), prunes old job files, and verifies the audit chain at start and every 10 minutes
/// (for `sportello_audit_chain_ok`).
pub async fn run_resends(state: AppState) {
    let restore = std::mem::take(
        &mut *state
            .incall
            .to_restore
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    print::restore_jobs(&state, restore).await;
    let mut phase = state.shutdown.subscribe();
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = beat.tick() => {}
            _ = phase.wait_for(|p| *p == Phase::Stopping) => break,
        }
        presence::refresh(&state).await;
        print::resend_due(&state).await;
        if ticks % 600 == 0 {
            print::prune_files(&state).await;
        }
        if ticks % certificate::AUDIT_VERIFY_EVERY == 0 {
            // In its own task: a long log must not hold up the re-sends.
            tokio::spawn(certificate::verify_audit(state.clone()));
        }
        ticks += 1;
    }
    presence::clear(&state).await;
}
