//! A tip's evidence attachments at the desk: the encrypted chunks are fetched from HQ over the
//! admin exchange a bounded batch at a time and kept in the desk's encrypted store as each
//! answer arrives, so a cut connection costs at most the batch in flight and the next run
//! resumes from there. Every chunk is checked against the id it was asked under before it is
//! kept; an attachment is written only when [`Assembler`] has checked each chunk against the
//! manifest, decrypted them in order and matched the manifest's length and SHA-256. Files are
//! written under names derived from (never trusted from) the sealed manifest: one plain file
//! name inside `--out`, an extension that fits the media type, and no overwriting without
//! `--force`. Saved attachments' chunks are remembered so `tipdesk ack` releases them at HQ.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use phakhi_core::attach::{Assembler, AttachmentRef, ChunkId, Manifest, MediaType};
use phakhi_core::protocol::{AdminRequest, AdminResponse, ErrorCode, MAX_FETCH_CHUNKS};
use phakhi_core::store::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Desk, TipdeskError, decode, encode, net};

pub(super) mod ns {
    /// Encrypted chunks fetched from HQ, by id.
    pub const CHUNKS: &str = "chunks";
    /// Attachments written out, by manifest id.
    pub const SAVED: &str = "saved";
    /// Ids of chunks of saved attachments not yet released at HQ.
    pub const UNRELEASED_CHUNKS: &str = "unreleased-chunks";
}

/// Longest file name written, in characters.
const MAX_NAME_CHARS: usize = 100;

/// A written attachment, as the desk remembers it.
#[derive(Serialize, Deserialize)]
struct Saved {
    receipt: String,
    file: String,
    sha256: String,
}

/// What the desk holds of one attachment of a tip.
struct Local {
    /// From 1, in the tip's order.
    number: usize,
    reference: AttachmentRef,
    /// Opened from the held manifest chunk; `Err` when it does not open.
    manifest: Option<Result<Manifest, String>>,
    /// Data chunks held here.
    held: usize,
    saved: Option<Saved>,
}

impl Local {
    fn label(&self) -> String {
        match &self.manifest {
            Some(Ok(m)) => match &m.file_name {
                Some(name) => format!("attachment {} ({})", self.number, display_name(name)),
                None => format!("attachment {} ({})", self.number, m.media_type),
            },
            _ => format!("attachment {}", self.number),
        }
    }

    fn complete(&self) -> bool {
        matches!(&self.manifest, Some(Ok(m)) if self.held == m.chunks.len())
    }
}

fn held_chunk(store: &Store, id: &ChunkId) -> Result<Option<Vec<u8>>, TipdeskError> {
    Ok(store.get(ns::CHUNKS, &id.0)?)
}

fn has_chunk(store: &Store, id: &ChunkId) -> Result<bool, TipdeskError> {
    Ok(held_chunk(store, id)?.is_some())
}

fn local(store: &Store, number: usize, reference: &AttachmentRef) -> Result<Local, TipdeskError> {
    let manifest = match held_chunk(store, &reference.manifest_id)? {
        None => None,
        Some(chunk) => {
            let mut assembler = Assembler::new(reference.clone());
            Some(match assembler.add_chunk(&chunk) {
                Ok(_) => assembler
                    .manifest()
                    .cloned()
                    .ok_or_else(|| "the manifest chunk is not this attachment's".to_owned()),
                Err(e) => Err(e.to_string()),
            })
        }
    };
    let mut held = 0;
    if let Some(Ok(m)) = &manifest {
        for id in &m.chunks {
            if has_chunk(store, id)? {
                held += 1;
            }
        }
    }
    let saved = match store.get(ns::SAVED, &reference.manifest_id.0)? {
        Some(bytes) => Some(decode(&bytes, "saved attachment")?),
        None => None,
    };
    Ok(Local {
        number,
        reference: reference.clone(),
        manifest,
        held,
        saved,
    })
}

fn locals(store: &Store, refs: &[AttachmentRef]) -> Result<Vec<Local>, TipdeskError> {
    refs.iter()
        .enumerate()
        .map(|(i, r)| local(store, i + 1, r))
        .collect()
}

/// A file name from a manifest, fit to print: control characters (refused by the manifest
/// decoder already) and bidirectional overrides are replaced.
fn display_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_control() || ('\u{202A}'..='\u{202E}').contains(&c) || c == '\u{2066}' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn extensions(media: MediaType) -> &'static [&'static str] {
    match media {
        MediaType::Jpeg => &["jpg", "jpeg"],
        MediaType::Png => &["png"],
        MediaType::Heic => &["heic"],
        MediaType::Pdf => &["pdf"],
        MediaType::AudioMp4 => &["m4a", "mp4"],
        MediaType::AudioMpeg => &["mp3"],
        MediaType::AudioOgg => &["ogg", "opus"],
        MediaType::AudioWav => &["wav"],
        MediaType::AudioAmr => &["amr"],
    }
}

/// The name an attachment is written under: the manifest's name reduced to one plain file name
/// (no separators, no characters Windows refuses, no leading dots, at most
/// [`MAX_NAME_CHARS`] characters), `attachment-N` when nothing is left, and always an extension
/// of its media type so a viewer opens it as what it is.
pub(super) fn safe_file_name(name: Option<&str>, media: MediaType, number: usize) -> String {
    let cleaned: String = name
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if ('\u{202A}'..='\u{202E}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c) =>
            {
                '_'
            }
            c => c,
        })
        .take(MAX_NAME_CHARS)
        .collect();
    let trimmed = cleaned
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' '])
        .to_owned();
    let mut name = if trimmed.is_empty() {
        format!("attachment-{number}")
    } else {
        trimmed
    };
    let allowed = extensions(media);
    let fits = Path::new(&name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| allowed.contains(&e.to_ascii_lowercase().as_str()));
    if !fits {
        name.push('.');
        name.push_str(allowed.first().copied().unwrap_or("bin"));
    }
    name
}

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
    for l in locals(&desk.store, refs)? {
        let state = if l.complete() {
            "complete"
        } else {
            "incomplete"
        };
        match &l.manifest {
            None => println!("  {}. (not fetched yet)  chunks 0/?  {state}", l.number),
            Some(Err(e)) => println!(
                "  {}. (manifest refused: {e})  chunks ?/?  {state}",
                l.number
            ),
            Some(Ok(m)) => {
                let name = safe_file_name(m.file_name.as_deref(), m.media_type, l.number);
                println!(
                    "  {}. {name}  {}  {} bytes  chunks {}/{}  {state}{}",
                    l.number,
                    m.media_type.mime(),
                    m.size,
                    l.held + 1,
                    m.chunks.len() + 1,
                    l.saved
                        .as_ref()
                        .map_or_else(String::new, |s| format!("  saved as {}", s.file)),
                );
            }
        }
    }
    println!(
        "  strip report: not carried by the tip (the member's phone removed the metadata and \
         showed its report before sending)"
    );
    let incomplete = locals(&desk.store, refs)?.iter().any(|l| !l.complete());
    if incomplete {
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

/// Why one attachment is refused in this run.
type Refusals = BTreeMap<usize, String>;

/// Which attachment (by number) and which of its chunks an asked id is.
#[derive(Clone, Copy)]
enum Role {
    Manifest,
    Data { index: usize, of: usize },
}

/// Fetches `wanted` chunks from HQ into the store, batch by batch. Returns the ids HQ does not
/// hold. A chunk that does not hash to its id refuses its attachment and is not kept.
fn fetch(
    desk: &mut Desk,
    link: &net::Link,
    wanted: &[(ChunkId, usize, Role)],
    per_request: usize,
    refused: &mut Refusals,
    progress: &mut Progress,
) -> Result<BTreeSet<ChunkId>, TipdeskError> {
    let mut missing = BTreeSet::new();
    for batch in wanted.chunks(per_request.clamp(1, MAX_FETCH_CHUNKS)) {
        let ids: Vec<ChunkId> = batch.iter().map(|(id, _, _)| *id).collect();
        let answer = patiently(link, &AdminRequest::FetchChunks { ids: ids.clone() })
            .map_err(|e| progress.interrupted(e))?;
        let AdminResponse::Chunks {
            chunks,
            missing: gone,
        } = answer
        else {
            return Err(TipdeskError::Input(
                "HQ answered a chunk fetch with something else: update phakhi".into(),
            ));
        };
        for chunk in chunks {
            let Some((id, number, role)) = batch.iter().find(|(id, _, _)| *id == chunk.id) else {
                continue;
            };
            if ChunkId::of(&chunk.bytes) != *id {
                let which = match role {
                    Role::Manifest => "the manifest chunk".to_owned(),
                    Role::Data { index, of } => format!("data chunk {} of {of}", index + 1),
                };
                refused.entry(*number).or_insert_with(|| {
                    format!(
                        "chunk {id} ({which}) from HQ does not match its id: it was altered at \
                         HQ or on the way. This attachment is refused and not written (the \
                         chunks that matched are kept). Tell HQ's administrator; if HQ's copy \
                         is damaged, ask the member to send the file again"
                    )
                });
                continue;
            }
            desk.store.put(ns::CHUNKS, &id.0, &chunk.bytes)?;
            progress.got(chunk.bytes.len());
        }
        missing.extend(gone.into_iter().filter(|id| ids.contains(id)));
    }
    Ok(missing)
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
    total: usize,
    done: usize,
    bytes: u64,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total: usize) -> Self {
        let bar = crate::field::stderr_is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} fetching chunks {pos}/{len} ({bytes_per_sec})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            total,
            done: 0,
            bytes: 0,
            bar,
        }
    }

    fn grow(&mut self, more: usize) {
        self.total += more;
        if let Some(bar) = &self.bar {
            bar.set_length(self.total as u64);
        }
    }

    fn got(&mut self, len: usize) {
        self.done += 1;
        self.bytes += len as u64;
        match &self.bar {
            Some(bar) => bar.set_position(self.done as u64),
            None if self.done.is_multiple_of(16) || self.done == self.total => eprintln!(
                "fetched {}/{} chunk(s), {} KiB",
                self.done,
                self.total,
                self.bytes / 1024
            ),
            None => {}
        }
    }

    /// A lost link becomes advice to resume; a refusal stays what it is.
    fn interrupted(&self, error: TipdeskError) -> TipdeskError {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        match error {
            TipdeskError::Unreachable { url, detail } => TipdeskError::Interrupted {
                detail: format!("cannot reach HQ at {url}: {detail}"),
                fetched: self.done,
                total: self.total,
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
    let mut refused = Refusals::new();
    let mut missing_at_hq: BTreeMap<usize, usize> = BTreeMap::new();
    let before = locals(&desk.store, refs)?;
    let needed = before.iter().any(|l| !l.complete());
    if needed {
        let link = net::Link::open(&mut desk.store, options.server)?;
        // The manifests first: they name the data chunks.
        let manifests: Vec<(ChunkId, usize, Role)> = before
            .iter()
            .filter(|l| l.manifest.is_none())
            .map(|l| (l.reference.manifest_id, l.number, Role::Manifest))
            .collect();
        let mut progress = Progress::new(manifests.len());
        let gone = fetch(
            desk,
            &link,
            &manifests,
            options.per_request,
            &mut refused,
            &mut progress,
        )?;
        for (id, number, _) in &manifests {
            if gone.contains(id) {
                *missing_at_hq.entry(*number).or_default() += 1;
            }
        }
        let mut data = Vec::new();
        for l in locals(&desk.store, refs)? {
            if refused.contains_key(&l.number) {
                continue;
            }
            if let Some(Ok(m)) = &l.manifest {
                let of = m.chunks.len();
                for (index, id) in m.chunks.iter().enumerate() {
                    if !has_chunk(&desk.store, id)? {
                        data.push((*id, l.number, Role::Data { index, of }));
                    }
                }
            }
        }
        progress.grow(data.len());
        let gone = fetch(
            desk,
            &link,
            &data,
            options.per_request,
            &mut refused,
            &mut progress,
        )?;
        progress.finish();
        for (id, number, _) in &data {
            if gone.contains(id) {
                *missing_at_hq.entry(*number).or_default() += 1;
            }
        }
        println!(
            "fetched {} chunk(s) ({} KiB) from HQ",
            progress.done,
            progress.bytes / 1024
        );
    }
    let mut written_names = BTreeSet::new();
    let mut incomplete = Vec::new();
    for l in locals(&desk.store, refs)? {
        if refused.contains_key(&l.number) {
            continue;
        }
        if let Some(Err(e)) = &l.manifest {
            let reason = format!(
                "its manifest does not open ({e}); this attachment is refused and not written"
            );
            refused.insert(l.number, reason);
            continue;
        }
        if !l.complete() {
            let total = match &l.manifest {
                Some(Ok(m)) => (m.chunks.len() + 1).to_string(),
                _ => "?".into(),
            };
            let held = l.held + usize::from(l.manifest.is_some());
            incomplete.push(format!(
                "{}: {held} of {total} chunk(s) here{}",
                l.label(),
                match missing_at_hq.get(&l.number) {
                    Some(n) => format!(
                        "; {n} not at HQ (not uploaded by the phone yet, or released): run this \
                         again after the phone's next sync"
                    ),
                    None => String::new(),
                }
            ));
            continue;
        }
        if let Err(reason) = write(desk, receipt, &l, options, &mut written_names) {
            refused.insert(l.number, reason);
        }
    }
    for line in &incomplete {
        println!("still incomplete: {line}");
    }
    if refused.is_empty() {
        return Ok(());
    }
    let labels: BTreeMap<usize, String> = locals(&desk.store, refs)?
        .iter()
        .map(|l| (l.number, l.label()))
        .collect();
    let refused: Vec<String> = refused
        .iter()
        .map(|(n, r)| {
            let label = labels
                .get(n)
                .cloned()
                .unwrap_or_else(|| format!("attachment {n}"));
            format!("{label}: {r}")
        })
        .collect();
    Err(TipdeskError::Refusals(refused.join("\n")))
}

/// Assembles, checks and writes one complete attachment; a refusal comes back as its reason.
fn write(
    desk: &mut Desk,
    receipt: &str,
    l: &Local,
    options: &Download<'_>,
    written: &mut BTreeSet<String>,
) -> Result<(), String> {
    let Some(Ok(manifest)) = &l.manifest else {
        return Err("its manifest is not here".into());
    };
    let mut assembler = Assembler::new(l.reference.clone());
    let mut ids = vec![l.reference.manifest_id];
    ids.extend(manifest.chunks.iter().copied());
    for (position, id) in ids.iter().enumerate() {
        let chunk = held_chunk(&desk.store, id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("chunk {id} went missing from the desk's store"))?;
        assembler.add_chunk(&chunk).map_err(|e| {
            format!(
                "chunk {id} (number {position} of the attachment) is refused: {e}; the \
                 attachment is not written"
            )
        })?;
    }
    let opened = assembler
        .finish()
        .map_err(|e| format!("{e}; the attachment is not written"))?;
    let mut name = safe_file_name(manifest.file_name.as_deref(), manifest.media_type, l.number);
    if !written.insert(name.clone()) {
        name = format!("{}-{name}", l.number);
        written.insert(name.clone());
    }
    let path = target(options.out, &name).map_err(|e| e.to_string())?;
    let sha = hex::encode(Sha256::digest(&opened.data[..]));
    if path.exists() && !options.force {
        let same = std::fs::read(&path)
            .map(|b| hex::encode(Sha256::digest(&b)) == sha)
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
        write_file(options.out, &path, &opened.data, options.force)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!(
            "{}  {}  {} bytes  sha256 {sha}",
            path.display(),
            manifest.media_type.mime(),
            opened.data.len()
        );
    }
    let record = Saved {
        receipt: receipt.to_owned(),
        file: path.display().to_string(),
        sha256: sha,
    };
    remember(&mut desk.store, &l.reference.manifest_id, &record, &ids).map_err(|e| {
        format!(
            "{} was written, but the desk could not record it ({e}); run the command again",
            path.display()
        )
    })
}

/// Records a written attachment and queues its chunks for release at HQ.
fn remember(
    store: &mut Store,
    manifest_id: &ChunkId,
    record: &Saved,
    ids: &[ChunkId],
) -> Result<(), TipdeskError> {
    store.put(ns::SAVED, &manifest_id.0, &encode(record))?;
    for id in ids {
        store.put(ns::UNRELEASED_CHUNKS, &id.0, &[])?;
    }
    Ok(())
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

/// Chunk ids of saved attachments waiting to be released at HQ.
pub(super) fn unreleased(store: &Store) -> Result<Vec<ChunkId>, TipdeskError> {
    Ok(store
        .list(ns::UNRELEASED_CHUNKS)?
        .into_iter()
        .filter_map(|(key, _)| key.try_into().ok().map(ChunkId))
        .collect())
}

pub(super) fn released(store: &mut Store, ids: &[ChunkId]) -> Result<(), TipdeskError> {
    for id in ids {
        store.delete(ns::UNRELEASED_CHUNKS, &id.0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_stay_inside_the_folder_and_fit_their_media_type() {
        let cases = [
            (
                Some("../../etc/passwd"),
                MediaType::Pdf,
                "_.._etc_passwd.pdf",
            ),
            (
                Some("..\\..\\boot.ini"),
                MediaType::Jpeg,
                "_.._boot.ini.jpg",
            ),
            (Some("หลักฐาน.JPG"), MediaType::Jpeg, "หลักฐาน.JPG"),
            (Some("..."), MediaType::Png, "attachment-3.png"),
            (None, MediaType::AudioWav, "attachment-3.wav"),
            (Some("invoice.exe"), MediaType::Pdf, "invoice.exe.pdf"),
            (Some("a\u{202E}gpj.exe"), MediaType::Jpeg, "a_gpj.exe.jpg"),
            (Some("C:evil"), MediaType::Pdf, "C_evil.pdf"),
        ];
        for (name, media, expected) in cases {
            let safe = safe_file_name(name, media, 3);
            assert_eq!(safe, expected, "{name:?}");
            let dir = Path::new("/out");
            assert_eq!(target(dir, &safe).unwrap().parent(), Some(dir));
        }
        let long = "ก".repeat(400);
        assert!(
            safe_file_name(Some(&long), MediaType::Pdf, 1)
                .chars()
                .count()
                <= 104
        );
        assert!(target(Path::new("/out"), "..").is_err());
        assert!(target(Path::new("/out"), "a/b").is_err());
        assert!(target(Path::new("/out"), "/abs").is_err());
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
