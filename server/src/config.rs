//! Server configuration: built-in defaults, then a TOML file (`--config`), then environment
//! variables (`PHAKHI_*`), then command-line flags — each layer overrides the one before.
//! Unknown keys in the file are refused, so a typo never silently falls back to a default.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The port `phakhi serve` listens on by default.
pub const DEFAULT_PORT: u16 = 7744;
/// The data folder `phakhi serve` uses by default.
pub const DEFAULT_DATA: &str = "./phakhi-data";

/// The document cache's default budget (192 MiB), chosen so that a national HQ on a 1 GB
/// machine peaks under 512 MB resident (488 MiB), leaving the rest to the system:
///
/// | part | MiB |
/// | --- | --- |
/// | the binary, runtime, keys, mailbox and per-device maps (an HQ after a 250-phone fleet peaked at 25 MB) | 32 |
/// | SQLite's page caches: the writer and the reader connection, 2 MiB each by default, and SQLCipher's buffers | 8 |
/// | one document loaded outside the cache for the request that uses it: a 20,000-record province holds 17 MiB; twice that allowed for while it loads (not measured) | 40 |
/// | request bodies in flight: `max_requests_in_flight` × their size; phones' syncs are kilobytes, a first upload of a province about 0.5 MiB; 8 × 16 MiB at most with `max_requests_in_flight = 8` | 128 |
/// | the cache: 192 MiB of documents' heap × 1.3 for the allocator's overhead (271 MB resident over about 210 MB of documents' heap, measured at HQ with 12 provinces) | 250 |
/// | total | 458 |
///
/// 192 MiB holds about ten 20,000-record provinces (19 MB charged each); the other provinces are
/// loaded from SQLite when their phones sync, which costs a measured load (BENCHMARKS.md, "HQ's
/// document cache"). The default `max_requests_in_flight` (32) × `max_body_bytes` (16 MiB) is
/// 512 MiB of bodies at worst: a 1 GB HQ should set `max_requests_in_flight = 8` under
/// `[limits]`. A bigger machine raises `cache_mb` by what it adds, divided by 1.3.
pub const DEFAULT_CACHE_BYTES: usize = 192 * 1024 * 1024;

/// Which of the two server roles this process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerRole {
    /// Headquarters: merges every province, signs invites.
    Hq,
    /// Provincial coordination centre: serves its phones, relays to HQ.
    Relay,
}

impl ServerRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerRole::Hq => "hq",
            ServerRole::Relay => "relay",
        }
    }
}

/// Limits that bound the work one device can cause.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Most documents one exchange may carry.
    pub max_documents_per_exchange: usize,
    /// Most automerge changes one message may carry, over all its documents.
    pub max_changes_per_message: usize,
    /// Mailbox envelopes one device may hand over before what it handed leaves this server's
    /// care, and at most per day (see `crate::allowance`). Tips and evidence travel in 4 KiB
    /// cover slots, two per sync, and many more when a member sends evidence at the fast pace:
    /// the default takes a 25 MiB attachment (about 6,800 slots) twice over in a day.
    pub mailbox_envelopes_per_device: i64,
    /// Mailbox bytes one device may hand over, counted the same way.
    pub mailbox_bytes_per_device: i64,
    /// Most attachment chunks one device may have stored and not yet passed on (the default
    /// holds eight attachments of 25 MiB).
    pub chunks_per_device: i64,
    /// At HQ: most attachment chunks one relay may have stored there that the tip desk has not
    /// collected yet. A relay carries a whole province's phones, so this is its own figure (the
    /// default holds 64 attachments of 25 MiB, about 1.7 GB); when it is full the relay's chunks
    /// wait at the relay while everything else keeps syncing.
    pub chunks_per_relay: i64,
    /// Attachment chunks one phone may hand over per minute (token bucket refill rate; a
    /// request that carries no chunk costs one). Chunk requests are counted here instead of in
    /// `requests_per_minute`, so an upload neither starves the phone's syncs nor is starved by
    /// them. A relay's chunk requests at HQ count as ordinary requests instead.
    pub chunk_uploads_per_minute: u32,
    /// Attachment chunks one phone may hand over in a burst (token bucket size). The default
    /// takes a whole 25 MiB attachment (401 chunks) and its questions at full link speed.
    pub chunk_upload_burst: u32,
    /// Requests per minute one device may make (token bucket refill rate).
    pub requests_per_minute: u32,
    /// Requests one device may make in a burst (token bucket size).
    pub request_burst: u32,
    /// Seconds before a request is answered with a timeout.
    pub request_timeout_secs: u64,
    /// Requests one source address may have refused per minute before the envelope is opened
    /// (bucket refill rate): envelopes that do not open, unknown or revoked keys, replays,
    /// forged invites. Only refusals count, so phones behind one address (a centre's network,
    /// a carrier's NAT) that sync honestly are never held by it; an address past it is refused
    /// before its requests cost any decryption (see `crate::admission`).
    pub refusals_per_address_per_minute: u32,
    /// Refusals one address may have in a burst (bucket size).
    pub refusal_burst_per_address: u32,
    /// Sealed-envelope requests the server works on at once, from the first byte of the body
    /// to the answer: the bound on request bodies held in memory and on the writer's queue.
    /// More wait, before their body is read, in the queue below.
    pub max_requests_in_flight: usize,
    /// Sealed-envelope requests that may wait for one of those places (only their headers are
    /// read: a waiting request costs a connection, not its body). One more is answered `busy`
    /// at once; a request that waits longer than `request_timeout_secs` gets `timeout`.
    pub max_requests_waiting: usize,
    /// Bytes of changes one device may add to the shared documents per day (UTC), counted as
    /// stored; a relay's exchanges at HQ are not counted (see `crate::budget`).
    pub document_bytes_per_device_per_day: u64,
    /// Days a reply is kept after it arrived here, delivered or not (see
    /// `crate::mailroom::prune_replies`).
    pub reply_keep_days: i64,
}

/// Chunks of one 25 MiB attachment, its manifest included (one chunk carries 64 KiB).
const CHUNKS_PER_25_MIB: i64 = 25 * 1024 * 1024 / 65_536 + 1;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: phakhi_core::sync::MAX_BODY_BYTES,
            max_documents_per_exchange: 64,
            max_changes_per_message: phakhi_core::sync::MAX_CHANGES_PER_MESSAGE,
            mailbox_envelopes_per_device: 16_384,
            mailbox_bytes_per_device: 64 * 1024 * 1024,
            chunks_per_device: 8 * CHUNKS_PER_25_MIB,
            chunks_per_relay: 64 * CHUNKS_PER_25_MIB,
            chunk_uploads_per_minute: 240,
            chunk_upload_burst: 512,
            requests_per_minute: 60,
            request_burst: 20,
            request_timeout_secs: 120,
            refusals_per_address_per_minute: 30,
            refusal_burst_per_address: 60,
            max_requests_in_flight: 32,
            max_requests_waiting: 4096,
            document_bytes_per_device_per_day: 1024 * 1024,
            reply_keep_days: 60,
        }
    }
}

impl Limits {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }
}

/// A relay's link to HQ (`phakhi serve --upstream`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// HQ's address; `None` uses the one `phakhi relay join` recorded.
    pub url: Option<String>,
    /// Time between rounds while HQ answers.
    pub interval: Duration,
    /// Longest wait between attempts while HQ is unreachable.
    pub backoff_cap: Duration,
}

/// Default time between upstream rounds, in seconds.
pub const DEFAULT_UPSTREAM_INTERVAL_SECS: u64 = 30;
/// Default longest wait between attempts while HQ is down, in seconds.
pub const DEFAULT_UPSTREAM_BACKOFF_CAP_SECS: u64 = 300;

impl UpstreamConfig {
    fn from_layer(url: Option<String>, interval: Option<u64>, cap: Option<u64>) -> Self {
        UpstreamConfig {
            url: url.filter(|url| !url.trim().is_empty()),
            interval: Duration::from_secs(
                interval.unwrap_or(DEFAULT_UPSTREAM_INTERVAL_SECS).max(1),
            ),
            backoff_cap: Duration::from_secs(
                cap.unwrap_or(DEFAULT_UPSTREAM_BACKOFF_CAP_SECS).max(1),
            ),
        }
    }
}

/// The resolved configuration of one server process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub role: ServerRole,
    pub addr: IpAddr,
    pub port: u16,
    pub data: PathBuf,
    /// The URL devices use to reach this server, written into invites.
    pub public_url: Option<String>,
    /// Memory budget of the document cache, in bytes: the heap its loaded documents hold,
    /// charged per document from its operations and changes (`crate::cache::DocCache::estimate`,
    /// measured true to within a tenth on province documents), so it bounds memory whatever the
    /// number of provinces. Default [`DEFAULT_CACHE_BYTES`].
    pub cache_bytes: usize,
    /// HQ's invite-verifying key (hex), needed by a relay to check invites; HQ uses its own.
    pub hq_key: Option<String>,
    /// The tip desk's public X25519 key (hex), written into invites.
    pub tip_desk_key: Option<String>,
    pub limits: Limits,
    /// Set on a relay that syncs with HQ.
    pub upstream: Option<UpstreamConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            role: ServerRole::Hq,
            addr: IpAddr::from([127, 0, 0, 1]),
            port: DEFAULT_PORT,
            data: PathBuf::from(DEFAULT_DATA),
            public_url: None,
            cache_bytes: DEFAULT_CACHE_BYTES,
            hq_key: None,
            tip_desk_key: None,
            limits: Limits::default(),
            upstream: None,
        }
    }
}

impl Config {
    /// The URL written into invites: the configured public URL, else the listening address.
    pub fn server_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            let host = match self.addr {
                IpAddr::V6(addr) => format!("[{addr}]"),
                IpAddr::V4(addr) => addr.to_string(),
            };
            format!("http://{host}:{}", self.port)
        })
    }
}

/// The configuration file's contents: every key optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub role: Option<ServerRole>,
    pub addr: Option<IpAddr>,
    pub port: Option<u16>,
    pub data: Option<PathBuf>,
    pub public_url: Option<String>,
    pub cache_mb: Option<usize>,
    pub hq_key: Option<String>,
    pub tip_desk_key: Option<String>,
    pub limits: Option<Limits>,
    /// HQ's address for a relay's upstream sync (`""` or `"joined"`: the one recorded at join).
    pub upstream: Option<String>,
    pub upstream_interval_secs: Option<u64>,
    pub upstream_backoff_cap_secs: Option<u64>,
}

/// Values from the environment or the command line (the `phakhi` binary's clap merges the two: a
/// flag beats its environment variable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub role: Option<ServerRole>,
    pub addr: Option<IpAddr>,
    pub port: Option<u16>,
    pub data: Option<PathBuf>,
    pub public_url: Option<String>,
    pub cache_mb: Option<usize>,
    pub hq_key: Option<String>,
    /// `Some(None)`: sync with HQ at the address recorded at join; `Some(Some(url))`: at `url`.
    pub upstream: Option<Option<String>>,
    pub upstream_interval_secs: Option<u64>,
    pub upstream_backoff_cap_secs: Option<u64>,
}

/// A configuration failure.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}; check the --config path")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {message}; fix that line and start again")]
    Parse { path: PathBuf, message: String },
}

impl FileConfig {
    /// Reads and parses a TOML config file.
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: error.message().to_string(),
        })
    }
}

/// Layers defaults, then the file, then overrides (environment and flags).
pub fn resolve(file: Option<FileConfig>, overrides: Overrides) -> Config {
    let mut config = Config::default();
    if let Some(file) = file {
        apply(
            &mut config,
            Overrides {
                role: file.role,
                addr: file.addr,
                port: file.port,
                data: file.data,
                public_url: file.public_url,
                cache_mb: file.cache_mb,
                hq_key: file.hq_key,
                upstream: file
                    .upstream
                    .map(|url| Some(url).filter(|url| !matches!(url.trim(), "" | "joined"))),
                upstream_interval_secs: file.upstream_interval_secs,
                upstream_backoff_cap_secs: file.upstream_backoff_cap_secs,
            },
        );
        if file.tip_desk_key.is_some() {
            config.tip_desk_key = file.tip_desk_key;
        }
        if let Some(limits) = file.limits {
            config.limits = limits;
        }
    }
    apply(&mut config, overrides);
    config
}

fn apply(config: &mut Config, layer: Overrides) {
    if let Some(role) = layer.role {
        config.role = role;
    }
    if let Some(addr) = layer.addr {
        config.addr = addr;
    }
    if let Some(port) = layer.port {
        config.port = port;
    }
    if let Some(data) = layer.data {
        config.data = data;
    }
    if let Some(url) = layer.public_url {
        config.public_url = Some(url);
    }
    if let Some(mb) = layer.cache_mb {
        config.cache_bytes = mb.saturating_mul(1024 * 1024);
    }
    if let Some(key) = layer.hq_key {
        config.hq_key = Some(key);
    }
    let before = config.upstream.take();
    let url = match (layer.upstream, &before) {
        (Some(url), _) => Some(url),
        (None, Some(set)) => Some(set.url.clone()),
        (None, None) => None,
    };
    config.upstream = url.map(|url| {
        let keep =
            |pick: fn(&UpstreamConfig) -> Duration| before.as_ref().map(|b| pick(b).as_secs());
        UpstreamConfig::from_layer(
            url,
            layer
                .upstream_interval_secs
                .or_else(|| keep(|b| b.interval)),
            layer
                .upstream_backoff_cap_secs
                .or_else(|| keep(|b| b.backoff_cap)),
        )
    });
    if config.upstream.is_some() {
        // Syncing with HQ is what a relay does.
        config.role = ServerRole::Relay;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_hq_on_loopback() {
        let config = resolve(None, Overrides::default());
        assert_eq!(config.role, ServerRole::Hq);
        assert_eq!(config.addr.to_string(), "127.0.0.1");
        assert_eq!(config.port, DEFAULT_PORT);
        assert_eq!(config.data, PathBuf::from("./phakhi-data"));
        assert_eq!(config.server_url(), "http://127.0.0.1:7744");
    }

    #[test]
    fn file_beats_defaults_and_overrides_beat_file() {
        let file: FileConfig = toml::from_str(
            r#"
            port = 9000
            data = "/srv/phakhi"
            role = "relay"
            [limits]
            max_documents_per_exchange = 5
            "#,
        )
        .unwrap();
        let config = resolve(
            Some(file.clone()),
            Overrides {
                port: Some(9001),
                ..Overrides::default()
            },
        );
        assert_eq!(config.port, 9001);
        assert_eq!(config.data, PathBuf::from("/srv/phakhi"));
        assert_eq!(config.role, ServerRole::Relay);
        assert_eq!(config.limits.max_documents_per_exchange, 5);
        assert_eq!(
            config.limits.chunks_per_relay,
            Limits::default().chunks_per_relay
        );
        assert_eq!(
            config.limits.max_body_bytes,
            Limits::default().max_body_bytes
        );
        let config = resolve(Some(file), Overrides::default());
        assert_eq!(config.port, 9000);
    }

    #[test]
    fn upstream_implies_a_relay_and_keeps_its_timings_across_layers() {
        let file: FileConfig = toml::from_str(
            r#"
            upstream = "joined"
            upstream_backoff_cap_secs = 60
            "#,
        )
        .unwrap();
        let config = resolve(Some(file.clone()), Overrides::default());
        assert_eq!(config.role, ServerRole::Relay);
        let upstream = config.upstream.unwrap();
        assert_eq!(upstream.url, None);
        assert_eq!(upstream.backoff_cap, Duration::from_secs(60));
        assert_eq!(
            upstream.interval,
            Duration::from_secs(DEFAULT_UPSTREAM_INTERVAL_SECS)
        );
        let config = resolve(
            Some(file),
            Overrides {
                upstream: Some(Some("http://192.0.2.1:7744".into())),
                upstream_interval_secs: Some(5),
                ..Overrides::default()
            },
        );
        let upstream = config.upstream.unwrap();
        assert_eq!(upstream.url.as_deref(), Some("http://192.0.2.1:7744"));
        assert_eq!(upstream.interval, Duration::from_secs(5));
        assert_eq!(upstream.backoff_cap, Duration::from_secs(60));
        // Without --upstream there is no upstream task and the role stays as given.
        assert_eq!(resolve(None, Overrides::default()).upstream, None);
    }

    #[test]
    fn unknown_keys_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phakhi.toml");
        std::fs::write(&path, "prot = 1\n").unwrap();
        let err = FileConfig::read(&path).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("phakhi.toml"), "{text}");
        assert!(text.contains("prot"), "{text}");
    }
}
