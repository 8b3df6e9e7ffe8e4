//! `phakhi tipdesk`: the investigators' desk on the command line. The desk itself — the key that
//! opens tips, the registry of member codes, its encrypted store, the pull cursor, replies and
//! attachments — is [`phakhi_core::desk::Desk`]; this parses arguments, reads the passphrase and
//! the key file, carries the desk's admin exchanges to a running HQ over HTTP (`net.rs`), writes
//! attachments and shares to files, and prints what the desk returns.
//!
//! Offline, an HQ data folder can still be read (`pull --data`) and a reply written into a
//! stopped HQ's folder (`reply --data`, see [`hq`]): for an HQ with no network between it and the
//! desk's machine. The normal path is the admin exchange with a running HQ.
//!
//! The folder holds `tipdesk.key` (secrets sealed under the passphrase, see
//! [`phakhi_core::desk::TipDeskKeys`]), `tipdesk.pub` (the public key, for `phakhi admin invite
//! --tip-desk-key`) and `tipdesk.store` (a Phakhi encrypted store keyed by a secret from the key
//! file, which also keeps the desk's device key and HQ's pinned key). No tip is ever written in
//! plain text.

mod attachments;
pub mod hq;
mod net;
pub mod shares;

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use phakhi_core::desk::category_name;
use phakhi_core::desk::{Ack, Desk, DeskError, HeldTip, KeyFileError, Pull, Pulled, TipDeskKeys};
use phakhi_core::model::{Date, Era, ProvinceCode};
use phakhi_core::seal::ReplyStatus;
use rand_core::OsRng;

use crate::secret::{self, SecretError};
use crate::table::{Table, one_line};
use phakhi_server::kdf;

const KEY_FILE: &str = "tipdesk.key";
const PUBLIC_FILE: &str = "tipdesk.pub";
const STORE_FILE: &str = "tipdesk.store";

/// `phakhi tipdesk --dir DIR [--passphrase-env VAR] COMMAND`.
#[derive(Debug, Clone, Args)]
pub struct TipdeskArgs {
    /// The tip desk's folder (keep it on an offline machine).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Read the tip-desk passphrase from this environment variable instead of asking for it.
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
    #[command(subcommand)]
    pub command: TipdeskCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TipdeskCommand {
    /// Create the tip desk's keys; prints the public key for invites.
    Init,
    /// Member network codes.
    #[command(subcommand)]
    Codes(CodesCommand),
    /// Enrol the desk at HQ with an invite from `phakhi admin invite --role admin`.
    Enroll {
        /// The invite (one line of text).
        invite: String,
        /// Reach HQ under this URL instead of the one in the invite.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// The network key (HQ's invite-signing key, hex): the invite must be signed with it
        /// (HQ prints it at first start and with `phakhi admin keys`).
        #[arg(long, env = "PHAKHI_NETWORK_KEY", value_name = "HEX")]
        network_key: Option<String>,
    },
    /// Copy the sealed tips from HQ (over the network, while HQ runs) into the desk's store.
    Pull {
        /// HQ's address [default: the one the desk enrolled with].
        #[arg(long, value_name = "URL", conflicts_with = "data")]
        server: Option<String>,
        /// Read an HQ data folder directly instead.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
    },
    /// Tell HQ the desk holds every pulled tip and every saved attachment: HQ releases them
    /// (drops their bodies and chunks).
    Ack {
        /// HQ's address [default: the one the desk enrolled with].
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
    /// List the tips held, newest last.
    List {
        #[arg(long, default_value = "be", value_parser = crate::field::dates::era_arg())]
        era: Era,
    },
    /// Show one tip in full.
    Show {
        receipt: String,
        #[arg(long, default_value = "be", value_parser = crate::field::dates::era_arg())]
        era: Era,
    },
    /// Fetch a tip's attachments from HQ (resuming where the last run stopped), check and
    /// decrypt them, and write each complete one into DIR; prints each file's SHA-256.
    Attachments {
        receipt: String,
        /// The folder to write the files into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// HQ's address [default: the one the desk enrolled with].
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Replace files of the same name in DIR.
        #[arg(long)]
        force: bool,
        /// Chunks asked for per exchange (1 to 16, 64 KiB each); fewer cost less when a
        /// connection is cut.
        #[arg(long, value_name = "N", default_value_t = 4)]
        per_request: usize,
    },
    /// Split the desk's key and the member-code key into shares, any THRESHOLD of which
    /// rebuild the desk (`tipdesk restore`): one per investigator, kept apart. Writes
    /// share-N.txt (text and QR code) and share-N.svg (QR code) for each, and codes.sealed (the
    /// registry of issued codes, opened only with the shares) into a new folder.
    Backup {
        /// How many shares to make (at most 16).
        #[arg(long, value_name = "N")]
        shares: u8,
        /// How many shares rebuild the desk (at least 2).
        #[arg(long, value_name = "K")]
        threshold: u8,
        /// The new folder to write them into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Rebuild the desk from shares of `tipdesk backup` into a new --dir, under a new
    /// passphrase; then enrol it at HQ again and pull.
    Restore {
        /// A file holding one share's text (share-N.txt, or the line typed from paper);
        /// repeat for each share.
        #[arg(long = "share", value_name = "FILE", required = true)]
        shares: Vec<PathBuf>,
        /// The backup's codes.sealed, to bring back the registry of issued codes.
        #[arg(long, value_name = "FILE")]
        codes: Option<PathBuf>,
    },
    /// Seal a reply to a tip and push it into HQ's mailbox for the tip's province.
    Reply {
        receipt: String,
        #[arg(long, value_enum)]
        status: StatusArg,
        /// The message to the member (Thai or English).
        #[arg(long)]
        message: String,
        /// HQ's address [default: the one the desk enrolled with].
        #[arg(long, value_name = "URL", conflicts_with = "data")]
        server: Option<String>,
        /// Write into a stopped HQ's data folder instead.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum CodesCommand {
    /// Issue a member network code: printed once, only its keyed hash is kept.
    Issue {
        /// Who it is for, as the desk knows them.
        #[arg(long)]
        alias: String,
    },
    /// List the aliases codes were issued to.
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusArg {
    Received,
    UnderReview,
    NeedsMoreInformation,
    Referred,
    Closed,
}

impl From<StatusArg> for ReplyStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Received => ReplyStatus::Received,
            StatusArg::UnderReview => ReplyStatus::UnderReview,
            StatusArg::NeedsMoreInformation => ReplyStatus::NeedsMoreInformation,
            StatusArg::Referred => ReplyStatus::Referred,
            StatusArg::Closed => ReplyStatus::Closed,
        }
    }
}

/// A failure of a tip-desk command, saying what to do next.
#[derive(Debug, thiserror::Error)]
pub enum TipdeskError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the tip-desk key: {0}")]
    Key(#[from] KeyFileError),
    #[error(transparent)]
    Desk(#[from] DeskError),
    #[error(transparent)]
    Hq(#[from] hq::HqError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} already holds a tip desk; use another --dir to make a new one")]
    Exists(String),
    #[error("{0} holds no tip desk; create one with `phakhi tipdesk --dir DIR init`")]
    Missing(String),
    #[error(
        "cannot reach HQ at {url}: {detail}. Check that HQ's server runs and the address (give \
         it with --server URL), then run the command again; nothing was changed"
    )]
    Unreachable { url: String, detail: String },
    #[error("HQ refused ({code}): {message} Next: {advice}")]
    Refused {
        code: String,
        message: String,
        advice: String,
    },
    #[error(
        "the download stopped after {fetched} of {total} chunk(s): {detail}. The chunks fetched \
         so far are kept: run the same `tipdesk attachments` command again to resume"
    )]
    Interrupted {
        detail: String,
        fetched: usize,
        total: usize,
    },
    #[error("{0}")]
    Refusals(String),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Shares(#[from] shares::ShareError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TipdeskError + '_ {
    move |source| TipdeskError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Runs a tip-desk command.
pub fn run(args: TipdeskArgs) -> Result<(), TipdeskError> {
    if let TipdeskCommand::Init = args.command {
        return init(&args);
    }
    if let TipdeskCommand::Restore { shares, codes } = &args.command {
        return restore(&args, shares, codes.as_deref());
    }
    let mut desk = open(&args)?;
    match args.command {
        TipdeskCommand::Init | TipdeskCommand::Restore { .. } => Ok(()),
        TipdeskCommand::Backup {
            shares,
            threshold,
            out,
        } => backup(&desk, threshold, shares, &out),
        TipdeskCommand::Codes(CodesCommand::Issue { alias }) => issue(&mut desk, &alias),
        TipdeskCommand::Codes(CodesCommand::List) => list_codes(&desk),
        TipdeskCommand::Enroll {
            invite,
            server,
            network_key,
        } => enroll(
            &mut desk,
            &invite,
            server.as_deref(),
            network_key.as_deref(),
        ),
        TipdeskCommand::Pull {
            data: Some(data), ..
        } => pull_folder(&mut desk, &data),
        TipdeskCommand::Pull { server, data: None } => pull(&mut desk, server.as_deref()),
        TipdeskCommand::Ack { server } => ack(&mut desk, server.as_deref()),
        TipdeskCommand::List { era } => list(&desk, era),
        TipdeskCommand::Show { receipt, era } => show(&desk, &receipt, era),
        TipdeskCommand::Attachments {
            receipt,
            out,
            server,
            force,
            per_request,
        } => {
            let held = desk.tip(&receipt)?;
            attachments::download(
                &mut desk,
                &held.tip.receipt.to_string(),
                &held.tip.attachments,
                &attachments::Download {
                    out: &out,
                    server: server.as_deref(),
                    force,
                    per_request,
                },
            )
        }
        TipdeskCommand::Reply {
            receipt,
            status,
            message,
            server,
            data,
        } => {
            let to = match &data {
                Some(data) => To::Folder(data),
                None => To::Network(server.as_deref()),
            };
            reply(&mut desk, &receipt, status.into(), message, to)
        }
    }
}

fn init(args: &TipdeskArgs) -> Result<(), TipdeskError> {
    let dir = &args.dir;
    let key_path = dir.join(KEY_FILE);
    if key_path.exists() {
        return Err(TipdeskError::Exists(dir.display().to_string()));
    }
    let passphrase = secret::passphrase(
        args.passphrase_env.as_deref(),
        "new tip-desk passphrase: ",
        true,
    )?;
    phakhi_core::store::private::private_folder(dir).map_err(io(dir))?;
    let keys = TipDeskKeys::generate(&mut OsRng);
    let file = keys.seal(&passphrase, kdf::for_new(), &mut OsRng)?;
    write_private(&key_path, &file)?;
    let public = hex::encode(keys.keys.public().as_bytes());
    let public_path = dir.join(PUBLIC_FILE);
    write_private(&public_path, format!("{public}\n").as_bytes())?;
    // Create the store now so a wrong key shows at once later.
    Desk::open(dir.join(STORE_FILE), keys, OsRng)?;
    println!("tip-desk public key: {public}");
    println!(
        "Keep {} and its passphrase offline; without both, no tip can be opened.\n\
         Next: put the public key in every invite:\n  phakhi admin --data HQ_DIR invite \
         --province TH-44 --role leader --tip-desk-key {public}\n\
         and issue member codes with `phakhi tipdesk --dir {} codes issue --alias NAME`.\n\
         To pull tips from HQ over the network, enrol this desk with an admin invite:\n  \
         phakhi tipdesk --dir {} enroll \"$(phakhi admin --data HQ_DIR invite --province \
         TH-44 --role admin --tip-desk-key {public})\"",
        key_path.display(),
        dir.display(),
        dir.display()
    );
    Ok(())
}

fn backup(desk: &Desk, threshold: u8, count: u8, out: &Path) -> Result<(), TipdeskError> {
    if out.exists() {
        return Err(TipdeskError::Input(format!(
            "{} already exists: give a new folder with --out (nothing was written)",
            out.display()
        )));
    }
    let split = shares::split(desk.keys(), threshold, count)?;
    let codes = desk.code_registry()?;
    let sealed = shares::seal_codes(desk.keys(), &split, &codes);
    phakhi_core::store::private::private_folder(out).map_err(io(out))?;
    for (i, share) in split.shares.iter().enumerate() {
        let n = i + 1;
        let text = format!(
            "Phakhi tip-desk share {n} of {count} (any {threshold} rebuild the desk).\n\
             Keep it apart from the other shares; never copy it onto a networked machine.\n\n\
             {share}\n\n{}",
            shares::qr_text(share)
        );
        write_private(&shares::share_path(out, n, "txt"), text.as_bytes())?;
        write_private(
            &shares::share_path(out, n, "svg"),
            shares::qr_svg(share).as_bytes(),
        )?;
    }
    write_private(&out.join(shares::CODES_FILE), &sealed)?;
    println!(
        "wrote {count} shares into {} (share-1.txt … share-{count}.txt, each with a QR code in \
         share-N.svg) and {} ({} issued code(s), sealed). Any {threshold} shares rebuild the \
         desk with `phakhi tipdesk --dir NEW_DIR restore --share FILE …`.\n\
         Next: print each share, hand one to each of {count} investigators to keep apart, then \
         delete the share files from this machine.",
        out.display(),
        out.join(shares::CODES_FILE).display(),
        codes.len()
    );
    Ok(())
}

fn restore(
    args: &TipdeskArgs,
    files: &[PathBuf],
    codes: Option<&Path>,
) -> Result<(), TipdeskError> {
    let dir = &args.dir;
    let key_path = dir.join(KEY_FILE);
    if key_path.exists() {
        return Err(TipdeskError::Exists(dir.display().to_string()));
    }
    let mut texts = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(file).map_err(io(file))?;
        // The share is the line that starts with the prefix (a .txt file has more around it).
        let line = text
            .lines()
            .find(|line| line.trim_start().starts_with(shares::SHARE_PREFIX))
            .unwrap_or(text.as_str())
            .to_owned();
        texts.push((file.display().to_string(), line));
    }
    let rebuilt = shares::combine(&texts)?;
    let registry = match codes {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(io(path))?;
            shares::open_codes(&rebuilt, path, &bytes)?
        }
        None => Vec::new(),
    };
    let passphrase = secret::passphrase(
        args.passphrase_env.as_deref(),
        "new tip-desk passphrase: ",
        true,
    )?;
    let mut store_key = zeroize::Zeroizing::new([0u8; 32]);
    rand_core::RngCore::fill_bytes(&mut OsRng, store_key.as_mut_slice());
    let keys = TipDeskKeys {
        keys: rebuilt.keys.clone(),
        code_key: rebuilt.code_key.clone(),
        store_key,
    };
    phakhi_core::store::private::private_folder(dir).map_err(io(dir))?;
    let file = keys.seal(&passphrase, kdf::for_new(), &mut OsRng)?;
    let public = hex::encode(keys.keys.public().as_bytes());
    let mut desk = Desk::open(dir.join(STORE_FILE), keys, OsRng)?;
    desk.restore_codes(&registry)?;
    write_private(&key_path, &file)?;
    write_private(&dir.join(PUBLIC_FILE), format!("{public}\n").as_bytes())?;
    println!(
        "tip desk restored in {}: public key {public}",
        dir.display()
    );
    println!(
        "{} issued code(s) restored. Next: enrol this desk at HQ with a new admin invite \
         (`phakhi tipdesk --dir {} enroll INVITE`), revoke the lost desk's admin device \
         (`phakhi admin revoke`), then `pull`: the tips HQ still holds open again.",
        registry.len(),
        dir.display()
    );
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TipdeskError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn open(args: &TipdeskArgs) -> Result<Desk, TipdeskError> {
    let key_path = args.dir.join(KEY_FILE);
    if !key_path.exists() {
        return Err(TipdeskError::Missing(args.dir.display().to_string()));
    }
    let file = std::fs::read(&key_path).map_err(io(&key_path))?;
    kdf::check(&TipDeskKeys::cost(&file)?).map_err(|weak| {
        TipdeskError::Input(format!(
            "the tip-desk key {} was {weak}; create a new desk with `phakhi tipdesk --dir DIR \
             init`",
            key_path.display()
        ))
    })?;
    let passphrase = secret::passphrase(
        args.passphrase_env.as_deref(),
        "tip-desk passphrase: ",
        false,
    )?;
    let keys = TipDeskKeys::open(&file, &passphrase)?;
    Ok(Desk::open(args.dir.join(STORE_FILE), keys, OsRng)?)
}

fn issue(desk: &mut Desk, alias: &str) -> Result<(), TipdeskError> {
    let code = desk.issue_code(alias, &mut OsRng)?;
    println!("member code for {}: {code}", alias.trim());
    println!(
        "It is shown only this once and the desk keeps only its keyed hash: hand it to the \
         member in person."
    );
    Ok(())
}

fn list_codes(desk: &Desk) -> Result<(), TipdeskError> {
    let aliases = desk.code_aliases()?;
    if aliases.is_empty() {
        println!("no codes issued yet: `tipdesk codes issue --alias NAME`");
    }
    for alias in aliases {
        println!("{alias}");
    }
    Ok(())
}

fn enroll(
    desk: &mut Desk,
    invite: &str,
    server: Option<&str>,
    network_key: Option<&str>,
) -> Result<(), TipdeskError> {
    let network_key =
        phakhi_server::invite::network_key(network_key).map_err(TipdeskError::Input)?;
    let record = net::enroll(desk, invite, &network_key, server)?;
    println!(
        "tip desk enrolled at {} as admin device {}",
        record.url, record.device_id
    );
    println!("next: `phakhi tipdesk --dir DIR pull` fetches the tips while HQ runs");
    Ok(())
}

fn print_pulled(desk: &Desk, counts: &Pulled) -> Result<(), TipdeskError> {
    println!(
        "pulled {} new tip(s); {} already here",
        counts.new, counts.known
    );
    // HQ and the relays count every slot alike (`sealed_slots` in `phakhi report`): only here
    // does it show which held tips and which were cover.
    if counts.dummies + counts.parts > 0 {
        println!(
            "opened {} cover slot(s): {} carried parts of tips or evidence, {} carried nothing \
             (cover, discarded)",
            counts.dummies + counts.parts,
            counts.parts,
            counts.dummies
        );
        println!(
            "put together {} tip(s) and {} evidence chunk(s) from their slots",
            counts.tips_put_together, counts.chunks_put_together
        );
    }
    let incomplete = desk.incomplete_messages()?;
    if incomplete > 0 {
        println!(
            "{incomplete} tip(s) or evidence chunk(s) have only some of their parts here: the \
             rest come with the phones' next exchanges; pull again later"
        );
    }
    if counts.foreign > 0 {
        println!(
            "{} tip(s) did not open with this desk's key (sealed to another tip desk, or \
             damaged)",
            counts.foreign
        );
    }
    Ok(())
}

fn pull_folder(desk: &mut Desk, data: &Path) -> Result<(), TipdeskError> {
    let counts = desk.take_tips(hq::tips(data)?, false)?;
    print_pulled(desk, &counts)
}

/// Most pages in one pull (then the summary says to pull again).
const MAX_PAGES: usize = 10_000;

fn pull(desk: &mut Desk, server: Option<&str>) -> Result<(), TipdeskError> {
    let pull = net::converse(desk, Pull::new(MAX_PAGES), server)?.into_conversation();
    print_pulled(desk, &pull.counts)?;
    if pull.more {
        println!("more tips wait at HQ: run `tipdesk pull` again");
    }
    let unreleased = desk.unreleased_tips()?;
    if unreleased > 0 {
        println!(
            "{unreleased} tip(s) held here are not released at HQ yet: once this folder is \
             backed up, run `tipdesk ack` so HQ drops them"
        );
    }
    Ok(())
}

fn ack(desk: &mut Desk, server: Option<&str>) -> Result<(), TipdeskError> {
    let requests = desk.ack_requests()?;
    if requests.is_empty() {
        println!(
            "nothing to acknowledge: every pulled tip and saved attachment is released at HQ \
             (pull first)"
        );
        return Ok(());
    }
    let total = net::converse(desk, Ack::new(requests), server)?
        .into_conversation()
        .released;
    println!(
        "acknowledged {} tip(s): HQ released {} now{}",
        total.tips,
        total.released,
        if total.gone > 0 {
            format!(" ({} were no longer held there)", total.gone)
        } else {
            String::new()
        }
    );
    if total.chunks > 0 {
        println!(
            "released {} attachment chunk(s) of saved attachments at HQ{}",
            total.chunks_released,
            if total.chunks_gone > 0 {
                format!(" ({} were not known there)", total.chunks_gone)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

fn show_date(date: time::Date, era: Era) -> String {
    Date::from_time(date).map_or_else(|_| date.to_string(), |d| d.iso_in(era))
}

fn province_label(code: &str) -> String {
    ProvinceCode::parse(code)
        .map_or_else(|_| code.to_owned(), |p| format!("{code} {}", p.name_th()))
}

fn list(desk: &Desk, era: Era) -> Result<(), TipdeskError> {
    let tips = desk.tips()?;
    if tips.is_empty() {
        println!("no tips here: run `tipdesk pull`");
        return Ok(());
    }
    let mut table = Table::new([
        "RECEIPT", "DATE", "PROVINCE", "DISTRICT", "CATEGORY", "SENDER", "STATUS", "REPORT",
    ]);
    for o in &tips {
        let receipt = o.tip.receipt.to_string();
        let status = desk
            .replies(&receipt)?
            .last()
            .map_or_else(|| "new".to_owned(), |r| r.status.clone());
        table.row([
            receipt,
            show_date(o.tip.date, era),
            province_label(&o.tip.province),
            o.tip.district.clone(),
            category_name(o.tip.category).to_owned(),
            desk.sender(&o.tip.member_code)?.to_string(),
            status,
            one_line(&o.tip.report, 40),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

fn show(desk: &Desk, receipt: &str, era: Era) -> Result<(), TipdeskError> {
    let HeldTip { tip, province, .. } = desk.tip(receipt)?;
    let receipt = tip.receipt.to_string();
    println!("receipt:   {receipt}");
    println!("category:  {}", category_name(tip.category));
    println!("date:      {}", show_date(tip.date, era));
    println!("province:  {}", province_label(&tip.province));
    println!("district:  {}", tip.district);
    if let Some(place) = &tip.place {
        println!("place:     {place}");
    }
    if !tip.involved.is_empty() {
        println!("involved:  {}", tip.involved.join("; "));
    }
    println!("sender:    {}", desk.sender(&tip.member_code)?);
    println!(
        "replies:   {}",
        if tip.reply_key.is_some() {
            "the member can receive replies"
        } else {
            "the member asked for no replies"
        }
    );
    println!("routed:    {}", province_label(&province));
    println!("\n{}\n", tip.report);
    attachments::show(desk, &tip.attachments)?;
    for r in desk.replies(&receipt)? {
        println!("replied ({}): {}", r.status, r.message);
    }
    Ok(())
}

/// Where a reply goes.
enum To<'a> {
    Network(Option<&'a str>),
    Folder(&'a Path),
}

fn reply(
    desk: &mut Desk,
    receipt: &str,
    status: ReplyStatus,
    message: String,
    to: To<'_>,
) -> Result<(), TipdeskError> {
    let prepared = desk.prepare_reply(receipt, status, message, &mut OsRng)?;
    let now = i64::try_from(net::now_unix()).unwrap_or(i64::MAX);
    match to {
        To::Folder(data) => {
            hq::insert_reply(
                data,
                &prepared.item.province,
                prepared.item.envelope.clone(),
                now,
            )?;
        }
        To::Network(server) => {
            if !net::push_reply(desk, &prepared, server)? {
                return Err(DeskError::ReplyNotHeld.into());
            }
        }
    }
    let sent = desk.record_reply(&prepared, now)?;
    println!(
        "reply to {} ({}) is in HQ's mailbox for {}; it reaches the member's device with its \
         next sync",
        sent.receipt,
        sent.status,
        province_label(&prepared.item.province)
    );
    Ok(())
}
