//! Issuing invites (`phakhi admin invite`): a one-time token, the device's role and provinces,
//! an expiry and this server's addresses and keys, signed with the HQ signing key.

use rand_core::CryptoRngCore;

use crate::admin::{self, AdminError};
use crate::cli::InviteArgs;
use crate::config::Config;

/// Builds and signs an invite; returns the string to hand to the device's holder.
pub fn issue(
    config: &Config,
    args: &InviteArgs,
    now: u64,
    rng: &mut impl CryptoRngCore,
) -> Result<String, AdminError> {
    let keys = admin::server_keys(&config.data)?;
    let _signing = keys
        .signing()
        .ok_or_else(|| crate::keys::KeyError::NoSigningKey(config.data.clone()))?;
    let _provinces = admin::provinces(&args.provinces)?;
    let _expires = now.saturating_add(admin::parse_duration(&args.expires)?.as_secs());
    let mut token = [0u8; 16];
    rng.fill_bytes(&mut token);
    Err(AdminError::Invite("invite signing is not built yet".into()))
}
