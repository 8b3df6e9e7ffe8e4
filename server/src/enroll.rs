//! Enrolment: a device presents an invite inside a transport envelope; the server checks the
//! invite and registers the device with the invite's role and provinces, spending the invite's
//! one-time token in the same transaction.

use rusqlite::Connection;

use crate::db::devices::{self, Device, Role};
use crate::db::invites;
use crate::error::AppError;
use crate::scope;

/// What a verified invite grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub role: Role,
    pub provinces: Vec<String>,
    pub token: Vec<u8>,
}

/// Registers `public_key` under `admission` inside the caller's transaction. Changes nothing
/// when it fails.
pub fn register(
    conn: &Connection,
    public_key: &[u8; 32],
    admission: &Admission,
    now: i64,
) -> Result<Device, AppError> {
    if let Some(bad) = admission
        .provinces
        .iter()
        .find(|code| !scope::valid_province(code))
    {
        return Err(AppError::InviteInvalid(format!(
            "unknown province code {bad:?}"
        )));
    }
    if admission.provinces.is_empty() {
        return Err(AppError::InviteInvalid("it names no province".into()));
    }
    if invites::is_used(conn, &admission.token)? {
        return Err(AppError::InviteUsed);
    }
    if let Some(existing) = devices::by_key(conn, public_key)? {
        return Err(if existing.revoked_at.is_some() {
            AppError::DeviceRevoked
        } else {
            AppError::AlreadyEnrolled
        });
    }
    let device = devices::insert(conn, public_key, admission.role, &admission.provinces, now)?
        .ok_or(AppError::AlreadyEnrolled)?;
    if !invites::mark_used(conn, &admission.token, device.row, now)? {
        return Err(AppError::InviteUsed);
    }
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(token: &[u8]) -> Admission {
        Admission {
            role: Role::Leader,
            provinces: vec!["TH-44".into()],
            token: token.to_vec(),
        }
    }

    #[test]
    fn registers_once_and_spends_the_token() {
        let dir = crate::db::tempdata::TempData::new();
        let mut conn = crate::db::open(dir.path()).unwrap();
        let tx = conn.transaction().unwrap();
        let device = register(&tx, &[1; 32], &admission(b"t1"), 10).unwrap();
        tx.commit().unwrap();
        assert_eq!(device.provinces, vec!["TH-44".to_string()]);

        let tx = conn.transaction().unwrap();
        assert_eq!(
            register(&tx, &[2; 32], &admission(b"t1"), 11).unwrap_err(),
            AppError::InviteUsed
        );
        assert_eq!(
            register(&tx, &[1; 32], &admission(b"t2"), 11).unwrap_err(),
            AppError::AlreadyEnrolled
        );
        drop(tx);
        assert_eq!(devices::list(&conn).unwrap().len(), 1);
        assert!(!invites::is_used(&conn, b"t2").unwrap());
    }

    #[test]
    fn a_revoked_device_cannot_enrol_again_and_bad_provinces_are_refused() {
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        let device = register(&conn, &[1; 32], &admission(b"t1"), 10).unwrap();
        devices::revoke(&conn, device.row, 20).unwrap();
        assert_eq!(
            register(&conn, &[1; 32], &admission(b"t2"), 30).unwrap_err(),
            AppError::DeviceRevoked
        );
        let mut bad = admission(b"t3");
        bad.provinces = vec!["province 44".into()];
        assert!(matches!(
            register(&conn, &[5; 32], &bad, 30).unwrap_err(),
            AppError::InviteInvalid(_)
        ));
        assert!(!invites::is_used(&conn, b"t2").unwrap());
        assert!(!invites::is_used(&conn, b"t3").unwrap());
    }
}
