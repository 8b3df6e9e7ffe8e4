//! The relay's upstream task: while `phakhi serve --upstream` serves its phones, this tokio task
//! syncs with HQ as a client whenever HQ answers, with the same sans-io sync engine a phone uses
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

use std::collections::BTreeMap;
use std::time::Duration;

use automerge::AutoCommit;
use phakhi_core::mailbox::{EnvelopeKind, Have, MailItem, MailboxMessage, Push, Scope};
use phakhi_core::protocol::relay::{self, Registration, UpstreamRequest, UpstreamResponse};
use phakhi_core::protocol::{decode_section, encode_section};
use phakhi_core::seal::{self, PublicKey};
use phakhi_core::sync::{self, DocName, Initiator, PeerState, PrefixScope, Progress};
use phakhi_core::transport::{HttpError, HttpTransport, Route};
use rand::SeedableRng;
use rusqlite::TransactionBehavior;
use tokio::sync::watch;

use super::backoff::Backoff;
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
const REGISTRATION_BATCH: usize = 64;
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
            UpstreamError::Protocol(_) => "protocol".into(),
            UpstreamError::Storage(_) => "storage".into(),
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
    fn accept(&self) -> PrefixScope {
        let mut patterns = vec!["directory".to_owned()];
        patterns.extend(
            self.me
                .provinces
                .iter()
                .map(|code| format!("province/{code}")),
        );
        PrefixScope {
            read: patterns.clone(),
            write: patterns,
        }
    }

    fn mailbox_scope(&self) -> Scope {
        Scope::provinces(self.me.provinces.iter().cloned())
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
    loop {
        let result = round(&state, &link).await;
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
            Ok(()) => {
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
                });
                config.interval
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

/// One round: every document with unconfirmed changes, then the closing exchanges.
async fn round(state: &AppState, link: &Link) -> Result<(), UpstreamError> {
    let planner = link.clone();
    let (to_push, pending_tips, pending_registrations) = state
        .with_core(move |core| {
            let to_push = plan(core, &planner)?;
            let pending_registrations = devices::count_pending_upstream(&core.conn)?;
            Ok((to_push, pending_tips(core), pending_registrations))
        })
        .await?;
    // What waits for HQ is known even while HQ does not answer.
    state.update_upstream(|status| {
        status.pending_envelopes = pending_tips;
        status.pending_registrations = pending_registrations;
    });
    let planned = to_push.len();
    for (done, name) in to_push.into_iter().enumerate() {
        if let Err(error) = exchange(state, link, Step::Document(name)).await {
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
            Err(UpstreamError::Refused { code, .. }) if push_tips && code == QUOTA_REFUSAL => {
                push_tips = false;
            }
            Err(error) => return Err(error),
        }
    }
    if push_tips {
        Ok(())
    } else {
        Err(UpstreamError::Refused {
            code: QUOTA_REFUSAL.into(),
            message: "HQ's mailbox quota for this relay is full, so tips wait here (everything \
                      else still syncs); at HQ raise mailbox_envelopes_per_device and \
                      mailbox_bytes_per_device under [limits] in the config"
                .into(),
        })
    }
}

/// HQ's error code when a push would pass the relay's mailbox quota there.
const QUOTA_REFUSAL: &str = "mailbox_quota_exceeded";

/// What one exchange carries.
#[derive(Debug, Clone)]
enum Step {
    /// One document's changes, alone.
    Document(String),
    /// Every document, the mailbox (tips pushed only if `push_tips`), registrations and
    /// revocations.
    Closing { push_tips: bool },
}

/// Tips held here, all waiting for HQ's acknowledgement (acknowledged ones are pruned at once).
fn pending_tips(core: &Core) -> usize {
    core.mailbox
        .items_since(0)
        .filter(|stored| stored.item.kind == EnvelopeKind::Tip)
        .count()
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
struct Snapshot {
    docs: BTreeMap<DocName, AutoCommit>,
    state: PeerState,
    mailbox: Option<Vec<u8>>,
    section: Vec<u8>,
    pushed: usize,
}

/// What came back from HQ.
struct Talked {
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
        .with_core(move |core| snapshot(core, &planner, &step).map_err(AppError::from))
        .await?;
    let pushed = snapshot.pushed;
    let talker = state.clone();
    let talk_link = link.clone();
    let talked = tokio::task::spawn_blocking(move || talk(&talker, &talk_link, snapshot))
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
        .with_core(move |core| commit(&committer, core, &commit_link, talked))
        .await?;
    Ok(closing && more)
}

fn snapshot(core: &mut Core, link: &Link, step: &Step) -> Result<Snapshot, DbError> {
    let state = peer_state(&core.conn)?;
    let names: Vec<String> = match step {
        Step::Document(name) => vec![name.clone()],
        Step::Closing { .. } => documents::names(&core.conn)?
            .into_iter()
            .filter(|name| scope::readable(&link.me, name))
            .collect(),
    };
    let mut docs = BTreeMap::new();
    for name in names {
        let Ok(wire) = DocName::parse(&name) else {
            continue;
        };
        let loaded = crate::exchange::load_doc(&mut core.cache, &core.conn, &name)
            .map_err(|error| DbError::Corrupt(format!("document {name}: {error}")))?;
        if let Some((mut doc, bytes)) = loaded {
            // A copy of its own: phones keep syncing the cached one meanwhile.
            docs.insert(wire, doc.fork());
            core.cache.put(name, doc, bytes);
        }
    }
    let (mailbox, pushed, section) = match step {
        Step::Document(_) => (
            None,
            0,
            UpstreamRequest {
                named_only: true,
                registrations: Vec::new(),
            }
            .encode(),
        ),
        Step::Closing { push_tips } => {
            let progress = db::upstream::progress(&core.conn)?;
            let tips: Vec<MailItem> = core
                .mailbox
                .items_since(0)
                .filter(|stored| *push_tips && stored.item.kind == EnvelopeKind::Tip)
                .take(PUSH_BATCH)
                .map(|stored| stored.item.clone())
                .collect();
            let pushed = tips.len();
            let mut messages = vec![MailboxMessage::Have(Have {
                cursor: progress.mailbox_cursor,
                ids: Vec::new(),
                more: false,
            })];
            if !tips.is_empty() {
                messages.push(MailboxMessage::Push(Push { items: tips }));
            }
            let registrations = devices::pending_upstream(&core.conn, REGISTRATION_BATCH)?
                .into_iter()
                .map(|(device, invite)| Registration {
                    public_key: device.public_key,
                    role: device.role.as_str().to_owned(),
                    provinces: device.provinces,
                    enrolled_at: u64::try_from(device.enrolled_at).unwrap_or(0),
                    invite,
                })
                .collect();
            let section = UpstreamRequest {
                named_only: false,
                registrations,
            }
            .encode();
            (Some(encode_section(&messages)), pushed, section)
        }
    };
    Ok(Snapshot {
        docs,
        state,
        mailbox,
        section,
        pushed,
    })
}

/// The network part, on a blocking thread without the writer lock.
fn talk(state: &AppState, link: &Link, snapshot: Snapshot) -> Result<Talked, UpstreamError> {
    let transport = HttpTransport::new(&link.url, EXCHANGE_TIMEOUT).map_err(|error| {
        UpstreamError::Unreachable {
            url: link.url.clone(),
            detail: error.to_string(),
        }
    })?;
    let Snapshot {
        mut docs,
        state: peer,
        mut mailbox,
        section,
        ..
    } = snapshot;
    let mut initiator = Initiator::new(peer, sync::Limits::default());
    let accept = link.accept();
    let mut answer = UpstreamResponse::default();
    let mut registrations_sent = 0;
    for _ in 0..2 {
        let before: BTreeMap<String, usize> = initiator
            .stats()
            .docs
            .iter()
            .map(|(name, doc)| (name.clone(), doc.sent_bytes))
            .collect();
        let request = initiator
            .poll_request(&mut docs, mailbox.take())
            .map_err(|error| UpstreamError::Protocol(error.to_string()))?;
        let round_one = initiator.stats().rounds == 1;
        let (chunks, chunk_bytes) =
            initiator
                .stats()
                .docs
                .iter()
                .fold((0u64, 0u64), |(count, bytes), (name, doc)| {
                    let earlier = if round_one {
                        0
                    } else {
                        before.get(name).copied().unwrap_or(0)
                    };
                    let added = doc.sent_bytes.saturating_sub(earlier);
                    (count + u64::from(added > 0), bytes + added as u64)
                });
        if round_one {
            registrations_sent = UpstreamRequest::decode(&section)
                .map(|request| request.registrations.len())
                .unwrap_or(0);
        }
        let payload = relay::wrap(&request, &section);
        let now = crate::routes::now_unix();
        let (envelope, pending) = seal::seal_request(
            &mut rand_core::OsRng,
            state.keys().static_pair(),
            &link.hq_key,
            now,
            &payload,
        )
        .map_err(|error| UpstreamError::Protocol(format!("cannot seal the request: {error}")))?;
        state.update_upstream(|status| {
            status.doc_chunks_sent += chunks;
            status.doc_bytes_sent += chunk_bytes;
            status.bytes_sent += envelope.len() as u64;
        });
        let sealed = match transport.exchange(Route::Sync, &envelope) {
            Ok(sealed) => sealed,
            Err(error) => {
                initiator.handle_lost();
                return Err(match error {
                    HttpError::Refused { code, message, .. } if !error_is_retryable(&code) => {
                        UpstreamError::Refused { code, message }
                    }
                    other => UpstreamError::Unreachable {
                        url: link.url.clone(),
                        detail: other.to_string(),
                    },
                });
            }
        };
        state.update_upstream(|status| status.bytes_received += sealed.len() as u64);
        let opened = pending
            .open_response(&sealed)
            .map_err(|error| UpstreamError::Protocol(error.to_string()))?;
        let (sync_answer, section_answer) = match relay::unwrap(&opened) {
            Some(Ok(parts)) => parts,
            Some(Err(error)) => return Err(UpstreamError::Protocol(error.to_string())),
            None => {
                return Err(UpstreamError::Protocol(
                    "HQ answered without a relay section: is the upstream address HQ's?".into(),
                ));
            }
        };
        let part = UpstreamResponse::decode(section_answer)
            .map_err(|error| UpstreamError::Protocol(error.to_string()))?;
        answer.accepted.extend(part.accepted);
        answer.refused.extend(part.refused);
        answer.revoked = part.revoked;
        let progress = initiator
            .handle_response(sync_answer, &mut docs, &accept)
            .map_err(|error| UpstreamError::Protocol(error.to_string()))?;
        if progress == Progress::Done {
            let mailbox = initiator.take_mailbox();
            return Ok(Talked {
                docs,
                initiator,
                mailbox,
                answer,
                registrations_sent,
            });
        }
    }
    Err(UpstreamError::Protocol(
        "HQ asked for a third round; the exchange was abandoned".into(),
    ))
}

/// Refusals that clear by themselves (rate limit, busy, timeout, a server error).
fn error_is_retryable(code: &str) -> bool {
    matches!(
        code,
        "rate_limited" | "busy" | "timeout" | "internal" | "http_error" | "replayed" | "clock_skew"
    )
}

/// Stores what HQ sent, in one transaction: documents (merged into the current copies, which
/// phones may have changed meanwhile), the shared heads, the mailbox, registrations answered and
/// revocations. Returns whether a closing exchange should follow.
fn commit(
    state: &AppState,
    core: &mut Core,
    link: &Link,
    talked: Talked,
) -> Result<bool, AppError> {
    let mut merged = BTreeMap::new();
    let result = commit_inner(state, core, link, talked, &mut merged);
    match result {
        Ok(more) => {
            for (name, (doc, bytes)) in merged {
                core.cache.put(name, doc, bytes);
            }
            state.record_cache(&core.cache);
            Ok(more)
        }
        Err(error) => {
            drop(merged);
            if let Err(reload) = core.reload_mailbox() {
                tracing::error!(%reload, "cannot rebuild the mailbox from disk");
            }
            Err(error)
        }
    }
}

fn commit_inner(
    state: &AppState,
    core: &mut Core,
    link: &Link,
    talked: Talked,
    merged: &mut BTreeMap<String, (AutoCommit, usize)>,
) -> Result<bool, AppError> {
    let Core {
        conn,
        cache,
        mailbox,
        ..
    } = &mut *core;
    let now = i64::try_from(crate::routes::now_unix()).unwrap_or(i64::MAX);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(DbError::from)?;
    let Talked {
        docs,
        initiator,
        mailbox: mailbox_answer,
        answer,
        registrations_sent,
    } = talked;

    // Documents that gained changes from HQ.
    let stats = initiator.stats().clone();
    for (wire, mut theirs) in docs {
        let name = wire.as_str().to_owned();
        let gained = stats
            .docs
            .get(&name)
            .is_some_and(|doc| doc.changes_applied > 0);
        if !gained {
            continue;
        }
        let (mut doc, heads_before) = match crate::exchange::load_doc(cache, &tx, &name)? {
            Some((mut doc, _)) => {
                let heads = doc.get_heads();
                (doc, Some(heads))
            }
            None => (AutoCommit::new(), None),
        };
        doc.merge(&mut theirs)
            .map_err(|error| AppError::from(DbError::Corrupt(format!("{name}: {error}"))))?;
        let chunk = match &heads_before {
            Some(heads) => doc.save_after(heads),
            None => doc.save(),
        };
        let mut bytes = 0;
        if !chunk.is_empty() {
            let stored = documents::append(&tx, &name, &chunk, now)?;
            bytes = stored.byte_count;
            if stored.wants_compaction() {
                let full = doc.save();
                bytes = i64::try_from(full.len()).unwrap_or(i64::MAX);
                documents::replace(&tx, &name, &full, now)?;
            }
        }
        merged.insert(name, (doc, usize::try_from(bytes).unwrap_or(0)));
    }
    for (name, error) in stats.errors() {
        tracing::warn!(doc = %name, %error, "HQ refused a document from this relay");
    }
    // The shared heads, now that the documents they describe are stored.
    db::upstream::save_sync_state(&tx, &initiator.state().encode())?;

    // The mailbox: replies for the phones, acknowledgements that free tips.
    let mut more = false;
    let mut replies = 0u64;
    let mut pruned = 0u64;
    if let Some(section) = mailbox_answer {
        let messages = decode_section(&section)
            .map_err(|why| AppError::BadRequest(format!("HQ's mailbox section: {why}")))?;
        let scope = link.mailbox_scope();
        let next_before = mailbox.next_seq();
        let mut cursor = None;
        for message in messages {
            match message {
                MailboxMessage::Have(have) => {
                    cursor = Some(have.cursor);
                    more |= have.more;
                }
                MailboxMessage::Push(push) => {
                    let items: Vec<MailItem> = push
                        .items
                        .into_iter()
                        .filter(|item| {
                            item.kind == EnvelopeKind::Reply && scope.contains(&item.province)
                        })
                        .collect();
                    if items.is_empty() {
                        continue;
                    }
                    if let Err(error) = mailbox.receive_push(&link.hq_key, Push { items }) {
                        // Keep the cursor where it was: the replies are asked again next time.
                        tracing::error!(
                            %error,
                            "cannot store HQ's replies here: replies are kept for the phones and \
                             count against HQ's quota on this relay; raise \
                             mailbox_envelopes_per_device and mailbox_bytes_per_device under \
                             [limits] in this relay's config"
                        );
                        cursor = None;
                    }
                }
                MailboxMessage::Ack(ack) => {
                    mailbox.acknowledge(&ack);
                    for id in &ack.ids {
                        db::mailbox::record_ack(&tx, id, now)?;
                    }
                }
                MailboxMessage::Want(_) => {}
            }
        }
        for stored in mailbox.items_since(next_before.saturating_sub(1)) {
            db::mailbox::insert(&tx, stored, None, now)?;
            replies += 1;
        }
        for id in mailbox.prune_acknowledged() {
            db::mailbox::delete(&tx, &id)?;
            pruned += 1;
        }
        if let Some(cursor) = cursor {
            db::upstream::save_mailbox_cursor(&tx, cursor)?;
        }
    }

    // Registrations HQ answered, revocations it sent.
    for key in &answer.accepted {
        devices::mark_upstream(&tx, key, now, None)?;
    }
    for refusal in &answer.refused {
        tracing::error!(
            device = %devices::device_id(&refusal.public_key),
            reason = %refusal.reason,
            "HQ refused to register a device this relay enrolled; it keeps syncing here"
        );
        devices::mark_upstream(&tx, &refusal.public_key, now, Some(&refusal.reason))?;
    }
    let mut revoked = 0u64;
    for revocation in &answer.revoked {
        if let Some(device) = devices::by_key(&tx, &revocation.public_key)?
            && device.revoked_at.is_none()
        {
            let at = i64::try_from(revocation.revoked_at).unwrap_or(now);
            if devices::revoke(&tx, device.row, at)? {
                tracing::info!(device = %device.device_id, "revoked here, as HQ revoked it");
                revoked += 1;
            }
        }
    }
    let pending_tips = mailbox
        .items_since(0)
        .filter(|stored| stored.item.kind == EnvelopeKind::Tip)
        .count();
    let pending_registrations = devices::count_pending_upstream(&tx)?;
    tx.commit().map_err(DbError::from)?;

    let answered = answer.accepted.len() + answer.refused.len();
    state.update_upstream(|status| {
        status.replies_received += replies;
        status.envelopes_pruned += pruned;
        status.registrations_accepted += answer.accepted.len() as u64;
        status.registrations_refused += answer.refused.len() as u64;
        status.revocations_applied += revoked;
        status.pending_envelopes = pending_tips;
        status.pending_registrations = pending_registrations;
    });
    // Another closing exchange when HQ has more replies, or a batch of tips or registrations
    // went and more wait.
    more |= pruned > 0 && pending_tips > 0;
    more |= registrations_sent > 0 && answered > 0 && pending_registrations > 0;
    Ok(more)
}
