//! Tips and sync from the command line. A tip is read from a file or standard input, sealed to
//! the tip desk by `Device::submit_tip` and only its receipt is printed; sync shows a progress
//! bar on a terminal and ends with one line saying what moved.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use phakhi_core::device::DeviceError;
use phakhi_core::seal::{MemberCode, TipCategory, TipDraft};
use phakhi_core::transport::HttpError;
use zeroize::Zeroizing;

use super::dates::{self, InputEra, ShowEra};
use super::{FieldError, Session};
use crate::table::Table;

#[derive(Debug, Clone, Subcommand)]
pub enum TipCommand {
    /// Seal a tip to the tip desk and queue it for the next sync; prints the receipt.
    Submit(TipSubmit),
    /// Receipts of the tips sent from this device, their status and the tip desk's replies.
    Status {
        /// Show dates in the Buddhist (be) or Common (ce) era.
        #[arg(long, value_enum, default_value = "be")]
        era: ShowEra,
    },
}

#[derive(Debug, Clone, Args)]
pub struct TipSubmit {
    /// File holding the report (Thai or English); `-` or nothing reads standard input.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// bribery, procurement-fraud, abuse-of-power, embezzlement or other.
    #[arg(long, default_value = "other")]
    pub category: String,
    /// The district where it happened.
    #[arg(long)]
    pub district: String,
    /// The province where it happened [default: the device's home province].
    #[arg(long, value_name = "CODE")]
    pub province: Option<String>,
    /// A place (village, office) if it helps.
    #[arg(long)]
    pub place: Option<String>,
    /// People or organisations involved (repeat the flag).
    #[arg(long)]
    pub involved: Vec<String>,
    /// When it happened [default: today].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
    #[arg(long, value_enum, default_value = "auto")]
    pub date_era: InputEra,
    /// Read the member's secret network code from this environment variable (else it is asked
    /// for; it never appears in the process list).
    #[arg(long, value_name = "VAR")]
    pub code_env: Option<String>,
    /// Send the tip without a reply key: the tip desk cannot answer it.
    #[arg(long)]
    pub no_reply: bool,
}

fn category(text: &str) -> Result<TipCategory, FieldError> {
    Ok(match text.trim().replace('_', "-").as_str() {
        "bribery" => TipCategory::Bribery,
        "procurement-fraud" => TipCategory::ProcurementFraud,
        "abuse-of-power" => TipCategory::AbuseOfPower,
        "embezzlement" => TipCategory::Embezzlement,
        "other" => TipCategory::Other,
        _ => {
            return Err(FieldError::input(format!(
                "{text:?} is not a tip category; use one of: bribery, procurement-fraud, \
                 abuse-of-power, embezzlement, other"
            )));
        }
    })
}

fn read_report(file: Option<&PathBuf>) -> Result<Zeroizing<String>, FieldError> {
    let mut text = Zeroizing::new(String::new());
    match file {
        Some(path) if path.as_os_str() != "-" => {
            let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| FieldError::Read {
                path: path.display().to_string(),
                source,
            })?);
            text.push_str(std::str::from_utf8(&bytes).map_err(|_| {
                FieldError::input(format!(
                    "{} is not UTF-8 text; save the report as UTF-8",
                    path.display()
                ))
            })?);
        }
        _ => {
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| FieldError::Read {
                    path: "standard input".into(),
                    source,
                })?;
        }
    }
    if text.trim().is_empty() {
        return Err(FieldError::input(
            "the report is empty; write it in a file and give --file FILE, or pipe it in",
        ));
    }
    Ok(text)
}

pub(super) fn tip(session: &mut Session, command: TipCommand) -> Result<(), FieldError> {
    match command {
        TipCommand::Submit(t) => submit(session, t),
        TipCommand::Status { era } => status(session, era),
    }
}

fn submit(session: &mut Session, t: TipSubmit) -> Result<(), FieldError> {
    let province = session.province(t.province.as_deref())?;
    let category = category(&t.category)?;
    let date = match &t.date {
        Some(d) => dates::parse(d, t.date_era).map_err(FieldError::Input)?,
        None => phakhi_core::model::Date::from_time(session.now.date())
            .map_err(|e| FieldError::input(format!("this computer's clock is off: {e}")))?,
    };
    let report = read_report(t.file.as_ref())?;
    let code_text = match &t.code_env {
        Some(var) => Zeroizing::new(std::env::var(var).map_err(|_| {
            FieldError::input(format!(
                "the environment variable {var} is not set; export the member code in it"
            ))
        })?),
        None => Zeroizing::new(rpassword::prompt_password("member network code: ").map_err(
            |e| {
                FieldError::input(format!(
                    "cannot ask for the member code ({e}); give it with --code-env VAR"
                ))
            },
        )?),
    };
    let member_code = MemberCode::parse(&code_text).map_err(|e| {
        FieldError::input(format!(
            "the member code is not valid ({e}); check it against the card from the tip desk"
        ))
    })?;
    let draft = TipDraft {
        category,
        report: report.to_string(),
        date: date.as_time(),
        province: province.as_str().to_owned(),
        district: t.district,
        place: t.place,
        involved: t.involved,
        member_code,
        want_reply: !t.no_reply,
    };
    let edit = session.edit("submit tip");
    let receipt = session
        .device
        .submit_tip(draft, date, &mut session.rng, &edit)?;
    println!("receipt: {receipt}");
    println!(
        "the tip is sealed: only the tip desk can read it. It leaves with the next \
         `phakhi device --store ... sync`; keep the receipt to follow it with `tip status`."
    );
    Ok(())
}

fn status(session: &mut Session, era: ShowEra) -> Result<(), FieldError> {
    let receipts = session.device.tip_receipts(&mut session.rng)?;
    if receipts.is_empty() {
        println!("no tips sent from this device");
        return Ok(());
    }
    let mut table = Table::new(["RECEIPT", "STATUS", "SUBMITTED", "REPLIES"]);
    let mut replies = Vec::new();
    for r in &receipts {
        let these = session.device.tip_replies(&r.receipt)?;
        table.row([
            r.receipt.clone(),
            r.status.as_str().replace('_', "-"),
            dates::show(r.submitted, era),
            these.len().to_string(),
        ]);
        replies.extend(these);
    }
    print!("{}", table.render());
    for reply in replies {
        println!(
            "\nreply to {} ({}):\n{}",
            reply.receipt,
            reply.status.as_str().replace('_', "-"),
            reply.message
        );
    }
    let waiting = session.device.outbox()?.len();
    if waiting > 0 {
        println!("\n{waiting} tip(s) wait to be sent: run `sync` when there is a connection");
    }
    Ok(())
}

pub(super) fn sync(session: &mut Session, server: Option<&str>) -> Result<(), FieldError> {
    let bar = super::stderr_is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} receiving {bytes}/{total_bytes} ({bytes_per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut progress = |received: u64, total: Option<u64>| {
        if let Some(bar) = &bar {
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(received);
        }
    };
    let result = session
        .device
        .sync_http(server, &mut session.rng, session.now, &mut progress);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = result.map_err(|e| match e {
        DeviceError::Http(HttpError::Refused { message, .. }) => FieldError::input(format!(
            "the server refused the sync: {message}. If this device was revoked, ask your \
             coordinator for a new invite"
        )),
        DeviceError::Http(http) => FieldError::input(format!(
            "sync did not complete: {http}. Nothing was lost; run `sync` again when the \
             connection is better"
        )),
        other => other.into(),
    })?;
    println!(
        "synced: sent {} B, received {} B in {} round(s); {} change(s) in {} document(s); \
         {} tip(s) delivered, {} repl(ies) received",
        report.bytes_sent,
        report.bytes_received,
        report.rounds,
        report.changes_received,
        report.docs_changed.len(),
        report.tips_delivered,
        report.replies_received
    );
    for (doc, error) in &report.doc_errors {
        eprintln!("warning: the server refused {doc}: {error}");
    }
    // Attachment chunks only after records and tip envelopes.
    if session.device.pending_chunks()?.is_empty() {
        return Ok(());
    }
    let upload = session
        .device
        .upload_chunks_http(server, 3, &mut session.rng, session.now, &mut |_, _| {})
        .map_err(|e| match e {
            DeviceError::Http(http) => FieldError::input(format!(
                "attachment upload did not complete: {http}. Nothing was lost; run `sync` again \
                 to resume"
            )),
            other => other.into(),
        })?;
    println!(
        "attachments: {} chunk(s) sent, {} already held, {} left",
        upload.chunks_sent, upload.already_held, upload.left
    );
    Ok(())
}
