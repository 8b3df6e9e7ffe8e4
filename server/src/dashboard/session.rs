//! Who may see the dashboard: an administrator of the data folder. `phakhi admin
//! dashboard-login` writes a one-time login token (256 random bits, only its SHA-256 hash
//! stored, with an expiry) into the database; the running server reads it at request time, so
//! links made after it started work. Redeeming the link spends it in one statement (it can never
//! open two sessions) and opens a session: another 256-bit random id, sent back as an HttpOnly,
//! SameSite=Strict cookie scoped to `/dashboard` and stored server-side as a hash. Logout deletes
//! the session row. Time comes in as an argument, so expiry is tested without a clock.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::CryptoRngCore;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::db::DbError;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "phakhi_dashboard";
/// How long a session lasts after login, in seconds (8 hours).
pub const SESSION_SECS: i64 = 8 * 3600;
/// Login links may not outlive this, in seconds (1 day).
pub const MAX_LOGIN_SECS: i64 = 86_400;
/// The path every dashboard cookie is scoped to.
pub const COOKIE_PATH: &str = "/dashboard";

/// A 256-bit random secret (a login token or a session id). Its text form is base64url without
/// padding (43 characters); it is never printed by `Debug` and wiped on drop.
pub struct Secret(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn generate(rng: &mut impl CryptoRngCore) -> Secret {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        Secret(bytes)
    }

    /// Parses the text form; anything else (wrong length, wrong alphabet) is `None`.
    pub fn parse(text: &str) -> Option<Secret> {
        if text.len() != 43 {
            return None;
        }
        let decoded = Zeroizing::new(URL_SAFE_NO_PAD.decode(text).ok()?);
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes
            .as_mut()
            .copy_from_slice(decoded.get(..32).filter(|_| decoded.len() == 32)?);
        Some(Secret(bytes))
    }

    /// The text form, for a link or a cookie.
    pub fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(self.0.as_ref()))
    }

    /// What the database stores instead of the secret.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_ref()).into()
    }
}

/// Writes a new one-time login token valid for `valid_secs` (clamped to 1 s ..
/// [`MAX_LOGIN_SECS`]) and returns it. Also forgets logins and sessions long expired.
pub fn create_login(
    conn: &Connection,
    rng: &mut impl CryptoRngCore,
    now: i64,
    valid_secs: i64,
) -> Result<Secret, DbError> {
    let token = Secret::generate(rng);
    let expires_at = now.saturating_add(valid_secs.clamp(1, MAX_LOGIN_SECS));
    forget_expired(conn, now)?;
    conn.execute(
        "INSERT INTO dashboard_logins (token_hash, created_at, expires_at) VALUES (?1, ?2, ?3)",
        params![&token.hash()[..], now, expires_at],
    )?;
    Ok(token)
}

/// Deletes logins and sessions that expired more than a day ago (a spent or expired login is
/// kept that long so a second use can be told apart from a mistyped link).
fn forget_expired(conn: &Connection, now: i64) -> Result<(), DbError> {
    let before = now.saturating_sub(86_400);
    conn.execute(
        "DELETE FROM dashboard_logins WHERE expires_at < ?1",
        [before],
    )?;
    conn.execute(
        "DELETE FROM dashboard_sessions WHERE expires_at < ?1",
        [before],
    )?;
    Ok(())
}

/// What redeeming a login link did.
#[derive(Debug)]
pub enum Redeemed {
    /// A new session: the id goes into the cookie.
    Session { id: Secret, expires_at: i64 },
    /// No such link (mistyped, or from another server).
    Unknown,
    /// The link was already used once.
    Used,
    /// The link is past its expiry.
    Expired,
}

/// Spends a login token and opens a session, in one transaction.
pub fn redeem_login(
    conn: &mut Connection,
    token: &str,
    now: i64,
    rng: &mut impl CryptoRngCore,
) -> Result<Redeemed, DbError> {
    let Some(token) = Secret::parse(token) else {
        return Ok(Redeemed::Unknown);
    };
    let hash = token.hash();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: Option<(i64, Option<i64>)> = tx
        .query_row(
            "SELECT expires_at, used_at FROM dashboard_logins WHERE token_hash = ?1",
            [&hash[..]],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let outcome = match found {
        None => Redeemed::Unknown,
        Some((_, Some(_))) => Redeemed::Used,
        Some((expires_at, None)) if expires_at <= now => Redeemed::Expired,
        Some(_) => {
            let spent = tx.execute(
                "UPDATE dashboard_logins SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
                params![&hash[..], now],
            )?;
            if spent != 1 {
                Redeemed::Used
            } else {
                let id = Secret::generate(rng);
                let expires_at = now.saturating_add(SESSION_SECS);
                tx.execute(
                    "INSERT INTO dashboard_sessions (session_hash, created_at, expires_at)
                     VALUES (?1, ?2, ?3)",
                    params![&id.hash()[..], now, expires_at],
                )?;
                Redeemed::Session { id, expires_at }
            }
        }
    };
    tx.commit()?;
    Ok(outcome)
}

/// True when `cookie` names a session that exists and has not expired.
pub fn is_valid(conn: &Connection, cookie: &str, now: i64) -> Result<bool, DbError> {
    let Some(id) = Secret::parse(cookie) else {
        return Ok(false);
    };
    Ok(conn
        .query_row(
            "SELECT 1 FROM dashboard_sessions WHERE session_hash = ?1 AND expires_at > ?2",
            params![&id.hash()[..], now],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Ends a session. Returns false when there was none.
pub fn end(conn: &Connection, cookie: &str) -> Result<bool, DbError> {
    let Some(id) = Secret::parse(cookie) else {
        return Ok(false);
    };
    Ok(conn.execute(
        "DELETE FROM dashboard_sessions WHERE session_hash = ?1",
        [&id.hash()[..]],
    )? == 1)
}

/// The `Set-Cookie` value that opens a session: HttpOnly, SameSite=Strict, scoped to
/// `/dashboard`, expiring with the session, and Secure when the dashboard is reached over TLS.
pub fn session_cookie(id: &Secret, max_age: i64, secure: bool) -> String {
    let mut cookie = format!(
        "{SESSION_COOKIE}={}; Path={COOKIE_PATH}; Max-Age={}; HttpOnly; SameSite=Strict",
        id.encode().as_str(),
        max_age.max(0)
    );
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clearing_cookie(secure: bool) -> String {
    let mut cookie =
        format!("{SESSION_COOKIE}=; Path={COOKIE_PATH}; Max-Age=0; HttpOnly; SameSite=Strict");
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// A preference cookie (language, era): not secret, but just as narrowly scoped.
pub fn preference_cookie(name: &str, value: &str, secure: bool) -> String {
    let mut cookie =
        format!("{name}={value}; Path={COOKIE_PATH}; Max-Age=31536000; HttpOnly; SameSite=Strict");
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// The value of cookie `name` in a `Cookie` request header, if present.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn db() -> (crate::db::tempdata::TempData, Connection) {
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        (dir, conn)
    }

    #[test]
    fn a_login_link_opens_one_session_only() {
        let (_dir, mut conn) = db();
        let token = create_login(&conn, &mut OsRng, 1_000, 900).unwrap();
        let text = token.encode();
        let stored: Vec<u8> = conn
            .query_row("SELECT token_hash FROM dashboard_logins", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, token.hash().to_vec());
        assert_ne!(stored, URL_SAFE_NO_PAD.decode(text.as_str()).unwrap());

        let Redeemed::Session { id, expires_at } =
            redeem_login(&mut conn, &text, 1_100, &mut OsRng).unwrap()
        else {
            panic!("first use opens a session");
        };
        assert_eq!(expires_at, 1_100 + SESSION_SECS);
        assert!(matches!(
            redeem_login(&mut conn, &text, 1_101, &mut OsRng).unwrap(),
            Redeemed::Used
        ));
        let sessions: i64 = conn
            .query_row("SELECT count(*) FROM dashboard_sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sessions, 1);
        assert!(is_valid(&conn, &id.encode(), 1_200).unwrap());
        // A different, well-formed id is not a session.
        assert!(!is_valid(&conn, &Secret::generate(&mut OsRng).encode(), 1_200).unwrap());
        assert!(matches!(
            redeem_login(&mut conn, "not-a-token", 1_100, &mut OsRng).unwrap(),
            Redeemed::Unknown
        ));
    }

    #[test]
    fn links_and_sessions_expire() {
        let (_dir, mut conn) = db();
        let token = create_login(&conn, &mut OsRng, 1_000, 60).unwrap();
        assert!(matches!(
            redeem_login(&mut conn, &token.encode(), 1_060, &mut OsRng).unwrap(),
            Redeemed::Expired
        ));
        // An expired link stays unspent and still cannot be used later.
        assert!(matches!(
            redeem_login(&mut conn, &token.encode(), 1_061, &mut OsRng).unwrap(),
            Redeemed::Expired
        ));
        let token = create_login(&conn, &mut OsRng, 2_000, 60).unwrap();
        let Redeemed::Session { id, expires_at } =
            redeem_login(&mut conn, &token.encode(), 2_059, &mut OsRng).unwrap()
        else {
            panic!("valid until its expiry");
        };
        assert!(is_valid(&conn, &id.encode(), expires_at - 1).unwrap());
        assert!(!is_valid(&conn, &id.encode(), expires_at).unwrap());
        // A link can be asked for longer than a day, but never gets it.
        let long = create_login(&conn, &mut OsRng, 0, 10 * MAX_LOGIN_SECS).unwrap();
        let expiry: i64 = conn
            .query_row(
                "SELECT expires_at FROM dashboard_logins WHERE token_hash = ?1",
                [&long.hash()[..]],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(expiry, MAX_LOGIN_SECS);
    }

    #[test]
    fn logout_ends_the_session() {
        let (_dir, mut conn) = db();
        let token = create_login(&conn, &mut OsRng, 0, 60).unwrap();
        let Redeemed::Session { id, .. } =
            redeem_login(&mut conn, &token.encode(), 1, &mut OsRng).unwrap()
        else {
            panic!("session");
        };
        assert!(end(&conn, &id.encode()).unwrap());
        assert!(!is_valid(&conn, &id.encode(), 2).unwrap());
        assert!(!end(&conn, &id.encode()).unwrap());
        assert!(!end(&conn, "garbage").unwrap());
    }

    #[test]
    fn cookie_attributes() {
        let id = Secret::generate(&mut OsRng);
        let plain = session_cookie(&id, SESSION_SECS, false);
        let value = id.encode();
        assert!(plain.starts_with(&format!("{SESSION_COOKIE}={}; ", value.as_str())));
        for attribute in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/dashboard",
            "Max-Age=28800",
        ] {
            assert!(plain.split("; ").any(|a| a == attribute), "{attribute}");
        }
        assert!(!plain.contains("Secure"));
        assert!(session_cookie(&id, 10, true).ends_with("; Secure"));
        let cleared = clearing_cookie(true);
        assert!(cleared.contains("Max-Age=0") && cleared.contains("Secure"));
        assert_eq!(value.len(), 43);
        assert_eq!(Secret::parse(&value).unwrap().hash(), id.hash());
        assert!(Secret::parse(&value[..42]).is_none());
        assert!(Secret::parse(&format!("{}!", &value[..42])).is_none());
        assert_eq!(format!("{id:?}"), "Secret(..)");
    }

    #[test]
    fn cookie_header_parsing() {
        let header = "a=1; phakhi_dashboard=abc; phakhi_lang=th";
        assert_eq!(cookie_value(header, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie_value(header, "phakhi_lang"), Some("th"));
        assert_eq!(cookie_value(header, "phakhi"), None);
        assert_eq!(cookie_value("", SESSION_COOKIE), None);
    }
}
