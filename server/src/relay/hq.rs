//! HQ's side of a relay's section: registering the devices the relay enrolled (each checked
//! against the HQ-signed invite it presented, whose one-time token HQ then spends), and listing
//! the revocations the relay must apply. Runs inside the sync exchange's transaction, so the
//! registrations commit exactly when the rest of the exchange does.

use phakhi_core::protocol::relay::{
    MAX_REVOCATIONS, Refusal, Registration, Revocation, UpstreamRequest, UpstreamResponse,
};
use phakhi_core::seal::{HqVerifyingKey, InviteError, SignedInvite};
use rusqlite::Transaction;

use crate::db::DbError;
use crate::db::devices::{self, Device, Role};
use crate::enroll::{self, Admission};
use crate::error::AppError;

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
    for registration in &request.registrations {
        // One savepoint per registration: a refused one leaves no trace.
        let savepoint = tx.savepoint().map_err(DbError::from)?;
        match register(&savepoint, hq, relay, registration, now) {
            Ok(()) => {
                savepoint.commit().map_err(DbError::from)?;
                out.accepted.push(registration.public_key);
            }
            Err(Refused::Fatal(error)) => return Err(error),
            Err(Refused::Because(reason)) => {
                drop(savepoint);
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
    out.revoked = revoked_in(tx, relay)?;
    Ok(out)
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
    now: u64,
) -> Result<(), Refused> {
    // The invite is checked at the time the relay admitted the device (HQ may have been out of
    // reach for days since), never later than now.
    let at = registration.enrolled_at.min(now);
    let invite = SignedInvite::parse(&registration.invite)
        .and_then(|signed| signed.verify(hq, at))
        .map_err(|error| match error {
            InviteError::Expired { .. } => {
                Refused::Because("the invite had expired when the relay admitted it".into())
            }
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
    let role = match invite.role {
        phakhi_core::seal::Role::Leader => Role::Leader,
        phakhi_core::seal::Role::Coordinator => Role::Coordinator,
        phakhi_core::seal::Role::Admin => Role::Admin,
        phakhi_core::seal::Role::Relay => {
            return Err(Refused::Because(
                "a relay cannot enrol another relay".into(),
            ));
        }
    };
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

/// Revoked devices of the relay's provinces (never the relay itself), oldest first.
fn revoked_in(conn: &rusqlite::Connection, relay: &Device) -> Result<Vec<Revocation>, DbError> {
    let mut out: Vec<Revocation> = devices::list(conn)?
        .into_iter()
        .filter(|device| device.row != relay.row)
        .filter(|device| device.provinces.iter().any(|p| relay.provinces.contains(p)))
        .filter_map(|device| {
            device.revoked_at.map(|at| Revocation {
                public_key: device.public_key,
                revoked_at: u64::try_from(at).unwrap_or(0),
            })
        })
        .collect();
    out.sort_by_key(|revocation| revocation.revoked_at);
    out.truncate(MAX_REVOCATIONS);
    Ok(out)
}
