//! Why a bad link could not be set up. Once running, the proxy never fails as a whole: a broken
//! connection is an outcome it counts, not an error it returns.

use std::net::SocketAddr;
use std::time::Duration;

/// A profile that makes no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    /// The cut probability must lie in 0..=1.
    #[error("cut probability {0} is not between 0 and 1")]
    CutProbability(f64),
    /// Cut points start at one byte and the range must not be empty.
    #[error("cut range {min}..={max} is empty or starts at zero")]
    CutRange {
        /// Lower end asked for.
        min: u64,
        /// Upper end asked for.
        max: u64,
    },
    /// A bandwidth cap of zero would stall every connection forever.
    #[error("bandwidth must be at least one byte per second")]
    ZeroBandwidth,
    /// A burst of zero would never let a byte through.
    #[error("burst must be at least one byte")]
    ZeroBurst,
    /// A link that carries no connection is a refusal switch; use that instead.
    #[error("max connections must be at least one")]
    ZeroMaxConnections,
    /// Delays longer than [`super::profile::MAX_ONE_WAY_DELAY`] are refused.
    #[error("one-way delay {0:?} is too long")]
    DelayTooLong(Duration),
}

/// A bad link that could not start.
#[derive(Debug, thiserror::Error)]
pub enum BadLinkError {
    /// The proxy listens on, and forwards to, loopback addresses only.
    #[error("{role} address {addr} is not a loopback address")]
    NotLoopback {
        /// `"listen"` or `"target"`.
        role: &'static str,
        /// The address refused.
        addr: SocketAddr,
    },
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The blocking wrapper could not build its runtime.
    #[error("cannot start the proxy's runtime: {0}")]
    Runtime(std::io::Error),
}
