//! The work behind `/v1/enroll` and `/v1/sync`, run on the blocking side with the writer
//! connection: open the envelope, authorise, apply, persist, commit, then seal the answer.
//! Every step happens inside one SQLite transaction, so a refused request changes nothing and an
//! answered one is on disk. Documents and the mailbox are changed in memory only on the way to
//! that commit: when anything fails, the touched documents are dropped (the cache reloads them
//! from disk) and the mailbox is rebuilt from disk.

use std::collections::{BTreeMap, HashMap};

use automerge::{AutoCommit, ChangeHash, ReadDoc};
use phakhi_core::client::Route;
use phakhi_core::mailbox::Mailbox;
use phakhi_core::protocol::{self, EnrolRequest, EnrolResponse};
use phakhi_core::seal::{HqVerifyingKey, InviteError, SignedInvite};
use phakhi_core::sync::wire::Message;
use phakhi_core::sync::{self, DocName, WireError};
use rusqlite::{Connection, TransactionBehavior};

use crate::allowance::Allowance;
use crate::budget::DocumentBudget;
use crate::cache::DocCache;
use crate::db::devices::{self, Device, Role};
use crate::db::{self, DbError, documents};
use crate::enroll::{self, Admission};
use crate::error::{AppError, ErrorCode};
use crate::mailroom;
use crate::scope::{self, Access};
use crate::state::{AppState, Core};
use crate::transport::{self, Incoming};

fn to_i64(now: u64) -> i64 {
    i64::try_from(now).unwrap_or(i64::MAX)
}

/// Answers one sealed request on the calling thread at `now` (Unix seconds), as the server
/// answers it once admitted: opened, checked against the clock window and the replay guard,
/// its sender authorised and rate-checked, all in the writer's transaction. It is the entry for
/// a server carried in process (a simulation on a virtual clock, a tool); the HTTP routes admit
/// requests themselves ([`crate::routes::sealed_exchange`]) and do not use it. Enrolment, sync
/// and a bundle handed in late are answered; the admin and chunk routes only over HTTP.
pub fn answer_sealed(
    state: &AppState,
    route: Route,
    envelope: &[u8],
    now: u64,
) -> Result<Vec<u8>, AppError> {
    let mut core = state.lock_core();
    let incoming = Incoming::Sealed(envelope);
    match route {
        Route::Enroll => enroll(state, &mut core, incoming, now).map(|(answer, _)| answer),
        Route::Sync => sync(state, &mut core, incoming, now),
        Route::Bundle => sync_within(
            state,
            &mut core,
            incoming,
            now,
            phakhi_core::seal::MAX_BUNDLE_AGE_SECS,
        ),
        Route::Admin | Route::Chunks => Err(AppError::BadRequest(format!(
            "{} is answered over HTTP only",
            route.path()
        ))),
    }
}

/// Handles an enrolment envelope. Returns the sealed answer and the new device's id.
pub fn enroll(
    state: &AppState,
    core: &mut Core,
    incoming: Incoming<'_>,
    now: u64,
) -> Result<(Vec<u8>, String), AppError> {
    let tx = core
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(DbError::from)?;
    let (opened, rate) = incoming.take(
        state.keys(),
        now,
        phakhi_core::seal::MAX_CLOCK_SKEW_SECS,
        &tx,
    )?;
    if rate {
        state.check_rate(opened.sender.as_bytes())?;
    }
    // Checked before the writer too (`crate::admission`); again here, where it is recorded.
    let (request, admission) = check_enrolment(state, &opened.payload, now)?;
    let device = enroll::register(&tx, opened.sender.as_bytes(), &admission, to_i64(now))?;
    // Kept so a relay can show HQ the invite it admitted the device with.
    devices::set_invite(&tx, device.row, request.invite.trim())?;
    let answer = if device.role == Role::Relay {
        let hq = hq_verifying_key(state)?;
        protocol::JoinResponse {
            device_id: device.device_id.clone(),
            role: device.role.as_str().into(),
            provinces: device.provinces.clone(),
            server_role: state.config().role.as_str().into(),
            hq_verifying_key: hex::encode(hq.as_bytes()),
        }
        .encode()
    } else {
        EnrolResponse {
            device_id: device.device_id.clone(),
            role: device.role.as_str().into(),
            provinces: device.provinces.clone(),
            server_role: state.config().role.as_str().into(),
        }
        .encode()
    };
    tx.commit().map_err(DbError::from)?;
    // A relay tells HQ about the device soon.
    state.nudge_upstream();
    let sealed = transport::seal_response(opened.responder, &answer)?;
    Ok((sealed, device.device_id))
}

/// Decodes an enrolment request and checks its invite: HQ's signature, not expired, issued
/// for this server, and (on a relay) a role and provinces this relay may admit. Changes
/// nothing, so the admission stage runs it before the writer.
pub fn check_enrolment(
    state: &AppState,
    payload: &[u8],
    now: u64,
) -> Result<(EnrolRequest, Admission), AppError> {
    let request = EnrolRequest::decode(payload)
        .map_err(|error| AppError::undecodable("enrolment request", &error))?;
    let hq = hq_verifying_key(state)?;
    let invite = SignedInvite::parse(&request.invite)
        .and_then(|signed| signed.verify(&hq, now))
        .map_err(|error| match error {
            InviteError::Expired { .. } => AppError::InviteExpired,
            other => match other.version_skew() {
                Some(skew) => AppError::UpgradeRequired(skew),
                None => AppError::InviteInvalid(other.to_string()),
            },
        })?;
    if invite.server_key != state.keys().static_public() {
        return Err(AppError::InviteInvalid(
            "it was issued for another server".into(),
        ));
    }
    let admission = Admission {
        role: invite.role,
        provinces: invite.provinces.clone(),
        token: invite.token.0.to_vec(),
    };
    if state.config().role != crate::config::ServerRole::Hq {
        check_relay_admission(state, &admission)?;
    }
    Ok((request, admission))
}

/// What a provincial relay refuses even in an invite HQ signed: another relay, an admin device
/// (it acts at HQ only), and a province the relay does not serve (HQ would refuse to register the
/// device, and its tips would be out of scope upstream).
fn check_relay_admission(state: &AppState, admission: &Admission) -> Result<(), AppError> {
    match admission.role {
        Role::Relay => {
            return Err(AppError::InviteInvalid(
                "a relay joins HQ, not another relay".into(),
            ));
        }
        Role::Admin => return Err(AppError::HqOnly),
        Role::Leader | Role::Coordinator => {}
    }
    if let Some(joined) = state.joined()
        && let Some(outside) = admission
            .provinces
            .iter()
            .find(|code| !joined.provinces.contains(code))
    {
        return Err(AppError::ProvinceNotServed(outside.clone()));
    }
    Ok(())
}

/// The key invites must be signed with: HQ's own, or (on a relay) the configured one.
fn hq_verifying_key(state: &AppState) -> Result<HqVerifyingKey, AppError> {
    // A joined relay checks invites against HQ's key, even if an older version left a signing
    // key of its own in the folder.
    if let Some(joined) = state.joined()
        && let Ok(key) = HqVerifyingKey::from_bytes(&joined.hq_verifying)
    {
        return Ok(key);
    }
    if let Some(key) = state.keys().verifying() {
        return Ok(key);
    }
    let configured = state.config().hq_key.as_deref().and_then(|text| {
        let bytes: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
        HqVerifyingKey::from_bytes(&bytes).ok()
    });
    configured.ok_or_else(|| {
        tracing::error!(
            "cannot check invites: run `phakhi relay join INVITE` on this data folder, or set \
             hq_key (HQ's invite-verifying key) in the config"
        );
        AppError::NotConfigured
    })
}

/// Handles a sync envelope. Returns the sealed answer.
pub fn sync(
    state: &AppState,
    core: &mut Core,
    incoming: Incoming<'_>,
    now: u64,
) -> Result<Vec<u8>, AppError> {
    sync_within(
        state,
        core,
        incoming,
        now,
        phakhi_core::seal::MAX_CLOCK_SKEW_SECS,
    )
}

/// Like [`sync()`], accepting a request sent up to `max_age` seconds ago: a bundle carried by
/// hand (`phakhi_core::seal::MAX_BUNDLE_AGE_SECS`).
pub fn sync_within(
    state: &AppState,
    core: &mut Core,
    incoming: Incoming<'_>,
    now: u64,
    max_age: u64,
) -> Result<Vec<u8>, AppError> {
    let mut loaded = Loaded::new();
    let mailbox_before = mailbox_mark(&core.mailbox);
    let result = {
        let Core {
            conn,
            cache,
            mailbox,
            allowance,
            budget,
            delivered,
        } = &mut *core;
        let writer = Writer {
            conn,
            cache,
            mailbox,
            quotas: Quotas {
                allowance,
                budget,
                delivered,
            },
        };
        sync_inner(state, writer, incoming, (now, max_age), &mut loaded)
    };
    match result {
        Ok(answer) => {
            // Committed: the documents are what is on disk.
            for (name, (doc, stored_bytes)) in loaded {
                core.cache.put(name.as_str().to_string(), doc, stored_bytes);
            }
            state.record_cache(&mut core.cache);
            Ok(answer)
        }
        Err(error) => {
            // Nothing was committed: forget what this request changed in memory. Most
            // refusals come before the mailbox section is applied; rebuilding the mailbox from
            // disk for those would let anyone make the server re-read every envelope it holds
            // by sending garbage.
            drop(loaded);
            if mailbox_mark(&core.mailbox) != mailbox_before
                && let Err(reload) = core.reload_mailbox()
            {
                tracing::error!(%reload, "cannot rebuild the mailbox from disk");
            }
            state.record_cache(&mut core.cache);
            Err(error)
        }
    }
}

/// What changes whenever the in-memory mailbox does (an envelope stored, pruned or marked as
/// acknowledged), to tell whether a failed exchange left it different from the disk.
fn mailbox_mark(mailbox: &Mailbox) -> (u64, usize, usize) {
    (
        mailbox.next_seq(),
        mailbox.len(),
        mailbox.acknowledged().count(),
    )
}

/// The writer's in-memory counts an exchange consults and updates.
struct Quotas<'c> {
    allowance: &'c mut Allowance,
    budget: &'c mut DocumentBudget,
    delivered: &'c mut HashMap<i64, u64>,
}

/// What the writer holds that one exchange works on: the connection, the document cache, the
/// mailbox and the quotas.
struct Writer<'c> {
    conn: &'c mut Connection,
    cache: &'c mut DocCache,
    mailbox: &'c mut Mailbox,
    quotas: Quotas<'c>,
}

/// Documents taken out of the cache (or loaded) for one exchange, with their stored size.
type Loaded = BTreeMap<DocName, (AutoCommit, usize)>;

/// One exchange once its envelope opened: who asked, what the request says, and when.
struct Asked<'p> {
    device: Device,
    sender: phakhi_core::seal::PublicKey,
    /// The sync message, without a relay's section.
    payload: &'p [u8],
    message: Message,
    /// A relay's section, at HQ.
    relay: Option<protocol::relay::UpstreamRequest>,
    engine_limits: sync::Limits,
    now: u64,
}

impl Asked<'_> {
    fn now_i(&self) -> i64 {
        to_i64(self.now)
    }
}

/// The documents one exchange works on, with their heads and stored size before it.
#[derive(Default)]
struct Working {
    heads_before: BTreeMap<DocName, Vec<ChangeHash>>,
    sizes: BTreeMap<DocName, usize>,
    docs: BTreeMap<DocName, AutoCommit>,
    /// Documents named with exactly their stored heads and nothing to add, left unloaded
    /// ([`DocCache::unchanged`]), with those heads (sorted): the engine answers them as in sync.
    unchanged: BTreeMap<DocName, Vec<ChangeHash>>,
}

/// What the mailbox section of an exchange gives back (nothing, when the request had none).
#[derive(Default)]
struct MailboxOutcome {
    /// The answer's mailbox section, when the request had one.
    section: Option<Vec<u8>>,
    /// Whether tips (or other envelopes) were stored by this exchange.
    pushed: bool,
    /// What HQ set aside of a relay's push.
    set_aside: Vec<protocol::relay::SetAside>,
}

/// One sync exchange, in named steps, in one transaction: open and authorise, read the request
/// whole, load the documents, run the engine, persist what changed, answer the mailbox section,
/// commit, then seal the answer. Documents go to `loaded` only once the transaction committed.
fn sync_inner(
    state: &AppState,
    writer: Writer<'_>,
    incoming: Incoming<'_>,
    (now, max_age): (u64, u64),
    loaded: &mut Loaded,
) -> Result<Vec<u8>, AppError> {
    let Writer {
        conn,
        cache,
        mailbox,
        quotas,
    } = writer;
    let mut clock = Stopwatch::start();
    let mut laps = Laps::default();
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(DbError::from)?;
    let (opened, rate) = incoming.take(state.keys(), now, max_age, &tx)?;
    let device = authorise(&tx, opened.sender.as_bytes())?;
    // No span or log line of an exchange names the device: tips ride in it (only aggregates are
    // logged, see `crate::allowance`).
    if rate {
        state.check_rate(&device.public_key)?;
    }
    let asked = read_request(state, device, opened.sender, &opened.payload, now)?;
    laps.open_us = clock.lap();
    let mut working = load_working(cache, &tx, &asked)?;
    let relay_answer = relay_section(state, &mut tx, &asked)?;
    laps.load_us = clock.lap();
    let reply = run_engine(state, &tx, &asked, &mut working)?;
    laps.engine_us = clock.lap();
    let added = persist_changed(&tx, &asked, &reply, &mut working)?;

    // A relay's exchange at HQ carries what its phones wrote; the relay counted each of them.
    let charged = asked.device.role != Role::Relay;
    if charged {
        quotas
            .budget
            .check(&asked.device.public_key, added, asked.now_i())?;
    }

    // The mailbox section, in the same transaction.
    let Quotas {
        allowance,
        budget,
        delivered,
    } = quotas;
    let outcome = match reply.request_mailbox() {
        None => MailboxOutcome::default(),
        Some(section) => {
            answer_mailbox(state, &tx, mailbox, allowance, delivered, &asked, section)?
        }
    };

    // What HQ set aside of the relay's push, told to a relay that reads the answer's extension
    // (an older one just never sees those envelopes acknowledged).
    let relay_answer = relay_answer.map(|mut answer| {
        if answer.revocation_cursor.is_some() {
            answer.set_aside = outcome.set_aside;
        }
        answer.encode()
    });

    devices::touch(&tx, asked.device.row, asked.now_i())?;
    laps.persist_us = clock.lap();
    tx.commit().map_err(DbError::from)?;
    laps.commit_us = clock.lap();
    if charged {
        budget.charge(&asked.device.public_key, added, asked.now_i());
    }
    after_commit(state, conn, outcome.pushed, !reply.changed().is_empty());
    let (reply_changed, reply_applied) = (reply.changed().len(), reply.stats().changes_applied());
    // Only now may the documents go back to the cache.
    for (name, doc) in working.docs {
        let bytes = working.sizes.get(&name).copied().unwrap_or(0);
        loaded.insert(name, (doc, bytes));
    }
    let answer = reply.into_bytes(outcome.section);
    let answer = match relay_answer {
        Some(section) => protocol::relay::wrap(&answer, &section),
        None => answer,
    };
    let sealed = transport::seal_response(opened.responder, &answer)?;
    laps.answer_us = clock.lap();
    laps.log(reply_changed, reply_applied, clock.total());
    Ok(sealed)
}

/// The relay's registrations and the revocations it must apply, in the exchange's
/// transaction, before its documents: the phones it registers now are authors of the changes
/// it carries. `None` for a phone.
fn relay_section(
    state: &AppState,
    tx: &mut rusqlite::Transaction<'_>,
    asked: &Asked<'_>,
) -> Result<Option<protocol::relay::UpstreamResponse>, AppError> {
    let Some(request) = &asked.relay else {
        return Ok(None);
    };
    let hq = hq_verifying_key(state)?;
    let answer = crate::relay::hq::answer(tx, &hq, &asked.device, request, asked.now)?;
    Ok(Some(answer))
}

/// Microseconds the writer spent per step of one exchange.
#[derive(Default)]
struct Laps {
    open_us: u64,
    load_us: u64,
    engine_us: u64,
    persist_us: u64,
    commit_us: u64,
    answer_us: u64,
}

impl Laps {
    /// Where the writer's time went, per step (the benchmark sums these from the log).
    fn log(&self, changed: usize, applied: u64, total_us: u64) {
        tracing::info!(
            changed,
            applied,
            open_us = self.open_us,
            load_us = self.load_us,
            engine_us = self.engine_us,
            persist_us = self.persist_us,
            commit_us = self.commit_us,
            answer_us = self.answer_us,
            total_us,
            "exchange committed"
        );
    }
}

/// Reads the opened request whole before anything is touched: a relay's section (a relay at HQ
/// only), the sync message within the limits, the changes it declares, and every document it
/// names in the device's scope.
fn read_request<'p>(
    state: &AppState,
    device: Device,
    sender: phakhi_core::seal::PublicKey,
    opened: &'p [u8],
    now: u64,
) -> Result<Asked<'p>, AppError> {
    let limits = &state.config().limits;
    // A relay at HQ wraps its sync message with its own section; a phone sends it bare.
    let (payload, relay) = match protocol::relay::unwrap(opened) {
        None => (opened, None),
        Some(split) => {
            let (sync_bytes, section) =
                split.map_err(|why| AppError::undecodable("relay payload", &why))?;
            if device.role != Role::Relay || state.config().role != crate::config::ServerRole::Hq {
                return Err(AppError::BadRequest(
                    "only a relay sends a relay section, and only to HQ".into(),
                ));
            }
            let request = protocol::relay::UpstreamRequest::decode(section)
                .map_err(|why| AppError::undecodable("relay section", &why))?;
            (sync_bytes, Some(request))
        }
    };

    // Look at the whole message before touching anything.
    let engine_limits = sync::Limits {
        max_docs: limits.max_documents_per_exchange,
        max_changes: limits.max_changes_per_message,
        ..sync::Limits::default()
    };
    let message = Message::decode(payload, &engine_limits).map_err(|error| match error {
        WireError::TooManyDocs(..) => AppError::TooManyDocuments {
            limit: limits.max_documents_per_exchange,
        },
        other => match other.version_skew() {
            Some(skew) => AppError::UpgradeRequired(skew),
            None => AppError::BadRequest(format!("sync message: {other}")),
        },
    })?;
    let declared: u64 = message
        .docs
        .iter()
        .filter_map(|entry| entry.chunk.as_ref())
        .map(|chunk| chunk.declared_changes())
        // The counts come from the wire: a sum past 2^64 must not wrap below the limit.
        .fold(0, u64::saturating_add);
    if declared > limits.max_changes_per_message as u64 {
        return Err(AppError::TooManyChanges {
            limit: limits.max_changes_per_message,
        });
    }
    if let Some(entry) = message
        .docs
        .iter()
        .find(|entry| scope::access(&device, &entry.name) == Access::None)
    {
        return Err(AppError::OutOfScope(entry.name.clone()));
    }
    Ok(Asked {
        device,
        sender,
        payload,
        message,
        relay,
        engine_limits,
        now,
    })
}

/// Every stored document the device may read, plus those it names, taken out of the cache or
/// loaded. (A relay's resumable step names only some documents: the answer is for those alone.)
/// A document it names with exactly the heads the cache remembers it was evicted with, and
/// no changes, is not loaded: it is listed as unchanged. Readable documents it does not name
/// are still loaded: they are offered whole.
fn load_working(
    cache: &mut DocCache,
    tx: &Connection,
    asked: &Asked<'_>,
) -> Result<Working, AppError> {
    let named_only = asked.relay.as_ref().is_some_and(|r| r.named_only);
    let mut wanted: Vec<String> = if named_only {
        Vec::new()
    } else {
        documents::names(tx)?
            .into_iter()
            .filter(|name| scope::readable(&asked.device, name))
            .collect()
    };
    wanted.extend(asked.message.docs.iter().map(|entry| entry.name.clone()));
    // Names are unique within a message (`Message::decode` refuses a repeated one).
    let named: HashMap<&str, &sync::wire::DocEntry> = asked
        .message
        .docs
        .iter()
        .map(|entry| (entry.name.as_str(), entry))
        .collect();
    let mut working = Working::default();
    for name in wanted {
        let Ok(doc_name) = DocName::parse(&name) else {
            continue;
        };
        if working.docs.contains_key(&doc_name) || working.unchanged.contains_key(&doc_name) {
            continue;
        }
        if let Some(heads) = named
            .get(name.as_str())
            .and_then(|entry| unchanged_heads(cache, entry))
        {
            working.unchanged.insert(doc_name, heads);
            continue;
        }
        if let Some((mut doc, bytes)) = load_doc(cache, tx, &name)? {
            working
                .heads_before
                .insert(doc_name.clone(), doc.get_heads());
            working.sizes.insert(doc_name.clone(), bytes);
            working.docs.insert(doc_name, doc);
        }
    }
    Ok(working)
}

/// The heads (sorted) a document is named with, when it carries no changes and the cache
/// evicted it with exactly those heads: it is stored so, and answering it needs no load.
fn unchanged_heads(cache: &DocCache, entry: &sync::wire::DocEntry) -> Option<Vec<ChangeHash>> {
    if entry.chunk.is_some() || entry.heads.is_empty() {
        return None;
    }
    let mut heads = entry.heads.clone();
    heads.sort_unstable();
    heads.dedup();
    cache.unchanged(&entry.name, &heads).then_some(heads)
}

/// The engine applies each document's chunk as one batch and prepares the answer; every change
/// is checked for its author's rights and the model's content on the way. A refused document is
/// counted in the metrics under its code.
fn run_engine(
    state: &AppState,
    tx: &Connection,
    asked: &Asked<'_>,
    working: &mut Working,
) -> Result<sync::Reply, AppError> {
    let responder = sync::Responder::new(asked.engine_limits);
    let checked = crate::authority::scope(tx, &asked.device)?;
    // A device new to a document gets the bytes stored for it, not a `save()` made for it; a
    // document it names unchanged is answered without being loaded.
    let mut stored = Stored {
        conn: tx,
        heads: &working.heads_before,
        unchanged: &working.unchanged,
    };
    let reply = responder
        .handle_request_saved(asked.payload, &mut working.docs, &checked, &mut stored)
        .map_err(|error| AppError::BadRequest(format!("sync message: {error}")))?;
    for (name, stats) in &reply.stats().docs {
        if let Some(error) = stats.error {
            tracing::info!(doc = %name, %error, "document refused");
            state.metrics().error(ErrorCode::of_document(error));
        }
    }
    Ok(reply)
}

/// Persists every changed document: one incremental chunk, or a compaction. Returns what this
/// exchange adds to the stored documents, charged to the device's daily budget.
fn persist_changed(
    tx: &Connection,
    asked: &Asked<'_>,
    reply: &sync::Reply,
    working: &mut Working,
) -> Result<u64, AppError> {
    let now_i = asked.now_i();
    let mut added: u64 = 0;
    for name in reply.changed() {
        let Some(doc) = working.docs.get_mut(name) else {
            continue;
        };
        // What a document gained is stored as it came whenever it can be: re-encoding it costs
        // what the document's size does (`save_after` rebuilds the changes from the whole
        // document, `save` the document itself), not what the exchange added.
        let gained = reply
            .stats()
            .docs
            .get(name.as_str())
            .map_or(0, |stats| stats.changes_applied);
        let before = working.heads_before.get(name);
        let chunk =
            as_sent(&asked.message, name, gained, before.is_none()).unwrap_or_else(
                || match before {
                    Some(heads) => doc.save_after(heads),
                    None => doc.save(),
                },
            );
        added = added.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
        let bytes = documents::store(tx, name.as_str(), &chunk, now_i, || doc.save())?;
        working
            .sizes
            .insert(name.clone(), usize::try_from(bytes).unwrap_or(usize::MAX));
    }
    Ok(added)
}

/// Answers the request's mailbox section in the exchange's transaction: stores what the device
/// pushed, prepares what it receives, and drops the replies every device now holds.
fn answer_mailbox(
    state: &AppState,
    tx: &Connection,
    mailbox: &mut Mailbox,
    allowance: &mut Allowance,
    delivered: &mut HashMap<i64, u64>,
    asked: &Asked<'_>,
    section: &[u8],
) -> Result<MailboxOutcome, AppError> {
    let now_i = asked.now_i();
    let device = &asked.device;
    let request = protocol::decode_section(section)
        .map_err(|why| AppError::undecodable("mailbox section", &why))?;
    let shares = match device.role {
        Role::Relay => crate::allowance::relay_shares(tx, device)?,
        _ => 1,
    };
    let peer = mailroom::Peer {
        key: asked.sender,
        scope: scope::mailbox_scope(device),
        shares,
    };
    let next_before = mailbox.next_seq();
    let cursor = mailroom::cursor_of(&request);
    // Read in the transaction that stores the tips, so a backup begun after it commits holds
    // them (`db::backup`).
    let mark = db::backup::mark(tx)?;
    let mut set_aside = Vec::new();
    let messages = if asked.relay.is_some() {
        // A relay's push: each envelope taken or refused on its own.
        mailroom::answer_relay(
            mailbox,
            allowance,
            &peer,
            request,
            mark,
            now_i,
            &mut set_aside,
        )?
    } else {
        mailroom::answer(mailbox, allowance, &peer, request, mark, now_i)?
    };
    let mut pushed = false;
    for stored in mailbox.items_since(next_before.saturating_sub(1)) {
        db::mailbox::insert(tx, stored, now_i)?;
        pushed = true;
    }
    // The device holds every reply up to the cursor it sent (a phone moves its cursor only
    // after storing them): drop the replies every device has, and expired ones.
    if let Some(cursor) = cursor {
        let known = delivered.entry(device.row).or_insert(0);
        if cursor > *known {
            *known = cursor;
            let keep = mailroom::ReplyKeeping::of(state.config());
            mailroom::prune_replies(keep, tx, mailbox, delivered, now_i)?;
        }
    }
    Ok(MailboxOutcome {
        section: Some(protocol::encode_section(&messages)),
        pushed,
        set_aside,
    })
}

/// After the commit: checkpoint the write-ahead log when tips were stored, and wake the
/// upstream task when anything changed.
fn after_commit(state: &AppState, conn: &Connection, pushed: bool, changed: bool) {
    if pushed {
        // The write-ahead log keeps a commit's pages side by side until a checkpoint: this one
        // wrote the tips next to the page with the device's `last_sync`. Move it into the
        // database and empty the log at once, so the file does not pair them.
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::warn!(%error, "cannot checkpoint the write-ahead log");
        }
    }
    if pushed || changed {
        state.nudge_upstream();
    }
}

/// The stored chunks of a document, concatenated: what the server sends a device new to it
/// (they load as one document). Offered only while the document in memory is the stored one:
/// its heads as loaded for this exchange are the heads asked for. And the documents this
/// exchange left unloaded because they were named with exactly their stored heads.
struct Stored<'a> {
    conn: &'a Connection,
    heads: &'a BTreeMap<DocName, Vec<ChangeHash>>,
    unchanged: &'a BTreeMap<DocName, Vec<ChangeHash>>,
}

impl sync::SavedForms for Stored<'_> {
    fn saved(&mut self, name: &DocName, heads: &[ChangeHash]) -> Option<Vec<u8>> {
        let mut loaded = self.heads.get(name)?.clone();
        loaded.sort_unstable();
        loaded.dedup();
        if loaded != heads {
            return None;
        }
        match documents::load(self.conn, name.as_str()) {
            Ok(Some(chunks)) => Some(chunks.concat()),
            Ok(None) => None,
            Err(error) => {
                // The engine encodes the document itself instead.
                tracing::warn!(%error, "cannot read a stored document to serve it");
                None
            }
        }
    }

    fn holds_exactly(&mut self, name: &DocName, heads: &[ChangeHash]) -> bool {
        self.unchanged
            .get(name)
            .is_some_and(|stored| stored.as_slice() == heads)
    }
}

/// Microseconds spent per step of an exchange.
struct Stopwatch {
    started: std::time::Instant,
    lap: std::time::Instant,
}

impl Stopwatch {
    fn start() -> Stopwatch {
        let now = std::time::Instant::now();
        Stopwatch {
            started: now,
            lap: now,
        }
    }

    /// Microseconds since the last lap (or the start).
    fn lap(&mut self) -> u64 {
        let now = std::time::Instant::now();
        let us = now.duration_since(self.lap).as_micros();
        self.lap = now;
        u64::try_from(us).unwrap_or(u64::MAX)
    }

    fn total(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// What a device sent for a document, as it came, when it is exactly what the document gained
/// (`gained` changes: each of them new to it, none repeated), so that storing those bytes
/// stores the change. `fresh`: the document is new, built by the engine from these bytes alone.
/// Each sent change decoded as exactly one change chunk (automerge refuses leftover bytes), a
/// bundle as exactly one checksummed chunk (the engine checks its length), a saved document as
/// chunks with nothing left over, and they applied with every dependency present: the bytes
/// are an incremental save of those changes (or, for a new document, its first save). A bundle,
/// or a saved document added to one the server held, is counted again here (the declared count
/// is the sender's word); that costs what decoding it did, not what the document's size would.
fn as_sent(message: &Message, name: &DocName, gained: u64, fresh: bool) -> Option<Vec<u8>> {
    let entry = message
        .docs
        .iter()
        .find(|entry| entry.name == name.as_str())?;
    let exactly = |sent: usize| gained > 0 && u64::try_from(sent).is_ok_and(|n| n == gained);
    match entry.chunk.as_ref()? {
        sync::wire::Chunk::Changes(raw) if exactly(raw.len()) => Some(raw.concat()),
        sync::wire::Chunk::Bundle { changes, bytes } if *changes == gained => {
            let bundle = automerge::Bundle::try_from(bytes.as_slice()).ok()?;
            exactly(bundle.iter_changes().count()).then(|| bytes.clone())
        }
        // A relay's or a phone's first upload of a document new here: the engine loaded the
        // empty document from these bytes whole, so they hold exactly what it gained.
        sync::wire::Chunk::Document { changes, bytes } if fresh && *changes == gained => {
            Some(bytes.clone())
        }
        // A phone's first sync of a document it began offline: its whole copy, every change of
        // it new here. Automerge loads a saved document after other chunks as its changes.
        sync::wire::Chunk::Document { changes, bytes } if *changes == gained => {
            let saved = AutoCommit::load(bytes).ok()?;
            (saved.get_missing_deps(&[]).is_empty() && saved.stats().num_changes == gained)
                .then(|| bytes.clone())
        }
        _ => None,
    }
}

/// Takes a document out of the cache, or loads it from its stored chunks (evicting cold
/// documents to make room for it). `None` when the document does not exist. Public for the
/// memory tests of HQ's cache (`tests/tests/hq_memory.rs`).
pub fn load_doc(
    cache: &mut DocCache,
    conn: &Connection,
    name: &str,
) -> Result<Option<(AutoCommit, usize)>, AppError> {
    if let Some(cached) = cache.take(name) {
        return Ok(Some(cached));
    }
    let Some(chunks) = documents::load(conn, name)? else {
        return Ok(None);
    };
    let bytes: usize = chunks.iter().map(Vec::len).sum();
    let corrupt = |error: automerge::AutomergeError| {
        AppError::from(DbError::Corrupt(format!("document {name}: {error}")))
    };
    let mut chunks = chunks.into_iter();
    let mut doc = match chunks.next() {
        Some(first) => AutoCommit::load(&first).map_err(corrupt)?,
        None => AutoCommit::new(),
    };
    for chunk in chunks {
        doc.load_incremental(&chunk).map_err(corrupt)?;
    }
    cache.lend(name, &doc);
    Ok(Some((doc, bytes)))
}

/// The enrolled, unrevoked device with this static key.
pub fn authorise(conn: &Connection, sender: &[u8; 32]) -> Result<Device, AppError> {
    match devices::by_key(conn, sender)? {
        None => Err(AppError::UnknownDevice),
        Some(device) if device.revoked_at.is_some() => Err(AppError::DeviceRevoked),
        Some(device) => Ok(device),
    }
}

/// Handles a chunk envelope (`POST /v1/chunks`). Returns the sealed answer.
pub fn chunks(
    state: &AppState,
    core: &mut Core,
    incoming: Incoming<'_>,
    now: u64,
) -> Result<Vec<u8>, AppError> {
    let tx = core
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(DbError::from)?;
    // Chunk requests pay their rate per chunk, in `chunkroom::admit`, whoever opened them.
    let (opened, _) = incoming.take(
        state.keys(),
        now,
        phakhi_core::seal::MAX_CLOCK_SKEW_SECS,
        &tx,
    )?;
    let device = authorise(&tx, opened.sender.as_bytes())?;
    // Neither the span nor the log names the device, and its `last_sync` is left alone: evidence
    // handed over leaves no trace of who handed it (see `crate::allowance`).
    let (answer, taken) = crate::chunkroom::serve(
        state,
        &tx,
        &mut core.allowance,
        &device,
        &opened.payload,
        to_i64(now),
    )?;
    tx.commit().map_err(DbError::from)?;
    crate::chunkroom::committed(state, &taken);
    transport::seal_response(opened.responder, &answer.encode())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

    use automerge::transaction::Transactable;
    use automerge::{ObjType, ROOT};
    use phakhi_core::sync::SavedForms;

    use super::*;

    const DOC: &str = "province/TH-44";

    fn record(doc: &mut AutoCommit, alias: &str) {
        let members = match doc.get(ROOT, "members").unwrap() {
            Some((_, id)) => id,
            None => doc.put_object(ROOT, "members", ObjType::Map).unwrap(),
        };
        doc.put(&members, alias, alias).unwrap();
        doc.commit();
    }

    fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
        heads.sort_unstable();
        heads
    }

    #[test]
    fn stored_bytes_are_offered_only_for_the_heads_they_reach() {
        let dir = crate::db::tempdata::TempData::new();
        let conn = db::open(dir.path()).unwrap();
        let mut doc = AutoCommit::new();
        record(&mut doc, "สมชาย");
        let first = doc.save();
        let before = doc.get_heads();
        documents::append(&conn, DOC, &first, 1).unwrap();
        record(&mut doc, "สมหญิง");
        let second = doc.save_after(&before);
        documents::append(&conn, DOC, &second, 2).unwrap();
        let name = DocName::parse(DOC).unwrap();
        // The document as loaded for the exchange: what the stored chunks reach.
        let loaded = BTreeMap::from([(name.clone(), doc.get_heads())]);
        let unchanged = BTreeMap::new();
        let mut stored = Stored {
            conn: &conn,
            heads: &loaded,
            unchanged: &unchanged,
        };
        assert_eq!(
            stored.saved(&name, &sorted(doc.get_heads())),
            Some([first, second].concat())
        );
        // Asked for other heads (the document as it was, or as the request left it): the
        // stored bytes do not load into that document, so the engine encodes it itself.
        let offered = "stored bytes offered for heads they do not reach";
        assert!(stored.saved(&name, &sorted(before)).is_none(), "{offered}");
        record(&mut doc, "สมปอง");
        assert!(
            stored.saved(&name, &sorted(doc.get_heads())).is_none(),
            "{offered}"
        );
        // A document this exchange did not load (created by the request) has no stored form.
        let other = DocName::parse("province/TH-40").unwrap();
        assert!(stored.saved(&other, &sorted(doc.get_heads())).is_none());
    }

    #[test]
    fn only_a_document_named_with_its_evicted_heads_and_no_changes_is_left_unloaded() {
        use sync::wire::{Chunk, DocEntry, DocStatus};
        let mut doc = AutoCommit::new();
        record(&mut doc, "สมชาย");
        record(&mut doc, "สมหญิง");
        let mut branch = doc.fork();
        record(&mut doc, "สมปอง");
        record(&mut branch, "สมศรี");
        doc.merge(&mut branch).unwrap();
        let heads = sorted(doc.get_heads());
        assert_eq!(
            heads.len(),
            2,
            "two heads, to check their order does not matter"
        );
        // Room for one document: putting another evicts it.
        let mut cache = DocCache::new(DocCache::estimate(&doc));
        cache.put(DOC.into(), doc.fork(), 1);
        let named = |heads: Vec<ChangeHash>, chunk: Option<Chunk>| DocEntry {
            name: DOC.into(),
            status: DocStatus::Ok,
            heads,
            chunk,
        };
        let mut reversed = heads.clone();
        reversed.reverse();
        reversed.push(reversed[0]);
        // Cached: taken from the cache as before.
        assert_eq!(unchanged_heads(&cache, &named(heads.clone(), None)), None);
        cache.put("province/TH-40".into(), AutoCommit::new(), 1);
        assert!(!cache.contains(DOC));
        // Evicted, named with its heads (in any order, repeated) and nothing else: unloaded.
        assert_eq!(
            unchanged_heads(&cache, &named(reversed, None)),
            Some(heads.clone())
        );
        // Named with changes, with other heads, with some of its heads, or with none: loaded.
        let chunk = Chunk::Document {
            changes: 4,
            bytes: doc.save(),
        };
        assert_eq!(
            unchanged_heads(&cache, &named(heads.clone(), Some(chunk))),
            None
        );
        assert_eq!(
            unchanged_heads(&cache, &named(heads[..1].to_vec(), None)),
            None
        );
        assert_eq!(unchanged_heads(&cache, &named(Vec::new(), None)), None);
        let mut other = doc.fork();
        record(&mut other, "สมใจ");
        assert_eq!(
            unchanged_heads(&cache, &named(sorted(other.get_heads()), None)),
            None
        );

        // The engine is told only of the documents left unloaded, with exactly those heads.
        let dir = crate::db::tempdata::TempData::new();
        let conn = db::open(dir.path()).unwrap();
        let name = DocName::parse(DOC).unwrap();
        let unchanged = BTreeMap::from([(name.clone(), heads.clone())]);
        let loaded = BTreeMap::new();
        let mut stored = Stored {
            conn: &conn,
            heads: &loaded,
            unchanged: &unchanged,
        };
        assert!(stored.holds_exactly(&name, &heads));
        assert!(!stored.holds_exactly(&name, &heads[..1]));
        let other_name = DocName::parse("province/TH-40").unwrap();
        assert!(!stored.holds_exactly(&other_name, &heads));
    }

    #[test]
    fn what_a_device_sent_is_stored_as_it_came_only_when_each_change_was_new() {
        use sync::wire::{Chunk, DocEntry, DocStatus, Kind};
        let mut held = AutoCommit::new();
        record(&mut held, "สมชาย");
        let before = held.get_heads();
        let mut phone = held.fork();
        record(&mut phone, "สมหญิง");
        record(&mut phone, "สมปอง");
        let raw: Vec<Vec<u8>> = phone
            .get_changes(&before)
            .iter()
            .map(|change| change.raw_bytes().to_vec())
            .collect();
        let message = |chunk: Chunk| Message {
            kind: Kind::Request,
            round: 1,
            echo: [0; 8],
            docs: vec![DocEntry {
                name: DOC.into(),
                status: DocStatus::Ok,
                heads: Vec::new(),
                chunk: Some(chunk),
            }],
            mailbox: None,
        };
        let name = DocName::parse(DOC).unwrap();
        let sent = message(Chunk::Changes(raw.clone()));
        // Both changes were new: stored as they came, and the stored chunks load into the
        // phone's document.
        let stored = as_sent(&sent, &name, 2, false).unwrap();
        assert_eq!(stored, raw.concat());
        let mut loaded = AutoCommit::load(&held.save()).unwrap();
        loaded.load_incremental(&stored).unwrap();
        assert_eq!(sorted(loaded.get_heads()), sorted(phone.get_heads()));
        // One of them was held already, or one was sent twice: the bytes sent are not what the
        // document gained, and the server encodes that itself.
        assert_eq!(as_sent(&sent, &name, 1, false), None);
        let repeated = message(Chunk::Changes(vec![raw[0].clone(), raw[0].clone()]));
        assert_eq!(as_sent(&repeated, &name, 1, false), None);
        // Nothing gained, another document, or a saved document: not stored from the request.
        assert_eq!(as_sent(&sent, &name, 0, false), None);
        let other = DocName::parse("province/TH-40").unwrap();
        assert_eq!(as_sent(&sent, &other, 2, false), None);
        let whole = message(Chunk::Document {
            changes: 3,
            bytes: phone.save(),
        });
        assert_eq!(as_sent(&whole, &name, 2, false), None);
        // A phone's whole copy of a document it began offline, every change of it new: stored
        // as it came. Declared with another count, or holding a change already held: not.
        let mut offline = AutoCommit::new();
        record(&mut offline, "สมศรี");
        record(&mut offline, "สมใจ");
        let saved = offline.save();
        let first_sync = |changes: u64| {
            message(Chunk::Document {
                changes,
                bytes: saved.clone(),
            })
        };
        assert_eq!(
            as_sent(&first_sync(2), &name, 2, false),
            Some(saved.clone())
        );
        let mut loaded = AutoCommit::load(&held.save()).unwrap();
        loaded.load_incremental(&saved).unwrap();
        assert_eq!(loaded.get_changes(&[]).len(), 3);
        assert_eq!(as_sent(&first_sync(2), &name, 1, false), None);
        assert_eq!(as_sent(&first_sync(1), &name, 1, false), None);
        // A document new to the server, sent whole: the engine built it from those bytes
        // alone, so they are stored as they came.
        assert_eq!(as_sent(&first_sync(2), &name, 2, true), Some(saved.clone()));
        assert_eq!(as_sent(&first_sync(2), &name, 1, true), None);
        // A bundle (what a relay forwards) is stored as it came when it holds exactly the
        // changes gained, whatever count its sender declared.
        let hashes: Vec<ChangeHash> = phone
            .get_changes_meta(&before)
            .iter()
            .map(|meta| meta.hash)
            .collect();
        let bytes = phone.bundle(hashes).unwrap().bytes().to_vec();
        let bundle = |changes: u64| {
            message(Chunk::Bundle {
                changes,
                bytes: bytes.clone(),
            })
        };
        assert_eq!(as_sent(&bundle(2), &name, 2, false), Some(bytes.clone()));
        let mut loaded = AutoCommit::load(&held.save()).unwrap();
        loaded.load_incremental(&bytes).unwrap();
        assert_eq!(sorted(loaded.get_heads()), sorted(phone.get_heads()));
        assert_eq!(as_sent(&bundle(2), &name, 1, false), None);
        assert_eq!(as_sent(&bundle(1), &name, 1, false), None);
    }
}
