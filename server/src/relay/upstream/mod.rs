//! The relay's upstream task: while `phakhi serve --upstream` serves its phones, this tokio task
//! syncs with HQ as a client whenever HQ answers, through the core's client driver
//! (`phakhi_core::client`) as a phone does: the same sans-io sync engine
//! (`phakhi_core::sync::Initiator`) and the same sealed transport to HQ's `/v1/sync`.
//!
//! One round is a series of small exchanges, each committed on both sides before the next:
//!
//! 1. every document of the relay's scope with changes HQ has not confirmed goes up in an
//!    exchange of its own (the request names only that document, so HQ answers for it alone);
//!    the shared heads are saved after each, so a cut link resumes at the document it was on and
//!    never re-sends the ones already finished;
//! 2. a closing exchange names every document (HQ offers those the relay lacks, such as the
//!    directory), pushes the tips HQ has not acknowledged (in batches), asks for HQ's replies
//!    for the relay's provinces, sends the registrations of the phones the relay enrolled, and
//!    receives the revocations of its provinces. It repeats while anything is left.
//!
//! The network part runs on a blocking thread without the writer lock, so phones are served
//! while HQ is slow; snapshots are taken and results committed through the one writer
//! ([`AppState::with_core`]). A tip is pruned here only after HQ acknowledged it, and its id
//! is kept so it is never taken again. While HQ is unreachable the task waits with exponential
//! backoff and full jitter ([`super::backoff`]); a phone's new data brings the next round
//! forward while HQ answers.
//!
//! 3. the attachment chunks the phones uploaded, after everything else (`chunks.rs`): HQ is
//!    asked which it holds, the rest go a few per exchange, and each is pruned here once HQ's
//!    answer lists it. A round spends at most a minute on them; the next one follows at once.
//!
//! Each exchange is snapshot and network (`talk.rs`), then commit (`apply.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use automerge::AutoCommit;
use phakhi_core::attach::Pace;
use phakhi_core::client::{self, CarryError, ClientError, Conversation, Driver};
use phakhi_core::mailbox::{EnvelopeKind, Scope};
use phakhi_core::policy::UpstreamScope;
use phakhi_core::protocol::ErrorCode;
use phakhi_core::protocol::relay::UpstreamResponse;
use phakhi_core::seal::PublicKey;
use phakhi_core::sync::{DocName, Initiator, PeerState};
use phakhi_core::transport::HttpTransport;
use rand::SeedableRng;
use tokio::sync::watch;

mod apply;
mod chunks;
mod talk;

pub use chunks::PHASE_BUDGET;

use super::backoff::Backoff;
use super::status::SetAsideItem;
use crate::config::UpstreamConfig;
use crate::db::devices::{self, Device, Role};
use crate::db::{self, DbError, documents};
use crate::error::AppError;
use crate::scope;
use crate::state::{AppState, Core};

/// First wait after a failure.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// How long a round waits after a phone's nudge, so a burst of phones makes one round.
const NUDGE_DELAY: Duration = Duration::from_millis(500);
/// How long one HTTP exchange with HQ may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(120);
/// Tips pushed in one exchange.
const PUSH_BATCH: usize = 64;
/// Registrations sent in one exchange.
pub(crate) const REGISTRATION_BATCH: usize = 64;
/// Closing exchanges in one round at most (each moves a batch).
const MAX_CLOSING_EXCHANGES: usize = 32;

/// Why a round stopped. The relay keeps serving its phones whatever happens here.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error(
        "cannot reach HQ at {url} ({detail}); phones are still served here and their data waits; \
         retrying with backoff — check the link to HQ"
    )]
    Unreachable { url: String, detail: String },
    #[error(
        "HQ refused this relay ({code}): {message}; if HQ revoked it, ask HQ for a new relay \
         invite and join from a new data folder"
    )]
    Refused { code: String, message: String },
    #[error(
        "HQ and this relay run releases of Phakhi too far apart to sync (upgrade_required): \
         {message} Phones are still served here and everything they send waits here until then"
    )]
    UpgradeRequired { message: String },
    #[error("HQ's answer could not be used ({0}); retrying with backoff")]
    Protocol(String),
    #[error("the relay's storage failed ({0}); see the log above, retrying with backoff")]
    Storage(String),
}

impl UpstreamError {
    /// A short name of the failure, so a repeated failure is logged once.
    fn kind(&self) -> String {
        match self {
            UpstreamError::Unreachable { .. } => "unreachable".into(),
            UpstreamError::Refused { code, .. } => format!("refused {code}"),
            UpstreamError::UpgradeRequired { .. } => "upgrade required".into(),
            UpstreamError::Protocol(_) => "protocol".into(),
            UpstreamError::Storage(_) => "storage".into(),
        }
    }
}

impl UpstreamError {
    /// What a refusal from HQ means: `upgrade_required` gets its own words (HQ's message says
    /// which side to upgrade), every other code is a refusal of this relay.
    fn refused(code: String, message: String) -> Self {
        if ErrorCode::parse(&code) == Some(ErrorCode::UpgradeRequired) {
            UpstreamError::UpgradeRequired { message }
        } else {
            UpstreamError::Refused { code, message }
        }
    }
}

impl From<AppError> for UpstreamError {
    fn from(error: AppError) -> Self {
        UpstreamError::Storage(error.to_string())
    }
}

impl From<DbError> for UpstreamError {
    fn from(error: DbError) -> Self {
        UpstreamError::Storage(error.to_string())
    }
}

/// Where and who HQ is, from the join record.
#[derive(Debug, Clone)]
struct Link {
    url: String,
    hq_key: PublicKey,
    /// The relay as a device of its own scope (for the document rules of [`crate::scope`]).
    me: Device,
}

impl Link {
    /// What the relay exchanges with HQ: the core's rules for a member and its upstream.
    fn accept(&self) -> UpstreamScope<'_, String> {
        UpstreamScope(&self.me.provinces)
    }

    fn mailbox_scope(&self) -> Scope {
        Scope::provinces(self.me.provinces.iter().cloned())
    }

    /// A driver of the core's client speaking as this relay to HQ's pinned key, at most
    /// `rounds` requests at a time.
    fn driver<C: Conversation>(&self, state: &AppState, conversation: C, rounds: u32) -> Driver<C> {
        Driver::new(state.keys().static_pair(), self.hq_key, conversation).with_max_rounds(rounds)
    }

    /// Drives `driver` to its end over HTTP to HQ, on a blocking thread. The driver keeps its
    /// figures (the sealed bytes both ways) whatever the outcome; `None`: it had nothing to say.
    fn drive<C>(&self, driver: &mut Driver<C>) -> Result<Option<C::Outcome>, ClientError>
    where
        C: Conversation<Ctx = (), Error = ClientError>,
    {
        let mut carrier = HttpTransport::new(&self.url, EXCHANGE_TIMEOUT)
            .map_err(|error| ClientError::Carry(CarryError::from(error)))?;
        client::drive(
            driver,
            &mut (),
            &mut carrier,
            &mut || client::at_unix(crate::routes::now_unix()),
            &mut rand_core::OsRng,
        )
    }
}

/// Runs upstream rounds until `shutdown` turns true. Returns at once (with an error in the log)
/// when the data folder never joined HQ.
pub async fn run(state: AppState, config: UpstreamConfig, mut shutdown: watch::Receiver<bool>) {
    let Some(joined) = state.joined().cloned() else {
        tracing::error!("no upstream sync: run `phakhi relay join INVITE` on this data folder");
        return;
    };
    let link = Link {
        url: config.url.clone().unwrap_or_else(|| joined.hq_url.clone()),
        hq_key: joined.hq_key,
        me: Device {
            row: 0,
            device_id: joined.device_id.clone(),
            public_key: *state.keys().static_public().as_bytes(),
            role: Role::Relay,
            provinces: joined.provinces.clone(),
            enrolled_at: joined.joined_at,
            last_sync: None,
            revoked_at: None,
        },
    };
    let progress = {
        let reader = state.clone();
        reader
            .with_reader(db::upstream::progress)
            .await
            .unwrap_or_default()
    };
    state.update_upstream(|status| {
        status.hq_url = link.url.clone();
        status.device_id = joined.device_id.clone();
        status.last_success = progress.last_success;
        status.last_error = progress.last_error.clone();
    });
    tracing::info!(hq = %link.url, relay = %joined.device_id, "upstream sync with HQ started");
    let mut backoff = Backoff::new(BACKOFF_BASE, config.backoff_cap);
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut failing: Option<String> = None;
    let mut pace = Pace::default();
    let mut started = 0;
    loop {
        state.update_upstream(|status| {
            status.rounds_started += 1;
            started = status.rounds_started;
        });
        // What phones brought before this round goes up in it; a failed round leaves it waiting.
        state.take_work_waiting();
        let result = round(&state, &link, &mut pace).await;
        if result.is_err() {
            state.nudge_work_waiting();
        }
        let now = i64::try_from(crate::routes::now_unix()).unwrap_or(i64::MAX);
        let error_text = result.as_ref().err().map(ToString::to_string);
        let recorded = {
            let error_text = error_text.clone();
            state
                .with_core(move |core| {
                    Ok(db::upstream::record_outcome(
                        &core.conn,
                        now,
                        error_text.as_deref(),
                    )?)
                })
                .await
        };
        if let Err(error) = recorded {
            tracing::warn!(%error, "cannot record the upstream outcome");
        }
        let wait = match &result {
            Ok(more) => {
                if failing.take().is_some() {
                    tracing::info!(hq = %link.url, "HQ answers again; upstream sync caught up");
                }
                backoff.reset();
                state.update_upstream(|status| {
                    status.last_success = Some(now);
                    status.last_attempt = Some(now);
                    status.last_error = None;
                    status.consecutive_failures = 0;
                    status.rounds += 1;
                    status.last_success_round = started;
                });
                if *more {
                    // Chunks are left after a round's share: go on at once.
                    Duration::ZERO
                } else {
                    config.interval
                }
            }
            Err(error) => {
                let kind = error.kind();
                if failing.as_deref() != Some(kind.as_str()) {
                    tracing::warn!("upstream sync: {error}");
                } else {
                    tracing::debug!("upstream sync still failing: {error}");
                }
                failing = Some(kind);
                state.update_upstream(|status| {
                    status.last_attempt = Some(now);
                    status.last_error = error_text.clone();
                    status.consecutive_failures = status.consecutive_failures.saturating_add(1);
                });
                backoff.next_delay(&mut rng)
            }
        };
        let healthy = failing.is_none();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.upstream_nudged(), if healthy => {
                tokio::time::sleep(NUDGE_DELAY).await;
            }
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// One round: every document with unconfirmed changes, then the closing exchanges, then the
/// attachment chunks. `Ok(true)`: chunks are left for another round right away.
async fn round(state: &AppState, link: &Link, pace: &mut Pace) -> Result<bool, UpstreamError> {
    let planner = link.clone();
    let (to_push, waiting) = state
        .with_core(move |core| Ok((plan(core, &planner)?, Waiting::read(core)?)))
        .await?;
    // What waits for HQ is known even while HQ does not answer.
    state.update_upstream(|status| {
        waiting.record(status);
        status.chunk_batch = pace.batch();
    });
    let planned = to_push.len();
    for (done, name) in to_push.into_iter().enumerate() {
        let result = exchange(state, link, Step::Document(name.clone())).await;
        if let Err(UpstreamError::Refused { code, message }) = &result
            && refuses_the_document_alone(code)
        {
            // HQ refused this document's exchange (too big, too many changes): the rest of
            // the round goes on without it, and it is offered again next round.
            tracing::warn!(doc = %name, %code, %message, "HQ refused a document from this relay");
            let now = i64::try_from(crate::routes::now_unix()).unwrap_or(i64::MAX);
            let item = SetAsideItem {
                kind: "document",
                id: name.clone(),
                province: None,
                code: code.clone(),
                reason: format!(
                    "HQ refused this document's exchange ({message}); everything else keeps \
                     syncing, and it is offered again each round"
                ),
                day: now - now.rem_euclid(86_400),
            };
            state.update_upstream(|status| {
                status.documents_refused.retain(|known| known.id != item.id);
                status.documents_refused.push(item);
            });
            continue;
        }
        if let Err(error) = result {
            if done > 0 {
                // The documents finished so far stay finished: the next round skips them.
                state.update_upstream(|status| status.rounds_cut_after_progress += 1);
                tracing::debug!(done, planned, "upstream round cut after finished documents");
            }
            return Err(error);
        }
    }
    // HQ keeps every tip, so its quota for this relay can fill up; tips then wait here while
    // documents, replies, registrations and revocations keep flowing.
    let mut push_tips = true;
    for _ in 0..MAX_CLOSING_EXCHANGES {
        match exchange(state, link, Step::Closing { push_tips }).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(UpstreamError::Refused { code, .. })
                if push_tips
                    && ErrorCode::parse(&code) == Some(ErrorCode::MailboxQuotaExceeded) =>
            {
                push_tips = false;
            }
            Err(error) => return Err(error),
        }
    }
    // Attachment chunks last, whether or not the tips could go.
    let more = chunks::forward(state, link, pace).await;
    if push_tips {
        more
    } else {
        Err(UpstreamError::Refused {
            code: ErrorCode::MailboxQuotaExceeded.as_str().into(),
            message: "HQ's mailbox quota for this relay is full, so tips wait here (everything \
                      else still syncs); at HQ raise mailbox_envelopes_per_device and \
                      mailbox_bytes_per_device under [limits] in the config"
                .into(),
        })
    }
}

/// Refusals of a document's own exchange that say nothing about the link or the relay: that
/// document waits, the round goes on.
fn refuses_the_document_alone(code: &str) -> bool {
    matches!(
        ErrorCode::parse(code),
        Some(
            ErrorCode::TooManyChanges
                | ErrorCode::TooManyDocuments
                | ErrorCode::BodyTooLarge
                | ErrorCode::OutOfScope
                | ErrorCode::DecodeLimit
        )
    )
}

/// What one exchange carries.
#[derive(Debug, Clone)]
enum Step {
    /// One document's changes, alone.
    Document(String),
    /// Every document, the mailbox (tips pushed only if `push_tips`), registrations and
    /// revocations.
    Closing { push_tips: bool },
}

/// What waits here for HQ, and what HQ refused on its own, read from the store.
#[derive(Debug, Clone)]
pub(crate) struct Waiting {
    tips: usize,
    registrations: i64,
    revocations: i64,
    chunks: i64,
    set_aside: Vec<SetAsideItem>,
}

impl Waiting {
    pub(crate) fn read(core: &Core) -> Result<Waiting, DbError> {
        let mut set_aside: Vec<SetAsideItem> = db::upstream::set_aside_tips(&core.conn)?
            .into_iter()
            .map(|tip| SetAsideItem {
                kind: "tip",
                id: hex::encode(tip.id),
                province: Some(tip.province),
                code: tip.code,
                reason: format!(
                    "{}; kept here apart and not sent again (nothing else waits for it)",
                    tip.reason
                ),
                day: tip.day,
            })
            .collect();
        for (device, note) in devices::refused_upstream(&core.conn)? {
            set_aside.push(SetAsideItem {
                kind: "registration",
                id: device.device_id,
                province: None,
                code: "registration_refused".into(),
                reason: format!(
                    "HQ refused to register this device ({note}); it syncs here only, and HQ \
                     can still revoke it with `phakhi admin revoke`"
                ),
                day: 0,
            });
        }
        Ok(Waiting {
            tips: unheld_tips(&core.mailbox, &core.conn)?,
            registrations: devices::count_pending_upstream(&core.conn)?,
            revocations: devices::count_revocations_for_upstream(&core.conn)?,
            chunks: db::chunks::count_unacked(&core.conn)?,
            set_aside,
        })
    }

    pub(crate) fn record(self, status: &mut super::status::UpstreamStatus) {
        status.pending_envelopes = self.tips;
        status.pending_registrations = self.registrations;
        status.pending_revocations = self.revocations;
        status.chunks_waiting = self.chunks;
        status.set_aside = self.set_aside;
    }
}

/// Tips held here that wait for HQ's acknowledgement (acknowledged ones are pruned at once, or,
/// while HQ is backed up, once its next backup holds them: those wait for nothing from here).
pub(super) fn unheld_tips(
    mailbox: &phakhi_core::mailbox::Mailbox,
    conn: &rusqlite::Connection,
) -> Result<usize, DbError> {
    let held: std::collections::BTreeSet<_> = db::backup::held_upstream(conn)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    Ok(mailbox
        .items_since(0)
        .filter(|stored| stored.item.kind == EnvelopeKind::Tip && !held.contains(&stored.id))
        .count())
}

/// The documents of the relay's scope it may write that hold changes HQ has not confirmed.
fn plan(core: &mut Core, link: &Link) -> Result<Vec<String>, DbError> {
    let state = peer_state(&core.conn)?;
    let mut out = Vec::new();
    for name in documents::names(&core.conn)? {
        if scope::access(&link.me, &name) != scope::Access::ReadWrite {
            continue;
        }
        let Ok(wire) = DocName::parse(&name) else {
            continue;
        };
        let Ok(Some((mut doc, bytes))) =
            crate::exchange::load_doc(&mut core.cache, &core.conn, &name)
        else {
            continue;
        };
        // HQ holds every change of a head it shared with us (and all that head's ancestors):
        // only a head outside the shared ones means changes HQ has not confirmed.
        let shared = state.shared_heads(&wire);
        let unconfirmed = doc.get_heads().iter().any(|head| !shared.contains(head));
        core.cache.put(name.clone(), doc, bytes);
        if unconfirmed {
            out.push(name);
        }
    }
    Ok(out)
}

fn peer_state(conn: &rusqlite::Connection) -> Result<PeerState, DbError> {
    let progress = db::upstream::progress(conn)?;
    Ok(match progress.sync_state {
        Some(bytes) => PeerState::decode(&bytes).unwrap_or_else(|error| {
            tracing::warn!(%error, "stored sync state with HQ is damaged; starting afresh");
            PeerState::new()
        }),
        None => PeerState::new(),
    })
}

/// What an exchange starts from, taken under the writer lock.
pub(super) struct Snapshot {
    docs: BTreeMap<DocName, AutoCommit>,
    state: PeerState,
    mailbox: Option<Vec<u8>>,
    section: Vec<u8>,
    pushed: usize,
}

/// What came back from HQ.
pub(super) struct Talked {
    docs: BTreeMap<DocName, AutoCommit>,
    initiator: Initiator,
    mailbox: Option<Vec<u8>>,
    answer: UpstreamResponse,
    registrations_sent: usize,
}

/// One exchange with HQ: snapshot, talk, commit. Returns whether a closing exchange left work
/// for another.
async fn exchange(state: &AppState, link: &Link, step: Step) -> Result<bool, UpstreamError> {
    let planner = link.clone();
    let closing = matches!(step, Step::Closing { .. });
    let snapshot = state
        .with_core(move |core| talk::snapshot(core, &planner, &step).map_err(AppError::from))
        .await?;
    let pushed = snapshot.pushed;
    let talker = state.clone();
    let talk_link = link.clone();
    let talked = tokio::task::spawn_blocking(move || talk::talk(&talker, &talk_link, snapshot))
        .await
        .map_err(|error| UpstreamError::Storage(format!("upstream task failed: {error}")))?;
    state.update_upstream(|status| {
        status.exchanges += 1;
        status.envelopes_pushed += pushed as u64;
        if talked.is_err() {
            status.exchanges_failed += 1;
        }
    });
    let talked = talked?;
    let committer = state.clone();
    let commit_link = link.clone();
    let more = state
        .with_core(move |core| apply::commit(&committer, core, &commit_link, talked))
        .await?;
    Ok(closing && more)
}
