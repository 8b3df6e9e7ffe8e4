//! `tipdesk attachments` and the attachments section of `tipdesk show`: what the desk holds of a
//! tip's evidence is [`Desk`]'s (fetching, checking every chunk, assembling, naming — see
//! `phakhi_core::desk`); this carries the fetch to HQ, shows progress, and writes each complete
//! attachment into `--out` under the name the desk gives it, never over an existing file
//! without `--force`.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use phakhi_core::attach::AttachmentRef;
use phakhi_core::desk::{Assembled, Desk, Fetch, Held, Outcome};
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

/// Runs the desk's fetch of what is missing to its end over the link to HQ.
fn fetch(
    desk: &mut Desk,
    refs: &[AttachmentRef],
    options: &Download<'_>,
) -> Result<Fetch, TipdeskError> {
    let fetch = desk.fetch_attachments(refs, options.per_request)?;
    let (mut driver, url) = desk.hq_driver(fetch, options.server)?;
    let progress = Progress::new();
    let mut received = |got: u64, _: Option<u64>| progress.received(got);
    let run = net::run_with(&mut driver, desk, &url, Some(&mut received));
    progress.finish();
    let fetch = driver.into_conversation();
    match run {
        Ok(_) => {}
        Err(TipdeskError::Unreachable { url, detail }) => {
            return Err(TipdeskError::Interrupted {
                detail: format!("cannot reach HQ at {url}: {detail}"),
                fetched: fetch.fetched,
                total: fetch.total,
            });
        }
        Err(other) => return Err(other),
    }
    println!(
        "fetched {} chunk(s) ({} KiB) from HQ",
        fetch.fetched,
        fetch.bytes / 1024
    );
    Ok(fetch)
}

/// The line `still incomplete:` shows for one attachment.
fn still_incomplete(held: &Held) -> String {
    let total = held.total.map_or_else(|| "?".to_owned(), |t| t.to_string());
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

/// Progress of a download on a terminal's standard error: the bytes received from HQ.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    /// Bytes of the answers before the current one, and of the current one so far.
    before: std::cell::Cell<(u64, u64)>,
}

impl Progress {
    fn new() -> Self {
        let bar = crate::field::stderr_is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} fetching chunks: {bytes} ({bytes_per_sec})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar
        });
        Self {
            bar,
            before: std::cell::Cell::new((0, 0)),
        }
    }

    /// `got` bytes of the current answer are here (a smaller number starts the next answer).
    fn received(&self, got: u64) {
        let (mut before, current) = self.before.get();
        if got < current {
            before += current;
        }
        self.before.set((before, got));
        if let Some(bar) = &self.bar {
            bar.set_position(before + got);
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
