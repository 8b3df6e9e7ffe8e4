//! [`PhakhiDevice`]: the phone's whole client as one object the apps hold. It wraps
//! `phakhi_core::device::Device` behind a mutex (so the app may call it from any thread) and adds
//! what only the boundary can supply: the clock, the operating system's random source, and the
//! state of a raw exchange the app carries over its own transport.
//!
//! Every call blocks until it is done — a sync over 2G takes minutes, a passphrase open about a
//! second — so apps call it off the main thread (Kotlin `Dispatchers.IO`, Swift a detached task).
//! Calls on one device run one at a time.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use phakhi_core::attach::Pace;
use phakhi_core::device::{Device, DeviceError, PendingEnrolment, SyncSession, SyncStep, unix};
use phakhi_core::model::{Date, Edit};
use phakhi_core::seal::{TipDraft, network_key_from_hex};
use phakhi_core::store::{Argon2Params, StorageKey};
use rand_core::OsRng;
use time::OffsetDateTime;
use zeroize::Zeroize;

use crate::error::{PhakhiError, Result};
use crate::progress::{Progress, SyncProgress};
use crate::types::*;

/// The largest bundle file read back: the largest envelope behind its header.
const MAX_BUNDLE_BYTES: u64 = phakhi_core::seal::transport::MAX_TRANSPORT_ENVELOPE as u64 + 64;

/// One phone's client over its encrypted store. Open it once per store file and share it.
#[derive(Debug, uniffi::Object)]
pub struct PhakhiDevice {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    device: Device,
    /// A sync the app is carrying itself as raw bytes (bundle exchanges live in the store).
    exchange: Option<SyncSession>,
    /// An enrolment request the app is carrying itself.
    enrolment: Option<PendingEnrolment>,
    /// Attachment chunks per upload exchange, learnt from this device's link and kept across
    /// syncs (the one pacing policy: a cut 2G link costs a chunk or two).
    pace: Pace,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Today's date (UTC) for the records that carry one.
fn today() -> Result<Date> {
    Ok(Date::from_time(now().date())?)
}

fn edit(message: &str) -> Edit {
    Edit::new(message, now())
}

fn storage(what: &str, path: &str, e: std::io::Error) -> PhakhiError {
    PhakhiError::Storage {
        message: format!("cannot {what} {path}: {e}"),
    }
}

impl Inner {
    /// Ends a raw exchange in flight, if any; nothing is lost.
    fn abandon_exchange(&mut self) -> Result<()> {
        if let Some(session) = self.exchange.take() {
            self.device.sync_lost(session)?;
        }
        Ok(())
    }
}

impl PhakhiDevice {
    fn new(device: Device) -> Arc<Self> {
        Arc::new(PhakhiDevice {
            inner: Mutex::new(Inner {
                device,
                exchange: None,
                enrolment: None,
                pace: Pace::default(),
            }),
        })
    }

    /// The device, its clock set to now for the actors it may make (`Device::set_clock`).
    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        let mut inner = self.inner.lock().map_err(|_| PhakhiError::Internal {
            message: "an earlier call on this device stopped half-way; close it and open the \
                      store again (everything saved is intact)"
                .into(),
        })?;
        inner.device.set_clock(now());
        Ok(inner)
    }

    fn with_device<T>(&self, f: impl FnOnce(&mut Device) -> Result<T>) -> Result<T> {
        let mut inner = self.lock()?;
        f(&mut inner.device)
    }
}

#[uniffi::export]
impl PhakhiDevice {
    // ----- opening -----------------------------------------------------------------------

    /// Opens (or creates) the store at `path` with a 32-byte key the app keeps in the platform
    /// keystore (make one with [`crate::generate_storage_key`]).
    #[uniffi::constructor]
    pub fn open_with_key(path: String, mut key: Vec<u8>) -> Result<Arc<Self>> {
        let bytes: Result<[u8; 32]> = key.as_slice().try_into().map_err(|_| {
            PhakhiError::invalid(format!("a storage key is 32 bytes, not {}", key.len()))
        });
        key.zeroize();
        let key = StorageKey::from_bytes(bytes?);
        Ok(Self::new(Device::open(path, key, &mut OsRng)?))
    }

    /// Opens (or creates) the store at `path` with a passphrase. `cost` applies only when the
    /// store is created (default: 64 MiB, 3 passes); a wrong passphrase is
    /// [`PhakhiError::WrongPassphrase`].
    #[uniffi::constructor(default(cost = None))]
    pub fn open_with_passphrase(
        path: String,
        mut passphrase: String,
        cost: Option<PassphraseCost>,
    ) -> Result<Arc<Self>> {
        let params = cost.map_or_else(Argon2Params::default, |c| Argon2Params {
            memory_kib: c.memory_kib,
            iterations: c.iterations,
            parallelism: c.parallelism,
        });
        let device = Device::open_with_passphrase(path, &passphrase, params, &mut OsRng);
        passphrase.zeroize();
        Ok(Self::new(device?))
    }

    /// This device's public key (hex), what the server knows it by.
    pub fn public_key(&self) -> Result<String> {
        self.with_device(|d| Ok(hex::encode(d.public_key().as_bytes())))
    }

    // ----- enrolment ---------------------------------------------------------------------

    /// What this device is enrolled as, or nothing before enrolment.
    pub fn enrolment(&self) -> Result<Option<EnrolmentInfo>> {
        self.with_device(|d| Ok(d.enrolment().map(EnrolmentInfo::from)))
    }

    /// Enrols with the server named in the invite (or `server_url`, for the same server under
    /// another address) over HTTP. `network_key` is the network's root key (HQ's invite-signing
    /// Ed25519 key, 64 hex characters) from the app's build configuration: an invite it did not
    /// sign is refused (`InviteRefused`) before any key is pinned or anything is sent.
    #[uniffi::method(default(server_url = None))]
    pub fn enrol(
        &self,
        invite: String,
        network_key: String,
        server_url: Option<String>,
    ) -> Result<EnrolmentInfo> {
        let network_key = network_key_from_hex(&network_key).map_err(DeviceError::from)?;
        self.with_device(|d| {
            let enrolment = d.enrol_http(
                &invite,
                &network_key,
                server_url.as_deref(),
                &mut OsRng,
                now(),
            )?;
            Ok(EnrolmentInfo::from(enrolment))
        })
    }

    /// The sealed enrolment request, for an app that carries it itself (`POST /v1/enroll`),
    /// once the invite verifies against `network_key` (as for [`PhakhiDevice::enrol`]).
    /// Hand the answer to [`PhakhiDevice::enrol_response`].
    pub fn enrol_request(&self, invite: String, network_key: String) -> Result<Vec<u8>> {
        let network_key = network_key_from_hex(&network_key).map_err(DeviceError::from)?;
        let mut inner = self.lock()?;
        let (request, pending) =
            inner
                .device
                .enrol_request(&invite, &network_key, &mut OsRng, unix(now()))?;
        inner.enrolment = Some(pending);
        Ok(request)
    }

    /// Reads the server's answer to [`PhakhiDevice::enrol_request`] and records the enrolment.
    pub fn enrol_response(&self, answer: Vec<u8>) -> Result<EnrolmentInfo> {
        let mut inner = self.lock()?;
        let pending = inner
            .enrolment
            .take()
            .ok_or_else(|| PhakhiError::NoExchangeInFlight {
                message: "no enrolment request is waiting for an answer: call enrol_request first"
                    .into(),
            })?;
        let enrolment = inner
            .device
            .enrol_response(pending, &answer, &mut OsRng, now())?;
        Ok(EnrolmentInfo::from(enrolment))
    }

    // ----- members -----------------------------------------------------------------------

    /// The province's members (archived ones too when asked).
    pub fn members(&self, province: String, include_archived: bool) -> Result<Vec<MemberRecord>> {
        let code = crate::types::province(&province)?;
        self.with_device(|d| {
            let list = d.province(code, &mut OsRng, |p| p.members(include_archived))?;
            Ok(list.into_iter().map(MemberRecord::from).collect())
        })
    }

    /// Adds a member; returns its id.
    pub fn add_member(&self, province: String, member: NewMemberInput) -> Result<String> {
        let code = crate::types::province(&province)?;
        let new = member.try_into()?;
        let edit = edit("add member");
        self.with_device(|d| {
            let id = d.edit_province(code, &mut OsRng, |p, mut rng| {
                p.add_member(new, &edit, &mut rng)
            })?;
            Ok(id.to_string())
        })
    }

    /// Changes a member's fields.
    pub fn update_member(
        &self,
        province: String,
        member_id: String,
        changes: MemberChanges,
    ) -> Result<()> {
        let code = crate::types::province(&province)?;
        let id = crate::types::id(&member_id)?;
        let update = changes.try_into()?;
        let edit = edit("update member");
        self.with_device(|d| {
            Ok(d.edit_province(code, &mut OsRng, |p, _| p.update_member(id, update, &edit))?)
        })
    }

    /// Archives a member (hidden by default, never deleted).
    pub fn archive_member(&self, province: String, member_id: String) -> Result<()> {
        let code = crate::types::province(&province)?;
        let id = crate::types::id(&member_id)?;
        let edit = edit("archive member");
        self.with_device(|d| {
            Ok(d.edit_province(code, &mut OsRng, |p, _| p.archive_member(id, &edit))?)
        })
    }

    // ----- centres -----------------------------------------------------------------------

    /// The province's coordination centres.
    pub fn centres(&self, province: String, include_archived: bool) -> Result<Vec<CentreRecord>> {
        let code = crate::types::province(&province)?;
        self.with_device(|d| {
            let list = d.province(code, &mut OsRng, |p| p.centres(include_archived))?;
            Ok(list.into_iter().map(CentreRecord::from).collect())
        })
    }

    /// Adds a centre; returns its id.
    pub fn add_centre(&self, province: String, centre: NewCentreInput) -> Result<String> {
        let code = crate::types::province(&province)?;
        let new = centre.try_into()?;
        let edit = edit("add centre");
        self.with_device(|d| {
            let id = d.edit_province(code, &mut OsRng, |p, mut rng| {
                p.add_centre(new, &edit, &mut rng)
            })?;
            Ok(id.to_string())
        })
    }

    /// Changes a centre's fields.
    pub fn update_centre(
        &self,
        province: String,
        centre_id: String,
        changes: CentreChanges,
    ) -> Result<()> {
        let code = crate::types::province(&province)?;
        let id = crate::types::id(&centre_id)?;
        let update = changes.try_into()?;
        let edit = edit("update centre");
        self.with_device(|d| {
            Ok(d.edit_province(code, &mut OsRng, |p, _| p.update_centre(id, update, &edit))?)
        })
    }

    /// Archives a centre.
    pub fn archive_centre(&self, province: String, centre_id: String) -> Result<()> {
        let code = crate::types::province(&province)?;
        let id = crate::types::id(&centre_id)?;
        let edit = edit("archive centre");
        self.with_device(|d| {
            Ok(d.edit_province(code, &mut OsRng, |p, _| p.archive_centre(id, &edit))?)
        })
    }

    // ----- scouting notes ----------------------------------------------------------------

    /// Scouting notes of the province, about one candidate or all.
    #[uniffi::method(default(candidate = None, include_archived = false))]
    pub fn notes(
        &self,
        province: String,
        candidate: Option<String>,
        include_archived: bool,
    ) -> Result<Vec<NoteRecord>> {
        let code = crate::types::province(&province)?;
        let candidate = candidate.as_deref().map(crate::types::id).transpose()?;
        self.with_device(|d| {
            let list = d.province(code, &mut OsRng, |p| p.notes(candidate, include_archived))?;
            Ok(list.into_iter().map(NoteRecord::from).collect())
        })
    }

    /// Adds a scouting note; returns its id.
    pub fn add_note(&self, province: String, note: NewNoteInput) -> Result<String> {
        let code = crate::types::province(&province)?;
        let new = note.try_into()?;
        let edit = edit("add scouting note");
        self.with_device(|d| {
            let id = d.edit_province(code, &mut OsRng, |p, mut rng| {
                p.add_note(new, &edit, &mut rng)
            })?;
            Ok(id.to_string())
        })
    }

    /// Replaces a note's text.
    pub fn edit_note(&self, province: String, note_id: String, text: String) -> Result<()> {
        let code = crate::types::province(&province)?;
        let id = crate::types::id(&note_id)?;
        let edit = edit("edit scouting note");
        self.with_device(|d| {
            Ok(d.edit_province(code, &mut OsRng, |p, _| p.edit_note_text(id, &text, &edit))?)
        })
    }

    /// Archives a note.
    pub fn archive_note(&self, province: String, note_id: String) -> Result<()> {
        let code = crate::types::province(&province)?;
        let id = crate::types::id(&note_id)?;
        let edit = edit("archive scouting note");
        self.with_device(|d| {
            Ok(d.edit_province(code, &mut OsRng, |p, _| p.archive_note(id, &edit))?)
        })
    }

    // ----- activities --------------------------------------------------------------------

    /// The province's activities of every year held, filtered by `query`, oldest first.
    pub fn activities(
        &self,
        province: String,
        query: ActivityQuery,
    ) -> Result<Vec<ActivityRecord>> {
        let code = crate::types::province(&province)?;
        let filter = query.try_into()?;
        self.with_device(|d| {
            let list = d.activities(code, &mut OsRng, |a, _| a.list(&filter))??;
            Ok(list.into_iter().map(ActivityRecord::from).collect())
        })
    }

    /// One activity.
    pub fn activity(&self, province: String, activity_id: String) -> Result<ActivityRecord> {
        let code = crate::types::province(&province)?;
        let id = crate::types::id(&activity_id)?;
        self.with_device(|d| Ok(d.activities(code, &mut OsRng, |a, _| a.get(id))??.into()))
    }

    /// Records an activity; returns its id.
    pub fn record_activity(&self, province: String, activity: NewActivityInput) -> Result<String> {
        let code = crate::types::province(&province)?;
        let new = activity.try_into()?;
        let edit = edit("record activity");
        self.with_device(|d| {
            let id = d.edit_activities(code, &mut OsRng, |a, p, mut rng| {
                a.create(p, new, &edit, &mut rng)
            })?;
            Ok(id.to_string())
        })
    }

    /// Changes an activity's fields.
    pub fn update_activity(
        &self,
        province: String,
        activity_id: String,
        changes: ActivityChanges,
    ) -> Result<()> {
        let code = crate::types::province(&province)?;
        let id = crate::types::id(&activity_id)?;
        let update = changes.try_into()?;
        let edit = edit("update activity");
        self.with_device(|d| {
            Ok(d.edit_activities(code, &mut OsRng, |a, p, _| a.update(p, id, update, &edit))?)
        })
    }

    /// Adds (or, negative, removes) attendance; counts from several phones add up.
    pub fn add_attendance(&self, province: String, activity_id: String, delta: i64) -> Result<()> {
        let code = crate::types::province(&province)?;
        let id = crate::types::id(&activity_id)?;
        let edit = edit("count attendance");
        self.with_device(|d| {
            Ok(d.edit_activities(code, &mut OsRng, |a, _, _| {
                a.add_attendance(id, delta, &edit)
            })?)
        })
    }

    /// Archives an activity (hidden by default, never deleted).
    pub fn archive_activity(&self, province: String, activity_id: String) -> Result<()> {
        let code = crate::types::province(&province)?;
        let id = crate::types::id(&activity_id)?;
        let edit = edit("archive activity");
        self.with_device(|d| {
            Ok(d.edit_activities(code, &mut OsRng, |a, _, _| a.archive(id, &edit))?)
        })
    }

    /// Brings an archived activity back.
    pub fn restore_activity(&self, province: String, activity_id: String) -> Result<()> {
        let code = crate::types::province(&province)?;
        let id = crate::types::id(&activity_id)?;
        let edit = edit("restore activity");
        self.with_device(|d| {
            Ok(d.edit_activities(code, &mut OsRng, |a, _, _| a.restore(id, &edit))?)
        })
    }

    // ----- tips --------------------------------------------------------------------------

    /// Seals a tip to the tip desk and queues it for the next sync; returns the receipt number
    /// to show the member. The device keeps no plaintext of the tip.
    pub fn submit_tip(&self, mut tip: TipInput) -> Result<String> {
        let draft = TipDraft::try_from(&tip);
        tip.wipe();
        let draft = draft?;
        let submitted = today()?;
        let edit = edit("submit tip");
        self.with_device(|d| {
            let receipt = d.submit_tip(draft, submitted, &mut OsRng, &edit)?;
            Ok(receipt.to_string())
        })
    }

    /// Like [`PhakhiDevice::submit_tip`], with evidence attachments from
    /// [`crate::prepare_attachment`]: each is encrypted under its own key and its chunks wait
    /// for the next sync. Refuses, changing nothing, when an attachment's risks are not accepted
    /// (`ConsentRequired`) or it cannot be sent (`AttachmentRefused`). Each prepared attachment
    /// is used up by a successful submission.
    pub fn submit_tip_with_attachments(
        &self,
        mut tip: TipInput,
        attachments: Vec<Arc<crate::PhakhiAttachment>>,
    ) -> Result<String> {
        let draft = TipDraft::try_from(&tip);
        tip.wipe();
        let draft = draft?;
        for attachment in &attachments {
            if attachment.needs_consent()? {
                return Err(PhakhiError::ConsentRequired {
                    message: format!(
                        "the member has not accepted the risks the strip report lists for the \
                         {} file; show the report and call accept_risks() if they agree",
                        attachment.report().media_type
                    ),
                });
            }
        }
        let prepared = attachments
            .iter()
            .map(|a| a.take())
            .collect::<Result<Vec<_>>>()?;
        let submitted = today()?;
        let edit = edit("submit tip");
        self.with_device(|d| {
            let receipt = d.submit_tip_with_attachments(
                draft,
                prepared,
                &phakhi_core::attach::AttachLimits::default(),
                submitted,
                &mut OsRng,
                &edit,
            )?;
            Ok(receipt.to_string())
        })
    }

    /// How evidence leaves this phone ([`EvidencePace::Trickle`] unless the member chose
    /// otherwise).
    pub fn evidence_pace(&self) -> Result<EvidencePace> {
        self.with_device(|d| Ok(d.evidence_pace()?.into()))
    }

    /// Sets how evidence leaves this phone, from the next sync on: for the chunks waiting and
    /// every later tip.
    /// [`EvidencePace::Fast`] shows on the network that this phone is uploading evidence: set
    /// it only when the member chose it knowing that.
    pub fn set_evidence_pace(&self, pace: EvidencePace) -> Result<()> {
        self.with_device(|d| Ok(d.set_evidence_pace(pace.into())?))
    }

    /// How many encrypted attachment chunks wait to be uploaded.
    pub fn pending_chunks(&self) -> Result<u64> {
        self.with_device(|d| Ok(d.pending_chunks()?.len() as u64))
    }

    /// Every tip this device sent, newest first, with its status and the tip desk's replies.
    pub fn tip_receipts(&self) -> Result<Vec<TipReceiptRecord>> {
        self.with_device(|d| {
            let mut out = Vec::new();
            for r in d.tip_receipts(&mut OsRng)? {
                let replies = d.tip_replies(&r.receipt)?;
                out.push(TipReceiptRecord {
                    replies: replies.into_iter().map(TipReply::from).collect(),
                    receipt: r.receipt,
                    status: r.status.into(),
                    submitted: r.submitted.to_string(),
                });
            }
            Ok(out)
        })
    }

    /// How many sealed tips wait for the next sync.
    pub fn outbox_len(&self) -> Result<u64> {
        self.with_device(|d| Ok(d.outbox()?.len() as u64))
    }

    // ----- sync --------------------------------------------------------------------------

    /// Syncs with the enrolled server (or `server_url`) over HTTP: documents in scope, tips out,
    /// replies in, then pending attachment chunks up (a few per exchange; a cut link costs only
    /// the chunks in flight). `progress`, if given, hears about downloads and may cancel. A raw
    /// exchange left in flight is abandoned first. Nothing is lost when this fails; call it
    /// again.
    #[uniffi::method(default(server_url = None, progress = None))]
    pub fn sync(
        &self,
        server_url: Option<String>,
        progress: Option<Arc<dyn SyncProgress>>,
    ) -> Result<SyncSummary> {
        let progress = Progress::new(progress);
        let mut inner = self.lock()?;
        inner.abandon_exchange()?;
        let report = inner.device.sync_http_cancellable(
            server_url.as_deref(),
            &mut OsRng,
            now(),
            &mut |received, total| progress.report(received, total),
            &|| progress.cancelled(),
        )?;
        let mut summary = SyncSummary::from(report);
        if !inner.device.pending_chunks()?.is_empty() && !progress.cancelled() {
            let Inner { device, pace, .. } = &mut *inner;
            let upload = device.upload_chunks_http(
                server_url.as_deref(),
                pace,
                &mut OsRng,
                now(),
                &mut |_, _| {},
            )?;
            summary.chunks_uploaded = upload.chunks_sent as u64;
        }
        summary.chunks_waiting = inner.device.pending_chunks()?.len() as u64;
        Ok(summary)
    }

    /// The next sealed request of a sync the app carries itself (its own HTTP stack posting to
    /// `/v1/sync`, Bluetooth, ...). Starts the exchange when none is in flight. Hand the answer
    /// to [`PhakhiDevice::sync_response`]; if it will never come, call
    /// [`PhakhiDevice::abandon_exchange`].
    pub fn sync_request(&self) -> Result<Vec<u8>> {
        let mut inner = self.lock()?;
        let Inner {
            device, exchange, ..
        } = &mut *inner;
        let session = match exchange {
            Some(session) => session,
            None => exchange.insert(device.begin_sync(&mut OsRng)?),
        };
        match device.sync_request(session, &mut OsRng, unix(now())) {
            Ok(request) => Ok(request),
            Err(e) => {
                inner.abandon_exchange()?;
                Err(e.into())
            }
        }
    }

    /// Applies the server's answer to the last [`PhakhiDevice::sync_request`].
    pub fn sync_response(&self, answer: Vec<u8>) -> Result<ExchangeStep> {
        let mut inner = self.lock()?;
        let Inner {
            device, exchange, ..
        } = &mut *inner;
        let session = exchange
            .as_mut()
            .ok_or_else(|| PhakhiError::NoExchangeInFlight {
                message: "no sync request is waiting for an answer: call sync_request first".into(),
            })?;
        match device.sync_response(session, &answer, &mut OsRng, now()) {
            Ok(SyncStep::Again) => Ok(ExchangeStep::SendAgain),
            Ok(SyncStep::Done(report)) => {
                *exchange = None;
                Ok(ExchangeStep::Done {
                    summary: report.into(),
                })
            }
            Err(e) => {
                inner.abandon_exchange()?;
                Err(e.into())
            }
        }
    }

    /// Ends a raw exchange whose answer will not come. Nothing is lost: the next sync sends
    /// again whatever the server did not confirm.
    pub fn abandon_exchange(&self) -> Result<()> {
        self.lock()?.abandon_exchange()
    }

    /// Writes the next sync request to a bundle file for a carrier — a USB stick, a phone that
    /// reaches signal — to hand to the server (`phakhi admin import-bundle FILE --answer OUT`);
    /// the answer comes back as a file for [`PhakhiDevice::import_bundle`]. Only the enrolled
    /// server opens the bundle, only this device opens the answer, and the server accepts it
    /// for fourteen days.
    ///
    /// What opening the answer needs is kept encrypted in the store, so the answer may be
    /// imported after the app was closed and opened again. One export waits at a time:
    /// exporting again replaces it (the newer bundle carries everything the older one did, and
    /// the older one's answer is then refused). A raw exchange in flight is abandoned first.
    pub fn export_bundle(&self, path: String) -> Result<()> {
        let mut inner = self.lock()?;
        inner.abandon_exchange()?;
        let bundle = inner.device.export_bundle(&mut OsRng, unix(now()))?;
        // A bundle that never reached the file is simply replaced by the next export.
        write_file(&path, &bundle)
    }

    /// Reads the server's answer bundle to the last export and applies it. `SendAgain` means
    /// the server needs a second round: export the next bundle and carry it too. A refused
    /// answer (a damaged file, the answer to a replaced export, another device's or another
    /// server's answer) changes nothing, and the export keeps waiting for its own answer.
    pub fn import_bundle(&self, path: String) -> Result<ExchangeStep> {
        let answer = read_file(&path)?;
        let mut inner = self.lock()?;
        inner.abandon_exchange()?;
        Ok(
            match inner.device.import_bundle(&answer, &mut OsRng, now())? {
                SyncStep::Again => ExchangeStep::SendAgain,
                SyncStep::Done(report) => ExchangeStep::Done {
                    summary: report.into(),
                },
            },
        )
    }

    /// True while an exported bundle waits for its answer (or, after a `SendAgain`, for the
    /// next export), also after the app was closed and opened again.
    pub fn bundle_pending(&self) -> Result<bool> {
        self.with_device(|d| Ok(d.bundle_pending()?))
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees half
/// a bundle.
fn write_file(path: &str, bytes: &[u8]) -> Result<()> {
    let tmp = format!("{path}.partial");
    let mut file = std::fs::File::create(&tmp).map_err(|e| storage("create", &tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| storage("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| storage("write", path, e))
}

fn read_file(path: &str) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| storage("open", path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_BUNDLE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| storage("read", path, e))?;
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(PhakhiError::BundleDamaged {
            message: format!("{path} is larger than any bundle: not a Phakhi bundle"),
        });
    }
    Ok(bytes)
}
