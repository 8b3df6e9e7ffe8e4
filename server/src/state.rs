//! The state every request shares: configuration, keys, the single writer connection with the
//! document cache (behind one lock, used only from blocking threads), a reader connection for
//! health and metrics, counters and the rate limiter.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use phakhi_core::mailbox::Mailbox;
use rusqlite::Connection;

use crate::allowance::{Allowance, AllowanceLimits};
use crate::budget::DocumentBudget;
use crate::cache::DocCache;
use crate::config::{Config, ServerRole};
use crate::db::{self, DbError};
use crate::error::AppError;
use crate::keys::{self, KeyError, ServerKeys};
use crate::metrics::{Gauges, Metrics};
use crate::ratelimit::RateLimiter;
use crate::relay::status::UpstreamStatus;

/// The writer side: one SQLite connection and the documents loaded from it.
#[derive(Debug)]
pub struct Core {
    pub conn: Connection,
    pub cache: DocCache,
    /// The mailbox, mirrored from SQLite (every change is written in the request's transaction;
    /// after a failed commit it is rebuilt from disk).
    pub mailbox: Mailbox,
    /// What each device handed over lately, in memory only (see [`crate::allowance`]).
    pub allowance: Allowance,
    /// Bytes each device added to the shared documents today ([`crate::budget`]).
    pub budget: DocumentBudget,
    /// The reply cursor each device last reported here, by device row, in memory only
    /// ([`crate::mailroom::prune_replies`]).
    pub delivered: std::collections::HashMap<i64, u64>,
}

impl Core {
    /// Rebuilds the in-memory mailbox from the database.
    pub fn reload_mailbox(&mut self) -> Result<(), DbError> {
        self.mailbox = load_mailbox(&self.conn)?;
        Ok(())
    }
}

/// Takes one request off the count of those waiting when dropped.
struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The name of the lock file a running server holds in its data folder.
pub const LOCK_FILE: &str = "serve.lock";

fn lock_data_folder(data: &Path) -> Result<std::fs::File, StartError> {
    let folder = data.display().to_string();
    let lock_error = |source| StartError::Lock {
        folder: folder.clone(),
        source,
    };
    phakhi_core::store::private::private_folder(data).map_err(lock_error)?;
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(data.join(LOCK_FILE)).map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::InUse(folder)),
        Err(std::fs::TryLockError::Error(source)) => Err(lock_error(source)),
    }
}

fn load_mailbox(conn: &Connection) -> Result<Mailbox, DbError> {
    let (items, acked) = db::mailbox::load(conn)?;
    let mut mailbox = Mailbox::restore(items, acked)
        .map_err(|error| DbError::Corrupt(format!("stored mailbox: {error}")))?;
    // Numbers of released tips are never reused.
    mailbox.reserve_seq(db::mailbox::next_seq_floor(conn)?);
    Ok(mailbox)
}

/// Shared, cheaply cloned server state.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    keys: ServerKeys,
    core: Mutex<Core>,
    /// Requests for the writer wait here, as tasks, rather than on blocking threads parked on
    /// `core`'s lock: a burst of phones then holds one blocking thread (and its malloc arena)
    /// instead of one per waiting request.
    writer_queue: Arc<tokio::sync::Semaphore>,
    reader: Mutex<Connection>,
    metrics: Metrics,
    limiter: Mutex<RateLimiter>,
    /// Attachment chunks per device (see [`crate::ratelimit`]).
    chunk_limiter: Mutex<RateLimiter>,
    /// Refusals per source address, counted before anything is opened (see
    /// [`crate::admission`]).
    address_refusals: Mutex<RateLimiter<IpAddr>>,
    /// Sealed-envelope requests held at once, body to answer ([`crate::admission`]).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Requests waiting for a place among those in flight.
    waiting: AtomicUsize,
    /// Envelopes being opened at once: one per core, so a burst of opens queues as tasks
    /// instead of taking every blocking thread.
    opening: Arc<tokio::sync::Semaphore>,
    /// Held for the life of the server: one `phakhi serve` per data folder.
    _lock: std::fs::File,
    /// The cache's estimated bytes and document count after the last exchange.
    cache_bytes: AtomicUsize,
    cached_documents: AtomicUsize,
    /// A relay's join record (HQ's address and keys), read at start.
    joined: Option<db::upstream::Joined>,
    /// The upstream task's report, when it runs.
    upstream: Mutex<Option<UpstreamStatus>>,
    /// Wakes the upstream task early after a phone brought something new.
    nudge: tokio::sync::Notify,
    /// Something was brought (records, tips, chunks, a device) since the upstream task's last
    /// round began: it says `pending` in `/v1/health` without saying what.
    work_waiting: AtomicBool,
    /// The operator's token: it unlocks every figure of `/v1/health` and `/metrics`.
    operator_token: String,
}

/// A failure to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "another phakhi serve is using the data folder {0}: stop it first, or give this one \
         another --data folder"
    )]
    InUse(String),
    #[error("cannot lock the data folder {folder}: {source}")]
    Lock {
        folder: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot open the database in {folder}: {source}")]
    Db { folder: String, source: DbError },
}

/// What opening the data folder found.
#[derive(Debug)]
pub struct Opened {
    pub state: AppState,
    /// True on the first start (keys were created).
    pub first_start: bool,
}

impl AppState {
    /// Opens the data folder named in `config`: keys (created on first start), the database
    /// (migrated), the caches.
    /// A folder that joined HQ (`phakhi relay join`) is opened as a relay whatever role the
    /// configuration names: as HQ it would create an invite-signing key a relay must never hold,
    /// and then refuse the HQ-signed invites of its own phones.
    pub fn open(mut config: Config) -> Result<Opened, StartError> {
        let data = config.data.clone();
        let lock = lock_data_folder(&data)?;
        let db_error = |source| StartError::Db {
            folder: data.display().to_string(),
            source,
        };
        let mut conn = db::open(&data).map_err(db_error)?;
        let joined = db::upstream::joined(&conn).map_err(db_error)?;
        if joined.is_some() && config.role != ServerRole::Relay {
            tracing::info!(data = %data.display(), "this data folder joined HQ: serving it as a relay");
            config.role = ServerRole::Relay;
        }
        let loaded =
            keys::load_or_create(&data, config.role == ServerRole::Hq, &mut rand_core::OsRng)?;
        let reader = db::open(&data).map_err(db_error)?;
        let limiter = RateLimiter::new(
            config.limits.requests_per_minute,
            config.limits.request_burst,
        );
        let chunk_limiter = RateLimiter::new(
            config.limits.chunk_uploads_per_minute,
            config.limits.chunk_upload_burst,
        );
        let address_refusals = RateLimiter::new(
            config.limits.refusals_per_address_per_minute,
            config.limits.refusal_burst_per_address,
        );
        let in_flight = Arc::new(tokio::sync::Semaphore::new(
            config.limits.max_requests_in_flight.max(1),
        ));
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let opening = Arc::new(tokio::sync::Semaphore::new(cores));
        let cache = DocCache::new(config.cache_bytes);
        let allowance = Allowance::new(AllowanceLimits {
            envelopes: usize::try_from(config.limits.mailbox_envelopes_per_device).unwrap_or(0),
            envelope_bytes: usize::try_from(config.limits.mailbox_bytes_per_device).unwrap_or(0),
        });
        let budget = DocumentBudget::new(config.limits.document_bytes_per_device_per_day);
        let mailbox = load_mailbox(&conn).map_err(db_error)?;
        db::replay::adopt_legacy(&mut conn, &loaded.keys.replay_key()).map_err(db_error)?;
        let operator_token = keys::operator_token(&data)?;
        Ok(Opened {
            first_start: loaded.created,
            state: AppState {
                inner: Arc::new(Shared {
                    config,
                    keys: loaded.keys,
                    core: Mutex::new(Core {
                        conn,
                        cache,
                        mailbox,
                        allowance,
                        budget,
                        delivered: std::collections::HashMap::new(),
                    }),
                    writer_queue: Arc::new(tokio::sync::Semaphore::new(1)),
                    reader: Mutex::new(reader),
                    metrics: Metrics::default(),
                    limiter: Mutex::new(limiter),
                    chunk_limiter: Mutex::new(chunk_limiter),
                    address_refusals: Mutex::new(address_refusals),
                    in_flight,
                    waiting: AtomicUsize::new(0),
                    opening,
                    _lock: lock,
                    cache_bytes: AtomicUsize::new(0),
                    cached_documents: AtomicUsize::new(0),
                    joined,
                    upstream: Mutex::new(None),
                    nudge: tokio::sync::Notify::new(),
                    work_waiting: AtomicBool::new(false),
                    operator_token,
                }),
            },
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn keys(&self) -> &ServerKeys {
        &self.inner.keys
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data
    }

    /// The relay's join record, if this data folder joined HQ.
    pub fn joined(&self) -> Option<&db::upstream::Joined> {
        self.inner.joined.as_ref()
    }

    /// The upstream task's last report (`None` when no upstream task runs).
    pub fn upstream_status(&self) -> Option<UpstreamStatus> {
        self.inner
            .upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the upstream report.
    pub fn update_upstream(&self, change: impl FnOnce(&mut UpstreamStatus)) {
        let mut status = self
            .inner
            .upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        change(status.get_or_insert_with(UpstreamStatus::default));
    }

    /// Asks the upstream task (if any) for a round soon.
    pub fn nudge_upstream(&self) {
        self.nudge_work_waiting();
        self.inner.nudge.notify_one();
    }

    /// Marks that something waits for the next upstream round.
    pub fn nudge_work_waiting(&self) {
        self.inner.work_waiting.store(true, Ordering::Relaxed);
    }

    /// Clears the mark as a round begins; true when it was set.
    pub fn take_work_waiting(&self) -> bool {
        self.inner.work_waiting.swap(false, Ordering::Relaxed)
    }

    /// Whether anything waits for HQ: the mark, or tips, chunks or registrations not yet taken.
    pub fn upstream_pending(&self, status: &UpstreamStatus) -> bool {
        self.inner.work_waiting.load(Ordering::Relaxed)
            || status.pending_envelopes > 0
            || status.pending_registrations > 0
            || status.pending_revocations > 0
            || status.chunks_waiting > 0
    }

    /// True when `authorization` (an `Authorization` header's value) carries the operator's
    /// token. Compared as SHA-256 digests, so the time taken says nothing of the token.
    pub fn is_operator(&self, authorization: Option<&str>) -> bool {
        use sha2::{Digest, Sha256};
        let Some(given) = authorization.and_then(|value| value.strip_prefix("Bearer ")) else {
            return false;
        };
        Sha256::digest(given.trim().as_bytes())
            == Sha256::digest(self.inner.operator_token.as_bytes())
    }

    /// Resolves after the next [`AppState::nudge_upstream`] (or at once if one is pending).
    pub async fn upstream_nudged(&self) {
        self.inner.nudge.notified().await;
    }

    /// Takes a rate-limit token for a device.
    pub fn check_rate(&self, device: &[u8; 32]) -> Result<(), AppError> {
        let mut limiter = self
            .inner
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        limiter
            .check(device, Instant::now())
            .map_err(|wait| AppError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            })
    }

    /// Takes `chunks` attachment-chunk tokens for a device (at least one).
    pub fn check_chunk_rate(&self, device: &[u8; 32], chunks: u32) -> Result<(), AppError> {
        let mut limiter = self
            .inner
            .chunk_limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        limiter
            .check_cost(device, chunks, Instant::now())
            .map_err(|wait| AppError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            })
    }

    /// Whether `address` may still send a request that is opened: `Err` once its refusals
    /// spent its bucket ([`crate::admission`]).
    pub fn check_address(&self, address: IpAddr) -> Result<(), AppError> {
        let mut limiter = self
            .inner
            .address_refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        limiter
            .ready(&address, Instant::now())
            .map_err(|wait| AppError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            })
    }

    /// Counts a refusal against `address`.
    pub fn refused_from(&self, address: IpAddr) {
        self.inner
            .address_refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .spend(&address, Instant::now());
    }

    /// A place among the requests worked on at once, waiting for one in a queue of at most
    /// `max_requests_waiting`; `None` when the queue is full.
    pub async fn in_flight_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.inner.in_flight).try_acquire_owned() {
            return Some(permit);
        }
        let limit = self.inner.config.limits.max_requests_waiting;
        let queued = self.inner.waiting.fetch_add(1, Ordering::AcqRel);
        // Leaves the queue however the wait ends (a timeout drops this future).
        let _leave = Leave(&self.inner.waiting);
        if queued >= limit {
            return None;
        }
        Arc::clone(&self.inner.in_flight).acquire_owned().await.ok()
    }

    /// How many requests wait for a place among those in flight.
    pub fn requests_waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Acquire)
    }

    /// Runs `work` (opening an envelope) on a blocking thread, at most one per core at once.
    pub async fn while_opening<T, F>(&self, work: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, AppError> + Send + 'static,
    {
        // Never closed, as for the writer's queue.
        let turn = Arc::clone(&self.inner.opening).acquire_owned().await.ok();
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop(turn);
            result
        })
        .await
        .map_err(|error| {
            tracing::error!(%error, "opening task failed");
            AppError::Internal
        })?
    }

    /// Runs `work` on a blocking thread with the writer connection and the document cache.
    pub async fn with_core<T, F>(&self, work: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Core) -> Result<T, AppError> + Send + 'static,
    {
        let state = self.clone();
        // Keep the request's span on the blocking thread, so its logs name the request.
        let span = tracing::Span::current();
        // Never closed, so acquiring only fails if it were; then the lock alone still serialises.
        let turn = Arc::clone(&self.inner.writer_queue)
            .acquire_owned()
            .await
            .ok();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut core = state.lock_core();
            let result = work(&mut core);
            drop(core);
            drop(turn);
            result
        })
        .await
        .map_err(|error| {
            tracing::error!(%error, "storage task failed");
            AppError::Internal
        })?
    }

    /// The writer's state, locked on the calling thread (a poisoned lock starts the cache and
    /// the mailbox afresh from disk).
    pub(crate) fn lock_core(&self) -> MutexGuard<'_, Core> {
        let mut core = self.inner.core.lock().unwrap_or_else(|poisoned| {
            // A task panicked mid-request: its transaction rolled back when dropped, but the
            // cache and the mailbox may hold what it had changed. Start both afresh from disk.
            let mut core = poisoned.into_inner();
            core.cache = DocCache::new(self.inner.config.cache_bytes);
            if let Err(error) = core.reload_mailbox() {
                tracing::error!(%error, "cannot rebuild the mailbox from disk");
            }
            self.inner.core.clear_poison();
            core
        });
        // Between requests no document is out of the cache.
        core.cache.settle();
        core
    }

    /// Runs `work` on a blocking thread with the reader connection.
    pub async fn with_reader<T, F>(&self, work: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let reader = state
                .inner
                .reader
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            work(&reader).map_err(AppError::from)
        })
        .await
        .map_err(|error| {
            tracing::error!(%error, "storage task failed");
            AppError::Internal
        })?
    }

    /// Reads the gauges reported by `/metrics`.
    pub async fn gauges(&self) -> Result<Gauges, AppError> {
        let mut gauges = self
            .with_reader(|conn| {
                let devices = db::devices::count_active(conn)?;
                let (documents, document_bytes) = db::documents::totals(conn)?;
                let (mailbox_envelopes, mailbox_bytes) = db::mailbox::totals(conn)?;
                Ok(Gauges {
                    devices,
                    documents,
                    document_bytes,
                    mailbox_envelopes,
                    mailbox_bytes,
                    ..Gauges::default()
                })
            })
            .await?;
        gauges.cache_bytes = self.inner.cache_bytes.load(Ordering::Relaxed);
        gauges.cached_documents = self.inner.cached_documents.load(Ordering::Relaxed);
        Ok(gauges)
    }

    /// Records the document cache's size, and the documents it loaded since, for `/metrics`.
    pub fn record_cache(&self, cache: &mut DocCache) {
        self.metrics().documents_loaded(cache.take_loads());
        self.inner
            .cache_bytes
            .store(cache.used_bytes(), Ordering::Relaxed);
        self.inner
            .cached_documents
            .store(cache.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use phakhi_core::seal::StaticKeyPair;

    use super::*;

    fn joined_folder() -> crate::db::tempdata::TempData {
        let dir = crate::db::tempdata::TempData::new();
        keys::load_or_create(dir.path(), false, &mut rand_core::OsRng).unwrap();
        let conn = db::open(dir.path()).unwrap();
        let joined = db::upstream::Joined {
            hq_url: "http://192.0.2.1:7744".into(),
            hq_key: *StaticKeyPair::generate(&mut rand_core::OsRng).public(),
            hq_verifying: [7; 32],
            device_id: "ab12cd34ef56".into(),
            provinces: vec!["TH-44".into()],
            joined_at: 1_700_000_000,
        };
        assert!(db::upstream::record_join(&conn, &joined).unwrap());
        dir
    }

    #[test]
    fn a_joined_folder_opens_as_a_relay_and_never_gets_a_signing_key() {
        let dir = joined_folder();
        let config = Config {
            data: dir.path().to_path_buf(),
            role: ServerRole::Hq,
            ..Config::default()
        };
        let opened = AppState::open(config).unwrap();
        assert_eq!(opened.state.config().role, ServerRole::Relay);
        assert!(opened.state.keys().signing().is_none());
        assert!(!opened.first_start);
        assert!(opened.state.joined().is_some());
        drop(opened);
        let loaded = keys::load(dir.path()).unwrap().unwrap();
        assert!(loaded.signing().is_none(), "a relay holds no signing key");
    }

    /// The cap on requests in flight holds, those past it wait in the queue, and one past the
    /// queue is refused at once; a place that frees goes to the one waiting.
    #[tokio::test]
    async fn requests_past_the_cap_wait_in_a_bounded_queue() {
        let dir = crate::db::tempdata::TempData::new();
        let config = Config {
            data: dir.path().to_path_buf(),
            limits: crate::config::Limits {
                max_requests_in_flight: 1,
                max_requests_waiting: 1,
                ..crate::config::Limits::default()
            },
            ..Config::default()
        };
        let state = AppState::open(config).unwrap().state;
        let first = state.in_flight_permit().await.expect("a place");
        let waiter = tokio::spawn({
            let state = state.clone();
            async move { state.in_flight_permit().await.is_some() }
        });
        while state.requests_waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(
            state.in_flight_permit().await.is_none(),
            "the queue is full: busy"
        );
        assert_eq!(
            state.requests_waiting(),
            1,
            "the refused one left the queue"
        );
        drop(first);
        assert!(waiter.await.unwrap(), "the waiting request got the place");
        assert_eq!(state.requests_waiting(), 0);
    }

    #[test]
    fn a_folder_that_never_joined_keeps_the_configured_role() {
        let dir = crate::db::tempdata::TempData::new();
        let config = Config {
            data: dir.path().to_path_buf(),
            ..Config::default()
        };
        let opened = AppState::open(config).unwrap();
        assert_eq!(opened.state.config().role, ServerRole::Hq);
        assert!(opened.state.keys().signing().is_some());
        assert!(opened.first_start);
    }
}
