//! `tipdesk attachments` and the attachments section of `tipdesk show`: what the desk holds of a
//! tip's evidence is [`Desk`]'s (fetching, checking every chunk, assembling, naming — see
//! `phakhi_core::desk`); this carries the fetch to HQ, shows progress, and writes each complete
//! attachment into `--out` under the name the desk gives it, never over an existing file
//! without `--force`.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use phakhi_core::attach::AttachmentRef;
use phakhi_core::desk::{Assembled, Desk, Fetch, Held, Outcome};
use phakhi_core::protocol::{AdminRequest, AdminResponse, ErrorCode};
use sha2::{Digest, Sha256};

use super::{TipdeskError, net};

/// `DIR/name`, refusing anything but one plain component.
fn target(out: &Path, name: &str) -> Result<PathBuf, TipdeskError> {
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) => Ok(out.join(name)),
        _ => Err(TipdeskError::Input(format!(
            "refusing the file name {name:?}: not a plain file name"
        ))),
    }
}

/// Prints the attachments section of `tipdesk show`.
pub(super) fn show(desk: &Desk, refs: &[AttachmentRef]) -> Result<(), TipdeskError> {
    if refs.is_empty() {
        return Ok(());
    }
    println!("attachments: {}", refs.len());
    let locals = desk.attachments(refs)?;
    for l in &locals {
        let state = if l.complete() {
            "complete"
        } else {
            "incomplete"
        };
        match (&l.manifest, l.file_name()) {
            (Some(Ok(m)), Some(name)) => println!(
                "  {}. {name}  {}  {} bytes  chunks {}/{}  {state}{}",
                l.number,
                m.media_type.mime(),
                m.size,
                l.held + 1,
                m.chunks.len() + 1,
                l.saved
                    .as_ref()
                    .map_or_else(String::new, |s| format!("  saved as {}", s.file)),
            ),
            (Some(Err(e)), _) => println!(
                "  {}. (manifest refused: {e})  chunks ?/?  {state}",
                l.number
            ),
            _ => println!("  {}. (not fetched yet)  chunks 0/?  {state}", l.number),
        }
    }
    println!(
        "  strip report: not carried by the tip (the member's phone removed the metadata and \
         showed its report before sending)"
    );
    if locals.iter().any(|l| !l.complete()) {
        println!("  fetch them with `tipdesk attachments RECEIPT --out DIR`");
    }
    Ok(())
}

/// Options of `tipdesk attachments`.
pub(super) struct Download<'a> {
    pub out: &'a Path,
    pub server: Option<&'a str>,
    pub force: bool,
    pub per_request: usize,
}

/// `tipdesk attachments RECEIPT --out DIR`: fetches what is missing, then writes every complete
/// attachment. Fails (after writing the others) when an attachment was refused.
pub(super) fn download(
    desk: &mut Desk,
    receipt: &str,
    refs: &[AttachmentRef],
    options: &Download<'_>,
) -> Result<(), TipdeskError> {
    if refs.is_empty() {
        println!("tip {receipt} has no attachments");
        return Ok(());
    }
    std::fs::create_dir_all(options.out).map_err(super::io(options.out))?;
    let needed = desk.attachments(refs)?.iter().any(|l| !l.complete());
    let fetch = if needed {
        Some(fetch(desk, refs, options)?)
    } else {
        None
    };
    let mut refused = Vec::new();
    let mut incomplete = Vec::new();
    for outcome in desk.outcomes(refs, fetch.as_ref())? {
        match outcome {
            Outcome::Complete(assembled) => {
                if let Err(reason) = save(desk, receipt, &assembled, options) {
                    refused.push(format!("{}: {reason}", assembled.label));
                }
            }
            Outcome::Incomplete(held) => incomplete.push(still_incomplete(&held)),
            Outcome::Refused { label, reason } => refused.push(format!("{label}: {reason}")),
        }
    }
    for line in &incomplete {
        println!("still incomplete: {line}");
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(TipdeskError::Refusals(refused.join("\n")))
    }
}

/// Runs the desk's fetch of what is missing to its end over the link to HQ, showing progress.
fn fetch(
    desk: &mut Desk,
    refs: &[AttachmentRef],
    options: &Download<'_>,
) -> Result<Fetch, TipdeskError> {
    let link = net::Link::open(desk, options.server)?;
    let mut fetch = desk.fetch_attachments(refs, options.per_request)?;
    let mut progress = Progress::new();
    while let Some(request) = fetch.poll_request(desk)? {
        progress.show(&fetch);
        let answer = match patiently(&link, &request) {
            Ok(answer) => answer,
            Err(e) => {
                fetch.lost();
                return Err(progress.interrupted(&fetch, e));
            }
        };
        fetch.handle(desk, answer)?;
    }
    progress.show(&fetch);
    progress.finish();
    println!(
        "fetched {} chunk(s) ({} KiB) from HQ",
        fetch.fetched,
        fetch.bytes / 1024
    );
    Ok(fetch)
}

/// The line `still incomplete:` shows for one attachment.
fn still_incomplete(held: &Held) -> String {
    let total = held
        .total
        .map_or_else(|| "?".to_owned(), |t| t.to_string());
    format!(
        "{}: {} of {total} chunk(s) here{}",
        held.label,
        held.held,
        match held.missing_at_hq {
            Some(n) => format!(
                "; {n} not at HQ (not uploaded by the phone yet, or released): run this again \
                 after the phone's next sync"
            ),
            None => String::new(),
        }
    )
}

/// Writes one complete attachment into `--out` and has the desk remember it; a refusal comes
/// back as its reason.
fn save(
    desk: &mut Desk,
    receipt: &str,
    assembled: &Assembled,
    options: &Download<'_>,
) -> Result<(), String> {
    let path = target(options.out, &assembled.name).map_err(|e| e.to_string())?;
    let sha = &assembled.sha256;
    if path.exists() && !options.force {
        let same = std::fs::read(&path)
            .map(|b| hex::encode(Sha256::digest(&b)) == *sha)
            .unwrap_or(false);
        if !same {
            return Err(format!(
                "{} already exists and differs; not overwritten. Give --force to replace it, or \
                 another --out DIR",
                path.display()
            ));
        }
        println!("{}  already saved, identical  sha256 {sha}", path.display());
    } else {
        write_file(options.out, &path, &assembled.data, options.force)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!(
            "{}  {}  {} bytes  sha256 {sha}",
            path.display(),
            assembled.media_type.mime(),
            assembled.data.len()
        );
    }
    desk.record_saved(receipt, assembled, &path.display().to_string())
        .map_err(|e| {
            format!(
                "{} was written, but the desk could not record it ({e}); run the command again",
                path.display()
            )
        })
}

/// Most times one fetch waits for HQ's rate limit before giving up.
const RATE_LIMIT_RETRIES: u32 = 12;

/// One exchange, waiting (a few seconds, growing) while HQ says the desk asks too fast: a long
/// download makes many exchanges and should not fail for that.
fn patiently(link: &net::Link, request: &AdminRequest) -> Result<AdminResponse, TipdeskError> {
    let mut attempt = 0;
    loop {
        match link.exchange(request) {
            Err(TipdeskError::Refused { code, .. })
                if ErrorCode::parse(&code) == Some(ErrorCode::RateLimited)
                    && attempt < RATE_LIMIT_RETRIES =>
            {
                attempt += 1;
                let wait = u64::from(attempt.min(5)) * 2;
                eprintln!("HQ asks the desk to slow down; waiting {wait} s");
                std::thread::sleep(std::time::Duration::from_secs(wait));
            }
            other => return other,
        }
    }
}

/// Progress of a download, on standard error.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    shown: usize,
}

impl Progress {
    fn new() -> Self {
        let bar = crate::field::stderr_is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} fetching chunks {pos}/{len} ({bytes_per_sec})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Self { bar, shown: 0 }
    }

    fn show(&mut self, fetch: &Fetch) {
        if let Some(bar) = &self.bar {
            bar.set_length(fetch.total as u64);
            bar.set_position(fetch.fetched as u64);
            return;
        }
        let done = fetch.fetched;
        let crossed = done / 16 > self.shown / 16 || (done == fetch.total && done > self.shown);
        if crossed {
            eprintln!(
                "fetched {done}/{} chunk(s), {} KiB",
                fetch.total,
                fetch.bytes / 1024
            );
        }
        self.shown = done;
    }

    /// A lost link becomes advice to resume; a refusal stays what it is.
    fn interrupted(&self, fetch: &Fetch, error: TipdeskError) -> TipdeskError {
        self.finish();
        match error {
            TipdeskError::Unreachable { url, detail } => TipdeskError::Interrupted {
                detail: format!("cannot reach HQ at {url}: {detail}"),
                fetched: fetch.fetched,
                total: fetch.total,
            },
            other => other,
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Writes through a temporary file in the same folder, then links it in place: without
/// `force` an existing file is never replaced, and a cut write never leaves a partial file
/// under the final name.
fn write_file(dir: &Path, path: &Path, bytes: &[u8], force: bool) -> std::io::Result<()> {
    let temporary = dir.join(format!(
        ".phakhi-{:016x}.part",
        rand_core::RngCore::next_u64(&mut rand_core::OsRng)
    ));
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        if force {
            std::fs::rename(&temporary, path)
        } else {
            // Linking fails when the name is taken: nothing is replaced.
            std::fs::hard_link(&temporary, path)?;
            std::fs::remove_file(&temporary)
        }
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use phakhi_core::attach::MediaType;
    use phakhi_core::desk::safe_file_name;

    #[test]
    fn file_names_stay_inside_the_folder() {
        let dir = Path::new("/out");
        for name in [
            Some("../../etc/passwd"),
            Some("..\\..\\boot.ini"),
            Some("..."),
            Some("C:evil"),
            Some("a\u{202E}gpj.exe"),
            None,
        ] {
            let safe = safe_file_name(name, MediaType::Pdf, 3);
            assert_eq!(target(dir, &safe).unwrap().parent(), Some(dir), "{name:?}");
        }
        assert!(target(dir, "..").is_err());
        assert!(target(dir, "a/b").is_err());
        assert!(target(dir, "/abs").is_err());
    }

    #[test]
    fn a_write_without_force_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.pdf");
        write_file(dir.path(), &path, b"first", false).unwrap();
        assert!(write_file(dir.path(), &path, b"second", false).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        write_file(dir.path(), &path, b"second", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
