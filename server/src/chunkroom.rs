//! The server's side of the attachment chunk exchange (`POST /v1/chunks`): a device (or, at
//! HQ, a relay) hands over a few encrypted chunks and asks which ids are held. Every chunk is
//! checked before any is stored: exactly [`CHUNK_LEN`] bytes, its id the SHA-256 of its bytes,
//! a province the sender is enrolled for, and room in the sender's quota. A refused request
//! changes nothing. The answer lists every asked-about or handed-over id now held, and goes out
//! only after the transaction committed, so the sender may drop what it lists.
//!
//! What a device can cost here is bounded twice: what it hands over before the chunks pass on
//! by its allowance ([`quota`]: `chunks_per_device` for a phone, `chunks_per_relay` for a relay
//! at HQ; counted in memory, never stored with the chunks, see [`crate::allowance`]) and its
//! pace by a token bucket counted in chunks ([`admit`], see [`crate::ratelimit`]). The stored
//! chunks name neither the device nor the time.

use phakhi_core::attach::{CHUNK_LEN, ChunkId};
use phakhi_core::protocol::{ChunkRequest, ChunkResponse};
use rusqlite::Connection;

use crate::allowance::Allowance;
use crate::config::Limits;
use crate::db::chunks;
use crate::db::devices::{Device, Role};
use crate::error::AppError;
use crate::scope;
use crate::state::AppState;

/// The most chunks `device` may hand over before what is held here passes on: a relay (at HQ)
/// carries a whole province, a phone only its own attachments.
pub fn quota(limits: &Limits, device: &Device) -> i64 {
    match device.role {
        Role::Relay => limits.chunks_per_relay,
        _ => limits.chunks_per_device,
    }
}

/// Decodes a chunk request and takes its rate-limit tokens. A phone pays one chunk token per
/// chunk carried (one for a question); a relay, which forwards a whole province at HQ, pays
/// one ordinary request token per request. Bytes that do not decode cost an ordinary token
/// too, so garbage is limited like any other request.
pub fn admit(state: &AppState, device: &Device, payload: &[u8]) -> Result<ChunkRequest, AppError> {
    let request = match ChunkRequest::decode(payload) {
        Ok(request) => request,
        Err(why) => {
            state.check_rate(&device.public_key)?;
            return Err(AppError::undecodable("chunk request", &why));
        }
    };
    match device.role {
        Role::Relay => state.check_rate(&device.public_key)?,
        _ => {
            let cost = u32::try_from(request.chunks.len()).unwrap_or(u32::MAX);
            state.check_chunk_rate(&device.public_key, cost.max(1))?;
        }
    }
    Ok(request)
}

/// What one chunk request did, for the log and the metrics once it is committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Taken {
    /// Chunks the request carried.
    pub received: usize,
    /// Of those, chunks new here (the rest were held already: sent again).
    pub stored: usize,
    /// Ids the answer lists as held.
    pub held: usize,
}

/// Admits, checks and stores one request of `device` inside the caller's transaction; the
/// caller commits, then calls [`committed`] and sends the answer.
pub fn serve(
    state: &AppState,
    conn: &Connection,
    allowance: &mut Allowance,
    device: &Device,
    payload: &[u8],
    now: i64,
) -> Result<(ChunkResponse, Taken), AppError> {
    let request = admit(state, device, payload)?;
    let mut quota = quota(&state.config().limits, device);
    if device.role == Role::Relay {
        // At least a share per phone of the relay, and one more (see
        // `crate::allowance::relay_shares`).
        let shares = crate::allowance::relay_shares(conn, device)?;
        let per_phone = state.config().limits.chunks_per_device;
        let shared = per_phone.saturating_mul(i64::try_from(shares).unwrap_or(i64::MAX));
        quota = quota.max(shared);
    }
    apply(conn, allowance, device, &request, quota, now)
}

/// After the commit: metrics, the log line, and a nudge to the upstream task (on a relay) when
/// chunks arrived.
pub fn committed(state: &AppState, taken: &Taken) {
    state.metrics().chunks(taken.received, taken.stored);
    if taken.stored > 0 {
        state.nudge_upstream();
    }
    tracing::info!(
        received = taken.received,
        stored = taken.stored,
        held = taken.held,
        "chunks committed"
    );
}

/// Applies one request inside the caller's transaction and prepares the answer.
/// `quota` is the most chunks the device may hand over before what is held passes on.
pub fn answer(
    conn: &Connection,
    allowance: &mut Allowance,
    device: &Device,
    request: &ChunkRequest,
    quota: i64,
    now: i64,
) -> Result<ChunkResponse, AppError> {
    apply(conn, allowance, device, request, quota, now).map(|(response, _)| response)
}

/// [`answer`], also saying what the request did. A refusal changes nothing, in the database or
/// the allowance (counted last, after every check).
pub fn apply(
    conn: &Connection,
    allowance: &mut Allowance,
    device: &Device,
    request: &ChunkRequest,
    quota: i64,
    now: i64,
) -> Result<(ChunkResponse, Taken), AppError> {
    if !request.chunks.is_empty() && !scope::mailbox_scope(device).contains(&request.province) {
        return Err(AppError::OutOfScope(format!("chunks/{}", request.province)));
    }
    let mut ids = Vec::with_capacity(request.chunks.len());
    for (index, chunk) in request.chunks.iter().enumerate() {
        if chunk.len() != CHUNK_LEN {
            return Err(AppError::BadRequest(format!(
                "chunk {index} is {} bytes, not {CHUNK_LEN}",
                chunk.len()
            )));
        }
        let id = ChunkId::of(chunk);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let known = chunks::held(conn, &ids)?;
    let new: Vec<ChunkId> = ids
        .iter()
        .filter(|id| !known.contains(id))
        .copied()
        .collect();
    allowance.take_chunks(
        &device.public_key,
        i64::try_from(new.len()).unwrap_or(i64::MAX),
        quota,
        now,
    )?;
    for chunk in &request.chunks {
        let id = ChunkId::of(chunk);
        if new.contains(&id) {
            chunks::insert(conn, &id, chunk, &request.province)?;
        }
    }
    let mut asked = request.have.clone();
    asked.extend(ids);
    let held = chunks::held(conn, &asked)?;
    let taken = Taken {
        received: request.chunks.len(),
        stored: new.len(),
        held: held.len(),
    };
    Ok((ChunkResponse { held }, taken))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::devices;

    fn chunk(fill: u8) -> Vec<u8> {
        let mut bytes = vec![fill; CHUNK_LEN];
        bytes[0] = 1;
        bytes
    }

    fn setup() -> (crate::db::tempdata::TempData, Connection, Device) {
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        let device = devices::insert(&conn, &[1; 32], Role::Leader, &["TH-44".into()], 0)
            .unwrap()
            .unwrap();
        (dir, conn, device)
    }

    fn allowance() -> Allowance {
        Allowance::new(crate::allowance::AllowanceLimits {
            envelopes: 0,
            envelope_bytes: 0,
        })
    }

    fn request(chunks: Vec<Vec<u8>>, have: Vec<ChunkId>) -> ChunkRequest {
        ChunkRequest {
            province: "TH-44".into(),
            have,
            chunks,
        }
    }

    #[test]
    fn chunks_are_stored_and_reported_held_with_the_asked_ids() {
        let (_dir, conn, device) = setup();
        let mut allowance = allowance();
        let (a, b) = (chunk(1), chunk(2));
        let unknown = ChunkId([9; 32]);
        let out = answer(
            &conn,
            &mut allowance,
            &device,
            &request(vec![a.clone()], vec![unknown]),
            10,
            5,
        )
        .unwrap();
        assert_eq!(out.held, vec![ChunkId::of(&a)]);
        // Sent again: nothing new is stored or charged, it is still reported held.
        let out = answer(
            &conn,
            &mut allowance,
            &device,
            &request(vec![a.clone(), b.clone()], vec![ChunkId::of(&a)]),
            10,
            6,
        )
        .unwrap();
        assert_eq!(out.held, vec![ChunkId::of(&a), ChunkId::of(&b)]);
        assert_eq!(allowance.devices_counted(), 1);
        assert_eq!(chunks::get(&conn, &ChunkId::of(&b)).unwrap(), Some(b));
    }

    #[test]
    fn refusals_change_nothing() {
        let (_dir, conn, device) = setup();
        let mut allowance = allowance();
        let good = chunk(1);
        let short = vec![1u8; CHUNK_LEN - 1];
        let err = answer(
            &conn,
            &mut allowance,
            &device,
            &request(vec![good.clone(), short], vec![]),
            10,
            5,
        )
        .unwrap_err();
        assert!(matches!(err, AppError::BadRequest(ref why) if why.contains("chunk 1")));

        let mut foreign = request(vec![good.clone()], vec![]);
        foreign.province = "TH-40".into();
        let err = answer(&conn, &mut allowance, &device, &foreign, 10, 5).unwrap_err();
        assert_eq!(err, AppError::OutOfScope("chunks/TH-40".into()));

        let err = answer(
            &conn,
            &mut allowance,
            &device,
            &request(vec![good.clone(), chunk(2), chunk(3)], vec![]),
            2,
            5,
        )
        .unwrap_err();
        assert_eq!(err, AppError::ChunkQuota);
        assert_eq!(chunks::totals(&conn).unwrap(), (0, 0));
        assert!(
            chunks::held(&conn, &[ChunkId::of(&good)])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_allowance_starts_again_once_chunks_are_passed_on() {
        let (_dir, conn, device) = setup();
        let mut allowance = allowance();
        let (a, b) = (chunk(1), chunk(2));
        answer(
            &conn,
            &mut allowance,
            &device,
            &request(vec![a.clone()], vec![]),
            1,
            5,
        )
        .unwrap();
        assert_eq!(
            answer(
                &conn,
                &mut allowance,
                &device,
                &request(vec![b.clone()], vec![]),
                1,
                5
            )
            .unwrap_err(),
            AppError::ChunkQuota
        );
        // Re-sending a held chunk costs nothing.
        answer(
            &conn,
            &mut allowance,
            &device,
            &request(vec![a.clone()], vec![]),
            1,
            5,
        )
        .unwrap();
        // HQ acknowledged it: the chunk is gone and the counts start again.
        assert!(chunks::pass_on(&conn, &ChunkId::of(&a)).unwrap());
        allowance.start_again();
        let out = answer(
            &conn,
            &mut allowance,
            &device,
            &request(vec![b.clone()], vec![]),
            1,
            7,
        )
        .unwrap();
        assert_eq!(out.held, vec![ChunkId::of(&b)]);
    }

    #[test]
    fn a_relay_at_hq_has_its_own_quota() {
        let limits = Limits {
            chunks_per_device: 3,
            chunks_per_relay: 30,
            ..Limits::default()
        };
        let (_dir, conn, phone) = setup();
        let mut allowance = allowance();
        let relay = devices::insert(&conn, &[2; 32], Role::Relay, &["TH-44".into()], 0)
            .unwrap()
            .unwrap();
        assert_eq!(quota(&limits, &phone), 3);
        assert_eq!(quota(&limits, &relay), 30);
        let five: Vec<Vec<u8>> = (10..15).map(chunk).collect();
        assert_eq!(
            answer(
                &conn,
                &mut allowance,
                &phone,
                &request(five.clone(), vec![]),
                quota(&limits, &phone),
                5
            )
            .unwrap_err(),
            AppError::ChunkQuota
        );
        let (out, taken) = apply(
            &conn,
            &mut allowance,
            &relay,
            &request(five.clone(), vec![]),
            quota(&limits, &relay),
            5,
        )
        .unwrap();
        assert_eq!(out.held.len(), 5);
        assert_eq!(
            taken,
            Taken {
                received: 5,
                stored: 5,
                held: 5
            }
        );
        // Sent again: received, held, nothing stored.
        let (_, taken) = apply(
            &conn,
            &mut allowance,
            &relay,
            &request(five, vec![]),
            quota(&limits, &relay),
            6,
        )
        .unwrap();
        assert_eq!((taken.received, taken.stored), (5, 0));
    }

    /// A phone pays a token per chunk from its own bucket, so an upload does not eat its
    /// syncs' budget; a relay pays one ordinary token per request; garbage pays a token too.
    #[test]
    fn chunk_requests_are_paced_by_the_chunks_they_carry() {
        let dir = crate::db::tempdata::TempData::new();
        let state = AppState::open(crate::config::Config {
            data: dir.path().to_path_buf(),
            limits: Limits {
                chunk_uploads_per_minute: 1,
                chunk_upload_burst: 4,
                requests_per_minute: 1,
                request_burst: 2,
                ..Limits::default()
            },
            ..crate::config::Config::default()
        })
        .unwrap()
        .state;
        let (_db, conn, phone) = setup();
        let relay = devices::insert(&conn, &[2; 32], Role::Relay, &["TH-44".into()], 0)
            .unwrap()
            .unwrap();
        let carrying = |n: u8| request((0..n).map(chunk).collect(), vec![]).encode();
        assert_eq!(admit(&state, &phone, &carrying(3)).unwrap().chunks.len(), 3);
        assert!(matches!(
            admit(&state, &phone, &carrying(2)).unwrap_err(),
            AppError::RateLimited { .. }
        ));
        // A question costs the last chunk token; the phone's sync tokens are untouched.
        assert!(admit(&state, &phone, &carrying(0)).is_ok());
        assert!(matches!(
            admit(&state, &phone, &carrying(0)).unwrap_err(),
            AppError::RateLimited { .. }
        ));
        assert!(state.check_rate(&phone.public_key).is_ok());
        // Garbage from the phone costs its last request token.
        assert!(matches!(
            admit(&state, &phone, b"\x01garbage").unwrap_err(),
            AppError::BadRequest(_)
        ));
        assert!(matches!(
            admit(&state, &phone, b"\x01garbage").unwrap_err(),
            AppError::RateLimited { .. }
        ));
        // A relay carries more chunks than a phone's whole bucket, one request token each.
        assert_eq!(
            admit(&state, &relay, &carrying(16)).unwrap().chunks.len(),
            16
        );
        assert!(admit(&state, &relay, &carrying(16)).is_ok());
        assert!(matches!(
            admit(&state, &relay, &carrying(1)).unwrap_err(),
            AppError::RateLimited { .. }
        ));
    }
}
