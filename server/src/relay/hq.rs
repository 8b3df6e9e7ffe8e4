//! HQ's side of a relay's section: registering the devices the relay enrolled (each checked
//! against the HQ-signed invite it presented, whose one-time token HQ then spends), taking the
//! revocations the relay made itself, and listing the revocations the relay must apply: a page
//! at a time after the relay's cursor, in the order they happened, so none is ever dropped
//! (a relay that does not page gets the newest [`MAX_REVOCATIONS`]).
//!
//! A registration HQ refuses is kept (`refused_registrations`), so HQ's operator can still
//! revoke that device, which keeps syncing at its relay until then.
//!
//! A relay says when it admitted each device, and a relay cut off from HQ for days may honestly
//! report a device whose invite has expired since. HQ believes that claim only back to the relay's
//! join and to the last exchange in which the relay had reported every device it enrolled (its
//! registrations did not fill a batch): a relay that was in touch cannot backdate an expired
//! invite. A relay that sends short batches while holding more only moves that bound forward. Runs inside the sync exchange's transaction, so the
//! registrations commit exactly when the rest of the exchange does.

use phakhi_core::protocol::relay::{
    LastSync, MAX_REVOCATIONS, Refusal, Registration, Revocation, UpstreamRequest, UpstreamResponse,
};
use phakhi_core::seal::{HqVerifyingKey, InviteError, SignedInvite};
use rusqlite::Transaction;

use crate::db::DbError;
use crate::db::devices::{self, Device, Role};
use crate::enroll::{self, Admission};
use crate::error::AppError;
use crate::relay::upstream::REGISTRATION_BATCH;

/// Registers what `relay` sends and prepares the answer. A registration HQ refuses is named in
/// the answer (with why) and changes nothing; a storage failure fails the whole exchange.
pub fn answer(
    tx: &mut Transaction<'_>,
    hq: &HqVerifyingKey,
    relay: &Device,
    request: &UpstreamRequest,
    now: u64,
) -> Result<UpstreamResponse, AppError> {
    let mut out = UpstreamResponse::default();
    let believed_from = devices::registered_through(tx, relay.row)?
        .unwrap_or(relay.enrolled_at)
        .max(relay.enrolled_at);
    let believed_from = u64::try_from(believed_from).unwrap_or(0);
    for registration in &request.registrations {
        // One savepoint per registration: a refused one leaves no trace.
        let savepoint = tx.savepoint().map_err(DbError::from)?;
        match register(&savepoint, hq, relay, registration, believed_from, now) {
            Ok(()) => {
                savepoint.commit().map_err(DbError::from)?;
                out.accepted.push(registration.public_key);
            }
            Err(Refused::Fatal(error)) => return Err(error),
            Err(Refused::Because(reason)) => {
                drop(savepoint);
                keep_refused(tx, relay, registration, &reason, now)?;
                tracing::warn!(
                    relay = %relay.device_id,
                    device = %devices::device_id(&registration.public_key),
                    %reason,
                    "registration from the relay refused"
                );
                out.refused.push(Refusal {
                    public_key: registration.public_key,
                    reason,
                });
            }
        }
    }
    for seen in &request.last_syncs {
        record_last_sync(tx, relay, seen, now)?;
    }
    if !request.named_only && request.registrations.len() < REGISTRATION_BATCH {
        // The relay had no more to report: nothing it enrolled before now is news from now on.
        devices::set_registered_through(tx, relay.row, i64::try_from(now).unwrap_or(i64::MAX))?;
    }
    if request.revocation_cursor.is_some() {
        for revocation in &request.revocations {
            take_revocation(tx, relay, revocation, now)?;
            out.revocations_taken.push(revocation.public_key);
        }
    }
    devices::number_revocations(tx)?;
    match request.revocation_cursor {
        Some(cursor) => {
            let page = revoked_after(tx, relay, cursor)?;
            out.revoked = page.revoked;
            out.revocation_cursor = Some(page.cursor);
            out.more_revocations = page.more;
        }
        None => out.revoked = revoked_newest(tx, relay)?,
    }
    Ok(out)
}

/// Whether a device of the relay's provinces, as the relay sees it: not a relay or the tip desk,
/// and every province it has within the relay's.
fn in_relays_provinces(relay: &Device, device: &Device) -> bool {
    device.row != relay.row
        && !matches!(device.role, Role::Relay | Role::Admin)
        && !device.provinces.is_empty()
        && device
            .provinces
            .iter()
            .all(|code| relay.provinces.contains(code))
}

/// Keeps a registration HQ refused, so its operator can revoke that device from here.
fn keep_refused(
    conn: &rusqlite::Connection,
    relay: &Device,
    registration: &Registration,
    reason: &str,
    now: u64,
) -> Result<(), AppError> {
    let Some(role) = Role::parse(&registration.role) else {
        return Ok(());
    };
    if matches!(role, Role::Relay | Role::Admin)
        || registration.provinces.is_empty()
        || !registration
            .provinces
            .iter()
            .all(|code| relay.provinces.contains(code))
    {
        return Ok(());
    }
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    devices::record_refused(
        conn,
        &devices::RefusedRegistration {
            public_key: registration.public_key,
            device_id: devices::device_id(&registration.public_key),
            role,
            provinces: registration.provinces.clone(),
            reason: reason.to_owned(),
        },
        relay.row,
        now - now.rem_euclid(86_400),
    )?;
    Ok(())
}

/// A device the relay revoked is revoked here too, when it is one of the relay's provinces'
/// (a relay cannot revoke another province's device, another relay or the tip desk). A device
/// HQ only knows as a refused registration of that relay is recorded here, revoked, so it
/// cannot enrol at HQ either. Anything else is left alone: the relay is told it was taken
/// either way, so it is not sent again.
fn take_revocation(
    conn: &rusqlite::Connection,
    relay: &Device,
    revocation: &Revocation,
    now: u64,
) -> Result<(), AppError> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    match devices::by_key(conn, &revocation.public_key)? {
        Some(device) if in_relays_provinces(relay, &device) => {
            if devices::revoke(conn, device.row, now)? {
                tracing::info!(
                    relay = %relay.device_id,
                    device = %device.device_id,
                    "revoked here, as the relay revoked it"
                );
            }
        }
        Some(device) => {
            if device.revoked_at.is_none() {
                tracing::warn!(
                    relay = %relay.device_id,
                    device = %device.device_id,
                    "a relay revoked a device outside its provinces; not revoked here"
                );
            }
        }
        None => {
            let id = devices::device_id(&revocation.public_key);
            let known = devices::find_refused(conn, &id)?
                .into_iter()
                .find(|refused| refused.public_key == revocation.public_key);
            if let Some(refused) = known
                && refused
                    .provinces
                    .iter()
                    .all(|code| relay.provinces.contains(code))
            {
                revoke_refused(conn, &refused, now)?;
            }
        }
    }
    Ok(())
}

/// Records a device HQ refused to register as a revoked device, so every relay of its
/// provinces refuses it after its next round and it cannot enrol here.
pub fn revoke_refused(
    conn: &rusqlite::Connection,
    refused: &devices::RefusedRegistration,
    now: i64,
) -> Result<Device, DbError> {
    let device = match devices::insert(
        conn,
        &refused.public_key,
        refused.role,
        &refused.provinces,
        now,
    )? {
        Some(device) => device,
        None => devices::by_key(conn, &refused.public_key)?
            .ok_or_else(|| DbError::Corrupt("a device vanished while being revoked".into()))?,
    };
    devices::revoke(conn, device.row, now)?;
    Ok(device)
}

/// Most revoked devices looked at for one page (of any province).
const PAGE_SCAN: usize = 4 * MAX_REVOCATIONS;

/// One page of revocations for a relay.
struct Page {
    revoked: Vec<Revocation>,
    cursor: u64,
    more: bool,
}

/// The revocations of the relay's provinces numbered after `cursor`, oldest first, at most
/// [`MAX_REVOCATIONS`]; the cursor moves past every revocation looked at, of any province.
fn revoked_after(
    conn: &rusqlite::Connection,
    relay: &Device,
    cursor: u64,
) -> Result<Page, DbError> {
    let after = i64::try_from(cursor).unwrap_or(i64::MAX);
    let scanned = devices::revoked_after(conn, after, PAGE_SCAN)?;
    let mut page = Page {
        revoked: Vec::new(),
        cursor,
        more: scanned.len() == PAGE_SCAN,
    };
    for (seq, device) in scanned {
        if page.revoked.len() == MAX_REVOCATIONS {
            page.more = true;
            break;
        }
        page.cursor = u64::try_from(seq).unwrap_or(cursor);
        if device.row == relay.row || !device.provinces.iter().any(|p| relay.provinces.contains(p))
        {
            continue;
        }
        if let Some(at) = device.revoked_at {
            page.revoked.push(Revocation {
                public_key: device.public_key,
                revoked_at: u64::try_from(at).unwrap_or(0),
            });
        }
    }
    Ok(page)
}

/// For a relay that does not page: the newest [`MAX_REVOCATIONS`] of its provinces, newest
/// first (an older relay reads one list and applies what it knows).
fn revoked_newest(conn: &rusqlite::Connection, relay: &Device) -> Result<Vec<Revocation>, DbError> {
    let mut out = Vec::new();
    for device in devices::revoked_newest(conn, PAGE_SCAN)? {
        if out.len() == MAX_REVOCATIONS {
            break;
        }
        if device.row == relay.row || !device.provinces.iter().any(|p| relay.provinces.contains(p))
        {
            continue;
        }
        if let Some(at) = device.revoked_at {
            out.push(Revocation {
                public_key: device.public_key,
                revoked_at: u64::try_from(at).unwrap_or(0),
            });
        }
    }
    Ok(out)
}

/// A relay's phone synced there: HQ's `last_sync` for it moves forward (never past now), for a
/// phone HQ knows in the relay's provinces only; any other key is ignored.
fn record_last_sync(
    conn: &rusqlite::Connection,
    relay: &Device,
    seen: &LastSync,
    now: u64,
) -> Result<(), DbError> {
    let Some(device) = devices::by_key(conn, &seen.public_key)? else {
        return Ok(());
    };
    let served = device.role != Role::Relay
        && device.revoked_at.is_none()
        && !device.provinces.is_empty()
        && device
            .provinces
            .iter()
            .all(|code| relay.provinces.contains(code));
    if served {
        let at = i64::try_from(seen.at.min(now)).unwrap_or(i64::MAX);
        devices::touch_at_least(conn, device.row, at)?;
    }
    Ok(())
}

enum Refused {
    /// This registration only: named in the answer.
    Because(String),
    /// The exchange fails (storage).
    Fatal(AppError),
}

impl From<DbError> for Refused {
    fn from(error: DbError) -> Self {
        Refused::Fatal(error.into())
    }
}

fn register(
    conn: &rusqlite::Connection,
    hq: &HqVerifyingKey,
    relay: &Device,
    registration: &Registration,
    believed_from: u64,
    now: u64,
) -> Result<(), Refused> {
    // The invite is checked at the time the relay admitted the device (HQ may have been out of
    // reach for days since), never later than now and never earlier than HQ can believe.
    if let Some(known) = devices::by_key(conn, &registration.public_key)?
        && devices::invite(conn, known.row)?.as_deref() == Some(registration.invite.trim())
    {
        // Registered already with this very invite (the answer was lost): nothing to check again.
        return Ok(());
    }
    let at = registration.enrolled_at.max(believed_from).min(now);
    let invite = SignedInvite::parse(&registration.invite)
        .and_then(|signed| signed.verify(hq, at))
        .map_err(|error| match error {
            InviteError::Expired { .. } => Refused::Because(
                "the invite had expired when the relay admitted it, or when it last reported \
                     every device it enrolled"
                    .into(),
            ),
            other => Refused::Because(format!("invite: {other}")),
        })?;
    if invite.server_key.as_bytes() != &relay.public_key {
        return Err(Refused::Because(
            "the invite was issued for another server than this relay".into(),
        ));
    }
    if let Some(outside) = invite
        .provinces
        .iter()
        .find(|code| !relay.provinces.contains(code))
    {
        return Err(Refused::Because(format!(
            "the invite names {outside}, which this relay does not serve"
        )));
    }
    let role = invite.role;
    if role == Role::Relay {
        return Err(Refused::Because(
            "a relay cannot enrol another relay".into(),
        ));
    }
    if let Some(known) = devices::by_key(conn, &registration.public_key)? {
        // Already registered (an earlier answer was lost, or it enrolled here directly).
        return if known.role == role {
            Ok(())
        } else {
            Err(Refused::Because(format!(
                "HQ already knows this device as {}",
                known.role.as_str()
            )))
        };
    }
    let admission = Admission {
        role,
        provinces: invite.provinces.clone(),
        token: invite.token.0.to_vec(),
    };
    let at = i64::try_from(at).unwrap_or(i64::MAX);
    let device =
        enroll::register(conn, &registration.public_key, &admission, at).map_err(|error| {
            match error {
                fatal @ (AppError::Internal | AppError::Busy) => Refused::Fatal(fatal),
                other => Refused::Because(other.to_string()),
            }
        })?;
    devices::set_invite(conn, device.row, registration.invite.trim())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use phakhi_core::seal::{HqSigningKey, Invite, InviteToken, PublicKey};
    use rand_core::OsRng;

    struct Hq {
        _dir: crate::db::tempdata::TempData,
        conn: rusqlite::Connection,
        signing: HqSigningKey,
        relay: Device,
    }

    fn hq() -> Hq {
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        let relay = devices::insert(&conn, &[9; 32], Role::Relay, &["TH-44".into()], 1)
            .unwrap()
            .unwrap();
        Hq {
            _dir: dir,
            conn,
            signing: phakhi_core::seal::keys::generate_hq_signing_key(&mut OsRng),
            relay,
        }
    }

    fn registration(hq: &Hq, key: u8, server: [u8; 32], provinces: &[&str]) -> Registration {
        let invite = Invite {
            servers: vec!["http://192.0.2.44:7744".into()],
            server_key: PublicKey::from_bytes(server),
            tip_desk_key: PublicKey::from_bytes([7; 32]),
            provinces: provinces.iter().map(|p| p.to_string()).collect(),
            role: Role::Leader,
            expires_at: 1_000,
            token: InviteToken::generate(&mut OsRng),
        };
        Registration {
            public_key: [key; 32],
            role: "leader".into(),
            provinces: invite.provinces.clone(),
            enrolled_at: 500,
            invite: invite.sign(&hq.signing).unwrap(),
        }
    }

    fn run(hq: &mut Hq, registrations: Vec<Registration>, now: u64) -> UpstreamResponse {
        let verifying = hq.signing.verifying_key();
        let relay = hq.relay.clone();
        let mut tx = hq.conn.transaction().unwrap();
        let request = UpstreamRequest {
            named_only: false,
            registrations,
            ..UpstreamRequest::default()
        };
        let out = answer(&mut tx, &verifying, &relay, &request, now).unwrap();
        tx.commit().unwrap();
        out
    }

    #[test]
    fn good_registrations_are_taken_once_and_bad_ones_leave_no_trace() {
        let mut hq = hq();
        let good = registration(&hq, 1, [9; 32], &["TH-44"]);
        let other_server = registration(&hq, 2, [8; 32], &["TH-44"]);
        let other_province = registration(&hq, 3, [9; 32], &["TH-40"]);
        let mut forged = registration(&hq, 4, [9; 32], &["TH-44"]);
        forged.invite = registration(&hq, 4, [9; 32], &["TH-44"])
            .invite
            .replace('A', "B");
        // Checked at the time the relay admitted it (500), although HQ hears of it at 2,000.
        let out = run(
            &mut hq,
            vec![good.clone(), other_server, other_province, forged],
            2_000,
        );
        assert_eq!(out.accepted, vec![[1; 32]]);
        let refused: Vec<u8> = out.refused.iter().map(|r| r.public_key[0]).collect();
        assert_eq!(refused, vec![2, 3, 4]);
        assert!(out.refused[0].reason.contains("another server"), "{out:?}");
        assert!(out.refused[1].reason.contains("TH-40"), "{out:?}");
        let listed = devices::list(&hq.conn).unwrap();
        assert_eq!(listed.len(), 2, "the relay and the one good phone");
        assert_eq!(listed[1].public_key, [1; 32]);
        assert_eq!(listed[1].enrolled_at, 500);

        // Sent again (a lost answer): accepted again, registered once.
        let out = run(&mut hq, vec![good.clone()], 2_001);
        assert_eq!(out.accepted, vec![[1; 32]]);
        assert_eq!(devices::list(&hq.conn).unwrap().len(), 2);
        // The same invite for another key: its token is spent.
        let mut reused = good;
        reused.public_key = [5; 32];
        let out = run(&mut hq, vec![reused], 2_002);
        assert!(out.accepted.is_empty());
        assert_eq!(devices::list(&hq.conn).unwrap().len(), 2);
    }

    fn registration_expiring(hq: &Hq, key: u8, enrolled_at: u64, expires_at: u64) -> Registration {
        let invite = Invite {
            servers: vec!["http://192.0.2.44:7744".into()],
            server_key: PublicKey::from_bytes([9; 32]),
            tip_desk_key: PublicKey::from_bytes([7; 32]),
            provinces: vec!["TH-44".into()],
            role: phakhi_core::seal::Role::Leader,
            expires_at,
            token: InviteToken::generate(&mut OsRng),
        };
        Registration {
            public_key: [key; 32],
            role: "leader".into(),
            provinces: invite.provinces.clone(),
            enrolled_at,
            invite: invite.sign(&hq.signing).unwrap(),
        }
    }

    #[test]
    fn a_relay_in_touch_with_hq_cannot_backdate_an_expired_invite() {
        let mut hq = hq();
        // Cut off since it joined (at 1): a device it admitted at 500 with an invite that
        // expired at 550 is believed when HQ hears of it at 700.
        let sent = registration_expiring(&hq, 1, 500, 550);
        let out = run(&mut hq, vec![sent], 700);
        assert_eq!(out.accepted, vec![[1; 32]], "{out:?}");
        // That exchange reported everything the relay held: from now on (700) it cannot claim
        // an earlier admission. An invite that expired at 650, claimed admitted at 600 and
        // reported at 800, is refused and leaves no trace.
        let sent = registration_expiring(&hq, 2, 600, 650);
        let out = run(&mut hq, vec![sent], 800);
        assert!(out.accepted.is_empty(), "{out:?}");
        assert!(out.refused[0].reason.contains("expired"), "{out:?}");
        assert!(devices::by_key(&hq.conn, &[2; 32]).unwrap().is_none());
        // Nor can it claim a time before it joined.
        let mut fresh = self::hq();
        let sent = registration_expiring(&fresh, 3, 0, 1);
        let out = run(&mut fresh, vec![sent], 5);
        assert!(out.accepted.is_empty(), "{out:?}");
        // A device it admitted after that last report (800) and before the invite expired is
        // believed, even when HQ hears of it after the expiry.
        let sent = registration_expiring(&hq, 4, 810, 900);
        let out = run(&mut hq, vec![sent], 950);
        assert_eq!(out.accepted, vec![[4; 32]], "{out:?}");
    }

    #[test]
    fn revocations_of_the_relays_provinces_go_down() {
        let mut hq = hq();
        let ours = devices::insert(&hq.conn, &[1; 32], Role::Leader, &["TH-44".into()], 1)
            .unwrap()
            .unwrap();
        let theirs = devices::insert(&hq.conn, &[2; 32], Role::Leader, &["TH-40".into()], 1)
            .unwrap()
            .unwrap();
        devices::insert(&hq.conn, &[3; 32], Role::Leader, &["TH-44".into()], 1)
            .unwrap()
            .unwrap();
        devices::revoke(&hq.conn, ours.row, 70).unwrap();
        devices::revoke(&hq.conn, theirs.row, 71).unwrap();
        let out = run(&mut hq, Vec::new(), 100);
        assert_eq!(
            out.revoked,
            vec![Revocation {
                public_key: [1; 32],
                revoked_at: 70
            }]
        );
    }

    fn paged(hq: &mut Hq, cursor: u64, revocations: Vec<Revocation>) -> UpstreamResponse {
        let verifying = hq.signing.verifying_key();
        let relay = hq.relay.clone();
        let mut tx = hq.conn.transaction().unwrap();
        let request = UpstreamRequest {
            revocation_cursor: Some(cursor),
            revocations,
            ..UpstreamRequest::default()
        };
        let out = answer(&mut tx, &verifying, &relay, &request, 10_000).unwrap();
        tx.commit().unwrap();
        out
    }

    #[test]
    fn revocations_are_paged_in_the_order_they_happened_and_none_is_dropped() {
        let mut hq = hq();
        let many = MAX_REVOCATIONS + 904;
        let tx = hq.conn.transaction().unwrap();
        for n in 0..many {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&(n as u32).to_be_bytes());
            key[31] = 1;
            let province = if n % 10 == 9 { "TH-40" } else { "TH-44" };
            let device = devices::insert(&tx, &key, Role::Leader, &[province.into()], 1)
                .unwrap()
                .unwrap();
            // Times that go back (a clock set back) do not reorder them.
            devices::revoke(&tx, device.row, 5_000 - n as i64).unwrap();
        }
        tx.commit().unwrap();
        let (mut cursor, mut seen, mut pages) = (0, Vec::new(), 0);
        loop {
            let out = paged(&mut hq, cursor, Vec::new());
            assert!(out.revoked.len() <= MAX_REVOCATIONS);
            pages += 1;
            seen.extend(out.revoked.iter().map(|r| r.public_key));
            cursor = out.revocation_cursor.unwrap();
            if !out.more_revocations {
                break;
            }
        }
        assert_eq!(pages, 2);
        let ours: Vec<[u8; 32]> = devices::list(&hq.conn)
            .unwrap()
            .into_iter()
            .filter(|d| d.revoked_at.is_some() && d.provinces == ["TH-44"])
            .map(|d| d.public_key)
            .collect();
        assert_eq!(seen, ours, "every one, oldest first, none twice");
        // Nothing new: an empty page, the cursor stays.
        let out = paged(&mut hq, cursor, Vec::new());
        assert!(out.revoked.is_empty() && !out.more_revocations);
        assert_eq!(out.revocation_cursor, Some(cursor));
        // A revocation written without a number (an older program) is numbered and sent.
        let late = devices::insert(&hq.conn, &[77; 32], Role::Leader, &["TH-44".into()], 1)
            .unwrap()
            .unwrap();
        hq.conn
            .execute(
                "UPDATE devices SET revoked_at = 1 WHERE id = ?1",
                [late.row],
            )
            .unwrap();
        let out = paged(&mut hq, cursor, Vec::new());
        assert_eq!(out.revoked.len(), 1);
        assert_eq!(out.revoked[0].public_key, [77; 32]);
        // A relay that does not page gets the newest.
        let old = run(&mut hq, Vec::new(), 10_000);
        assert_eq!(old.revoked.len(), MAX_REVOCATIONS);
        assert_eq!(old.revoked[0].public_key, [77; 32]);
        assert_eq!(old.revocation_cursor, None);
    }

    #[test]
    fn a_relays_own_revocations_are_taken_within_its_provinces_only() {
        let mut hq = hq();
        let ours = devices::insert(&hq.conn, &[1; 32], Role::Leader, &["TH-44".into()], 1)
            .unwrap()
            .unwrap();
        devices::insert(&hq.conn, &[2; 32], Role::Leader, &["TH-40".into()], 1)
            .unwrap()
            .unwrap();
        devices::insert(&hq.conn, &[3; 32], Role::Admin, &["TH-44".into()], 1)
            .unwrap()
            .unwrap();
        // HQ refused this one's registration from the relay: it is known only as that.
        let refused = registration(&hq, 4, [9; 32], &["TH-44"]);
        let mut broken = refused.clone();
        broken.invite = "PHAKHI1:not-an-invite".into();
        let out = run(&mut hq, vec![broken], 2_000);
        assert_eq!(out.refused.len(), 1);
        assert!(devices::by_key(&hq.conn, &[4; 32]).unwrap().is_none());
        let revocation = |key: u8| Revocation {
            public_key: [key; 32],
            revoked_at: 50,
        };
        let out = paged(
            &mut hq,
            0,
            vec![
                revocation(1),
                revocation(2),
                revocation(3),
                revocation(4),
                revocation(5),
            ],
        );
        assert_eq!(
            out.revocations_taken.len(),
            5,
            "each answered, so none is sent again"
        );
        let revoked = |key: u8| {
            devices::by_key(&hq.conn, &[key; 32])
                .unwrap()
                .map(|d| d.revoked_at.is_some())
        };
        assert_eq!(revoked(1), Some(true));
        assert_eq!(revoked(2), Some(false), "another province's");
        assert_eq!(revoked(3), Some(false), "the tip desk");
        assert_eq!(
            revoked(4),
            Some(true),
            "the refused registration, now revoked here"
        );
        assert_eq!(revoked(5), None);
        // ... and the page that answered lists the relay's province's revocations.
        let keys: Vec<u8> = out.revoked.iter().map(|r| r.public_key[0]).collect();
        assert_eq!(keys, vec![1, 4]);
        let _ = ours;
    }

    #[test]
    fn a_relays_phones_last_syncs_move_forward_within_its_provinces_only() {
        let mut hq = hq();
        let ours = devices::insert(&hq.conn, &[1; 32], Role::Leader, &["TH-44".into()], 1)
            .unwrap()
            .unwrap();
        devices::insert(&hq.conn, &[2; 32], Role::Leader, &["TH-40".into()], 1)
            .unwrap()
            .unwrap();
        let seen = |key: u8, at: u64| LastSync {
            public_key: [key; 32],
            at,
        };
        let send = |hq: &mut Hq, last_syncs: Vec<LastSync>, now: u64| {
            let relay = hq.relay.clone();
            let verifying = hq.signing.verifying_key();
            let mut tx = hq.conn.transaction().unwrap();
            let request = UpstreamRequest {
                last_syncs,
                ..UpstreamRequest::default()
            };
            answer(&mut tx, &verifying, &relay, &request, now).unwrap();
            tx.commit().unwrap();
        };
        let last = |hq: &Hq, key: u8| {
            devices::by_key(&hq.conn, &[key; 32])
                .unwrap()
                .unwrap()
                .last_sync
        };
        // Another province's phone, the relay itself and an unknown key are left alone.
        send(
            &mut hq,
            vec![
                seen(1, 7_200),
                seen(2, 7_200),
                seen(9, 7_200),
                seen(3, 7_200),
            ],
            10_000,
        );
        assert_eq!(last(&hq, 1), Some(7_200));
        assert_eq!(last(&hq, 2), None);
        assert_eq!(last(&hq, 9), None);
        // Never back, never past now.
        send(&mut hq, vec![seen(1, 3_600)], 10_000);
        assert_eq!(last(&hq, 1), Some(7_200));
        send(&mut hq, vec![seen(1, 90_000)], 10_800);
        assert_eq!(last(&hq, 1), Some(10_800));
        // A direct sync at HQ later still counts.
        devices::touch(&hq.conn, ours.row, 20_000).unwrap();
        send(&mut hq, vec![seen(1, 14_400)], 30_000);
        assert_eq!(last(&hq, 1), Some(20_000));
    }
}
