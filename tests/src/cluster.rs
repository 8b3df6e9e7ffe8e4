//! The setup tests share when a provincial relay stands between phones and HQ: a relay joins
//! a running HQ with a relay invite (`phakhi relay join`), and HQ's data folder signs, offline,
//! the invites of the relay's phones (`phakhi admin invite --server-url RELAY --server-key KEY`),
//! exactly as the quickstart does it.

use std::path::Path;

use phakhi_core::seal::PublicKey;

use crate::server::{admin, invite, joined_relay_key, network_key, relay_join};

/// Joins the relay folder `relay` to HQ (data folder `hq`, answering at `hq_url`) for
/// `province` with a fresh relay invite pinning `tip_desk` (hex); returns the relay's static
/// key. Panics with the command's output if the join fails.
pub fn join_relay(
    hq: &Path,
    hq_url: &str,
    relay: &Path,
    province: &str,
    tip_desk: &str,
) -> PublicKey {
    let relay_invite = invite(hq, province, "relay", hq_url, tip_desk);
    let joined = relay_join(relay, &relay_invite, &network_key(hq));
    assert!(
        joined.status.success(),
        "phakhi relay join failed: {joined:?}"
    );
    joined_relay_key(&joined)
}

/// A one-time leader invite for `province`, signed by HQ's data folder `hq` (HQ may be stopped)
/// for a phone of the relay answering at `relay_url` with static key `relay_key`.
pub fn relay_phone_invite(
    hq: &Path,
    province: &str,
    relay_url: &str,
    relay_key: &PublicKey,
    tip_desk: &str,
) -> String {
    let relay_key = hex::encode(relay_key.as_bytes());
    let out = admin(
        hq,
        &[
            "invite",
            "--province",
            province,
            "--role",
            "leader",
            "--server-url",
            relay_url,
            "--server-key",
            &relay_key,
            "--tip-desk-key",
            tip_desk,
        ],
    );
    assert!(
        out.status.success(),
        "phakhi admin invite failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}
