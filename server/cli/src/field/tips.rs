//! Tips and sync from the command line. A tip is read from a file or standard input, sealed to
//! the tip desk by `Device::submit_tip` and only its receipt is printed; sync shows a progress
//! bar on a terminal and ends with one line saying what moved.
//!
//! Evidence files (`--attach`) are stripped of identifying metadata first and the strip report
//! is printed — what was removed, and what could not be checked. When a risk remains that only
//! the member can judge (a recording passed through uninspected), nothing is sent unless
//! `--accept-risks` says the member read the report and accepts it.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use phakhi_core::attach::{AttachError, AttachLimits, Pace, PreparedAttachment, StripError};
use phakhi_core::device::{DeviceError, EvidencePace, SLOTS_PER_EXCHANGE};
use phakhi_core::seal::{MemberCode, TipCategory, TipDraft};
use phakhi_core::transport::HttpError;
use zeroize::Zeroizing;

use super::dates::{self, InputEra};
use super::{FieldError, Session};
use crate::table::Table;
use phakhi_core::model::Era;

// Parsed once per run from the command line: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Subcommand)]
pub enum TipCommand {
    /// Seal a tip to the tip desk and queue it for the next sync; prints the receipt.
    Submit(TipSubmit),
    /// Receipts of the tips sent from this device, their status and the tip desk's replies.
    Status {
        /// Show dates in the Buddhist (be) or Common (ce) era.
        #[arg(long, default_value = "be", value_parser = crate::field::dates::era_arg())]
        era: Era,
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
    /// Attach an evidence file: a photo (JPEG, PNG), a PDF or a recording (repeat the flag, at
    /// most 8). Identifying metadata is removed before anything is stored.
    #[arg(long, value_name = "FILE")]
    pub attach: Vec<PathBuf>,
    /// Keep the attached files' names (inside the sealed attachment); by default they are not
    /// sent, as a name can say who took the file and when.
    #[arg(long)]
    pub keep_file_names: bool,
    /// The member read the strip report and accepts the risks it lists as remaining.
    #[arg(long)]
    pub accept_risks: bool,
    /// How this phone's evidence leaves it: `trickle` (the default) sends it a few kilobytes
    /// per sync inside the cover slots every sync carries, so nobody watching the network or
    /// the server can tell this phone from another; `fast` uploads it at the next sync at link
    /// speed, which shows that this phone is sending evidence. Kept for later tips.
    #[arg(long, value_enum)]
    pub evidence_pace: Option<PaceArg>,
}

/// `--evidence-pace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PaceArg {
    Trickle,
    Fast,
}

/// Reads and strips each file, printing its report; refuses to go on when a risk remains and
/// `--accept-risks` was not given.
fn prepare_attachments(t: &TipSubmit) -> Result<Vec<PreparedAttachment>, FieldError> {
    let limits = AttachLimits::default();
    if t.attach.len() > limits.attachments() {
        return Err(FieldError::input(format!(
            "{} files attached; a tip carries at most {}",
            t.attach.len(),
            limits.attachments()
        )));
    }
    let mut prepared = Vec::with_capacity(t.attach.len());
    let mut risky = Vec::new();
    for (number, path) in t.attach.iter().enumerate() {
        let shown = path.display().to_string();
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| FieldError::Read {
            path: shown.clone(),
            source,
        })?);
        let name = if t.keep_file_names {
            path.file_name().and_then(|n| n.to_str())
        } else {
            None
        };
        let mut attachment =
            PreparedAttachment::prepare(&bytes, name, &limits).map_err(|e| match e {
                AttachError::Strip(StripError::CannotStrip { media, reason }) => {
                    FieldError::input(format!(
                        "{shown} is refused: its {media} metadata cannot be removed safely \
                         ({reason}). Nothing was sent. Convert it to JPEG (on most phones: \
                         share the photo as JPEG, or set the camera to \"most compatible\") \
                         and attach that"
                    ))
                }
                other => {
                    FieldError::input(format!("{shown} is refused: {other}. Nothing was sent"))
                }
            })?;
        let report = attachment.report();
        println!(
            "attachment {}: {shown} ({}, {} bytes, {} after stripping){}",
            number + 1,
            attachment.media_type(),
            bytes.len(),
            attachment.bytes().len(),
            if name.is_some() {
                ", file name kept"
            } else {
                ""
            }
        );
        if report.removed.is_empty() {
            println!("  removed: nothing (no metadata found)");
        }
        for removed in &report.removed {
            println!("  removed: {removed}");
        }
        for residual in &report.residual {
            println!(
                "  {}: {residual}",
                if residual.needs_consent() {
                    "RISK, not checked"
                } else {
                    "note"
                }
            );
        }
        if attachment.needs_consent() {
            if t.accept_risks {
                attachment.accept_residual_risks();
            } else {
                risky.push(shown);
            }
        }
        prepared.push(attachment);
    }
    if !risky.is_empty() {
        return Err(FieldError::input(format!(
            "not sent: {} still may identify the member (the risks marked RISK above could not \
             be removed or checked). Read them with the member; if they accept them, run the \
             same command again with --accept-risks, otherwise leave the file out",
            risky.join(", ")
        )));
    }
    Ok(prepared)
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
    let attachments = prepare_attachments(&t)?;
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
    let count = attachments.len();
    if let Some(pace) = t.evidence_pace {
        session.device.set_evidence_pace(match pace {
            PaceArg::Trickle => EvidencePace::Trickle,
            PaceArg::Fast => EvidencePace::Fast,
        })?;
    }
    let receipt = session.device.submit_tip_with_attachments(
        draft,
        attachments,
        &AttachLimits::default(),
        date,
        &mut session.rng,
        &edit,
    )?;
    println!("receipt: {receipt}");
    if count > 0 {
        let chunks = session.device.pending_chunks()?.len();
        if session.device.evidence_trickles()? {
            println!(
                "{count} attachment(s) encrypted; {chunks} chunk(s) leave a few kilobytes per \
                 sync in the cover slots (about {} syncs; `--evidence-pace fast` sends them at \
                 the next sync, which shows)",
                chunks_slots(chunks).div_ceil(SLOTS_PER_EXCHANGE)
            );
        } else {
            println!(
                "{count} attachment(s) encrypted; {chunks} chunk(s) wait to be uploaded after \
                 the tip"
            );
        }
    }
    println!(
        "the tip is sealed: only the tip desk can read it. It leaves with the next \
         `phakhi device --store ... sync`; keep the receipt to follow it with `tip status`."
    );
    Ok(())
}

fn status(session: &mut Session, era: Era) -> Result<(), FieldError> {
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
            r.submitted.iso_in(era),
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
        // The server's message already says what to do next (a revoked device: whom to ask).
        DeviceError::Http(HttpError::Refused { message, .. }) => {
            FieldError::input(format!("the server refused the sync: {message}"))
        }
        DeviceError::Http(http) => FieldError::input(format!(
            "sync did not complete: {http}. Nothing was lost; run `sync` again when the \
             connection is better"
        )),
        other => other.into(),
    })?;
    println!(
        "synced: sent {} B, received {} B in {} round(s); {}; {} tip(s) delivered, {} \
         repl(ies) received",
        report.bytes_sent,
        report.bytes_received,
        report.rounds,
        super::changes_summary(&report),
        report.tips_delivered,
        report.replies_received
    );
    for (doc, error) in &report.doc_errors {
        eprintln!("warning: the server refused {doc}: {error}");
    }
    // Attachment chunks only after records and tip envelopes.
    let pending = session.device.pending_chunks()?.len();
    if pending == 0 {
        return Ok(());
    }
    if session.device.evidence_trickles()? {
        println!(
            "attachments: {pending} chunk(s) leave in the cover slots of the next syncs (about \
             {} more); `tip submit --evidence-pace fast` sends them at once, which shows",
            chunks_slots(pending).div_ceil(SLOTS_PER_EXCHANGE)
        );
        return Ok(());
    }
    let bar = super::stderr_is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} attachments: {pos}/{len} chunk(s) uploaded",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut shown = 0usize;
    let mut progress = |report: &phakhi_core::device::ChunkUploadReport, total: usize| {
        let done = report.chunks_held;
        match &bar {
            Some(bar) => {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
            // Without a terminal, a line every 16 chunks and at the end.
            None if done >= shown + 16 || (done == total && done != shown) => {
                shown = done;
                eprintln!("attachments: {done}/{total} chunk(s) uploaded");
            }
            None => {}
        }
    };
    // One command, one link: the pace starts at a chunk and learns from this upload's answers.
    let upload = session.device.upload_chunks_http(
        server,
        &mut Pace::default(),
        &mut session.rng,
        session.now,
        &mut progress,
    );
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let upload = upload.map_err(|e| match e {
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

/// Cover slots that `chunks` evidence chunks take.
fn chunks_slots(chunks: usize) -> usize {
    chunks * phakhi_core::seal::slot::parts_for(phakhi_core::attach::CHUNK_LEN)
}
