//! The server's side of the attachment chunk exchange (`POST /v1/chunks`): a device (or, at
//! HQ, a relay) hands over a few encrypted chunks and asks which ids are held. Every chunk is
//! checked before any is stored: exactly [`CHUNK_LEN`] bytes, its id the SHA-256 of its bytes,
//! a province the sender is enrolled for, and room in the sender's quota. A refused request
//! changes nothing. The answer lists every asked-about or handed-over id now held, and goes out
//! only after the transaction committed, so the sender may drop what it lists.

use phakhi_core::attach::{CHUNK_LEN, ChunkId};
use phakhi_core::protocol::{ChunkRequest, ChunkResponse};
use rusqlite::Connection;

use crate::db::chunks;
use crate::db::devices::Device;
use crate::error::AppError;
use crate::scope;

/// Applies one request inside the caller's transaction and prepares the answer.
/// `quota` is the most chunks the device may have stored and not yet passed on.
pub fn answer(
    conn: &Connection,
    device: &Device,
    request: &ChunkRequest,
    quota: i64,
    now: i64,
) -> Result<ChunkResponse, AppError> {
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
    let charged = chunks::charged_to(conn, device.row)?;
    if charged.saturating_add(i64::try_from(new.len()).unwrap_or(i64::MAX)) > quota {
        return Err(AppError::ChunkQuota);
    }
    for chunk in &request.chunks {
        let id = ChunkId::of(chunk);
        if new.contains(&id) {
            chunks::insert(conn, &id, chunk, &request.province, Some(device.row), now)?;
        }
    }
    let mut asked = request.have.clone();
    asked.extend(ids);
    Ok(ChunkResponse {
        held: chunks::held(conn, &asked)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::devices::{self, Role};

    fn chunk(fill: u8) -> Vec<u8> {
        let mut bytes = vec![fill; CHUNK_LEN];
        bytes[0] = 1;
        bytes
    }

    fn setup() -> (tempfile::TempDir, Connection, Device) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(dir.path()).unwrap();
        let device = devices::insert(&conn, &[1; 32], Role::Leader, &["TH-44".into()], 0)
            .unwrap()
            .unwrap();
        (dir, conn, device)
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
        let (a, b) = (chunk(1), chunk(2));
        let unknown = ChunkId([9; 32]);
        let out = answer(
            &conn,
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
            &device,
            &request(vec![a.clone(), b.clone()], vec![ChunkId::of(&a)]),
            10,
            6,
        )
        .unwrap();
        assert_eq!(out.held, vec![ChunkId::of(&a), ChunkId::of(&b)]);
        assert_eq!(chunks::charged_to(&conn, device.row).unwrap(), 2);
        assert_eq!(chunks::get(&conn, &ChunkId::of(&b)).unwrap(), Some(b));
    }

    #[test]
    fn refusals_change_nothing() {
        let (_dir, conn, device) = setup();
        let good = chunk(1);
        let short = vec![1u8; CHUNK_LEN - 1];
        let err = answer(
            &conn,
            &device,
            &request(vec![good.clone(), short], vec![]),
            10,
            5,
        )
        .unwrap_err();
        assert!(matches!(err, AppError::BadRequest(ref why) if why.contains("chunk 1")));

        let mut foreign = request(vec![good.clone()], vec![]);
        foreign.province = "TH-40".into();
        let err = answer(&conn, &device, &foreign, 10, 5).unwrap_err();
        assert_eq!(err, AppError::OutOfScope("chunks/TH-40".into()));

        let err = answer(
            &conn,
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
    fn the_quota_frees_up_once_chunks_are_passed_on() {
        let (_dir, conn, device) = setup();
        let (a, b) = (chunk(1), chunk(2));
        answer(&conn, &device, &request(vec![a.clone()], vec![]), 1, 5).unwrap();
        assert_eq!(
            answer(&conn, &device, &request(vec![b.clone()], vec![]), 1, 5).unwrap_err(),
            AppError::ChunkQuota
        );
        // Re-sending a held chunk costs no quota.
        answer(&conn, &device, &request(vec![a.clone()], vec![]), 1, 5).unwrap();
        chunks::mark_acked(&conn, &ChunkId::of(&a), 6).unwrap();
        let out = answer(&conn, &device, &request(vec![b.clone()], vec![]), 1, 7).unwrap();
        assert_eq!(out.held, vec![ChunkId::of(&b)]);
    }
}
