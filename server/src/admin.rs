//! Admin commands on a server's data folder: issue invites, list devices, revoke a device. They
//! work whether the server is stopped or running (SQLite WAL and a busy timeout let them share
//! the database), and every failure says what to do next.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::db::{self, DbError, devices};
use crate::keys::{self, KeyError};
use crate::scope;

/// An admin-command failure.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "no server data in {0}: start the server once with `phakhi serve --data {0}` (or pass \
         the right --data folder)"
    )]
    NoData(PathBuf),
    #[error("{0}")]
    Keys(#[from] KeyError),
    #[error("{0}; if the server is busy, try again in a moment")]
    Db(#[from] DbError),
    #[error(
        "no device matches {0:?}: run `phakhi admin devices` and copy the id from the first column"
    )]
    NoSuchDevice(String),
    #[error(
        "{prefix:?} matches {count} devices: type more characters of the id (see `phakhi admin \
         devices`)"
    )]
    Ambiguous { prefix: String, count: usize },
    #[error(
        "{0:?} is not a province code: use ISO 3166-2 codes such as TH-44 (Maha Sarakham) or \
         TH-40 (Khon Kaen)"
    )]
    BadProvince(String),
    #[error("{0:?} is not a duration: write a number and a unit, such as 30m, 12h or 7d")]
    BadDuration(String),
    #[error("invite could not be issued: {0}")]
    Invite(String),
    #[error(
        "an invite pins the tip desk's public key: pass --tip-desk-key HEX (or set tip_desk_key \
         in the config file, or PHAKHI_TIP_DESK_KEY) with the key the tip desk gave you"
    )]
    NoTipDeskKey,
    #[error(
        "{0:?} is not a tip-desk public key: it is 64 hexadecimal characters; copy it again from \
         the tip desk"
    )]
    BadTipDeskKey(String),
    #[error(
        "{0:?} is not a server static key: it is 64 hexadecimal characters, printed by the relay \
         on its first start"
    )]
    BadServerKey(String),
    #[error(
        "no relay with static key {0} has joined this HQ: run `phakhi relay join` at the relay \
         first (it prints its key), or check --server-key against `phakhi admin devices`"
    )]
    UnknownRelay(String),
    #[error("relay {0} was revoked: it can no longer enrol phones; invite them at another server")]
    RevokedRelay(String),
    #[error(
        "relay {relay} serves {served}, not {province}: invite this phone at the server of \
         {province} (HQ, or that province's relay)"
    )]
    ProvinceNotServed {
        province: String,
        relay: String,
        served: String,
    },
    #[error(
        "an admin device (the tip desk) enrols at HQ only, not at relay {0}: leave out \
         --server-key and give HQ's own address with --server-url"
    )]
    AdminInviteForRelay(String),
    #[error(
        "a relay joins HQ, not relay {0}: leave out --server-key and give HQ's own address with \
         --server-url"
    )]
    RelayInviteForRelay(String),
}

/// Opens the database of an existing data folder.
fn open(data: &Path) -> Result<rusqlite::Connection, AdminError> {
    db::open_existing(data)?.ok_or_else(|| AdminError::NoData(data.to_path_buf()))
}

/// The device table, as text for a terminal.
pub fn devices_table(data: &Path) -> Result<String, AdminError> {
    let conn = open(data)?;
    let list = devices::list(&conn)?;
    if list.is_empty() {
        return Ok(
            "No devices enrolled yet. Create an invite with `phakhi admin invite --province \
             CODE --role leader`.\n"
                .into(),
        );
    }
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|device| {
            [
                device.device_id.clone(),
                device.role.as_str().to_string(),
                device
                    .provinces
                    .iter()
                    .map(|code| province_label(code))
                    .collect::<Vec<_>>()
                    .join(", "),
                format_time(Some(device.enrolled_at)),
                format_time(device.last_sync),
                match device.revoked_at {
                    Some(at) => format!("revoked {}", format_time(Some(at))),
                    None => "active".into(),
                },
            ]
        })
        .collect();
    let header = [
        "DEVICE",
        "ROLE",
        "PROVINCES",
        "ENROLLED",
        "LAST SYNC",
        "STATUS",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| display_width(&h));
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(display_width(cell));
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| {
                let pad = width.saturating_sub(display_width(cell));
                format!("{cell}{}", " ".repeat(pad))
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// `TH-44 มหาสารคาม`: the code and the Thai name, for operators.
fn province_label(code: &str) -> String {
    match phakhi_core::model::ProvinceCode::parse(code) {
        Ok(province) => format!("{code} {}", province.name_th()),
        Err(_) => code.to_string(),
    }
}

/// Columns a string takes in a terminal: Thai vowel and tone marks above or below a consonant
/// take none.
fn display_width(text: &str) -> usize {
    text.chars()
        .filter(|c| !matches!(*c as u32, 0x0E31 | 0x0E34..=0x0E3A | 0x0E47..=0x0E4E))
        .count()
}

/// What [`revoke`] did, and where it takes effect when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// Revoked now, on the server whose data folder this is.
    Now(Revocation),
    /// It was revoked already.
    Already(String),
}

/// A revocation just made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub device_id: String,
    pub provinces: Vec<String>,
    /// This data folder is a relay's (else HQ's).
    pub at_relay: bool,
    /// HQ had refused the device's registration from its relay: it was known here only as
    /// that refusal.
    pub was_refused: bool,
}

impl Revocation {
    /// Where the revocation takes effect, and when.
    pub fn effect(&self) -> String {
        let provinces = self.provinces.join(", ");
        if self.was_refused {
            format!(
                "HQ had refused its registration, so it synced at its relay only: refused at the \
                 relay serving {provinces} after that relay's next round with HQ, and it can \
                 never enrol here"
            )
        } else if self.at_relay {
            "refused here now; refused at HQ after this relay's next round with HQ (when HQ \
             answers: `phakhi health URL --synced` waits for it)"
                .into()
        } else {
            format!(
                "refused here now; refused at the relay serving {provinces} after that relay's \
                 next round with HQ"
            )
        }
    }
}

/// Revokes the device whose id starts with `prefix`. At HQ, a device whose registration HQ
/// refused from its relay is found too, and recorded as revoked (so its relay refuses it after
/// its next round).
pub fn revoke(data: &Path, prefix: &str, now: i64) -> Result<Revoked, AdminError> {
    let conn = open(data)?;
    let at_relay = db::upstream::joined(&conn)?.is_some();
    let matches = devices::find(&conn, prefix)?;
    let device = match matches.as_slice() {
        [] if !at_relay => {
            let refused = devices::find_refused(&conn, prefix)?;
            return match refused.as_slice() {
                [] => Err(AdminError::NoSuchDevice(prefix.to_string())),
                [one] => {
                    let device = crate::relay::hq::revoke_refused(&conn, one, now)?;
                    Ok(Revoked::Now(Revocation {
                        device_id: device.device_id,
                        provinces: device.provinces,
                        at_relay,
                        was_refused: true,
                    }))
                }
                more => Err(AdminError::Ambiguous {
                    prefix: prefix.to_string(),
                    count: more.len(),
                }),
            };
        }
        [] => return Err(AdminError::NoSuchDevice(prefix.to_string())),
        [device] => device,
        more => {
            return Err(AdminError::Ambiguous {
                prefix: prefix.to_string(),
                count: more.len(),
            });
        }
    };
    if devices::revoke(&conn, device.row, now)? {
        Ok(Revoked::Now(Revocation {
            device_id: device.device_id.clone(),
            provinces: device.provinces.clone(),
            at_relay,
            was_refused: false,
        }))
    } else {
        Ok(Revoked::Already(device.device_id.clone()))
    }
}

/// Checks and normalises province codes given on the command line (`TH-44,TH-40` or repeated).
pub fn provinces(given: &[String]) -> Result<Vec<String>, AdminError> {
    let mut out = Vec::new();
    for code in given.iter().flat_map(|arg| arg.split(',')) {
        let code = code.trim().to_ascii_uppercase();
        if !scope::valid_province(&code) {
            return Err(AdminError::BadProvince(code));
        }
        if !out.contains(&code) {
            out.push(code);
        }
    }
    Ok(out)
}

/// Parses `30m`, `12h`, `7d` or `2w`.
pub fn parse_duration(text: &str) -> Result<Duration, AdminError> {
    let bad = || AdminError::BadDuration(text.to_string());
    let text = text.trim();
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = (text.get(..split).ok_or_else(bad)?, text.get(split..));
    let count: u64 = number.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        Some("m") => 60,
        Some("h") => 3_600,
        Some("d") => 86_400,
        Some("w") => 7 * 86_400,
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err(bad());
    }
    count
        .checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// The public keys of the server in `data`, one per line, labelled.
pub fn public_keys(data: &Path) -> Result<String, AdminError> {
    let keys = server_keys(data)?;
    let mut out = format!(
        "server static key (X25519):     {}\n",
        hex::encode(keys.static_public().as_bytes())
    );
    if let Some(verifying) = keys.verifying() {
        out.push_str(&format!(
            "network key (Ed25519):          {}\n",
            hex::encode(verifying.as_bytes())
        ));
    }
    Ok(out)
}

/// Loads the keys of an existing data folder.
pub fn server_keys(data: &Path) -> Result<keys::ServerKeys, AdminError> {
    keys::load(data)?.ok_or_else(|| AdminError::NoData(data.to_path_buf()))
}

/// Formats unix seconds as an RFC 3339 UTC time, or "never".
pub fn format_time(at: Option<i64>) -> String {
    let Some(at) = at else {
        return "never".into();
    };
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::devices::Role;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1_800));
        for bad in ["", "d", "7", "7y", "0d", "-1d", "๗d"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.to_string().contains("such as 30m"), "{bad}");
        }
    }

    #[test]
    fn province_lists() {
        assert_eq!(
            provinces(&["th-44, TH-40".into(), "TH-44".into()]).unwrap(),
            vec!["TH-44", "TH-40"]
        );
        assert!(matches!(
            provinces(&["มหาสารคาม".into()]).unwrap_err(),
            AdminError::BadProvince(_)
        ));
    }

    #[test]
    fn devices_and_revoke_on_a_data_folder() {
        let dir = crate::db::tempdata::TempData::new();
        assert!(matches!(
            devices_table(dir.path()).unwrap_err(),
            AdminError::NoData(_)
        ));
        let conn = db::open(dir.path()).unwrap();
        assert!(devices_table(dir.path()).unwrap().contains("No devices"));
        let a = devices::insert(&conn, &[1; 32], Role::Leader, &["TH-44".into()], 0)
            .unwrap()
            .unwrap();
        devices::insert(&conn, &[2; 32], Role::Coordinator, &["TH-40".into()], 0)
            .unwrap()
            .unwrap();
        let table = devices_table(dir.path()).unwrap();
        assert!(table.starts_with("DEVICE"));
        assert!(table.contains(&a.device_id));
        assert!(table.contains("TH-40 ขอนแก่น"), "{table}");
        assert!(table.contains("TH-44 มหาสารคาม"), "{table}");
        // Columns line up even though Thai marks take no column.
        let starts: Vec<usize> = table
            .lines()
            .map(|line| {
                let cut = line
                    .find("1970-")
                    .or_else(|| line.find("ENROLLED"))
                    .unwrap();
                display_width(&line[..cut])
            })
            .collect();
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "{table}");
        assert!(table.contains("never"));

        let Revoked::Now(done) = revoke(dir.path(), &a.device_id, 100).unwrap() else {
            panic!("not revoked now");
        };
        assert_eq!(done.device_id, a.device_id);
        assert!(!done.at_relay && !done.was_refused);
        assert!(
            done.effect().starts_with("refused here now"),
            "{}",
            done.effect()
        );
        assert_eq!(
            revoke(dir.path(), &a.device_id, 101).unwrap(),
            Revoked::Already(a.device_id.clone())
        );
        assert!(matches!(
            revoke(dir.path(), "zz", 1).unwrap_err(),
            AdminError::NoSuchDevice(_)
        ));
        let table = devices_table(dir.path()).unwrap();
        assert!(table.contains("revoked 1970-01-01 00:01Z"), "{table}");
    }
}
