//! `phakhi device`: a field device on the command line. It drives `phakhi_core::device::Device`
//! exactly as a phone app does — the same encrypted store, enrolment, typed records, sealed tips
//! and sync — so a coordinator can work from a laptop and tests can run whole phones as
//! processes. Nothing here re-implements the client: every action is one `Device` call.

mod bundles;
pub mod dates;
mod records;
mod tips;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use phakhi_core::device::{Device, DeviceError};
use phakhi_core::model::{Edit, ProvinceCode};
use phakhi_core::store::StorageKey;
use rand_core::OsRng;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::secret::{self, SecretError};
pub use dates::InputEra;
use phakhi_server::kdf;

/// `phakhi device --store PATH [--passphrase-env VAR | --key-file FILE] COMMAND`.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// The device's encrypted store file (`enroll` creates it; every other command needs it).
    #[arg(long, value_name = "PATH")]
    pub store: PathBuf,
    /// Read the store passphrase from this environment variable instead of asking for it.
    #[arg(long, value_name = "VAR", conflicts_with = "key_file")]
    pub passphrase_env: Option<String>,
    /// Open the store with a raw 32-byte key from this file (64 hex characters or 32 bytes).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: DeviceCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DeviceCommand {
    /// Enrol this device with the invite text from `phakhi admin invite`.
    Enroll {
        /// The invite (one line of text).
        invite: String,
        /// Reach the server under this URL instead of the one in the invite.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// The network key (HQ's invite-signing key, hex): the invite must be signed with it
        /// (HQ prints it at first start and with `phakhi admin keys`).
        #[arg(long, env = "PHAKHI_NETWORK_KEY", value_name = "HEX")]
        network_key: Option<String>,
    },
    /// Show what this device is enrolled as.
    Info,
    /// Members of a province (by alias).
    #[command(subcommand)]
    Member(records::MemberCommand),
    /// Coordination centres of a province.
    #[command(subcommand)]
    Centre(records::CentreCommand),
    /// Activities: campaigns, trainings, meetings.
    #[command(subcommand)]
    Activity(records::ActivityCommand),
    /// Tips: sealed to the tip desk on submission; receipts and replies.
    #[command(subcommand)]
    Tip(tips::TipCommand),
    /// Exchange documents, tips and replies with the server.
    Sync {
        /// Reach the server under this URL instead of the enrolled one.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
    /// Write the next sync request to a file to carry to the server by hand.
    ExportBundle {
        /// Where to write the bundle.
        file: PathBuf,
    },
    /// Apply the server's answer bundle (from `phakhi admin import-bundle`).
    ImportBundle {
        /// The answer bundle.
        file: PathBuf,
    },
}

/// A failure of a device command, saying what to do next.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("{0}")]
    Device(Box<DeviceError>),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}; check the folder exists and has space")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the key file {0} does not hold a 32-byte key (64 hexadecimal characters or 32 raw bytes)"
    )]
    KeyFile(String),
    #[error("{0}")]
    Input(String),
    #[error(
        "there is no store at {0}: check the path given with --store (a new store is made only \
         by enrolling: `phakhi device --store PATH enroll INVITE` with an invite from your \
         coordinator)"
    )]
    NoStore(String),
}

impl From<DeviceError> for FieldError {
    fn from(error: DeviceError) -> Self {
        FieldError::Device(Box::new(error))
    }
}

impl FieldError {
    fn input(text: impl Into<String>) -> FieldError {
        FieldError::Input(text.into())
    }
}

/// The device with what every command needs.
pub(crate) struct Session {
    pub device: Device,
    pub rng: OsRng,
    pub now: OffsetDateTime,
}

impl Session {
    fn edit(&self, message: &str) -> Edit {
        Edit::new(message, self.now)
    }

    /// The given province, or the device's home province.
    fn province(&self, given: Option<&str>) -> Result<ProvinceCode, FieldError> {
        if let Some(code) = given {
            return ProvinceCode::parse(code).map_err(|e| {
                FieldError::input(format!(
                    "{e}; give an ISO code such as TH-44 (Maha Sarakham)"
                ))
            });
        }
        self.device
            .enrolment()
            .and_then(|e| e.home_province())
            .ok_or_else(|| DeviceError::NotEnrolled.into())
    }
}

/// Runs a device command.
pub fn run(args: DeviceArgs) -> Result<(), FieldError> {
    let mut session = open(&args)?;
    match args.command {
        DeviceCommand::Enroll {
            invite,
            server,
            network_key,
        } => enroll(&mut session, &invite, server, network_key.as_deref()),
        DeviceCommand::Info => info(&session),
        DeviceCommand::Member(command) => records::member(&mut session, command),
        DeviceCommand::Centre(command) => records::centre(&mut session, command),
        DeviceCommand::Activity(command) => records::activity(&mut session, command),
        DeviceCommand::Tip(command) => tips::tip(&mut session, command),
        DeviceCommand::Sync { server } => tips::sync(&mut session, server.as_deref()),
        DeviceCommand::ExportBundle { file } => bundles::export(&mut session, &file),
        DeviceCommand::ImportBundle { file } => bundles::import(&mut session, &file),
    }
}

fn open(args: &DeviceArgs) -> Result<Session, FieldError> {
    // Only enrolment makes a store: a mistyped path must not leave an empty store behind.
    let creates = matches!(args.command, DeviceCommand::Enroll { .. });
    if !creates && !args.store.exists() {
        return Err(FieldError::NoStore(args.store.display().to_string()));
    }
    let mut rng = OsRng;
    let now = OffsetDateTime::now_utc();
    let mut device = match &args.key_file {
        Some(path) => {
            let key = read_key_file(path)?;
            Device::open(&args.store, key, &mut rng)?
        }
        None => {
            let new = !args.store.exists();
            let passphrase =
                secret::passphrase(args.passphrase_env.as_deref(), "store passphrase: ", new)?;
            let device = Device::open_with_passphrase(
                &args.store,
                &passphrase,
                kdf::for_new(),
                &mut rng,
            )
            .map_err(|e| match e {
                DeviceError::Store(phakhi_core::store::StoreError::WrongKey) => {
                    FieldError::input(format!(
                        "wrong passphrase for the store {}; try again (the passphrase cannot \
                         be recovered: without it, enrol a new store)",
                        args.store.display()
                    ))
                }
                other => other.into(),
            })?;
            if let Some(params) = device.store().kdf_params().map_err(DeviceError::from)? {
                kdf::check(&params).map_err(|weak| {
                    FieldError::input(format!(
                        "the store {} was {weak}; enrol a new store with this build",
                        args.store.display()
                    ))
                })?;
            }
            device
        }
    };
    device.set_clock(now);
    Ok(Session { device, rng, now })
}

fn read_key_file(path: &std::path::Path) -> Result<StorageKey, FieldError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| FieldError::Read {
        path: path.display().to_string(),
        source,
    })?);
    let mut key = Zeroizing::new([0u8; 32]);
    let text = std::str::from_utf8(&bytes).map(str::trim).unwrap_or("");
    if text.len() == 64 && hex::decode_to_slice(text, key.as_mut_slice()).is_ok() {
        return Ok(StorageKey::from_bytes(*key));
    }
    if bytes.len() == 32 {
        key.copy_from_slice(&bytes);
        return Ok(StorageKey::from_bytes(*key));
    }
    Err(FieldError::KeyFile(path.display().to_string()))
}

fn enroll(
    session: &mut Session,
    invite: &str,
    server: Option<String>,
    network_key: Option<&str>,
) -> Result<(), FieldError> {
    let network_key = phakhi_server::invite::network_key(network_key).map_err(FieldError::Input)?;
    let enrolment = session
        .device
        .enrol_http(
            invite,
            &network_key,
            server.as_deref(),
            &mut session.rng,
            session.now,
        )
        .map_err(|e| match e {
            DeviceError::Http(phakhi_core::transport::HttpError::Refused { message, .. }) => {
                // The server's message already says what to do next.
                FieldError::input(format!("the server refused the enrolment: {message}"))
            }
            other => other.into(),
        })?;
    println!(
        "enrolled as device {} ({}) for {}",
        enrolment.device_id,
        enrolment.role.as_str(),
        province_list(&enrolment.provinces)
    );
    println!("next: record activities, then run `phakhi device --store ... sync`");
    Ok(())
}

fn info(session: &Session) -> Result<(), FieldError> {
    let Some(e) = session.device.enrolment() else {
        println!(
            "not enrolled yet: run `phakhi device --store ... enroll INVITE` with an invite from \
             your coordinator"
        );
        return Ok(());
    };
    println!("device:    {}", e.device_id);
    println!("role:      {}", e.role.as_str());
    println!("provinces: {}", province_list(&e.provinces));
    println!(
        "server:    {}",
        e.servers.first().map_or("-", String::as_str)
    );
    println!("waiting tips: {}", session.device.outbox()?.len());
    Ok(())
}

fn province_list(codes: &[ProvinceCode]) -> String {
    codes
        .iter()
        .map(|p| format!("{} {}", p.as_str(), p.name_th()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Both directions of an exchange's changes: what this device sent and what it received.
pub(crate) fn changes_summary(report: &phakhi_core::device::SyncReport) -> String {
    format!(
        "sent {} change(s) in {} document(s), received {} change(s) in {} document(s)",
        report.changes_sent,
        report.docs_sent.len(),
        report.changes_received,
        report.docs_changed.len()
    )
}

/// True when progress bars should be drawn.
pub(crate) fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
