//! What a bad link does, as data. A [`Profile`] names the impairments the proxy applies —
//! one-way delay, a bandwidth cap per direction, the chance that a connection is cut part-way and
//! where — so a test states the network it runs on in one line, and a failing run can be described
//! (and replayed) by its profile and seed alone.

use std::num::NonZeroU64;
use std::time::Duration;

use super::error::ProfileError;

/// The most bytes a shaped read takes at once when no bandwidth cap applies.
pub(crate) const UNSHAPED_CHUNK: usize = 16 * 1024;

/// Connections a link carries at once unless a profile says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// Longest one-way delay a profile accepts; anything longer is a typo, not a network.
pub const MAX_ONE_WAY_DELAY: Duration = Duration::from_secs(60);

/// A bandwidth cap for one direction: a token bucket refilled at `bytes_per_sec` holding at most
/// `burst` bytes. The cap belongs to the link, as a phone's radio does: every connection through
/// it shares the one bucket for its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bandwidth {
    bytes_per_sec: NonZeroU64,
    burst: NonZeroU64,
}

impl Bandwidth {
    /// A cap of `bytes_per_sec` with bursts of at most `burst` bytes.
    pub fn new(bytes_per_sec: NonZeroU64, burst: NonZeroU64) -> Self {
        Self {
            bytes_per_sec,
            burst,
        }
    }

    /// Sustained rate in bytes per second.
    pub fn bytes_per_sec(&self) -> NonZeroU64 {
        self.bytes_per_sec
    }

    /// Largest number of bytes sent back to back after the link was idle.
    pub fn burst(&self) -> NonZeroU64 {
        self.burst
    }

    /// The burst used when a profile does not name one: a tenth of a second of traffic, at least
    /// 512 bytes and at most 64 KiB.
    pub fn default_burst(bytes_per_sec: NonZeroU64) -> NonZeroU64 {
        let tenth = (bytes_per_sec.get() / 10).clamp(512, 64 * 1024);
        NonZeroU64::new(tenth).unwrap_or(NonZeroU64::MIN)
    }

    /// How many bytes one read takes before it asks the bucket for tokens.
    pub(crate) fn chunk(&self) -> usize {
        usize::try_from(self.burst.get())
            .unwrap_or(UNSHAPED_CHUNK)
            .min(UNSHAPED_CHUNK)
    }
}

/// The impairments a [`super::BadLink`] applies to every connection it carries.
///
/// "Up" is client → target, "down" is target → client. Build one with [`Profile::builder`], start
/// from [`Profile::loopback`] or [`Profile::two_g`], or tweak either with [`Profile::to_builder`].
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    name: String,
    one_way_delay: Duration,
    up: Option<Bandwidth>,
    down: Option<Bandwidth>,
    cut_probability: f64,
    cut_after_min: u64,
    cut_after_max: u64,
    max_connections: usize,
}

impl Profile {
    /// No impairment at all: bytes are forwarded as fast as loopback carries them.
    pub fn loopback() -> Self {
        Self {
            name: "loopback".to_owned(),
            one_way_delay: Duration::ZERO,
            up: None,
            down: None,
            cut_probability: 0.0,
            cut_after_min: 1,
            cut_after_max: 64 * 1024,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// A field leader's phone on 2G: 50 kbit/s each way, a one-second round trip, and one
    /// connection in twenty cut somewhere in its first 32 KiB.
    pub fn two_g() -> Self {
        let rate = NonZeroU64::new(50_000 / 8).unwrap_or(NonZeroU64::MIN);
        let cap = Bandwidth::new(rate, Bandwidth::default_burst(rate));
        Self {
            name: "2g".to_owned(),
            one_way_delay: Duration::from_millis(500),
            up: Some(cap),
            down: Some(cap),
            cut_probability: 0.05,
            cut_after_min: 1,
            cut_after_max: 32 * 1024,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// A builder for a custom profile; it starts with no impairment.
    pub fn builder(name: impl Into<String>) -> ProfileBuilder {
        Self {
            name: name.into(),
            ..Self::loopback()
        }
        .to_builder()
    }

    /// A builder that starts from this profile, to change one or two things.
    pub fn to_builder(&self) -> ProfileBuilder {
        let cap = |c: Option<Bandwidth>| c.map(|c| (c.bytes_per_sec.get(), Some(c.burst.get())));
        ProfileBuilder {
            name: self.name.clone(),
            one_way_delay: self.one_way_delay,
            up: cap(self.up),
            down: cap(self.down),
            burst: None,
            cut_probability: self.cut_probability,
            cut_after_min: self.cut_after_min,
            cut_after_max: self.cut_after_max,
            max_connections: self.max_connections,
        }
    }

    /// The name shown in logs and reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Delay each byte suffers in each direction; the round trip is twice this.
    pub fn one_way_delay(&self) -> Duration {
        self.one_way_delay
    }

    /// Round trip added to every exchange: twice the one-way delay.
    pub fn round_trip(&self) -> Duration {
        self.one_way_delay.saturating_mul(2)
    }

    /// Cap on client → target traffic, if any.
    pub fn up(&self) -> Option<Bandwidth> {
        self.up
    }

    /// Cap on target → client traffic, if any.
    pub fn down(&self) -> Option<Bandwidth> {
        self.down
    }

    /// Chance, from 0 to 1, that a connection is chosen to be cut.
    pub fn cut_probability(&self) -> f64 {
        self.cut_probability
    }

    /// A chosen connection is cut after a number of bytes (both directions together) drawn
    /// uniformly from this range.
    pub fn cut_after_bytes(&self) -> std::ops::RangeInclusive<u64> {
        self.cut_after_min..=self.cut_after_max
    }

    /// Most connections carried at once; more are refused.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }
}

/// Builds a [`Profile`]; [`ProfileBuilder::build`] checks it.
///
/// Setting a direction's bandwidth gives it the default burst for that rate; [`Self::burst`]
/// overrides the burst of both directions whatever order it is called in.
#[derive(Debug, Clone)]
pub struct ProfileBuilder {
    name: String,
    one_way_delay: Duration,
    /// Rate in bytes per second and, when already settled, the burst.
    up: Option<(u64, Option<u64>)>,
    down: Option<(u64, Option<u64>)>,
    burst: Option<u64>,
    cut_probability: f64,
    cut_after_min: u64,
    cut_after_max: u64,
    max_connections: usize,
}

impl ProfileBuilder {
    /// Names the profile.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the one-way delay (each direction).
    pub fn one_way_delay(mut self, delay: Duration) -> Self {
        self.one_way_delay = delay;
        self
    }

    /// Sets the round trip; each direction gets half of it.
    pub fn round_trip(mut self, rtt: Duration) -> Self {
        self.one_way_delay = rtt / 2;
        self
    }

    /// Caps both directions at `bytes_per_sec`.
    pub fn bandwidth(self, bytes_per_sec: u64) -> Self {
        self.upload(bytes_per_sec).download(bytes_per_sec)
    }

    /// Caps both directions at `kbit_per_sec` kilobits (1000 bits) per second.
    pub fn bandwidth_kbit(self, kbit_per_sec: u64) -> Self {
        self.bandwidth(kbit_per_sec.saturating_mul(1000) / 8)
    }

    /// Caps client → target traffic at `bytes_per_sec`.
    pub fn upload(mut self, bytes_per_sec: u64) -> Self {
        self.up = Some((bytes_per_sec, None));
        self
    }

    /// Caps target → client traffic at `bytes_per_sec`.
    pub fn download(mut self, bytes_per_sec: u64) -> Self {
        self.down = Some((bytes_per_sec, None));
        self
    }

    /// Removes both bandwidth caps.
    pub fn unlimited(mut self) -> Self {
        self.up = None;
        self.down = None;
        self
    }

    /// Sets the burst of both caps (bytes sent back to back after an idle spell).
    pub fn burst(mut self, bytes: u64) -> Self {
        self.burst = Some(bytes);
        self
    }

    /// Sets the chance, from 0 to 1, that a connection is cut part-way.
    pub fn cut_probability(mut self, p: f64) -> Self {
        self.cut_probability = p;
        self
    }

    /// Sets where a chosen connection is cut: after a number of bytes (both directions together)
    /// drawn uniformly from `range`.
    pub fn cut_after_bytes(mut self, range: std::ops::RangeInclusive<u64>) -> Self {
        self.cut_after_min = *range.start();
        self.cut_after_max = *range.end();
        self
    }

    /// Sets how many connections the link carries at once.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Checks the settings and returns the profile.
    pub fn build(self) -> Result<Profile, ProfileError> {
        if !(0.0..=1.0).contains(&self.cut_probability) {
            return Err(ProfileError::CutProbability(self.cut_probability));
        }
        if self.cut_after_min == 0 || self.cut_after_min > self.cut_after_max {
            return Err(ProfileError::CutRange {
                min: self.cut_after_min,
                max: self.cut_after_max,
            });
        }
        if self.max_connections == 0 {
            return Err(ProfileError::ZeroMaxConnections);
        }
        if self.one_way_delay > MAX_ONE_WAY_DELAY {
            return Err(ProfileError::DelayTooLong(self.one_way_delay));
        }
        Ok(Profile {
            up: finish_cap(self.up, self.burst)?,
            down: finish_cap(self.down, self.burst)?,
            name: self.name,
            one_way_delay: self.one_way_delay,
            cut_probability: self.cut_probability,
            cut_after_min: self.cut_after_min,
            cut_after_max: self.cut_after_max,
            max_connections: self.max_connections,
        })
    }
}

fn finish_cap(
    cap: Option<(u64, Option<u64>)>,
    burst_override: Option<u64>,
) -> Result<Option<Bandwidth>, ProfileError> {
    let Some((rate, burst)) = cap else {
        return Ok(None);
    };
    let rate = NonZeroU64::new(rate).ok_or(ProfileError::ZeroBandwidth)?;
    let burst = match burst_override.or(burst) {
        Some(b) => NonZeroU64::new(b).ok_or(ProfileError::ZeroBurst)?,
        None => Bandwidth::default_burst(rate),
    };
    Ok(Some(Bandwidth::new(rate, burst)))
}
