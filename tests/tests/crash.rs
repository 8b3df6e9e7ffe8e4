//! SIGKILL during 1,000 concurrent device syncs. A real `phakhi serve` on loopback; 100 devices
//! enrolled with real invites across four provinces; each device runs 10 sync lanes at once
//! (its own replica fork and sync state per lane, one static key per device), so 1,000 sync
//! exchanges are in flight, each carrying a new record and a sealed tip. Once some hundreds are
//! acknowledged the server is killed with SIGKILL and restarted on the same data folder and port.
//! Then every lane whose exchange failed retries, and the test proves:
//!
//! - every acknowledged change is in the server's stored document (its heads are there) and
//!   every acknowledged tip is in the stored mailbox;
//! - nothing is duplicated: mailbox ids are unique and the mailbox holds exactly the tips sealed,
//!   each province document exactly the records written;
//! - every device converges: after merging its lanes and syncing, its copy of its province's
//!   document has the server's heads.
//!
//! One kill runs by default; `PHAKHI_LONG_TESTS=1` runs ten in a row on the same data folder.
//! Figures (acknowledged before the kill, retried, time to converge) are printed, never asserted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use automerge::{AutoCommit, ChangeHash, ROOT, ReadDoc};
use phakhi_core::mailbox::{EnvelopeId, MailItem, MailboxMessage, Push};
use phakhi_core::protocol::{decode_section, encode_section};
use phakhi_core::seal::{PublicKey, StaticKeyPair};
use phakhi_core::sync::DocName;
use phakhi_tests::server::{
    Device, Failure, ServerProcess, config_with_limits, issue_invite, sealed_tip,
};
use rand_core::{OsRng, RngCore};

const DEVICES: usize = 100;
const LANES: usize = 10;
/// Exchanges each lane attempts per round (the kill usually cuts this short).
const EXCHANGES_PER_LANE: usize = 3;
/// Acknowledged exchanges to wait for before the kill.
const KILL_AFTER: usize = 300;
const PROVINCES: [&str; 4] = ["TH-44", "TH-40", "TH-45", "TH-46"];
/// Bounds every wait in this file.
const GUARD: Duration = Duration::from_secs(240);

/// The activities document of `province` that repetition `round` records into. Each repetition
/// moves to another year's document, as the app does once a year: documents stay bounded, so
/// ten repetitions cost about ten times one.
fn activities(province: &str, round: usize) -> String {
    format!("province/{province}/activities/{}", 2026 - round)
}

/// One enrolled device: its key, province and its own copy of the province's document.
struct Phone {
    index: usize,
    province: &'static str,
    device: Device,
}

/// What one acknowledged exchange promised.
#[derive(Debug, Clone)]
struct Acked {
    doc: String,
    heads: Vec<ChangeHash>,
    tips: Vec<EnvelopeId>,
}

/// One sync lane of a device: a replica fork of its document with its own sync state.
struct Lane {
    phone: usize,
    lane: usize,
    province: &'static str,
    /// The document it records into.
    doc: String,
    device: Device,
    outbox: Vec<MailItem>,
    /// Records written and tips sealed in this lane.
    records: usize,
    tips: Vec<EnvelopeId>,
    /// The last exchange failed: what it carried has to be retried.
    pending: bool,
}

fn copy_key(key: &StaticKeyPair) -> StaticKeyPair {
    StaticKeyPair::from_secret_bytes(&key.secret_bytes()).expect("key")
}

impl Lane {
    fn new(phone: &mut Phone, lane: usize, round: usize) -> Lane {
        let doc = activities(phone.province, round);
        assert!(
            phone
                .device
                .docs
                .contains_key(&DocName::parse(&doc).expect("name")),
            "the device holds the round's document"
        );
        // A replica of every document the device holds, as the device itself would sync. Each
        // lane writes under an actor of its own, bound to the device's key as every change the
        // server takes from it must be (lanes sharing one actor would number their changes alike).
        let device_key = *phone.device.key.public().as_bytes();
        let forks = phone
            .device
            .docs
            .iter_mut()
            .map(|(name, doc)| {
                let mut fresh = [0u8; phakhi_core::policy::authority::FRESH_BYTES];
                OsRng.fill_bytes(&mut fresh);
                let actor = phakhi_core::policy::authority::device_actor(
                    &device_key,
                    phakhi_tests::server::now_ms(),
                    fresh,
                );
                (name.clone(), doc.fork().with_actor(actor))
            })
            .collect();
        Lane {
            phone: phone.index,
            lane,
            province: phone.province,
            doc,
            device: Device {
                key: copy_key(&phone.device.key),
                server: phone.device.server,
                url: phone.device.url.clone(),
                docs: forks,
                state: phone.device.state.clone(),
            },
            outbox: Vec::new(),
            records: 0,
            tips: Vec::new(),
            pending: false,
        }
    }

    /// Writes a new record and seals a tip, then syncs both. `Ok` only when the server's sealed
    /// answer came back and applied.
    fn exchange(&mut self, desk: &PublicKey, round: usize, n: usize) -> Result<Acked, Failure> {
        let key = format!("r{round}-d{:03}-l{}-x{n}", self.phone, self.lane);
        self.device
            .write(&self.doc, &key, &format!("กิจกรรมรณรงค์ครั้งที่ {n} รอบ {round}"));
        self.records += 1;
        let tip = sealed_tip(desk, self.province, &format!("รายงาน {key}"));
        self.tips.push(tip.id());
        self.outbox.push(tip);
        self.pending = true;
        self.send()
    }

    /// Syncs what the lane holds (its document and its whole outbox).
    fn send(&mut self) -> Result<Acked, Failure> {
        let heads = self.heads();
        let section = encode_section(&[MailboxMessage::Push(Push {
            items: self.outbox.clone(),
        })]);
        let answer = self.device.sync_with_mailbox(Some(section))?;
        let acked: BTreeSet<EnvelopeId> = answer
            .map(|bytes| decode_section(&bytes).expect("mailbox answer"))
            .unwrap_or_default()
            .into_iter()
            .flat_map(|message| match message {
                MailboxMessage::Ack(ack) => ack.ids,
                _ => Vec::new(),
            })
            .collect();
        let pushed: Vec<EnvelopeId> = self.outbox.iter().map(MailItem::id).collect();
        assert!(
            pushed.iter().all(|id| acked.contains(id)),
            "a successful exchange left a pushed tip unacknowledged"
        );
        self.outbox.clear();
        self.pending = false;
        Ok(Acked {
            doc: self.doc.clone(),
            heads,
            tips: pushed,
        })
    }

    fn heads(&mut self) -> Vec<ChangeHash> {
        let name = DocName::parse(&self.doc).expect("name");
        self.device
            .docs
            .get_mut(&name)
            .map(AutoCommit::get_heads)
            .unwrap_or_default()
    }
}

/// The server's stored copy of a document, read from its SQLite file.
fn stored_doc(data: &Path, name: &str) -> AutoCommit {
    let conn = phakhi_server::db::open_existing(data)
        .expect("open data folder")
        .expect("a database");
    let chunks = phakhi_server::db::documents::load(&conn, name)
        .expect("load")
        .expect("document stored");
    let mut chunks = chunks.into_iter();
    let mut doc = AutoCommit::load(&chunks.next().expect("a chunk")).expect("stored document");
    for chunk in chunks {
        doc.load_incremental(&chunk).expect("stored chunk");
    }
    doc
}

fn stored_mailbox_ids(data: &Path) -> Vec<EnvelopeId> {
    let conn = phakhi_server::db::open_existing(data)
        .expect("open data folder")
        .expect("a database");
    let (held, _) = phakhi_server::db::mailbox::load(&conn).expect("mailbox");
    held.into_iter().map(|stored| stored.id).collect()
}

/// Retries `work` on a dead or restarting server until it succeeds, within [`GUARD`].
fn until_ok<T>(mut work: impl FnMut() -> Result<T, Failure>) -> T {
    let deadline = Instant::now() + GUARD;
    loop {
        match work() {
            Ok(value) => return value,
            Err(Failure::Refused(status, code)) => panic!("refused: {status} {code}"),
            Err(Failure::Unreachable) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(Failure::Unreachable) => panic!("the server stayed unreachable"),
        }
    }
}

/// Figures of one kill.
#[derive(Debug, Default)]
struct Figures {
    acked_before_kill: usize,
    in_flight_at_kill: usize,
    retried: usize,
    /// Retried tips the server had already committed when it was killed.
    committed_unacked: usize,
    converge: Duration,
}

#[test]
fn sigkill_during_1000_concurrent_syncs_loses_and_duplicates_nothing() {
    let rounds = if std::env::var("PHAKHI_LONG_TESTS").is_ok_and(|v| v == "1") {
        10
    } else {
        1
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with_limits(
        dir.path(),
        "mailbox_envelopes_per_device = 100000\nmailbox_bytes_per_device = 1000000000",
    );
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, &["--config", &config]);
    let port = server.addr.port();
    let key = server.static_key();
    let desk = StaticKeyPair::generate(&mut OsRng);
    let desk_hex = hex::encode(desk.public().as_bytes());

    // Enrol every device with its own invite.
    let started = Instant::now();
    let mut phones: Vec<Phone> = (0..DEVICES)
        .map(|index| {
            let province = PROVINCES[index % PROVINCES.len()];
            let invite = issue_invite(&data, province, &server.url, &desk_hex, "1d");
            let (device, _) = Device::enrol(&server.url, &invite, key).expect("enrol");
            Phone {
                index,
                province,
                device,
            }
        })
        .collect();
    eprintln!("{DEVICES} devices enrolled in {:?}", started.elapsed());

    // Records written per document, and the province the document belongs to.
    let mut written: BTreeMap<String, (&str, usize)> = BTreeMap::new();
    let mut sealed_tips: Vec<EnvelopeId> = Vec::new();
    for round in 0..rounds {
        // Every device starts the round's document with a record and syncs it.
        for phone in &mut phones {
            let doc = activities(phone.province, round);
            phone.device.write(
                &doc,
                &format!("r{round}-d{:03}-start", phone.index),
                "เริ่มบันทึกรอบใหม่",
            );
            phone.device.sync().expect("round-start sync");
            written.entry(doc).or_insert((phone.province, 0)).1 += 1;
        }
        let lanes: Vec<Lane> = phones
            .iter_mut()
            .flat_map(|phone| {
                (0..LANES)
                    .map(|lane| Lane::new(phone, lane, round))
                    .collect::<Vec<_>>()
            })
            .collect();
        let (lanes, acked, figures, restarted) =
            storm_and_kill(server, lanes, desk.public(), round, &data, port, &config);
        server = restarted;

        // Every acknowledged change and tip is stored, before anything is retried.
        for name in written.keys() {
            let doc = stored_doc(&data, name);
            for promise in acked.iter().filter(|a| a.doc == *name) {
                assert!(
                    doc.get_missing_deps(&promise.heads).is_empty()
                        && promise
                            .heads
                            .iter()
                            .all(|h| doc.get_change_by_hash(h).is_some()),
                    "an acknowledged change of {name} is missing after the kill"
                );
            }
        }
        let held: BTreeSet<EnvelopeId> = stored_mailbox_ids(&data).into_iter().collect();
        for promise in &acked {
            assert!(
                promise.tips.iter().all(|id| held.contains(id)),
                "an acknowledged tip is missing after the kill"
            );
        }

        // Tips a lane is about to send again that the server already holds: it committed them
        // but the answer was lost in the kill.
        let committed_unacked = lanes
            .iter()
            .flat_map(|lane| lane.outbox.iter())
            .filter(|item| held.contains(&item.id()))
            .count();

        // Retry what failed (each device's lanes in its own thread), then merge every lane
        // into its device and converge.
        let converging = Instant::now();
        let mut lanes = lanes;
        let retried = lanes.iter().filter(|lane| lane.pending).count();
        std::thread::scope(|scope| {
            for device_lanes in lanes.chunks_mut(LANES) {
                scope.spawn(move || {
                    for lane in device_lanes.iter_mut().filter(|lane| lane.pending) {
                        until_ok(|| lane.send());
                    }
                });
            }
        });
        for lane in &lanes {
            written.get_mut(&lane.doc).expect("the round's document").1 += lane.records;
            sealed_tips.extend(lane.tips.iter().copied());
        }
        // Only the round's document changed in a lane; the older years are as the device
        // left them.
        for mut lane in lanes {
            let name = DocName::parse(&lane.doc).expect("name");
            let mut doc = lane.device.docs.remove(&name).expect("lane document");
            phones[lane.phone]
                .device
                .docs
                .get_mut(&name)
                .expect("device document")
                .merge(&mut doc)
                .expect("merge lane");
        }
        std::thread::scope(|scope| {
            for phone in &mut phones {
                scope.spawn(move || until_ok(|| phone.device.sync()));
            }
        });
        let figures = Figures {
            retried,
            committed_unacked,
            converge: converging.elapsed(),
            ..figures
        };
        eprintln!(
            "kill {}: {} exchanges acknowledged before SIGKILL, {} in flight at the kill, \
             {} lanes retried ({} of their tips were committed but unanswered), converged in {:?}",
            round + 1,
            figures.acked_before_kill,
            figures.in_flight_at_kill,
            figures.retried,
            figures.committed_unacked,
            figures.converge
        );

        // Nothing lost, nothing duplicated, everyone converged.
        let ids = stored_mailbox_ids(&data);
        let unique: BTreeSet<EnvelopeId> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "a mailbox id is stored twice");
        let sealed: BTreeSet<EnvelopeId> = sealed_tips.iter().copied().collect();
        assert_eq!(sealed.len(), sealed_tips.len());
        assert_eq!(unique, sealed, "the mailbox holds exactly the tips sealed");
        for (name, (province, records)) in &written {
            let mut doc = stored_doc(&data, name);
            assert_eq!(
                doc.keys(ROOT).count(),
                *records,
                "{name} holds exactly the records written"
            );
            let mut server_heads = doc.get_heads();
            server_heads.sort();
            for phone in phones.iter_mut().filter(|p| p.province == *province) {
                let copy = phone
                    .device
                    .docs
                    .get_mut(&DocName::parse(name).expect("name"))
                    .expect("copy");
                let mut heads = copy.get_heads();
                heads.sort();
                assert_eq!(heads, server_heads, "device {} converged", phone.index);
                assert_eq!(copy.keys(ROOT).count(), *records);
            }
        }
        assert!(figures.acked_before_kill > 0 && figures.retried > 0);
    }
    let (exit, stderr) = server.terminate();
    assert!(exit.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Fires every lane's exchanges at once, SIGKILLs the server once [`KILL_AFTER`] are
/// acknowledged, restarts it, and hands back the lanes, what was acknowledged and the figures.
fn storm_and_kill(
    server: ServerProcess,
    lanes: Vec<Lane>,
    desk: &PublicKey,
    round: usize,
    data: &Path,
    port: u16,
    config: &str,
) -> (Vec<Lane>, Vec<Acked>, Figures, ServerProcess) {
    let total = lanes.len();
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(total + 1));
    let handles: Vec<_> = lanes
        .into_iter()
        .map(|mut lane| {
            let (acked, acked_count, in_flight, killed, start) = (
                acked.clone(),
                acked_count.clone(),
                in_flight.clone(),
                killed.clone(),
                start.clone(),
            );
            let desk = *desk;
            std::thread::Builder::new()
                .stack_size(1024 * 1024)
                .spawn(move || {
                    start.wait();
                    for n in 0..EXCHANGES_PER_LANE {
                        if killed.load(Ordering::SeqCst) {
                            break;
                        }
                        in_flight.fetch_add(1, Ordering::SeqCst);
                        let outcome = lane.exchange(&desk, round, n);
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        match outcome {
                            Ok(promise) => {
                                acked.lock().expect("lock").push(promise);
                                acked_count.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(Failure::Unreachable) => break,
                            Err(Failure::Refused(status, code)) => {
                                panic!("refused during the storm: {status} {code}")
                            }
                        }
                    }
                    lane
                })
                .expect("spawn lane")
        })
        .collect();
    start.wait();
    let deadline = Instant::now() + GUARD;
    while acked_count.load(Ordering::SeqCst) < KILL_AFTER
        && handles.iter().any(|h| !h.is_finished())
    {
        assert!(Instant::now() < deadline, "the storm did not progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    let in_flight_at_kill = in_flight.load(Ordering::SeqCst);
    let (status, _) = server.kill();
    killed.store(true, Ordering::SeqCst);
    assert!(!status.success());
    // Whatever was acknowledged up to here is all that may be claimed.
    let lanes: Vec<Lane> = handles
        .into_iter()
        .map(|h| h.join().expect("lane thread"))
        .collect();
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    let figures = Figures {
        acked_before_kill: acked.len(),
        in_flight_at_kill,
        ..Figures::default()
    };
    let restarted = ServerProcess::start_on_port(data, port, &["--config", config]);
    (lanes, acked, figures, restarted)
}
