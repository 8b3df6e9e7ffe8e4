//! What Argon2id costs the `phakhi` binary gives the phone stores and tip-desk key files it
//! creates, and which it accepts when it opens them. Real use gets [`Argon2Params::default`]
//! (64 MiB, 3 passes), and a store or key file below [`Argon2Params::FLOOR`] is refused on open:
//! it can only come from a test build, and a passphrase behind it is cheap to guess.
//!
//! The end-to-end tests run `phakhi device` and `phakhi tipdesk` a few hundred times, and at the
//! production cost those runs alone take minutes of CPU. So a test build has a cheap profile
//! (64 KiB, one pass) for what it creates and accepts it on open, when three things hold:
//! the binary was compiled with the `test-kdf` feature (only `phakhi-tests`' dev-dependencies
//! turn it on), with debug assertions (no `--release` build has them), and `PHAKHI_TEST_KDF=1`
//! is set (the workspace's `.cargo/config.toml` sets it for what cargo runs). Both compile-time
//! gates are needed: the feature alone reaches a release binary built with `cargo build
//! --release --workspace --all-targets` (dev-dependency features unify into every target of
//! such a build), and debug assertions alone would let any `cargo run` build be talked into weak
//! stores by one environment variable. A release binary holds no code path to the cheap profile,
//! whatever its environment.

use phakhi_core::store::Argon2Params;

/// The environment variable that turns the cheap profile on in a test build.
pub const TEST_SWITCH: &str = "PHAKHI_TEST_KDF";

/// The cheap profile: the least Argon2id allows with one lane.
#[cfg_attr(not(all(feature = "test-kdf", debug_assertions)), allow(dead_code))]
const TEST_PROFILE: Argon2Params = Argon2Params {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

/// The cost to create a store or key file with now.
pub fn for_new() -> Argon2Params {
    #[cfg(all(feature = "test-kdf", debug_assertions))]
    if test_profile_on() {
        return TEST_PROFILE;
    }
    Argon2Params::default()
}

/// Refuses the cost of a store or key file being opened if it is below the floor, unless this
/// is a test build asked for the cheap profile.
pub fn check(params: &Argon2Params) -> Result<(), WeakKdf> {
    check_with(params, test_profile_on())
}

fn check_with(params: &Argon2Params, test_profile: bool) -> Result<(), WeakKdf> {
    if params.meets_floor() || test_profile {
        Ok(())
    } else {
        Err(WeakKdf(*params))
    }
}

#[cfg(all(feature = "test-kdf", debug_assertions))]
fn test_profile_on() -> bool {
    std::env::var_os(TEST_SWITCH).is_some_and(|value| value == "1")
}

#[cfg(not(all(feature = "test-kdf", debug_assertions)))]
fn test_profile_on() -> bool {
    false
}

/// A store or key file made with a passphrase cost below [`Argon2Params::FLOOR`].
#[derive(Debug, thiserror::Error)]
#[error(
    "made with a passphrase cost below the floor ({} KiB and {} pass(es); at least {} KiB and {} \
     passes are needed): only a test build makes such files, and only a test build with {} set \
     opens them",
    .0.memory_kib,
    .0.iterations,
    Argon2Params::FLOOR.memory_kib,
    Argon2Params::FLOOR.iterations,
    TEST_SWITCH
)]
pub struct WeakKdf(pub Argon2Params);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cheap_profile_is_refused_unless_a_test_build_asked_for_it() {
        assert!(!TEST_PROFILE.meets_floor());
        assert!(check_with(&TEST_PROFILE, false).is_err());
        assert!(check_with(&TEST_PROFILE, true).is_ok());
        assert!(check_with(&Argon2Params::default(), false).is_ok());
        let message = check_with(&TEST_PROFILE, false).unwrap_err().to_string();
        assert!(message.contains("64 KiB and 1 pass(es)"), "{message}");
        assert!(message.contains(TEST_SWITCH), "{message}");
    }
}
