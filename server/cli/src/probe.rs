//! `phakhi health URL`: a running server's `/v1/health` from the command line, able to wait.
//! Scripts (the README's quickstart among them) start a server in the background and go on at
//! once; `--wait` makes the next command wait until the server answers, and `--synced` until a
//! relay has finished a round with HQ that began after the command started, with nothing left
//! waiting for HQ. curl alone cannot wait for either.

use std::time::{Duration, Instant};

use clap::Args;

/// `phakhi health URL [--wait SECS] [--synced]`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// The server's address, e.g. http://127.0.0.1:7744.
    pub url: String,
    /// Keep asking for up to SECS seconds until the server answers (and, with --synced, until
    /// the relay has caught up) [default: 0 (ask once); 120 with --synced].
    #[arg(long, value_name = "SECS")]
    pub wait: Option<u64>,
    /// For a relay: wait until an upstream round with HQ that began after this command started
    /// has completed, and no tip, registration or attachment chunk waits for HQ.
    #[arg(long)]
    pub synced: bool,
    /// The server's `operator.token` (in its data folder): with it the answer shows every
    /// figure (what waits for HQ, counted), without it only whether the link works and whether
    /// anything waits.
    #[arg(long, value_name = "FILE")]
    pub operator_token_file: Option<std::path::PathBuf>,
}

/// Why `phakhi health` failed, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "no answer from {url} within {secs} s ({detail}); check that `phakhi serve` runs there \
         and the address, or wait longer with --wait SECS"
    )]
    Unreachable {
        url: String,
        secs: u64,
        detail: String,
    },
    #[error(
        "{url} does not sync with HQ (role {role}), so --synced has nothing to wait for; give \
         the relay's address (the one started with `phakhi serve --upstream`)"
    )]
    NotARelay { url: String, role: String },
    #[error(
        "the relay at {url} has not caught up with HQ within {secs} s: {what}; check that HQ \
         runs and the relay reaches it (`last_error` in the relay's /v1/health), or wait longer \
         with --wait SECS"
    )]
    NotSynced {
        url: String,
        secs: u64,
        what: String,
    },
    #[error(
        "cannot read the operator token {path}: {detail}; give the `operator.token` file of the \
         server's data folder"
    )]
    Token { path: String, detail: String },
}

/// Runs `phakhi health`; prints the last health answer (JSON, one line).
pub fn run(args: HealthArgs) -> Result<(), ProbeError> {
    let url = format!("{}/v1/health", args.url.trim_end_matches('/'));
    let secs = args.wait.unwrap_or(if args.synced { 120 } else { 0 });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let token = match &args.operator_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|error| ProbeError::Token {
                    path: path.display().to_string(),
                    detail: error.to_string(),
                })?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let ask = || -> Result<(String, serde_json::Value), String> {
        let mut request = agent.get(&url);
        if let Some(token) = &token {
            request = request.header("authorization", &format!("Bearer {token}"));
        }
        let mut response = request.call().map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("HTTP {status}: {body}"));
        }
        let json = serde_json::from_str(&body).map_err(|e| format!("not a health answer: {e}"))?;
        Ok((body, json))
    };
    let pause = || std::thread::sleep(Duration::from_millis(200));
    // The server answers.
    let (mut body, mut health) = loop {
        match ask() {
            Ok(answer) => break answer,
            Err(detail) if Instant::now() >= deadline => {
                return Err(ProbeError::Unreachable {
                    url: args.url,
                    secs,
                    detail,
                });
            }
            Err(_) => pause(),
        }
    };
    if args.synced {
        // A relay that has just started may not report its upstream link yet: no round has
        // begun then, so any round counts.
        let began = health["upstream"]["rounds_started"].as_u64();
        if began.is_none() && health["role"] != "relay" {
            return Err(ProbeError::NotARelay {
                url: args.url,
                role: health["role"].as_str().unwrap_or("unknown").to_owned(),
            });
        }
        let began = began.unwrap_or(0);
        if crate::field::stderr_is_terminal() {
            eprintln!("waiting for the relay's next round with HQ…");
        }
        loop {
            let upstream = &health["upstream"];
            let behind = behind(upstream, began);
            if behind.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(ProbeError::NotSynced {
                    url: args.url,
                    secs,
                    what: behind.join(", "),
                });
            }
            pause();
            // A moment without an answer (a busy relay) is waited out like a round.
            if let Ok(answer) = ask() {
                (body, health) = answer;
            }
        }
    }
    println!("{}", body.trim_end());
    Ok(())
}

/// What keeps a relay's upstream status from "caught up since round `began`", in words.
fn behind(upstream: &serde_json::Value, began: u64) -> Vec<String> {
    if upstream.is_null() {
        return vec!["it reports no link to HQ yet (was it started with --upstream?)".to_owned()];
    }
    let mut out = Vec::new();
    let number = |key: &str| upstream[key].as_u64().unwrap_or(0);
    if number("last_success_round") <= began {
        out.push(match upstream["last_error"].as_str() {
            Some(error) => format!("no round completed since (last error: {error})"),
            None => "no round completed since".to_owned(),
        });
    }
    for (key, what) in [
        ("pending_envelopes", "tip(s)"),
        ("pending_registrations", "registration(s)"),
        ("chunks_waiting", "attachment chunk(s)"),
    ] {
        let n = number(key);
        if n > 0 {
            out.push(format!("{n} {what} still wait for HQ"));
        }
    }
    // Without the operator's token the counts are not shown, only whether anything waits.
    if upstream["pending_envelopes"].is_null() && upstream["pending"].as_bool() == Some(true) {
        out.push("something still waits for HQ".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_up_means_a_later_round_completed_and_nothing_waits() {
        let status = |last: u64, tips: u64, error: Option<&str>| {
            serde_json::json!({
                "last_success_round": last,
                "pending_envelopes": tips,
                "pending_registrations": 0,
                "chunks_waiting": 0,
                "last_error": error,
            })
        };
        assert!(behind(&status(4, 0, None), 3).is_empty());
        let before = behind(&status(3, 0, Some("cannot reach HQ")), 3);
        assert_eq!(
            before,
            vec!["no round completed since (last error: cannot reach HQ)"]
        );
        assert_eq!(
            behind(&status(5, 1, None), 3),
            vec!["1 tip(s) still wait for HQ"]
        );
    }
}
