//! What a relay's upstream task reports about itself: when HQ last answered, the last error,
//! what is still waiting to go up, and running counts of what went up and came down. Shown in
//! `/healthz` and `/v1/health` (JSON, under `upstream`) so an operator, the tests and the
//! dashboard can read it. Attachment chunks have figures of their own (`chunks_*`): sent to
//! HQ per round they are the bulk of the bytes, and the first thing to look at on a slow link.

use serde::Serialize;

/// One item HQ refused on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetAsideItem {
    /// `tip`, `registration` or `document`.
    pub kind: &'static str,
    /// The envelope's id (hex), the device's id, or the document's name.
    pub id: String,
    /// The tip's province.
    pub province: Option<String>,
    /// HQ's error code (`out_of_scope`, …), or `registration_refused`.
    pub code: String,
    /// HQ's reason, and what happens next.
    pub reason: String,
    /// The day it was set aside (00:00 UTC, unix seconds).
    pub day: i64,
}

/// The upstream link's state, as last reported by the upstream task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UpstreamStatus {
    /// HQ's address.
    pub hq_url: String,
    /// This relay's id at HQ.
    pub device_id: String,
    /// Unix seconds of the last round that completed.
    pub last_success: Option<i64>,
    /// Unix seconds of the last attempt.
    pub last_attempt: Option<i64>,
    /// The last failure, with what to do; cleared by a success.
    pub last_error: Option<String>,
    /// Failed rounds since the last success.
    pub consecutive_failures: u32,
    /// Tips held here that HQ has not acknowledged yet (read from the store when the status
    /// is served, not only once per round).
    pub pending_envelopes: usize,
    /// Devices enrolled here that HQ has not registered yet (read like `pending_envelopes`).
    pub pending_registrations: i64,
    /// Rounds that completed.
    pub rounds: u64,
    /// Rounds begun since the server started, counting one in progress.
    pub rounds_started: u64,
    /// The number (in `rounds_started`) of the last round that completed: a round that began
    /// after a moment `rounds_started` read N has completed once this passes N
    /// (`phakhi health --synced` waits for that).
    pub last_success_round: u64,
    /// Exchanges with HQ attempted, and those that failed.
    pub exchanges: u64,
    pub exchanges_failed: u64,
    /// Rounds cut after some of their documents were finished (the next round resumed there).
    pub rounds_cut_after_progress: u64,
    /// Documents whose changes were sent up (one per document per exchange that carried any),
    /// and their automerge bytes.
    pub doc_chunks_sent: u64,
    pub doc_bytes_sent: u64,
    /// Sealed bytes sent to HQ and received from it.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Tips pushed to HQ (counting resends), and those HQ acknowledged and were pruned here.
    pub envelopes_pushed: u64,
    pub envelopes_pruned: u64,
    /// Replies from HQ stored here for the phones.
    pub replies_received: u64,
    pub registrations_accepted: u64,
    pub registrations_refused: u64,
    pub revocations_applied: u64,
    /// Revocations made here that HQ took.
    pub revocations_sent: u64,
    /// Revocations made here that HQ has not taken yet (read like `pending_envelopes`).
    pub pending_revocations: i64,
    /// Envelopes HQ refused one by one, set aside here since the server started.
    pub envelopes_set_aside: u64,
    /// What HQ refused on its own while the rest kept flowing: tips (kept here apart, never
    /// sent again) and registrations, read from the store; shown to the operator only (a tip
    /// set aside could point at the phone that sent it).
    pub set_aside: Vec<SetAsideItem>,
    /// Documents whose changes HQ refused in this server's recent rounds (offered again each
    /// round; everything else keeps syncing).
    pub documents_refused: Vec<SetAsideItem>,
    /// Attachment chunks held here that HQ has not acknowledged yet.
    pub chunks_waiting: i64,
    /// Chunk copies sent to HQ (counting those of exchanges that failed and went again), and
    /// the sealed bytes of the chunk exchanges.
    pub chunks_sent: u64,
    pub chunk_bytes_sent: u64,
    /// Chunks HQ confirmed holding whose bytes were pruned here; of those, the ones found held
    /// by asking HQ first, so not sent (they went before an answer was lost).
    pub chunks_acked: u64,
    pub chunks_found_held: u64,
    /// Chunk exchanges attempted and failed, and the chunks the failed ones carried (the most
    /// that can have been sent twice).
    pub chunk_exchanges: u64,
    pub chunk_exchanges_failed: u64,
    pub chunks_in_failed_exchanges: u64,
    /// Chunks per exchange now (it follows the link's speed).
    pub chunk_batch: usize,
    /// The last failure while forwarding chunks; cleared once none waits.
    pub chunk_last_error: Option<String>,
}
