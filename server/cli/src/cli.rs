//! The `phakhi` command line: `serve` and the `admin` commands. Parsing is clap derive, so
//! every command has `--help`; a flag beats its `PHAKHI_*` environment variable, which beats
//! the config file, which beats the defaults.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

use phakhi_server::admin::{self, AdminError, Revoked};
use phakhi_server::config::{self, Config, FileConfig, Overrides, ServerRole};
use phakhi_server::state::AppState;

/// Phakhi (ภาคี): offline-first sync for a civil-society anti-corruption network.
#[derive(Debug, Parser)]
#[command(name = "phakhi", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level (error, warn, info, debug, trace, or a RUST_LOG-style filter) [default: info,
    /// or warn while logs go to a terminal; RUST_LOG when set].
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Append logs to this file instead of the terminal (created with its folder if missing).
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// The data folder's database key file (64 hex digits), kept apart from the data (another
    /// disk, a removable stick); created with a new database [default: <data>.key beside the
    /// data folder].
    #[arg(long, global = true, env = "PHAKHI_DB_KEY_FILE", value_name = "FILE")]
    pub db_key_file: Option<PathBuf>,
    /// Take the database key from a passphrase held in this environment variable instead of a
    /// key file (stretched with Argon2id; the salt is kept in the data folder).
    #[arg(
        long,
        global = true,
        value_name = "VAR",
        conflicts_with = "db_key_file"
    )]
    pub db_passphrase_env: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a sync server (HQ by default) until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Manage the server's data folder: invites, devices, revocation, carried sync bundles.
    Admin(AdminArgs),
    /// A field device (a phone's client) on the command line: records, tips, sync.
    Device(crate::field::DeviceArgs),
    /// The investigators' offline tip desk: keys, member codes, opening tips, replies.
    Tipdesk(crate::tipdesk::TipdeskArgs),
    /// Headquarters' figures per province and each device's last sync.
    Report(crate::report::ReportArgs),
    /// A provincial relay's link to HQ.
    Relay(RelayArgs),
    /// Ask a running server whether it answers (GET /v1/health); with --wait, wait for it, and
    /// with --synced, for a relay to catch up with HQ.
    Health(crate::probe::HealthArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    #[command(subcommand)]
    pub command: RelayCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RelayCommand {
    /// Enrol this relay at HQ with a relay invite (`phakhi admin invite --role relay` at HQ) and
    /// record HQ's address and keys in the data folder; then run `phakhi serve --upstream`.
    Join {
        /// The invite text HQ gave you (PHAKHI1:…).
        invite: String,
        /// HQ's address, when it is not the one written in the invite.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// The network key (HQ's invite-signing key, hex): the invite must be signed with it
        /// (HQ prints it at first start and with `phakhi admin keys`).
        #[arg(long, env = "PHAKHI_NETWORK_KEY", value_name = "HEX")]
        network_key: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// Where the configuration comes from.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// TOML config file (keys: role, addr, port, data, public_url, cache_mb, hq_key,
    /// tip_desk_key and a `[limits]` table).
    #[arg(long, env = "PHAKHI_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data folder holding the database and the server's keys [default: ./phakhi-data].
    #[arg(long, env = "PHAKHI_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Server role [default: hq].
    #[arg(long, env = "PHAKHI_ROLE", value_parser = server_role_arg())]
    pub role: Option<ServerRole>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, env = "PHAKHI_ADDR")]
    pub addr: Option<IpAddr>,
    /// Port to listen on; 0 picks a free one [default: 7744].
    #[arg(long, env = "PHAKHI_PORT")]
    pub port: Option<u16>,
    /// URL devices use to reach this server, written into invites.
    #[arg(long, env = "PHAKHI_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Memory budget of the document cache, in MiB [default: 192, for a 1 GB HQ; see the README].
    #[arg(long, env = "PHAKHI_CACHE_MB", value_name = "MIB")]
    pub cache_mb: Option<usize>,
    /// A relay's copy of HQ's invite-verifying key (hex, printed on HQ's first start); not
    /// needed after `phakhi relay join`.
    #[arg(long, env = "PHAKHI_HQ_KEY", value_name = "HEX")]
    pub hq_key: Option<String>,
    /// Sync with HQ in the background (implies --role relay); without a URL, at the address
    /// recorded by `phakhi relay join`.
    #[arg(long, env = "PHAKHI_UPSTREAM", value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub upstream: Option<String>,
    /// Seconds between upstream rounds while HQ answers [default: 30].
    #[arg(long, env = "PHAKHI_UPSTREAM_INTERVAL", value_name = "SECS")]
    pub upstream_interval: Option<u64>,
    /// Longest wait in seconds between attempts while HQ is unreachable [default: 300].
    #[arg(long, env = "PHAKHI_UPSTREAM_BACKOFF_CAP", value_name = "SECS")]
    pub upstream_backoff_cap: Option<u64>,
}

/// Reads `--role` (`hq` or `relay`) as the server's [`ServerRole`], listing both in `--help`.
fn server_role_arg() -> impl TypedValueParser<Value = ServerRole> {
    let role = |role: ServerRole, help: &'static str| PossibleValue::new(role.as_str()).help(help);
    PossibleValuesParser::new([
        role(
            ServerRole::Hq,
            "Headquarters: merges every province, signs invites",
        ),
        role(
            ServerRole::Relay,
            "Provincial coordination centre: serves its phones, relays to HQ",
        ),
    ])
    .map(|text| {
        if text == ServerRole::Relay.as_str() {
            ServerRole::Relay
        } else {
            ServerRole::Hq
        }
    })
}

#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Print a signed, one-time invite for one device (HQ data folder only).
    Invite(InviteArgs),
    /// List enrolled devices with role, provinces and last sync (dates in the Common era, UTC,
    /// as in `phakhi report --lang en`; a relay's phones show their last sync at the relay, to
    /// the hour, once the relay has synced with HQ).
    Devices,
    /// Print this server's public keys (to configure relays and invites).
    Keys,
    /// Revoke a device: refused here at once, and at HQ or its relay after their next round;
    /// it can no longer sync or enrol again.
    Revoke {
        /// The device id (or a unique prefix of it) from `phakhi admin devices`.
        device: String,
    },
    /// Undo everything one device wrote to its provinces' documents since a date (run after
    /// `admin revoke`, with the server stopped): one change per document, synced to every relay
    /// and phone.
    Undo {
        /// The device id (or a unique prefix of it) from `phakhi admin devices`.
        #[arg(long)]
        device: String,
        /// The first day (YYYY-MM-DD, Common era, UTC) whose changes are undone.
        #[arg(long, value_name = "DATE")]
        since: String,
    },
    /// Apply a sync bundle a device exported (carried by hand) and write the answer bundle.
    ImportBundle {
        /// The bundle from `phakhi device export-bundle` (or a phone's export).
        file: PathBuf,
        /// Where to write the answer bundle to carry back to the device.
        #[arg(long, value_name = "FILE")]
        answer: PathBuf,
        /// The running server's address, when a server is running on the data folder.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
    /// Write a consistent copy of the data folder (database, keys, token) into a new folder,
    /// while the server runs. Phones and relays keep every tip until a finished backup holds it.
    Backup {
        /// The new folder to write the backup into (keep it off this machine, sealed as the
        /// data folder is).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Bring a backup back into the data folder (--data), which must be missing or empty and
    /// have no server running on it; then start `phakhi serve` on it.
    Restore {
        /// The folder `phakhi admin backup` wrote.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
    },
    /// Print a one-time login link to the dashboard (`/dashboard`) of this data folder's server.
    DashboardLogin {
        /// How long the link stays valid (30m, 12h; at most 1d).
        #[arg(long, default_value = "15m")]
        expires: String,
        /// The server's address as the browser reaches it [default: the configured public URL
        /// or address].
        #[arg(long, value_name = "URL")]
        server_url: Option<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct InviteArgs {
    /// Province code(s) the device may sync, e.g. TH-44 (repeat or separate with commas).
    #[arg(long = "province", required = true, value_name = "CODE")]
    pub provinces: Vec<String>,
    /// What the device may do.
    #[arg(long, value_enum)]
    pub role: InviteRole,
    /// How long the invite stays valid (30m, 12h, 7d, 2w).
    #[arg(long, default_value = "7d")]
    pub expires: String,
    /// Server URL written into the invite [default: the configured public URL or address].
    #[arg(long, value_name = "URL")]
    pub server_url: Option<String>,
    /// The tip desk's public key (hex), pinned by the device [default: tip_desk_key in the config].
    #[arg(long, env = "PHAKHI_TIP_DESK_KEY", value_name = "HEX")]
    pub tip_desk_key: Option<String>,
    /// For a provincial relay's phones: the relay's static key (hex, printed on its first start)
    /// [default: this server's]. Give the relay's URL with --server-url too.
    #[arg(long, value_name = "HEX", requires = "server_url")]
    pub server_key: Option<String>,
}

/// The command line's spelling of [`Role`](phakhi_server::db::devices::Role) (clap derives its choices
/// from a local type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InviteRole {
    Leader,
    Coordinator,
    Relay,
    Admin,
}

impl From<InviteRole> for phakhi_server::db::devices::Role {
    fn from(role: InviteRole) -> Self {
        use phakhi_server::db::devices::Role;
        match role {
            InviteRole::Leader => Role::Leader,
            InviteRole::Coordinator => Role::Coordinator,
            InviteRole::Relay => Role::Relay,
            InviteRole::Admin => Role::Admin,
        }
    }
}

/// A failure of a command, printed as one message that says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Start(#[from] phakhi_server::state::StartError),
    #[error(
        "cannot listen on {addr}: {source}; pick another port with --port (0 picks a free one) \
         or stop the program using it"
    )]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the server stopped with an error: {0}")]
    Serve(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(
        "--db-passphrase-env names {0}, which is not set or empty: export {0} with the \
         database passphrase, or give --db-key-file instead"
    )]
    DbPassphrase(String),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Field(#[from] crate::field::FieldError),
    #[error(transparent)]
    Tipdesk(#[from] crate::tipdesk::TipdeskError),
    #[error(transparent)]
    Report(#[from] phakhi_server::report::ReportError),
    #[error(transparent)]
    Bundle(#[from] phakhi_server::bundle::ImportError),
    #[error("{0}")]
    Undo(#[from] phakhi_server::undo::UndoError),
    #[error(
        "a dashboard login link may last at most 1d, not {0}: give --expires 15m (the default) \
         or up to 1d"
    )]
    LoginTooLong(String),
    #[error(transparent)]
    Join(#[from] phakhi_server::relay::join::JoinError),
    #[error(transparent)]
    Backup(#[from] phakhi_server::backup::BackupError),
    #[error(transparent)]
    Probe(#[from] crate::probe::ProbeError),
    #[error("cannot write logs to {path}: {source}; give another --log-file")]
    LogFile {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    NetworkKey(String),
    #[error(
        "this data folder has not joined HQ: run `phakhi relay join INVITE --data {0}` first \
         (HQ makes the invite with `phakhi admin invite --role relay --province CODE`)"
    )]
    NotJoined(String),
}

/// Resolves the configuration of `serve` (or of an admin command, which only needs the data
/// folder and the server URL).
pub fn resolve_config(args: &ConfigArgs, overrides: Overrides) -> Result<Config, CliError> {
    let file = args.config.as_deref().map(FileConfig::read).transpose()?;
    Ok(config::resolve(
        file,
        Overrides {
            data: args.data.clone(),
            ..overrides
        },
    ))
}

/// Parses the process arguments and runs the command.
pub fn main() -> ExitCode {
    end_quietly_on_closed_pipe();
    let cli = Cli::parse();
    let result = init_tracing(&cli).and_then(|()| run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Tells the storage where the data folder's key comes from (`--db-key-file`,
/// `--db-passphrase-env`; otherwise `PHAKHI_DB_KEY_FILE` or `<data>.key`).
fn configure_db_key(cli: &Cli) -> Result<(), CliError> {
    use phakhi_server::db::atrest::{self, KeySource};
    if let Some(var) = &cli.db_passphrase_env {
        let passphrase = std::env::var(var)
            .ok()
            .filter(|value| !value.is_empty())
            .ok_or_else(|| CliError::DbPassphrase(var.clone()))?;
        atrest::configure(KeySource::Passphrase(zeroize::Zeroizing::new(passphrase)));
    } else if let Some(path) = &cli.db_key_file {
        atrest::configure(KeySource::File(path.clone()));
    }
    Ok(())
}

/// A reader that closed the pipe (`phakhi report … | head -1`) ends the command quietly with
/// status 0, as other Unix tools do. Rust ignores SIGPIPE and its print macros panic on the
/// failed write; this hook recognises exactly that panic and exits instead of reporting it.
/// Everything the command had done before printing (an enrolment, a sync) is already saved.
fn end_quietly_on_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // A formatted panic message reaches the hook as a String, a literal one as a &str.
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_closed_pipe_panic(message) {
            std::process::exit(0);
        }
        report(info);
    }));
}

/// The panic of `print!`/`eprint!` on a closed pipe ("failed printing to stdout: Broken pipe").
fn is_closed_pipe_panic(message: &str) -> bool {
    message.starts_with("failed printing to std") && message.contains("Broken pipe")
}

/// The log filter: `--log-level`, else RUST_LOG, else `info` (`warn` while logs would share a
/// terminal with commands' output, so per-request lines stay out of the way).
fn log_filter(flag: Option<&str>, env: Option<&str>, to_terminal: bool) -> String {
    match (flag, env) {
        (Some(level), _) => level.to_owned(),
        (None, Some(env)) if !env.trim().is_empty() => env.to_owned(),
        _ if to_terminal => "warn".to_owned(),
        _ => "info".to_owned(),
    }
}

fn init_tracing(cli: &Cli) -> Result<(), CliError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let env = std::env::var("RUST_LOG").ok();
    let stderr_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let to_terminal = cli.log_file.is_none() && stderr_terminal;
    let filter = log_filter(cli.log_level.as_deref(), env.as_deref(), to_terminal);
    // `level` or `target=level,…` (RUST_LOG's common form); anything else logs at info.
    let filter: tracing_subscriber::filter::Targets = filter.parse().unwrap_or_else(|_| {
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
    });
    let registry = tracing_subscriber::registry().with(filter);
    match &cli.log_file {
        Some(path) => {
            let file = open_log_file(path).map_err(|source| CliError::LogFile {
                path: path.display().to_string(),
                source,
            })?;
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false);
            let _ = registry.with(layer).try_init();
        }
        None => {
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(stderr_terminal);
            let _ = registry.with(layer).try_init();
        }
    }
    Ok(())
}

fn open_log_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> Result<(), CliError> {
    configure_db_key(&cli)?;
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Admin(args) => admin(args),
        Command::Device(args) => Ok(crate::field::run(args)?),
        Command::Tipdesk(args) => Ok(crate::tipdesk::run(args)?),
        Command::Report(args) => Ok(crate::report::run(args)?),
        Command::Relay(args) => relay(args),
        Command::Health(args) => Ok(crate::probe::run(args)?),
    }
}

fn relay(args: RelayArgs) -> Result<(), CliError> {
    match args.command {
        RelayCommand::Join {
            invite,
            server,
            network_key,
            config,
        } => {
            let config = resolve_config(&config, Overrides::default())?;
            let network_key = phakhi_server::invite::network_key(network_key.as_deref())
                .map_err(CliError::NetworkKey)?;
            let outcome = phakhi_server::relay::join::join(
                &config.data,
                &invite,
                &network_key,
                server.as_deref(),
                phakhi_server::routes::now_unix(),
                &mut rand_core::OsRng,
            )?;
            let joined = &outcome.joined;
            println!(
                "joined HQ at {} as relay {} for {}",
                joined.hq_url,
                joined.device_id,
                joined.provinces.join(", ")
            );
            println!("relay static key (X25519): {}", outcome.relay_key);
            println!(
                "Next: start it with `phakhi serve --data {} --upstream`; HQ invites this relay's \
                 phones with --server-url <THIS RELAY'S URL> --server-key {}",
                config.data.display(),
                outcome.relay_key
            );
        }
    }
    Ok(())
}

fn serve(args: ServeArgs) -> Result<(), CliError> {
    let config = resolve_config(
        &args.config,
        Overrides {
            role: args.role,
            addr: args.addr,
            port: args.port,
            public_url: args.public_url.clone(),
            cache_mb: args.cache_mb,
            hq_key: args.hq_key.clone(),
            data: None,
            upstream: args
                .upstream
                .clone()
                .map(|url| Some(url).filter(|u| !u.trim().is_empty())),
            upstream_interval_secs: args.upstream_interval,
            upstream_backoff_cap_secs: args.upstream_backoff_cap,
        },
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let result = runtime.block_on(async move {
        let addr = std::net::SocketAddr::new(config.addr, config.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| CliError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let bound = listener.local_addr().map_err(CliError::Serve)?;
        let shutdown = phakhi_server::http::shutdown_signal().map_err(CliError::Serve)?;
        let mut config = config;
        config.port = bound.port();
        let opened = AppState::open(config)?;
        let state = opened.state;
        let upstream = state.config().upstream.clone();
        if upstream.is_some() && state.joined().is_none() {
            return Err(CliError::NotJoined(state.data_dir().display().to_string()));
        }
        let mut out = std::io::stdout().lock();
        if opened.first_start {
            let _ = write!(out, "{}", first_start_notice(&state));
        }
        let _ = writeln!(out, "listening on http://{bound}");
        let _ = out.flush();
        drop(out);
        tracing::info!(
            role = state.config().role.as_str(),
            data = %state.data_dir().display(),
            static_key = %hex::encode(state.keys().static_public().as_bytes()),
            "serving on {bound}"
        );
        // The upstream task stops with the server.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let upstream_task = upstream.map(|settings| {
            tokio::spawn(phakhi_server::relay::upstream::run(
                state.clone(),
                settings,
                stop_rx,
            ))
        });
        let shutdown = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        phakhi_server::http::serve(listener, state, shutdown)
            .await
            .map_err(CliError::Serve)?;
        if let Some(task) = upstream_task {
            task.abort();
        }
        tracing::info!("stopped cleanly");
        Ok(())
    });
    // An exchange with HQ in flight on a blocking thread is not waited for long.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}

/// What an operator needs after the first start: the public keys and the next command.
fn first_start_notice(state: &AppState) -> String {
    let data = state.data_dir().display();
    let keys = state.keys();
    let mut text = format!(
        "First start: created this server's keys in {data}.\n\
         Back up that folder; never share its *.key files.\n\
         The folder is encrypted at rest under {}: keep it apart from the data (another disk, a \
         removable stick), back it up separately, and start with --db-key-file naming it (or \
         PHAKHI_DB_KEY_FILE); without it the data cannot be read.\n\
         \x20 server static key (X25519):     {}\n",
        db_key_place(state.data_dir()),
        hex::encode(keys.static_public().as_bytes())
    );
    if let Some(verifying) = keys.verifying() {
        text.push_str(&format!(
            "  network key (Ed25519):          {}\n\
             This network key signs every invite: configure every phone app, tip desk and relay \
             with it (--network-key, or PHAKHI_NETWORK_KEY) and hand it over in person; they \
             refuse invites it did not sign. `phakhi admin keys` prints it again.\n\
             Next: create the first invite, for example for the coordinator of Maha Sarakham:\n\
             \x20 phakhi admin --data {data} invite --province TH-44 --role coordinator \
             --server-url {} --tip-desk-key <TIP-DESK-PUBLIC-KEY>\n\
             (the tip desk's public key comes from the investigators' offline key; set \
             tip_desk_key in the config file to leave the flag out)\n",
            hex::encode(verifying.as_bytes()),
            state.config().server_url()
        ));
    }
    text
}

/// Where the data folder's key comes from, for the first-start banner (never the key).
fn db_key_place(data: &std::path::Path) -> String {
    match phakhi_server::db::atrest::source_for(data) {
        phakhi_server::db::atrest::KeySource::File(path) => {
            format!("the key file {}", path.display())
        }
        phakhi_server::db::atrest::KeySource::Passphrase(_) => {
            "a key from the passphrase given (--db-passphrase-env)".to_string()
        }
    }
}

fn admin(args: AdminArgs) -> Result<(), CliError> {
    let config = resolve_config(&args.config, Overrides::default())?;
    let data = config.data.clone();
    let now = phakhi_server::routes::now_unix();
    match args.command {
        AdminCommand::Devices => {
            print!("{}", admin::devices_table(&data)?);
        }
        AdminCommand::Keys => {
            print!("{}", admin::public_keys(&data)?);
        }
        AdminCommand::Revoke { device } => {
            let now = i64::try_from(now).unwrap_or(i64::MAX);
            match admin::revoke(&data, &device, now)? {
                Revoked::Now(done) => {
                    println!("revoked device {}: {}", done.device_id, done.effect());
                }
                Revoked::Already(id) => println!("device {id} was already revoked"),
            }
        }
        AdminCommand::Undo { device, since } => {
            let since = phakhi_server::undo::parse_since(&since)?;
            let now = i64::try_from(now).unwrap_or(i64::MAX);
            print!(
                "{}",
                phakhi_server::undo::run(&data, &device, since, now)?.render()
            );
        }
        AdminCommand::ImportBundle {
            file,
            answer,
            server,
        } => {
            let done =
                phakhi_server::bundle::import(config, &file, &answer, server.as_deref(), now)?;
            println!(
                "bundle applied ({} bytes in); answer written to {} ({} bytes): carry it back \
                 and run `phakhi device --store ... import-bundle {}`",
                done.request_bytes,
                done.answer.display(),
                done.answer_bytes,
                done.answer.display()
            );
        }
        AdminCommand::Backup { out } => {
            let written = phakhi_server::backup::backup(&data, &out)?;
            println!(
                "backup {} written to {} ({} files, {} bytes). Keep it off this machine, where \
                 only the server's operators reach it: it holds the server's keys. Phones and \
                 relays now drop the tips it holds.",
                written.number,
                out.display(),
                written.files,
                written.bytes
            );
        }
        AdminCommand::Restore { from } => {
            let number = phakhi_server::backup::restore(&from, &data)?;
            println!(
                "backup {number} restored into {}. Next: start `phakhi serve --data {}`; phones \
                 and relays offer again the tips it lacks at their next sync, and documents \
                 heal as they sync. Devices enrolled after the backup must enrol again.",
                data.display(),
                data.display()
            );
        }
        AdminCommand::DashboardLogin {
            expires,
            server_url,
        } => {
            let valid = admin::parse_duration(&expires)?;
            let valid = i64::try_from(valid.as_secs()).unwrap_or(i64::MAX);
            if valid > phakhi_server::dashboard::session::MAX_LOGIN_SECS {
                return Err(CliError::LoginTooLong(expires));
            }
            let base = server_url.unwrap_or_else(|| config.server_url());
            let now = i64::try_from(now).unwrap_or(i64::MAX);
            let link = phakhi_server::dashboard::login_link(&data, &base, valid, now)?;
            println!("{link}");
            eprintln!(
                "Open this link in a browser within {expires}; it works once and signs you in \
                 for 8 hours."
            );
        }
        AdminCommand::Invite(invite) => {
            let request = phakhi_server::invite::InviteRequest {
                provinces: invite.provinces,
                role: invite.role.into(),
                expires: invite.expires,
                server_url: invite.server_url,
                tip_desk_key: invite.tip_desk_key,
                server_key: invite.server_key,
            };
            let text = phakhi_server::invite::issue(&config, &request, now, &mut rand_core::OsRng)?;
            println!("{text}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn logs_are_quiet_on_a_shared_terminal_unless_asked_for() {
        assert_eq!(log_filter(None, None, true), "warn");
        assert_eq!(log_filter(None, None, false), "info");
        assert_eq!(log_filter(None, Some(""), true), "warn");
        assert_eq!(log_filter(None, Some("debug"), true), "debug");
        assert_eq!(log_filter(Some("info"), Some("debug"), true), "info");
        let cli = Cli::try_parse_from(["phakhi", "serve", "--log-level", "debug"]).unwrap();
        assert_eq!(cli.log_level.as_deref(), Some("debug"));
    }

    #[test]
    fn only_a_closed_pipe_ends_quietly() {
        assert!(is_closed_pipe_panic(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!is_closed_pipe_panic(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!is_closed_pipe_panic("index out of bounds"));
    }

    #[test]
    fn parses_serve_and_admin() {
        let cli =
            Cli::try_parse_from(["phakhi", "serve", "--port", "0", "--role", "relay"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("expected serve");
        };
        assert_eq!(args.port, Some(0));
        assert_eq!(args.role, Some(ServerRole::Relay));

        let cli = Cli::try_parse_from([
            "phakhi",
            "admin",
            "--data",
            "/tmp/x",
            "invite",
            "--province",
            "TH-44",
            "--role",
            "leader",
        ])
        .unwrap();
        let Command::Admin(args) = cli.command else {
            panic!("expected admin");
        };
        assert_eq!(args.config.data, Some(PathBuf::from("/tmp/x")));
        let AdminCommand::Invite(invite) = args.command else {
            panic!("expected invite");
        };
        assert_eq!(invite.expires, "7d");
        assert!(Cli::try_parse_from(["phakhi", "admin", "invite", "--role", "leader"]).is_err());
    }

    #[test]
    fn dashboard_login_prints_a_link_and_refuses_long_expiries() {
        let cli = Cli::try_parse_from(["phakhi", "admin", "dashboard-login"]).unwrap();
        let Command::Admin(args) = cli.command else {
            panic!("expected admin");
        };
        let AdminCommand::DashboardLogin {
            expires,
            server_url,
        } = args.command
        else {
            panic!("expected dashboard-login");
        };
        assert_eq!(expires, "15m");
        assert_eq!(server_url, None);

        // The data folder inside a temporary one, so its key file (beside it) goes with it.
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("data");
        std::fs::create_dir(&folder).unwrap();
        let data = folder.to_str().unwrap();
        let login = |expires: &str| {
            run(Cli::try_parse_from([
                "phakhi",
                "admin",
                "--data",
                data,
                "dashboard-login",
                "--expires",
                expires,
            ])
            .unwrap())
        };
        // No data folder yet: it says how to make one.
        assert!(
            login("15m")
                .unwrap_err()
                .to_string()
                .contains("phakhi serve")
        );
        phakhi_server::db::open(&folder).unwrap();
        login("15m").unwrap();
        assert!(matches!(
            login("2d").unwrap_err(),
            CliError::LoginTooLong(_)
        ));
        assert!(matches!(
            login("soon").unwrap_err(),
            CliError::Admin(AdminError::BadDuration(_))
        ));
        let conn = phakhi_server::db::open(&folder).unwrap();
        let logins: i64 = conn
            .query_row("SELECT count(*) FROM dashboard_logins", [], |r| r.get(0))
            .unwrap();
        assert_eq!(logins, 1);
    }

    #[test]
    fn parses_relay_join_and_serve_upstream() {
        let cli = Cli::try_parse_from([
            "phakhi",
            "relay",
            "join",
            "PHAKHI1:ABC",
            "--data",
            "/srv/relay",
            "--server",
            "http://192.0.2.1:7744",
        ])
        .unwrap();
        let Command::Relay(RelayArgs {
            command:
                RelayCommand::Join {
                    invite,
                    server,
                    config,
                    ..
                },
        }) = cli.command
        else {
            panic!("expected relay join");
        };
        assert_eq!(invite, "PHAKHI1:ABC");
        assert_eq!(server.as_deref(), Some("http://192.0.2.1:7744"));
        assert_eq!(config.data, Some(PathBuf::from("/srv/relay")));

        // --upstream alone means "the address recorded at join".
        for (args, expected) in [
            (vec!["phakhi", "serve", "--upstream"], Some("")),
            (
                vec!["phakhi", "serve", "--upstream", "http://192.0.2.1:7744"],
                Some("http://192.0.2.1:7744"),
            ),
            (vec!["phakhi", "serve"], None),
        ] {
            let Command::Serve(serve) = Cli::try_parse_from(args).unwrap().command else {
                panic!("expected serve");
            };
            assert_eq!(serve.upstream.as_deref(), expected);
        }
    }
}
