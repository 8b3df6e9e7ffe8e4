//! An optional blocking HTTP transport (cargo feature `http`).
//!
//! The sync engine and the sealed envelopes never touch the network: they turn bytes into bytes.
//! Apps may carry those bytes however they like (their own HTTP stack, Bluetooth, a file on a USB
//! stick). This module is the small HTTP carrier the CLI, the tests and simple hosts use: it posts
//! one sealed envelope to a server route and returns the sealed answer, reporting download
//! progress and turning the server's machine-readable refusals into typed errors.
//!
//! Plain `http://` is enough for confidentiality: every body is a transport envelope sealed to the
//! peer's pinned static key, so the carrier adds nothing to secrecy or authenticity. (A network
//! observer still sees addresses, sizes and timing, as the threat model says.)

use std::io::Read;
use std::time::Duration;

use crate::protocol::ErrorCode;

pub use crate::client::Route;

/// Why an HTTP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The server could not be reached or the connection broke; the exchange can be retried.
    #[error("cannot reach {url}: {detail} (check the address and the link, then sync again)")]
    Unreachable { url: String, detail: String },
    /// The server refused the exchange with a machine-readable code: the text it sent, which
    /// [`HttpError::code`] reads as an [`ErrorCode`] (a newer server may send one this build
    /// does not know).
    #[error("server refused ({status} {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// An HTTP error answer that is not a Phakhi refusal: something in front of the server (a
    /// proxy, a captive portal) answered, or the address is not a Phakhi server's.
    #[error(
        "the address answered HTTP {status} but not as a Phakhi server ({excerpt:?}): check the \
         address, then sync again"
    )]
    NotPhakhiAnswer { status: u16, excerpt: String },
    /// The answer was larger than this client accepts.
    #[error("the server's answer is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The address is not a usable `http://host:port` URL (the envelopes are sealed end to end,
    /// so this carrier speaks plain HTTP only; put a TLS proxy in front if policy demands it).
    #[error("{0:?} is not a server address like http://127.0.0.1:7744")]
    BadUrl(String),
}

impl HttpError {
    /// Whether trying the same exchange again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpError::Unreachable { .. } => true,
            HttpError::Refused { status, .. } | HttpError::NotPhakhiAnswer { status, .. } => {
                *status == 429 || *status >= 500
            }
            HttpError::TooLarge { .. } | HttpError::BadUrl(_) => false,
        }
    }

    /// The server's refusal code, when it sent one this build knows.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            HttpError::Refused { code, .. } => ErrorCode::parse(code),
            _ => None,
        }
    }
}

/// Download progress: bytes received so far and the total if the server announced it.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Option<u64>);

/// A blocking HTTP carrier for transport envelopes to one server.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    agent: ureq::Agent,
    base: String,
    max_response: u64,
}

impl HttpTransport {
    /// A carrier for the server at `base` (e.g. `http://127.0.0.1:7744`), with a whole-exchange
    /// timeout (2G links are slow: give it minutes, not seconds).
    pub fn new(base: &str, timeout: Duration) -> Result<Self, HttpError> {
        let base = base.trim_end_matches('/');
        let rest = base
            .strip_prefix("http://")
            .ok_or_else(|| HttpError::BadUrl(base.to_owned()))?;
        if rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(HttpError::BadUrl(base.to_owned()));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Ok(HttpTransport {
            agent,
            base: base.to_owned(),
            max_response: 64 * 1024 * 1024,
        })
    }

    /// The server's base address.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Posts one envelope to `route` and returns the answer's bytes.
    pub fn exchange(&self, route: Route, envelope: &[u8]) -> Result<Vec<u8>, HttpError> {
        self.exchange_with_progress(route, envelope, &mut |_, _| {})
    }

    /// Like [`HttpTransport::exchange`], calling `progress` as the answer arrives.
    pub fn exchange_with_progress(
        &self,
        route: Route,
        envelope: &[u8],
        progress: Progress<'_>,
    ) -> Result<Vec<u8>, HttpError> {
        let url = format!("{}{}", self.base, route.path());
        let unreachable = |e: &dyn std::fmt::Display| HttpError::Unreachable {
            url: url.clone(),
            detail: e.to_string(),
        };
        let envelope = test_wire::speak(envelope);
        let mut response = self
            .agent
            .post(&url)
            .header("content-type", "application/octet-stream")
            .send(&*envelope)
            .map_err(|e| unreachable(&e))?;
        let status = response.status().as_u16();
        let total = response.body().content_length();
        if total.is_some_and(|t| t > self.max_response) {
            return Err(HttpError::TooLarge {
                limit: self.max_response,
            });
        }
        let mut reader = response
            .body_mut()
            .with_config()
            .limit(self.max_response)
            .reader();
        let mut body = Vec::with_capacity(total.unwrap_or(0).min(1 << 20) as usize);
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = reader.read(&mut chunk).map_err(|e| unreachable(&e))?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
            progress(body.len() as u64, total);
        }
        if status == 200 {
            return Ok(body);
        }
        Err(refusal(status, &body))
    }
}

/// The version-skew tests' switch: a test build (feature `test-wire`, debug assertions) with
/// `PHAKHI_TEST_ENVELOPE_VERSION=N` sends every envelope with version byte N, as a phone, relay
/// or tip desk of another release would. Any other build sends the envelope as sealed: it has no
/// code path to the switch.
mod test_wire {
    use std::borrow::Cow;

    /// The variable that names the version byte to send.
    #[cfg_attr(not(all(feature = "test-wire", debug_assertions)), allow(dead_code))]
    pub const SWITCH: &str = "PHAKHI_TEST_ENVELOPE_VERSION";

    #[cfg(all(feature = "test-wire", debug_assertions))]
    pub fn speak(envelope: &[u8]) -> Cow<'_, [u8]> {
        match std::env::var(SWITCH)
            .ok()
            .and_then(|v| v.parse::<u8>().ok())
        {
            Some(version) if !envelope.is_empty() => {
                let mut changed = envelope.to_vec();
                changed[0] = version;
                Cow::Owned(changed)
            }
            _ => Cow::Borrowed(envelope),
        }
    }

    #[cfg(not(all(feature = "test-wire", debug_assertions)))]
    pub fn speak(envelope: &[u8]) -> Cow<'_, [u8]> {
        Cow::Borrowed(envelope)
    }
}

/// Reads the server's `{"error": code, "message": text}` refusal, tolerating anything else.
fn refusal(status: u16, body: &[u8]) -> HttpError {
    #[derive(serde::Deserialize)]
    struct Refusal {
        error: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Refusal>(body) {
        Ok(r) => HttpError::Refused {
            status,
            code: r.error,
            message: r.message,
        },
        Err(_) => HttpError::NotPhakhiAnswer {
            status,
            excerpt: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_addresses_that_are_not_http() {
        for bad in [
            "",
            "127.0.0.1:7744",
            "ftp://x",
            "http://",
            "http://a b",
            "https://x",
        ] {
            assert!(
                matches!(
                    HttpTransport::new(bad, Duration::from_secs(1)),
                    Err(HttpError::BadUrl(_))
                ),
                "{bad:?} accepted"
            );
        }
        let t = HttpTransport::new("http://127.0.0.1:7744/", Duration::from_secs(1)).unwrap();
        assert_eq!(t.base(), "http://127.0.0.1:7744");
    }

    #[test]
    fn reads_machine_readable_refusals() {
        let e = refusal(
            403,
            br#"{"error":"device_revoked","message":"ask your coordinator"}"#,
        );
        match e {
            HttpError::Refused {
                status,
                code,
                message,
            } => {
                assert_eq!(ErrorCode::parse(&code), Some(ErrorCode::DeviceRevoked));
                assert_eq!(status, 403);
                assert_eq!(message, "ask your coordinator");
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = refusal(502, b"<html>bad gateway</html>");
        assert!(e.is_retryable());
        assert!(matches!(e, HttpError::NotPhakhiAnswer { status: 502, .. }));
        assert_eq!(e.code(), None);
    }

    #[test]
    fn an_unreachable_server_is_a_retryable_error() {
        // Port 9 (discard) on loopback: nothing listens there in the test environment.
        let t = HttpTransport::new("http://127.0.0.1:9", Duration::from_secs(5)).unwrap();
        let e = t.exchange(Route::Sync, b"x").unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert!(matches!(e, HttpError::Unreachable { .. }));
    }
}
