//! The last part of an upstream round: the attachment chunks the relay's phones uploaded go on
//! to HQ's `POST /v1/chunks`, sealed as the relay's own enrolled device, after the documents
//! and tip envelopes of the round (a tip is useful without its attachment, never the reverse).
//!
//! For each page of waiting chunks of one province the relay first asks HQ which of them it
//! already holds (`have`), so a round after a cut link resumes at the first chunk HQ lacks and
//! nothing HQ holds is sent again; then it sends the rest a few at a time. Only after HQ's
//! answer (which HQ sends after its commit) are the chunks HQ lists marked acknowledged and
//! their bytes pruned here. A cut exchange costs at most the chunks it carried.
//!
//! How many chunks go in one exchange follows the link, by the same policy as a phone's upload
//! ([`Pace`], kept for as long as the upstream task runs): one to start, doubling while
//! exchanges are quick, halving after a slow or failed one, never more than about a mebibyte.
//! A phase runs for at most [`PHASE_BUDGET`]; what is left goes in the next round, which starts
//! at once, so new documents and tips never wait behind a long upload.

use std::time::{Duration, Instant};

use phakhi_core::attach::{ChunkId, Pace};
use phakhi_core::client::{self, CarryError, ClientError};
use phakhi_core::protocol::{ChunkRequest, ChunkResponse, ErrorCode, MAX_HAVE_IDS};
use rusqlite::TransactionBehavior;

use super::{Link, UpstreamError};
use crate::db::{self, DbError};
use crate::state::AppState;

/// Longest time one round spends on chunks before it lets documents and tips go again.
pub const PHASE_BUDGET: Duration = Duration::from_secs(60);

/// Forwards waiting chunks until none is left (`Ok(false)`), the phase's time is up
/// (`Ok(true)`: more wait), or an exchange fails.
pub(super) async fn forward(
    state: &AppState,
    link: &Link,
    pace: &mut Pace,
) -> Result<bool, UpstreamError> {
    let started = Instant::now();
    loop {
        let (waiting, count) = state
            .with_reader(|conn| {
                Ok((
                    db::chunks::unacked(conn, MAX_HAVE_IDS)?,
                    db::chunks::count_unacked(conn)?,
                ))
            })
            .await?;
        state.update_upstream(|status| {
            status.chunks_waiting = count;
            status.chunk_batch = pace.batch();
        });
        let Some((_, province)) = waiting.first() else {
            state.update_upstream(|status| status.chunk_last_error = None);
            return Ok(false);
        };
        let province = province.clone();
        let page: Vec<ChunkId> = waiting
            .iter()
            .filter(|(_, of)| *of == province)
            .map(|(id, _)| *id)
            .collect();
        // Which of them HQ holds already (sent before an answer was lost, or by another path).
        let held = step(state, link, &province, page.clone(), Vec::new()).await?;
        let mut left: Vec<ChunkId> = page.into_iter().filter(|id| !held.contains(id)).collect();
        while !left.is_empty() {
            if started.elapsed() >= PHASE_BUDGET {
                return Ok(true);
            }
            let batch: Vec<ChunkId> = left.iter().take(pace.batch()).copied().collect();
            let sent_at = Instant::now();
            match step(state, link, &province, Vec::new(), batch.clone()).await {
                Ok(_) => pace.answered(batch.len(), sent_at.elapsed()),
                Err(error) => {
                    pace.lost();
                    state.update_upstream(|status| status.chunk_batch = pace.batch());
                    return Err(error);
                }
            }
            state.update_upstream(|status| status.chunk_batch = pace.batch());
            left.retain(|id| !batch.contains(id));
        }
        if started.elapsed() >= PHASE_BUDGET {
            return Ok(true);
        }
    }
}

/// One exchange: ask about `have`, hand over the chunks `send`; on HQ's answer prune every
/// chunk it lists as held. Returns those ids.
async fn step(
    state: &AppState,
    link: &Link,
    province: &str,
    have: Vec<ChunkId>,
    send: Vec<ChunkId>,
) -> Result<Vec<ChunkId>, UpstreamError> {
    let wanted = send.clone();
    let loaded = state
        .with_reader(move |conn| {
            let mut out = Vec::with_capacity(wanted.len());
            for id in wanted {
                // A chunk pruned meanwhile is simply not sent.
                if let Some(bytes) = db::chunks::get(conn, &id)? {
                    out.push((id, bytes));
                }
            }
            Ok(out)
        })
        .await?;
    let sent: Vec<ChunkId> = loaded.iter().map(|(id, _)| *id).collect();
    let request = ChunkRequest {
        province: province.to_owned(),
        have: have.clone(),
        chunks: loaded.into_iter().map(|(_, bytes)| bytes).collect(),
    };
    let talker = state.clone();
    let talk_link = link.clone();
    let carried = sent.len() as u64;
    let answer = tokio::task::spawn_blocking(move || talk(&talker, &talk_link, &request))
        .await
        .map_err(|error| UpstreamError::Storage(format!("upstream task failed: {error}")))?;
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            state.update_upstream(|status| {
                status.chunk_exchanges_failed += 1;
                status.chunks_in_failed_exchanges += carried;
                status.chunk_last_error = Some(error.to_string());
            });
            return Err(error);
        }
    };
    // HQ may only vouch for ids it was asked about or handed.
    let held: Vec<ChunkId> = answer
        .held
        .into_iter()
        .filter(|id| have.contains(id) || sent.contains(id))
        .collect();
    if let Some(missing) = sent.iter().find(|id| !held.contains(id)) {
        let error = UpstreamError::Protocol(format!(
            "HQ answered a chunk exchange without confirming chunk {}; the chunks stay here",
            hex::encode(missing.0)
        ));
        state.update_upstream(|status| status.chunk_last_error = Some(error.to_string()));
        return Err(error);
    }
    let found = held.iter().filter(|id| have.contains(id)).count() as u64;
    let pruning = held.clone();
    let (pruned, waiting) = state
        .with_core(move |core| {
            let tx = core
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(DbError::from)?;
            let mut pruned = 0u64;
            for id in &pruning {
                // Only chunks whose bytes were still here count as newly pruned.
                if db::chunks::pass_on(&tx, id)? {
                    pruned += 1;
                }
            }
            let waiting = db::chunks::count_unacked(&tx)?;
            tx.commit().map_err(DbError::from)?;
            // The phones' counts do not start again here: what HQ acknowledged still fills this
            // relay's share at HQ until the tip desk releases it (`crate::allowance::relay_shares`).
            Ok((pruned, waiting))
        })
        .await?;
    state.update_upstream(|status| {
        status.chunks_acked += pruned;
        status.chunks_found_held += found.min(pruned);
        status.chunks_waiting = waiting;
    });
    Ok(held)
}

/// The network part, on a blocking thread: the core's client driver seals the request to HQ,
/// posts it, opens and decodes the answer.
fn talk(
    state: &AppState,
    link: &Link,
    request: &ChunkRequest,
) -> Result<ChunkResponse, UpstreamError> {
    let mut driver = link.driver(state, client::talk::chunks(request), 1);
    let answer = link.drive(&mut driver);
    let (sent, received) = driver.bytes();
    state.update_upstream(|status| {
        status.chunk_exchanges += 1;
        status.chunks_sent += request.chunks.len() as u64;
        status.chunk_bytes_sent += sent;
        status.bytes_sent += sent;
        status.bytes_received += received;
    });
    match answer {
        Ok(Some(answer)) => Ok(answer),
        Ok(None) => Err(UpstreamError::Protocol(
            "the chunk exchange sent nothing".into(),
        )),
        Err(ClientError::Carry(carry)) => Err(refusal(link, carry)),
        Err(ClientError::Seal(error)) => Err(UpstreamError::Protocol(format!(
            "cannot seal the chunk request: {error}"
        ))),
        Err(other) => Err(UpstreamError::Protocol(format!(
            "HQ's chunk answer: {other}"
        ))),
    }
}

/// What a failed chunk exchange means, with what to do about it.
fn refusal(link: &Link, error: CarryError) -> UpstreamError {
    if error.code() == Some(ErrorCode::ChunkQuotaExceeded) {
        return UpstreamError::Refused {
            code: ErrorCode::ChunkQuotaExceeded.as_str().to_owned(),
            message: "HQ's attachment quota for this relay is full, so attachment chunks wait \
                      here (documents and tips still sync); the tip desk frees it by collecting \
                      attachments, or raise chunks_per_relay under [limits] in HQ's config"
                .into(),
        };
    }
    super::talk::carry_error(link, error)
}
