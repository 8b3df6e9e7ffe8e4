//! A tip's evidence attachments at the desk. The encrypted chunks are fetched from HQ over the
//! admin exchange a bounded batch at a time ([`Fetch`]) and kept in the desk's store as each
//! answer arrives, so a cut connection costs at most the batch in flight and the next run
//! resumes from there. Every chunk is checked against the id it was asked under before it is
//! kept; an attachment is handed out ([`Outcome::Complete`]) only when [`Assembler`] has
//! checked each chunk against the manifest, decrypted them in order and matched the manifest's
//! length and SHA-256. Its file name is derived from (never trusted from) the sealed manifest
//! ([`safe_file_name`]). Saved attachments' chunks are remembered so an acknowledgement
//! releases them at HQ.
//!
//! Call order: [`Desk::fetch_attachments`], then [`Fetch::poll_request`] → carry it →
//! [`Fetch::handle`] (or [`Fetch::lost`] when the answer never came) until `poll_request`
//! gives `None`; then [`Desk::outcomes`], and [`Desk::record_saved`] for each file written.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{Desk, DeskError, Result, decode, encode, ns};
use crate::attach::{Assembler, AttachmentRef, ChunkId, Manifest, MediaType};
use crate::protocol::{AdminRequest, AdminResponse, MAX_FETCH_CHUNKS};
use crate::store::Store;

/// Longest file name handed out, in characters (before its extension).
const MAX_NAME_CHARS: usize = 100;

/// A written attachment, as the desk remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub receipt: String,
    /// Where it was written.
    pub file: String,
    pub sha256: String,
}

/// What the desk holds of one attachment of a tip.
#[derive(Debug, Clone)]
pub struct LocalAttachment {
    /// From 1, in the tip's order.
    pub number: usize,
    pub reference: AttachmentRef,
    /// Opened from the held manifest chunk; `Err` (why) when it does not open; `None` when the
    /// manifest chunk is not here yet.
    pub manifest: Option<std::result::Result<Manifest, String>>,
    /// Data chunks held here.
    pub held: usize,
    pub saved: Option<Saved>,
}

impl LocalAttachment {
    /// "attachment N (name)", fit to print.
    pub fn label(&self) -> String {
        match &self.manifest {
            Some(Ok(m)) => match &m.file_name {
                Some(name) => format!("attachment {} ({})", self.number, display_name(name)),
                None => format!("attachment {} ({})", self.number, m.media_type),
            },
            _ => format!("attachment {}", self.number),
        }
    }

    /// Every chunk is here.
    pub fn complete(&self) -> bool {
        matches!(&self.manifest, Some(Ok(m)) if self.held == m.chunks.len())
    }

    /// The name it is written under.
    pub fn file_name(&self) -> Option<String> {
        match &self.manifest {
            Some(Ok(m)) => Some(safe_file_name(
                m.file_name.as_deref(),
                m.media_type,
                self.number,
            )),
            _ => None,
        }
    }
}

/// A complete attachment, checked and decrypted, ready to be written.
pub struct Assembled {
    pub number: usize,
    pub label: String,
    pub manifest_id: ChunkId,
    pub media_type: MediaType,
    /// A plain file name, unique among this tip's attachments.
    pub name: String,
    /// The file's bytes, wiped on drop.
    pub data: Zeroizing<Vec<u8>>,
    /// SHA-256 of `data`, hex.
    pub sha256: String,
    /// Every chunk it was made of, the manifest chunk first.
    pub ids: Vec<ChunkId>,
}

impl std::fmt::Debug for Assembled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembled")
            .field("number", &self.number)
            .field("name", &self.name)
            .field("len", &self.data.len())
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// Where one attachment of a tip stands after a fetch.
#[derive(Debug)]
pub enum Outcome {
    /// Ready to write.
    Complete(Assembled),
    /// Chunks are missing.
    Incomplete(Held),
    /// Refused: a chunk did not match its id, the manifest does not open, or the assembly
    /// failed. Nothing of it is handed out.
    Refused { label: String, reason: String },
}

/// How much of an incomplete attachment is here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub label: String,
    /// Chunks here, the manifest chunk included.
    pub held: usize,
    /// Chunks it has, the manifest chunk included (unknown until the manifest is here).
    pub total: Option<usize>,
    /// Chunks HQ said it does not hold in this run.
    pub missing_at_hq: Option<usize>,
}

/// Which part of which attachment an asked id is.
#[derive(Debug, Clone, Copy)]
enum Part {
    Manifest,
    Data { index: usize, of: usize },
}

#[derive(Debug, Clone, Copy)]
struct Wanted {
    id: ChunkId,
    number: usize,
    part: Part,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Fetching the manifest chunks: they name the data chunks.
    Manifests,
    Data,
    Done,
}

/// Fetching one tip's missing chunks from HQ, batch by batch.
#[derive(Debug)]
pub struct Fetch {
    refs: Vec<AttachmentRef>,
    per_request: usize,
    phase: Phase,
    queue: VecDeque<Wanted>,
    in_flight: Vec<Wanted>,
    refused: BTreeMap<usize, String>,
    missing_at_hq: BTreeMap<usize, usize>,
    /// Chunks to fetch in this run, as far as known.
    pub total: usize,
    /// Chunks fetched and kept.
    pub fetched: usize,
    /// Bytes of the chunks kept.
    pub bytes: u64,
}

/// What one fetch exchange brought.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchStep {
    /// Chunks kept.
    pub kept: usize,
    /// Chunks that did not match their ids (their attachments are refused).
    pub refused: usize,
    /// Asked ids HQ does not hold.
    pub missing: usize,
}

impl Fetch {
    /// The next request, or `None` when nothing is left to ask for.
    pub fn poll_request(&mut self, desk: &Desk) -> Result<Option<AdminRequest>> {
        if !self.in_flight.is_empty() {
            return Ok(Some(self.request()));
        }
        if self.queue.is_empty() && self.phase == Phase::Manifests {
            self.queue_data(desk)?;
        }
        if self.queue.is_empty() {
            self.phase = Phase::Done;
            return Ok(None);
        }
        let batch = self.per_request.clamp(1, MAX_FETCH_CHUNKS);
        let take = batch.min(self.queue.len());
        self.in_flight = self.queue.drain(..take).collect();
        Ok(Some(self.request()))
    }

    fn request(&self) -> AdminRequest {
        AdminRequest::FetchChunks {
            ids: self.in_flight.iter().map(|w| w.id).collect(),
        }
    }

    /// The data chunks the held manifests name that are not here, once the manifests are in.
    fn queue_data(&mut self, desk: &Desk) -> Result<()> {
        self.phase = Phase::Data;
        for l in desk.attachments(&self.refs)? {
            if self.refused.contains_key(&l.number) {
                continue;
            }
            if let Some(Ok(m)) = &l.manifest {
                let of = m.chunks.len();
                for (index, id) in m.chunks.iter().enumerate() {
                    if !has_chunk(&desk.store, id)? {
                        self.queue.push_back(Wanted {
                            id: *id,
                            number: l.number,
                            part: Part::Data { index, of },
                        });
                    }
                }
            }
        }
        self.total += self.queue.len();
        Ok(())
    }

    /// Keeps the chunks of HQ's answer to the request in flight that hash to the ids they were
    /// asked under; one that does not refuses its attachment and is not kept.
    pub fn handle(&mut self, desk: &mut Desk, response: AdminResponse) -> Result<FetchStep> {
        let AdminResponse::Chunks { chunks, missing } = response else {
            return Err(DeskError::UnexpectedAnswer("a chunk fetch"));
        };
        let batch = std::mem::take(&mut self.in_flight);
        let mut step = FetchStep::default();
        for chunk in chunks {
            let Some(w) = batch.iter().find(|w| w.id == chunk.id) else {
                continue;
            };
            if ChunkId::of(&chunk.bytes) != w.id {
                step.refused += 1;
                self.refused
                    .entry(w.number)
                    .or_insert_with(|| altered(&w.id, w.part));
                continue;
            }
            desk.store.put(ns::CHUNKS, &w.id.0, &chunk.bytes)?;
            step.kept += 1;
            self.fetched += 1;
            self.bytes += chunk.bytes.len() as u64;
        }
        let gone: BTreeSet<ChunkId> = missing.into_iter().collect();
        for w in batch.iter().filter(|w| gone.contains(&w.id)) {
            step.missing += 1;
            *self.missing_at_hq.entry(w.number).or_default() += 1;
        }
        Ok(step)
    }

    /// The answer to the request in flight never came: it is asked again next.
    pub fn lost(&mut self) {
        for w in std::mem::take(&mut self.in_flight).into_iter().rev() {
            self.queue.push_front(w);
        }
    }
}

fn altered(id: &ChunkId, part: Part) -> String {
    let which = match part {
        Part::Manifest => "the manifest chunk".to_owned(),
        Part::Data { index, of } => format!("data chunk {} of {of}", index + 1),
    };
    format!(
        "chunk {id} ({which}) from HQ does not match its id: it was altered at HQ or on the \
         way. This attachment is refused and not written (the chunks that matched are kept). \
         Tell HQ's administrator; if HQ's copy is damaged, ask the member to send the file again"
    )
}

fn held_chunk(store: &Store, id: &ChunkId) -> Result<Option<Vec<u8>>> {
    Ok(store.get(ns::CHUNKS, &id.0)?)
}

fn has_chunk(store: &Store, id: &ChunkId) -> Result<bool> {
    Ok(held_chunk(store, id)?.is_some())
}

/// Chunk ids of saved attachments waiting to be released at HQ.
pub(super) fn unreleased(store: &Store) -> Result<Vec<ChunkId>> {
    Ok(store
        .list(ns::UNRELEASED_CHUNKS)?
        .into_iter()
        .filter_map(|(key, _)| key.try_into().ok().map(ChunkId))
        .collect())
}

impl Desk {
    /// What the desk holds of each attachment a tip names.
    pub fn attachments(&self, refs: &[AttachmentRef]) -> Result<Vec<LocalAttachment>> {
        refs.iter()
            .enumerate()
            .map(|(i, r)| self.local(i + 1, r))
            .collect()
    }

    fn local(&self, number: usize, reference: &AttachmentRef) -> Result<LocalAttachment> {
        let manifest = held_chunk(&self.store, &reference.manifest_id)?.map(|chunk| {
            let mut assembler = Assembler::new(reference.clone());
            match assembler.add_chunk(&chunk) {
                Ok(_) => assembler
                    .manifest()
                    .cloned()
                    .ok_or_else(|| "the manifest chunk is not this attachment's".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        });
        let mut held = 0;
        if let Some(Ok(m)) = &manifest {
            for id in &m.chunks {
                if has_chunk(&self.store, id)? {
                    held += 1;
                }
            }
        }
        let saved = match self.store.get(ns::SAVED, &reference.manifest_id.0)? {
            Some(bytes) => Some(decode(&bytes, "saved attachment")?),
            None => None,
        };
        Ok(LocalAttachment {
            number,
            reference: reference.clone(),
            manifest,
            held,
            saved,
        })
    }

    /// Starts fetching what is missing of a tip's attachments, `per_request` chunks per
    /// exchange (1 to [`MAX_FETCH_CHUNKS`]): the manifests first, then the data chunks they
    /// name.
    pub fn fetch_attachments(&self, refs: &[AttachmentRef], per_request: usize) -> Result<Fetch> {
        let queue: VecDeque<Wanted> = self
            .attachments(refs)?
            .into_iter()
            .filter(|l| l.manifest.is_none())
            .map(|l| Wanted {
                id: l.reference.manifest_id,
                number: l.number,
                part: Part::Manifest,
            })
            .collect();
        Ok(Fetch {
            refs: refs.to_vec(),
            per_request,
            phase: Phase::Manifests,
            total: queue.len(),
            queue,
            in_flight: Vec::new(),
            refused: BTreeMap::new(),
            missing_at_hq: BTreeMap::new(),
            fetched: 0,
            bytes: 0,
        })
    }

    /// Where each attachment of a tip stands, in the tip's order, after `fetch` (if one ran):
    /// the complete ones checked, decrypted and named.
    pub fn outcomes(&self, refs: &[AttachmentRef], fetch: Option<&Fetch>) -> Result<Vec<Outcome>> {
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for l in self.attachments(refs)? {
            let label = l.label();
            if let Some(reason) = fetch.and_then(|f| f.refused.get(&l.number)) {
                out.push(Outcome::Refused {
                    label,
                    reason: reason.clone(),
                });
                continue;
            }
            let manifest = match &l.manifest {
                Some(Err(e)) => {
                    let reason = format!(
                        "its manifest does not open ({e}); this attachment is refused and not \
                         written"
                    );
                    out.push(Outcome::Refused { label, reason });
                    continue;
                }
                Some(Ok(m)) if l.complete() => m,
                _ => {
                    out.push(Outcome::Incomplete(Held {
                        held: l.held + usize::from(l.manifest.is_some()),
                        total: l.manifest.as_ref().map(|m| match m {
                            Ok(m) => m.chunks.len() + 1,
                            Err(_) => 0,
                        }),
                        missing_at_hq: fetch.and_then(|f| f.missing_at_hq.get(&l.number)).copied(),
                        label,
                    }));
                    continue;
                }
            };
            match self.assemble(&l, manifest) {
                Ok((data, ids)) => {
                    let mut name = safe_file_name(
                        manifest.file_name.as_deref(),
                        manifest.media_type,
                        l.number,
                    );
                    if !names.insert(name.clone()) {
                        name = format!("{}-{name}", l.number);
                        names.insert(name.clone());
                    }
                    out.push(Outcome::Complete(Assembled {
                        number: l.number,
                        label,
                        manifest_id: l.reference.manifest_id,
                        media_type: manifest.media_type,
                        name,
                        sha256: hex::encode(Sha256::digest(&data[..])),
                        data,
                        ids,
                    }));
                }
                Err(reason) => out.push(Outcome::Refused { label, reason }),
            }
        }
        Ok(out)
    }

    /// Checks every chunk of a complete attachment against its manifest and decrypts it; a
    /// refusal comes back as its reason.
    fn assemble(
        &self,
        l: &LocalAttachment,
        manifest: &Manifest,
    ) -> std::result::Result<(Zeroizing<Vec<u8>>, Vec<ChunkId>), String> {
        let mut assembler = Assembler::new(l.reference.clone());
        let mut ids = vec![l.reference.manifest_id];
        ids.extend(manifest.chunks.iter().copied());
        for (position, id) in ids.iter().enumerate() {
            let chunk = held_chunk(&self.store, id)
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
        Ok((opened.data, ids))
    }

    /// Records an attachment written to `file` and queues its chunks for release at HQ.
    pub fn record_saved(&mut self, receipt: &str, saved: &Assembled, file: &str) -> Result<()> {
        let record = Saved {
            receipt: receipt.to_owned(),
            file: file.to_owned(),
            sha256: saved.sha256.clone(),
        };
        self.store
            .put(ns::SAVED, &saved.manifest_id.0, &encode(&record))?;
        for id in &saved.ids {
            self.store.put(ns::UNRELEASED_CHUNKS, &id.0, &[])?;
        }
        Ok(())
    }
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
/// (no separators, no characters Windows refuses, no leading dots, at most 100 characters,
/// `MAX_NAME_CHARS`), `attachment-N` when nothing is left, and always an extension of its media
/// type so a viewer opens it as what it is.
pub fn safe_file_name(name: Option<&str>, media: MediaType, number: usize) -> String {
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
    let fits = std::path::Path::new(&name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| allowed.contains(&e.to_ascii_lowercase().as_str()));
    if !fits {
        name.push('.');
        name.push_str(allowed.first().copied().unwrap_or("bin"));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_one_plain_name_that_fits_their_media_type() {
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
            assert_eq!(safe_file_name(name, media, 3), expected, "{name:?}");
        }
        let long = "ก".repeat(400);
        assert!(
            safe_file_name(Some(&long), MediaType::Pdf, 1)
                .chars()
                .count()
                <= 104
        );
    }
}
