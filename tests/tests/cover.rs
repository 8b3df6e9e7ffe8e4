//! Cover traffic, seen from a seized relay and a seized HQ. Every process is real: HQ and a
//! provincial relay run as `phakhi serve` on 127.0.0.1 at debug level, each behind a
//! byte-counting TCP proxy (`phakhi_tests::tap`) that records every connection, its bytes and
//! times; the tip desk is the `phakhi tipdesk` command; 20 phones sync with the relay and 4 with
//! HQ directly (`phakhi_core`'s `Device` in this process). Seven of them tip, three of those with
//! an evidence attachment; the others only record. Every phone records and syncs the same
//! number of times, as an app on a timer does; `/v1/health` and `/metrics` of both servers are
//! scraped (without credentials) after every exchange.
//!
//! Afterwards the test computes, for every phone, every feature it can find: bytes up and
//! down and connections at its server in each exchange and in all of them, what the relay
//! then sent HQ, the exchanges it made, the health and metrics names that changed after each
//! exchange, the rows of both databases and the regions of every file that hold its key or
//! device id, and the lines of both logs that name it (how many, and their shapes). A feature
//! tells tippers apart when some threshold puts every tipper on one side and every other phone
//! on the other (numbers), or when a tipper's value is one no other phone has (everything
//! else). It also scans every file for a phone next to an envelope id, and checks that no
//! receipt can be computed from what a server stores.
//!
//! The same run with cover switched off on the phones (a test-only setting) must find the
//! tippers: both runs are in the suite.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use phakhi_core::attach::{AttachLimits, Pace, PreparedAttachment};
use phakhi_core::device::{Device, SLOTS_PER_EXCHANGE};
use phakhi_core::model::{Date, Edit};
use phakhi_core::seal::{MemberCode, ReceiptId, TipCategory, TipDraft};
use phakhi_core::store::StorageKey;
use phakhi_server::db::devices::device_id;
use phakhi_tests::cli::{desk, desk_with_code, ok};
use phakhi_tests::server::{ServerProcess, get_as_anyone, invite, joined_relay_key, relay_join};
use phakhi_tests::tap::Tap;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use time::OffsetDateTime;

use super::unlinkable::{add_member, all_rows, changed, contains, files, regions, scrape, serve};

const RELAY_PHONES: usize = 20;
const HQ_PHONES: usize = 4;
/// Phones that tip (relay phones first), and those of them that attach evidence.
const TIPPERS: [usize; 7] = [1, 5, 8, 13, 17, 20, 22];
const WITH_ATTACHMENT: [usize; 3] = [5, 13, 22];
/// Exchanges every phone makes after the tips were written: the tips leave in the first one's
/// slots (and the evidence starts to), so one is enough to compare.
const ROUNDS: usize = 1;

struct Phone {
    device: Device,
    key: [u8; 32],
    id: String,
    at_hq: bool,
    tips: bool,
    receipt: Option<String>,
    /// Per exchange: what changed in health and metrics (relay, HQ) after it.
    watched: Vec<(BTreeSet<String>, BTreeSet<String>)>,
}

/// The relay's link to HQ as anyone reads it: rounds started, the number of the last round
/// that completed, whether anything waits for HQ, and whether the last round failed.
fn upstream(relay: &ServerProcess) -> (u64, u64, bool, bool) {
    let (_, body) = get_as_anyone(&format!("{}/v1/health", relay.url));
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let up = &health["upstream"];
    (
        up["rounds_started"].as_u64().unwrap_or(0),
        up["last_success_round"].as_u64().unwrap_or(0),
        up["pending"].as_bool().unwrap_or(false),
        up["consecutive_failures"].as_u64().unwrap_or(0) > 0,
    )
}

/// After a phone's exchange (`before`: the relay's rounds started just before it), waits until
/// a round started after it completed, none is in flight and nothing waits for HQ, so what the
/// relay sends HQ for this phone is counted in this phone's window and no other's. With cover
/// every exchange brings slots and starts a round; without, a phone that only recorded may
/// start none: then, after 1.5 s with no round in flight, go on.
fn settle(relay: &ServerProcess, before: u64, cover: bool) {
    let started = Instant::now();
    loop {
        let (rounds, done, pending, failing) = upstream(relay);
        // No round in flight: the last one started completed, or failed (the relay waits out
        // its back-off; HQ refuses a relay's chunk requests past its rate without cover).
        let idle = done == rounds || failing;
        if idle && done > before && !pending {
            return;
        }
        if !cover && idle && started.elapsed() > Duration::from_millis(1500) {
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            assert!(!cover, "the relay's round with HQ did not finish in 60 s");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The relay's upstream times (`last_success`, `last_attempt`) are whole seconds: two rounds
/// that complete within the same second leave them as they were, so whether they "changed"
/// after a phone's exchange says only whether its round ended in a new second. A completed
/// round rewrites them (`last_success_round` moves, which anyone reads too), so they count as
/// changed whenever it did: the feature then says what the relay did, not where the clock's
/// second fell.
fn rounds_rewrite_times(mut changed: BTreeSet<String>) -> BTreeSet<String> {
    if changed.contains("health.upstream.last_success_round") {
        for name in [
            "health.upstream.last_success",
            "health.upstream.last_attempt",
        ] {
            changed.insert(name.to_owned());
        }
    }
    changed
}

/// Every feature of every phone, by name: numbers, and everything else as text. A phone
/// without a value for a feature is not compared on it.
#[derive(Default)]
struct Features {
    numbers: BTreeMap<String, BTreeMap<usize, u64>>,
    other: BTreeMap<String, BTreeMap<usize, String>>,
}

impl Features {
    fn number(&mut self, name: &str, phone: usize, value: u64) {
        self.numbers
            .entry(name.into())
            .or_default()
            .insert(phone, value);
    }

    fn other(&mut self, name: &str, phone: usize, value: String) {
        self.other
            .entry(name.into())
            .or_default()
            .insert(phone, value);
    }

    /// The features that tell the phones in `tippers` from the others.
    fn telling(&self, tippers: &BTreeSet<usize>) -> Vec<String> {
        let mut out = Vec::new();
        for (name, values) in &self.numbers {
            let of = |tips: bool| -> Vec<u64> {
                values
                    .iter()
                    .filter(|(i, _)| tippers.contains(i) == tips)
                    .map(|(_, v)| *v)
                    .collect()
            };
            let (yes, no) = (of(true), of(false));
            let (Some(ymin), Some(ymax), Some(nmin), Some(nmax)) = (
                yes.iter().min(),
                yes.iter().max(),
                no.iter().min(),
                no.iter().max(),
            ) else {
                continue;
            };
            if ymin > nmax || ymax < nmin {
                out.push(format!("{name}: tippers {yes:?}, others {no:?}"));
            }
        }
        for (name, values) in &self.other {
            let others: BTreeSet<&String> = values
                .iter()
                .filter(|(i, _)| !tippers.contains(i))
                .map(|(_, v)| v)
                .collect();
            for (i, value) in values.iter().filter(|(i, _)| tippers.contains(i)) {
                if !others.contains(value) {
                    out.push(format!("{name}: tipper {i} has {value}"));
                }
            }
        }
        out
    }
}

/// Runs the province with cover on or off and returns the features that tell tippers apart.
fn seized(cover: bool) -> Vec<String> {
    let started = Instant::now();
    let rng = &mut ChaCha20Rng::seed_from_u64(if cover { 160 } else { 161 });
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let hq_data = dir.path().join("hq");
    let relay_data = dir.path().join("relay");
    let desk_dir = path("desk");
    let hq = serve(&hq_data, &[]);
    let hq_tap = Tap::start(&hq.url);
    // The relay reaches HQ through a proxy of its own: HQ's operator tells the relay's
    // connections from its phones' by their addresses, and a relay round that overlaps an HQ
    // phone's exchange is then never counted as that phone's.
    let relay_up_tap = Tap::start(&hq.url);
    let nk = phakhi_tests::server::network_key(&hq_data);
    let (desk_key, code) = desk_with_code(&desk_dir, "ผู้แจ้งเบาะแส");
    let joined = relay_join(
        &relay_data,
        &invite(&hq_data, "TH-44", "relay", &relay_up_tap.url, &desk_key),
        &nk,
    );
    assert!(joined.status.success());
    let relay_key = hex::encode(joined_relay_key(&joined).as_bytes());
    let relay = serve(
        &relay_data,
        &[
            "--upstream-interval",
            "600",
            "--upstream-backoff-cap",
            "2",
            "--upstream",
        ],
    );
    let relay_tap = Tap::start(&relay.url);

    let network = &phakhi_tests::server::network_verifying_key(&hq_data);
    let mut phones = Vec::new();
    for index in 0..RELAY_PHONES + HQ_PHONES {
        let at_hq = index >= RELAY_PHONES;
        let invite = if at_hq {
            invite(&hq_data, "TH-44", "leader", &hq_tap.url, &desk_key)
        } else {
            let out = phakhi_tests::server::admin(
                &hq_data,
                &[
                    "invite",
                    "--province",
                    "TH-44",
                    "--role",
                    "leader",
                    "--server-url",
                    &relay_tap.url,
                    "--server-key",
                    &relay_key,
                    "--tip-desk-key",
                    &desk_key,
                ],
            );
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        let mut device = Device::open(
            dir.path().join(format!("phone{index}.db")),
            StorageKey::generate(rng),
            &mut ChaCha20Rng::from_rng(&mut *rng).unwrap(),
        )
        .unwrap();
        if !cover {
            device.switch_cover_off_for_tests().unwrap();
        }
        assert_eq!(device.cover_on(), cover);
        device
            .enrol_http(&invite, network, None, rng, OffsetDateTime::now_utc())
            .unwrap();
        let key = *device.public_key().as_bytes();
        phones.push(Phone {
            id: device_id(&key),
            key,
            device,
            at_hq,
            tips: TIPPERS.contains(&index),
            receipt: None,
            watched: Vec::new(),
        });
    }
    // The relay's first round (the phones it registered) is done before anyone exchanges.
    settle(&relay, 0, true);

    let now = OffsetDateTime::now_utc();
    let today = Date::from_time(now.date()).unwrap();
    let mut last = (scrape(&relay), scrape(&hq));
    // Round 0 makes the documents everywhere; the tips are written after it, and leave in the
    // next exchange (with cover: in its slots, at the same size as everyone's).
    for round in 0..=ROUNDS {
        if round == 1 {
            for (index, phone) in phones.iter_mut().enumerate() {
                if phone.tips {
                    phone.receipt = Some(write_tip(phone, index, &code, today, now, rng));
                }
            }
        }
        for (index, phone) in phones.iter_mut().enumerate() {
            add_member(
                &mut phone.device,
                &format!("สมาชิก {round}-{index:02}"),
                today,
                now,
                rng,
            );
            let window = index * 100 + round;
            relay_tap.watch(Some(window));
            hq_tap.watch(Some(window));
            relay_up_tap.watch(Some(window));
            let (rounds, _, _, _) = upstream(&relay);
            // As the app does: the sync (records, tips, slots), then any chunks.
            phone
                .device
                .sync_http(None, rng, OffsetDateTime::now_utc(), &mut |_, _| {})
                .unwrap();
            phone
                .device
                .upload_chunks_http(
                    None,
                    &mut Pace::default(),
                    rng,
                    OffsetDateTime::now_utc(),
                    &mut |_, _| {},
                )
                .unwrap();
            // What the relay sends HQ after a phone's exchange is a feature from exchange 1 on;
            // exchange 0 only makes the documents everywhere: the relay carries them all to HQ
            // after the last relay phone's.
            if !phone.at_hq && (round > 0 || index == RELAY_PHONES - 1) {
                settle(&relay, rounds, cover);
            }
            relay_tap.watch(None);
            hq_tap.watch(None);
            relay_up_tap.watch(None);
            let now_seen = (scrape(&relay), scrape(&hq));
            phone.watched.push((
                rounds_rewrite_times(changed(&last.0, &now_seen.0)),
                changed(&last.1, &now_seen.1),
            ));
            last = now_seen;
        }
    }
    let exchanges = (ROUNDS + 1) * phones.len();

    // The desk takes what HQ holds (it acknowledges nothing: the servers keep every envelope).
    let admin_invite = invite(&hq_data, "TH-44", "admin", &hq.url, &desk_key);
    ok(&desk(
        &desk_dir,
        &["enroll", &admin_invite, "--network-key", &nk],
    ));
    let pulled = ok(&desk(&desk_dir, &["pull"]));
    assert!(
        pulled.contains(&format!("pulled {} new tip(s)", TIPPERS.len())),
        "{pulled}"
    );
    if cover {
        // Every exchange pushed its slots, and only the desk told the dummies apart.
        assert!(pulled.contains("cover slot(s)"), "{pulled}");
    }
    for phone in phones.iter().filter(|p| p.tips) {
        let receipt = phone.receipt.as_ref().unwrap();
        let shown = ok(&desk(&desk_dir, &["show", receipt]));
        assert!(shown.contains("นายก อบต."), "{shown}");
    }
    let (hq_exit, hq_log) = hq.terminate();
    let (relay_exit, relay_log) = relay.terminate();
    assert!(hq_exit.success() && relay_exit.success());

    // Envelope and chunk ids: every 32-byte `id` any table holds (mailbox, acknowledged and
    // released tips, chunks, chunks passed on); envelopes: the mailbox's bytes.
    let mut ids: Vec<Vec<u8>> = Vec::new();
    let mut envelopes: Vec<Vec<u8>> = Vec::new();
    let mut rows = Vec::new();
    for data in [&relay_data, &hq_data] {
        let all = all_rows(data);
        for (table, row) in &all {
            for (column, _, blob) in row {
                match (column.as_str(), blob) {
                    ("id", Some(id)) if id.len() == 32 => ids.push(id.clone()),
                    ("bytes", Some(bytes)) if table == "mailbox" => envelopes.push(bytes.clone()),
                    _ => {}
                }
            }
        }
        rows.push(all);
    }
    let slots = if cover {
        exchanges * SLOTS_PER_EXCHANGE
    } else {
        TIPPERS.len()
    };
    // HQ holds every slot (the relay's and its own phones'); the relay may have pruned what
    // HQ acknowledged.
    assert!(
        envelopes.len() >= slots,
        "{} envelopes stored, {slots} pushed",
        envelopes.len()
    );
    let receipts: BTreeSet<String> = phones.iter().filter_map(|p| p.receipt.clone()).collect();
    let derivable = envelopes
        .iter()
        .filter(|e| receipts.contains(&ReceiptId::of_envelope(e).to_string()))
        .count();

    // 1. Raw bytes: no page, frame or file holds a phone (its key, device id or key in hex)
    // next to an envelope or chunk id. The same pass counts, per phone, the regions that name
    // it (a feature below).
    let id_needles = Needles::new(ids.iter().map(|id| (id.clone(), 0)));
    let phone_needles = Needles::new(phones.iter().enumerate().flat_map(|(i, p)| {
        [
            (p.key.to_vec(), i),
            (p.id.as_bytes().to_vec(), i),
            (hex::encode(p.key).into_bytes(), i),
        ]
    }));
    // Per server, per phone: the file regions naming it.
    let mut naming: [BTreeMap<usize, u64>; 2] = Default::default();
    for (at, data) in [&relay_data, &hq_data].into_iter().enumerate() {
        for file in files(data) {
            let bytes = std::fs::read(&file).unwrap();
            for (from, to) in regions(&file, &bytes) {
                let region = &bytes[from..to];
                let named = phone_needles.found(region);
                if named.is_empty() {
                    continue;
                }
                for phone in &named {
                    *naming[at].entry(*phone).or_default() += 1;
                }
                assert!(
                    id_needles.found(region).is_empty(),
                    "{} bytes {from}..{to} hold phone(s) {:?} next to an envelope or chunk id",
                    file.display(),
                    named.iter().map(|i| &phones[*i].id).collect::<Vec<_>>()
                );
            }
        }
    }

    // 2. Every feature of every phone. Bytes and connections are taken at the phone's own
    // server (its operator sees them); what the relay sent HQ while a relay phone synced is
    // compared among the relay's phones; the rest within the phones of one server.
    let mut features = Features::default();
    let (relay_seen, hq_seen, relay_up_seen) =
        (relay_tap.seen(), hq_tap.seen(), relay_up_tap.seen());
    for (index, phone) in phones.iter().enumerate() {
        let group = if phone.at_hq { "HQ" } else { "relay" };
        let own = if phone.at_hq { &hq_seen } else { &relay_seen };
        let (mut up, mut down, mut conns, mut active) = (0, 0, 0, 0);
        // Exchange 0 made the documents everywhere, before anyone tipped: not a feature.
        for round in 1..=ROUNDS {
            let s = own.get(&(index * 100 + round)).cloned().unwrap_or_default();
            features.number(
                &format!("bytes up at its server, exchange {round}"),
                index,
                s.up,
            );
            features.number(
                &format!("bytes down from its server, exchange {round}"),
                index,
                s.down,
            );
            features.number(
                &format!("connections, exchange {round}"),
                index,
                s.connections,
            );
            up += s.up;
            down += s.down;
            conns += s.connections;
            active += u64::from(s.connections > 0);
            if !phone.at_hq {
                let h = relay_up_seen
                    .get(&(index * 100 + round))
                    .cloned()
                    .unwrap_or_default();
                features.number(
                    &format!("relay to HQ after exchange {round}, bytes up"),
                    index,
                    h.up,
                );
                features.number(
                    &format!("relay to HQ after exchange {round}, bytes down"),
                    index,
                    h.down,
                );
            }
        }
        features.number("bytes up at its server, all exchanges", index, up);
        features.number("bytes down from its server, all exchanges", index, down);
        features.number("connections, all exchanges", index, conns);
        features.number("exchanges", index, active);
        for (round, (relay_changed, hq_changed)) in phone.watched.iter().enumerate().skip(1) {
            features.other(
                &format!("{group} phones: relay health and metrics after exchange {round}"),
                index,
                format!("{relay_changed:?}"),
            );
            features.other(
                &format!("{group} phones: HQ health and metrics after exchange {round}"),
                index,
                format!("{hq_changed:?}"),
            );
        }
        for (server, at) in ["relay", "HQ"].into_iter().enumerate() {
            let tables = rows[server]
                .iter()
                .filter(|(_, row)| {
                    row.iter().any(|(_, _, blob)| {
                        blob.as_ref().is_some_and(|b| {
                            contains(b, &phone.key) || contains(b, phone.id.as_bytes())
                        })
                    })
                })
                .map(|(table, _)| table.clone())
                .collect::<Vec<_>>();
            features.number(
                &format!("{group} phones: {at} rows naming it"),
                index,
                tables.len() as u64,
            );
            features.other(
                &format!("{group} phones: {at} tables naming it"),
                index,
                format!("{tables:?}"),
            );
            features.number(
                &format!("{group} phones: {at} file regions naming it"),
                index,
                naming[server].get(&index).copied().unwrap_or(0),
            );
        }
        for (at, log) in [("relay", &relay_log), ("HQ", &hq_log)] {
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(&phone.id) || l.contains(&hex::encode(phone.key)))
                .collect();
            features.number(
                &format!("{group} phones: {at} log lines naming it"),
                index,
                lines.len() as u64,
            );
            let shapes: BTreeSet<String> = lines.iter().map(|l| shape(l, phone)).collect();
            features.other(
                &format!("{group} phones: {at} log line shapes"),
                index,
                format!("{shapes:?}"),
            );
        }
    }
    for tap in [&relay_tap, &hq_tap, &relay_up_tap] {
        assert!(
            !tap.connections().is_empty(),
            "the proxy carried the traffic"
        );
    }
    let tippers: BTreeSet<usize> = TIPPERS.into_iter().collect();
    let mut telling = features.telling(&tippers);
    if derivable > 0 {
        telling.push(format!(
            "receipts: {derivable} stored envelope(s) give a phone's receipt away"
        ));
    }
    telling.sort();
    telling.dedup();
    for t in &telling {
        eprintln!("telling (cover {}): {t}", if cover { "on" } else { "off" });
    }
    println!(
        "cover {}: {} phones, {exchanges} exchanges, {} features, {} tell tippers apart; \
         wall time {:.1} s",
        if cover { "on" } else { "off" },
        phones.len(),
        features.numbers.len() + features.other.len(),
        telling.len(),
        started.elapsed().as_secs_f64()
    );
    telling
}

/// Byte strings to look for, each with a tag, found in one pass over a haystack: the first
/// byte picks the candidates (a debug build's naive search over every needle is too slow for
/// megabytes of data folders).
struct Needles {
    by_first: Vec<Vec<(Vec<u8>, usize)>>,
}

impl Needles {
    fn new(needles: impl IntoIterator<Item = (Vec<u8>, usize)>) -> Needles {
        let mut by_first = vec![Vec::new(); 256];
        for (needle, tag) in needles {
            if let Some(&first) = needle.first() {
                by_first[usize::from(first)].push((needle, tag));
            }
        }
        Needles { by_first }
    }

    /// The tags of the needles in `haystack`.
    fn found(&self, haystack: &[u8]) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        for (at, &byte) in haystack.iter().enumerate() {
            for (needle, tag) in &self.by_first[usize::from(byte)] {
                if haystack[at..].starts_with(needle) {
                    out.insert(*tag);
                }
            }
        }
        out
    }
}

fn write_tip(
    phone: &mut Phone,
    index: usize,
    code: &str,
    today: Date,
    now: OffsetDateTime,
    rng: &mut ChaCha20Rng,
) -> String {
    let mut attachments = Vec::new();
    if WITH_ATTACHMENT.contains(&index) {
        let mut file = vec![0u8; 20_000];
        rng.fill_bytes(&mut file);
        file[..4].copy_from_slice(b"RIFF");
        file[8..12].copy_from_slice(b"WAVE");
        let mut prepared =
            PreparedAttachment::prepare(&file, None, &AttachLimits::default()).unwrap();
        prepared.accept_residual_risks();
        attachments.push(prepared);
    }
    phone
        .device
        .submit_tip_with_attachments(
            TipDraft {
                category: TipCategory::Bribery,
                report: format!("เบาะแสที่ {index}: นายก อบต. เรียกรับเงิน"),
                date: now.date(),
                province: "TH-44".into(),
                district: "เมืองมหาสารคาม".into(),
                place: None,
                involved: vec![],
                member_code: MemberCode::parse(code).unwrap(),
                want_reply: true,
            },
            attachments,
            &AttachLimits::default(),
            today,
            rng,
            &Edit::new("tip", now),
        )
        .unwrap()
        .to_string()
}

/// A log line with the phone's id, numbers and time stamps made uniform: its shape.
fn shape(line: &str, phone: &Phone) -> String {
    let line = line
        .replace(&phone.id, "DEVICE")
        .replace(&hex::encode(phone.key), "DEVICE");
    let line = line.split_once(' ').map_or(line.as_str(), |(_, rest)| rest);
    line.chars()
        .map(|c| if c.is_ascii_digit() { '0' } else { c })
        .collect()
}

#[test]
fn with_cover_a_seized_relay_and_hq_cannot_tell_which_phones_tipped() {
    let telling = seized(true);
    assert!(
        telling.is_empty(),
        "with cover traffic, these tell the tippers apart:\n{}",
        telling.join("\n")
    );
}

#[test]
fn without_cover_the_same_seizure_finds_the_phones_that_tipped() {
    let telling = seized(false);
    assert!(
        telling
            .iter()
            .any(|t| t.starts_with("bytes up at its server, exchange 1")),
        "the tip's exchange is larger: {telling:#?}"
    );
    assert!(
        telling.iter().any(|t| t.starts_with("receipts:")),
        "a stored tip gives its receipt away: {telling:#?}"
    );
}

/// A leader's phone enrolled at HQ (`hq_data`) through `url`.
fn enrolled_phone(
    path: &Path,
    hq_data: &Path,
    url: &str,
    desk_key: &str,
    rng: &mut ChaCha20Rng,
) -> Device {
    let mut device = Device::open(
        path,
        StorageKey::generate(rng),
        &mut ChaCha20Rng::from_rng(&mut *rng).unwrap(),
    )
    .unwrap();
    device
        .enrol_http(
            &invite(hq_data, "TH-44", "leader", url, desk_key),
            &phakhi_tests::server::network_verifying_key(hq_data),
            None,
            rng,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    device
}

/// Writes a tip with a recording of `file_len` random bytes: its receipt, and the attachment
/// as the desk must write it out.
fn tip_with_evidence(
    device: &mut Device,
    code: &str,
    file_len: usize,
    rng: &mut ChaCha20Rng,
) -> (String, Vec<u8>) {
    let now = OffsetDateTime::now_utc();
    let today = Date::from_time(now.date()).unwrap();
    let mut file = vec![0u8; file_len];
    rng.fill_bytes(&mut file);
    file[..4].copy_from_slice(b"RIFF");
    file[8..12].copy_from_slice(b"WAVE");
    let mut prepared = PreparedAttachment::prepare(&file, None, &AttachLimits::default()).unwrap();
    prepared.accept_residual_risks();
    let expected = prepared.bytes().to_vec();
    let receipt = device
        .submit_tip_with_attachments(
            TipDraft {
                category: TipCategory::Bribery,
                report: "หลักฐานเสียง นายก อบต.".into(),
                date: now.date(),
                province: "TH-44".into(),
                district: "เมืองมหาสารคาม".into(),
                place: None,
                involved: vec![],
                member_code: MemberCode::parse(code).unwrap(),
                want_reply: false,
            },
            vec![prepared],
            &AttachLimits::default(),
            today,
            rng,
            &Edit::new("tip", now),
        )
        .unwrap()
        .to_string();
    (receipt, expected)
}

/// A phone at HQ behind a byte-counting proxy, with a tip and `file_len` bytes of evidence
/// written, and the desk that will open it.
struct EvidenceRun {
    dir: tempfile::TempDir,
    hq: ServerProcess,
    tap: Tap,
    desk_key: String,
    device: Device,
    receipt: String,
    /// The attachment as the desk must write it out.
    expected: Vec<u8>,
}

impl EvidenceRun {
    fn start(rng: &mut ChaCha20Rng, file_len: usize) -> EvidenceRun {
        let dir = tempfile::tempdir().unwrap();
        let hq_data = dir.path().join("hq");
        let hq = serve(&hq_data, &[]);
        let tap = Tap::start(&hq.url);
        let desk_dir = dir.path().join("desk").to_string_lossy().into_owned();
        let (desk_key, code) = desk_with_code(&desk_dir, "ผู้แจ้งเบาะแส");
        let mut device = enrolled_phone(
            &dir.path().join("phone.db"),
            &hq_data,
            &tap.url,
            &desk_key,
            rng,
        );
        let (receipt, expected) = tip_with_evidence(&mut device, &code, file_len, rng);
        assert_eq!(
            device.tips_waiting().unwrap(),
            1,
            "the tip waits for its slots"
        );
        EvidenceRun {
            dir,
            hq,
            tap,
            desk_key,
            device,
            receipt,
            expected,
        }
    }

    fn waiting(&self) -> bool {
        self.device.tips_waiting().unwrap() > 0 || !self.device.pending_chunks().unwrap().is_empty()
    }

    /// The desk pulls the tip and writes its evidence out, which must be the file as attached;
    /// then HQ stops. Returns what the desk's pull printed, and HQ's log.
    fn desk_puts_it_together(self) -> (String, String) {
        let path = |name: &str| self.dir.path().join(name).to_string_lossy().into_owned();
        let (hq_data, desk_dir) = (self.dir.path().join("hq"), path("desk"));
        let nk = phakhi_tests::server::network_key(&hq_data);
        let admin = invite(&hq_data, "TH-44", "admin", &self.hq.url, &self.desk_key);
        let enrolled = ok(&desk(&desk_dir, &["enroll", &admin, "--network-key", &nk]));
        assert!(enrolled.contains("enrolled"), "{enrolled}");
        let pulled = ok(&desk(&desk_dir, &["pull"]));
        assert!(pulled.contains("pulled 1 new tip(s)"), "{pulled}");
        let out = path("evidence");
        ok(&desk(
            &desk_dir,
            &["attachments", &self.receipt, "--out", &out],
        ));
        let written: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().collect();
        assert_eq!(written.len(), 1);
        assert_eq!(std::fs::read(written[0].path()).unwrap(), self.expected);
        drop(self.tap);
        let (exit, log) = self.hq.terminate();
        assert!(exit.success());
        // What a server stores never gives the receipt away: no stored envelope hashes to it.
        for (table, row) in all_rows(&hq_data) {
            for (_, _, blob) in row {
                if let Some(blob) = blob {
                    assert_ne!(
                        ReceiptId::of_envelope(&blob).to_string(),
                        self.receipt,
                        "{table} holds the tip's own envelope"
                    );
                }
            }
        }
        (pulled, log)
    }
}

/// A tip with evidence from a phone at HQ: the chunks trickle through the cover slots, a few
/// kilobytes per exchange, and the desk puts the tip and the file together from the slots. No
/// separate chunk upload happens, and the phone sends the same slots after it is done.
#[test]
fn evidence_trickles_through_the_slots_and_the_desk_puts_it_together() {
    let rng = &mut ChaCha20Rng::seed_from_u64(162);
    let mut run = EvidenceRun::start(rng, 30_000);
    let chunks = run.device.pending_chunks().unwrap().len();
    assert_eq!(chunks, 2, "a manifest and one data chunk");
    let mut exchanges = 0;
    while run.waiting() {
        exchanges += 1;
        assert!(exchanges <= 40, "the evidence never finished");
        run.tap.watch(Some(exchanges));
        run.device
            .sync_http(None, rng, OffsetDateTime::now_utc(), &mut |_, _| {})
            .unwrap();
        let upload = run
            .device
            .upload_chunks_http(
                None,
                &mut Pace::default(),
                rng,
                OffsetDateTime::now_utc(),
                &mut |_, _| {},
            )
            .unwrap();
        assert_eq!(
            upload.bytes_sent, 0,
            "no exchange of its own at the default pace"
        );
        run.tap.watch(None);
    }
    // One tip part, then 17 parts per chunk, two slots an exchange.
    assert_eq!(exchanges, (1 + 17 * chunks).div_ceil(SLOTS_PER_EXCHANGE));
    let (pulled, _) = run.desk_puts_it_together();
    // The desk says what the slots held: one tip, both chunks, and the one slot left over.
    let slots = exchanges * SLOTS_PER_EXCHANGE;
    let parts = 1 + 17 * chunks;
    for line in [
        format!(
            "opened {slots} cover slot(s): {parts} carried parts of tips or evidence, {} carried \
             nothing (cover, discarded)",
            slots - parts
        ),
        format!("put together 1 tip(s) and {chunks} evidence chunk(s) from their slots"),
    ] {
        assert!(pulled.contains(&line), "no {line:?} in:\n{pulled}");
    }
}

/// The member chose speed: the evidence leaves at once, in sync exchanges of its own right after
/// the scheduled one, each carrying as many slots as the link takes. It takes the same route as
/// every sync (HQ's log shows no other path, and HQ received no chunk), is sealed into the same
/// slots, and the desk puts it together the same way.
#[test]
fn fast_evidence_leaves_at_once_in_slots_on_the_sync_route() {
    let rng = &mut ChaCha20Rng::seed_from_u64(163);
    let mut run = EvidenceRun::start(rng, 250_000);
    run.device
        .set_evidence_pace(phakhi_core::device::EvidencePace::Fast)
        .unwrap();
    let chunks = run.device.pending_chunks().unwrap().len();
    assert_eq!(chunks, 5, "a manifest and four data chunks");
    run.tap.watch(Some(1));
    let synced = run
        .device
        .sync_http(None, rng, OffsetDateTime::now_utc(), &mut |_, _| {})
        .unwrap();
    assert_eq!(
        synced.tips_delivered, 1,
        "the tip leaves in the scheduled slots"
    );
    let mut pace = Pace::default();
    let mut reported = Vec::new();
    let upload = run
        .device
        .upload_chunks_http(
            None,
            &mut pace,
            rng,
            OffsetDateTime::now_utc(),
            &mut |report, total| reported.push((report.chunks_held, total)),
        )
        .unwrap();
    run.tap.watch(None);
    assert!(!run.waiting(), "everything left in one upload: {upload:?}");
    assert_eq!((upload.chunks_held, upload.left), (chunks, 0));
    assert!(
        upload.bytes_sent as usize >= (17 * chunks - 1) * phakhi_core::device::SLOT_BUCKET,
        "every part went in a slot: {upload:?}"
    );
    assert_eq!(reported.last(), Some(&(chunks, chunks)), "{reported:?}");
    assert!(
        reported.len() < (17 * chunks).div_ceil(SLOTS_PER_EXCHANGE),
        "faster than the scheduled slots: {} exchanges",
        reported.len()
    );
    let seen = run.tap.seen().remove(&1).unwrap();
    assert!(seen.up >= upload.bytes_sent, "{seen:?}");
    let (_, metrics) = phakhi_tests::server::get(&format!("{}/metrics", run.hq.url));
    assert!(
        metrics.contains("\nphakhi_chunks_received_total 0\n"),
        "no chunk arrived on the chunk route:\n{metrics}"
    );
    let (pulled, log) = run.desk_puts_it_together();
    assert!(
        pulled.contains(&format!(
            "put together 1 tip(s) and {chunks} evidence chunk(s)"
        )),
        "{pulled}"
    );
    assert!(
        log.contains("path=/v1/sync"),
        "requests are logged with their path"
    );
    assert!(
        !log.contains("/v1/chunks"),
        "no request named the chunk route:\n{log}"
    );
}

/// HQ behind the 2G link profile (`Profile::two_g`), with a tip desk, for the measurements.
struct TwoG {
    dir: tempfile::TempDir,
    hq: ServerProcess,
    link: phakhi_tests::badlink::BlockingBadLink,
    desk_key: String,
    code: String,
}

impl TwoG {
    fn start() -> TwoG {
        use phakhi_tests::badlink::{BlockingBadLink, Profile};
        let dir = tempfile::tempdir().unwrap();
        let hq = serve(&dir.path().join("hq"), &[]);
        let addr: std::net::SocketAddr = hq.url.trim_start_matches("http://").parse().unwrap();
        let link = BlockingBadLink::start(addr, Profile::two_g(), 2026).unwrap();
        let desk_dir = dir.path().join("desk");
        let (desk_key, code) = desk_with_code(&desk_dir.to_string_lossy(), "ผู้แจ้งเบาะแส");
        TwoG {
            dir,
            hq,
            link,
            desk_key,
            code,
        }
    }

    /// A phone enrolled at HQ through the link, with cover on or (a test build's setting) off.
    fn phone(&self, name: &str, cover: bool, rng: &mut ChaCha20Rng) -> Device {
        let url = format!("http://{}", self.link.addr());
        let path = self.dir.path().join(format!("{name}.db"));
        let hq_data = self.dir.path().join("hq");
        let mut device = enrolled_phone(&path, &hq_data, &url, &self.desk_key, rng);
        if !cover {
            device.switch_cover_off_for_tests().unwrap();
        }
        device
    }

    fn stop(self) {
        self.link.shutdown();
        let _ = self.hq.terminate();
    }
}

/// The cost of cover on the 2G profile, measured by hand (`cargo test --workspace --test e2e
/// cover::measure -- --ignored --nocapture`): two phones at one server, one with cover and one
/// without, each adding one record per sync through `Profile::two_g`, alternating, seven syncs
/// each; prints the medians of the sealed bytes each way and of the wall time. Nothing is
/// asserted on time.
/// Bytes up and down on the link, wall time and sealed request bytes of one sync.
type Sample = (u64, u64, Duration, usize);

#[test]
#[ignore = "a measurement for BENCHMARKS.md, run by hand"]
fn measure_cover_cost_over_2g() {
    let rng = &mut ChaCha20Rng::seed_from_u64(163);
    let two_g = TwoG::start();
    let (link, now) = (&two_g.link, OffsetDateTime::now_utc());
    let today = Date::from_time(now.date()).unwrap();
    let mut phones = Vec::new();
    for cover in [false, true] {
        let device = two_g.phone(&format!("phone{cover}"), cover, rng);
        phones.push((cover, device, Vec::new()));
    }
    for round in 0..8 {
        for (_, device, samples) in &mut phones {
            add_member(device, &format!("สมาชิก {round}"), today, now, rng);
            let before = link.stats();
            let started = Instant::now();
            // A cut connection is retried at once, as an app does; the time includes it.
            let report = loop {
                match device.sync_http(None, rng, OffsetDateTime::now_utc(), &mut |_, _| {}) {
                    Ok(report) => break report,
                    Err(_) => continue,
                }
            };
            let wall = started.elapsed();
            let after = link.stats();
            if round > 0 {
                samples.push((
                    after.bytes_up - before.bytes_up,
                    after.bytes_down - before.bytes_down,
                    wall,
                    report.bytes_sent,
                ));
            }
        }
    }
    for (cover, _, samples) in &phones {
        let med = |f: &dyn Fn(&Sample) -> u128| {
            let mut v: Vec<u128> = samples.iter().map(f).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        println!(
            "cover {}: over 2G, median of {} syncs: {} B up on the link, {} B down, sealed \
             request {} B, {} ms",
            if *cover { "on" } else { "off" },
            samples.len(),
            med(&|s| u128::from(s.0)),
            med(&|s| u128::from(s.1)),
            med(&|s| s.3 as u128),
            med(&|s| s.2.as_millis()),
        );
    }
    two_g.stop();
}

/// Evidence at the fast pace over the 2G profile, measured by hand (`cargo test --workspace
/// --test e2e cover::measure_fast -- --ignored --nocapture`): the same 196.6 KB recording sent
/// by a phone with cover off over the separate chunk route (the way before, the baseline) and by
/// a phone with cover on in fast exchanges of slots on the sync route, alternating, three times
/// each; prints the medians of the upload's wall time and of the bytes up on the link. Nothing
/// is asserted on time.
#[test]
#[ignore = "measurement over a slow simulated link: minutes"]
fn measure_fast_evidence_over_2g() {
    let rng = &mut ChaCha20Rng::seed_from_u64(164);
    let two_g = TwoG::start();
    let (link, code) = (&two_g.link, two_g.code.clone());
    let mut samples: BTreeMap<bool, Vec<(Duration, u64)>> = BTreeMap::new();
    for run in 0..6 {
        let cover = run % 2 == 1;
        let mut device = two_g.phone(&format!("phone{run}"), cover, rng);
        device
            .set_evidence_pace(phakhi_core::device::EvidencePace::Fast)
            .unwrap();
        tip_with_evidence(&mut device, &code, 196_600, rng);
        // The scheduled sync first, as the app makes it; only the evidence's upload is timed.
        while device
            .sync_http(None, rng, OffsetDateTime::now_utc(), &mut |_, _| {})
            .is_err()
        {}
        let (before, started) = (link.stats(), Instant::now());
        let mut pace = Pace::default();
        // When each answer came, and how many calls a cut link cost.
        let (mut answers, mut calls) = (Vec::new(), 0);
        // A cut connection is retried at once, as an app does; the time includes it.
        while !device.pending_chunks().unwrap().is_empty() {
            calls += 1;
            assert!(calls <= 100, "the upload never finished");
            let _ = device.upload_chunks_http(
                None,
                &mut pace,
                rng,
                OffsetDateTime::now_utc(),
                &mut |_, _| answers.push(started.elapsed().as_millis()),
            );
        }
        let up = link.stats().bytes_up - before.bytes_up;
        let down = link.stats().bytes_down - before.bytes_down;
        println!(
            "cover {}: {} ms, {up} B up, {down} B down, {calls} call(s), answers at {answers:?} ms",
            if cover {
                "on (slots)"
            } else {
                "off (chunk route)"
            },
            started.elapsed().as_millis()
        );
        samples
            .entry(cover)
            .or_default()
            .push((started.elapsed(), up));
    }
    let median = |v: &[(Duration, u64)]| {
        let mut times: Vec<Duration> = v.iter().map(|s| s.0).collect();
        let mut ups: Vec<u64> = v.iter().map(|s| s.1).collect();
        times.sort_unstable();
        ups.sort_unstable();
        (times[times.len() / 2], ups[ups.len() / 2])
    };
    let (route_time, route_up) = median(&samples[&false]);
    let (slots_time, slots_up) = median(&samples[&true]);
    println!(
        "fast evidence over 2G, 196.6 KB, median of 3: chunk route (cover off, baseline) {} ms, \
         {} B up; slots on the sync route {} ms, {} B up; {:.2}x the time, {:.2}x the bytes",
        route_time.as_millis(),
        route_up,
        slots_time.as_millis(),
        slots_up,
        slots_time.as_secs_f64() / route_time.as_secs_f64(),
        slots_up as f64 / route_up as f64,
    );
    two_g.stop();
}

/// Each province's figure in HQ's `phakhi report --format json`: the sealed slots it received.
fn slot_figures(data: &Path) -> BTreeMap<String, u64> {
    let json = ok(&[
        "report",
        "--data",
        &data.to_string_lossy(),
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    report["provinces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(p.get("tips").is_none(), "a server counts no tips: {p}");
            let slots = p["sealed_slots"]
                .as_u64()
                .unwrap_or_else(|| panic!("no sealed_slots in {p}"));
            (p["code"].as_str().unwrap().to_owned(), slots)
        })
        .collect()
}

/// A server counts what it can see: sealed slots, two per exchange of every phone. A phone that
/// tips (three tips) and a phone that only syncs, each alone in its province, make the same
/// figure after every exchange in `phakhi report` (JSON, CSV, table in both languages) and on
/// the dashboard, and the words say slots, not tips. Only the tip desk, which opens the slots,
/// counts tips: its pull says three, and how many slots it discarded as cover.
#[test]
fn a_phone_that_tips_and_one_that_does_not_make_the_same_server_figure_and_only_the_desk_counts_tips()
 {
    const TIPS: usize = 3;
    let rng = &mut ChaCha20Rng::seed_from_u64(164);
    let dir = tempfile::tempdir().unwrap();
    let hq_data = dir.path().join("hq");
    let desk_dir = dir.path().join("desk").to_string_lossy().into_owned();
    let hq = serve(&hq_data, &[]);
    let nk = phakhi_tests::server::network_key(&hq_data);
    let network = phakhi_tests::server::network_verifying_key(&hq_data);
    let (desk_key, code) = desk_with_code(&desk_dir, "ผู้แจ้งเบาะแส");
    // TH-44's phone tips; TH-40's only syncs.
    let mut phones = Vec::new();
    for province in ["TH-44", "TH-40"] {
        let mut device = Device::open(
            dir.path().join(format!("{province}.db")),
            StorageKey::generate(rng),
            &mut ChaCha20Rng::from_rng(&mut *rng).unwrap(),
        )
        .unwrap();
        device
            .enrol_http(
                &invite(&hq_data, province, "leader", &hq.url, &desk_key),
                &network,
                None,
                rng,
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        phones.push(device);
    }
    let now = OffsetDateTime::now_utc();
    let today = Date::from_time(now.date()).unwrap();
    for n in 0..TIPS {
        phones[0]
            .submit_tip(
                TipDraft {
                    category: TipCategory::Bribery,
                    report: format!("เบาะแสที่ {n}: นายก อบต. เรียกรับเงิน"),
                    date: now.date(),
                    province: "TH-44".into(),
                    district: "เมืองมหาสารคาม".into(),
                    place: None,
                    involved: vec![],
                    member_code: MemberCode::parse(&code).unwrap(),
                    want_reply: false,
                },
                today,
                rng,
                &Edit::new("tip", now),
            )
            .unwrap();
    }
    let mut exchanges = 0;
    while phones[0].tips_waiting().unwrap() > 0 {
        exchanges += 1;
        assert!(exchanges <= 10, "the tips never left");
        for phone in &mut phones {
            phone
                .sync_http(None, rng, OffsetDateTime::now_utc(), &mut |_, _| {})
                .unwrap();
        }
        let figures = slot_figures(&hq_data);
        assert_eq!(
            figures,
            BTreeMap::from([
                ("TH-40".to_owned(), (exchanges * SLOTS_PER_EXCHANGE) as u64),
                ("TH-44".to_owned(), (exchanges * SLOTS_PER_EXCHANGE) as u64),
            ]),
            "after exchange {exchanges}"
        );
    }
    // Each short tip fits one slot.
    assert_eq!(exchanges, TIPS.div_ceil(SLOTS_PER_EXCHANGE));
    let slots = exchanges * SLOTS_PER_EXCHANGE;
    let data = hq_data.to_string_lossy().into_owned();
    let csv = ok(&["report", "--data", &data, "--format", "csv"]);
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert!(!header.contains(&"tips"), "{csv}");
    let column = header.iter().position(|c| *c == "sealed_slots").unwrap();
    for row in csv.lines().skip(1).take_while(|l| !l.is_empty()) {
        assert_eq!(
            row.split(',').nth(column),
            Some(&*slots.to_string()),
            "{csv}"
        );
    }
    for (lang, label, note) in [
        (
            "en",
            "SEALED SLOTS",
            "only the tip desk knows how many are tips",
        ),
        ("th", "ซองปิดผนึก", "มีเพียงโต๊ะรับเบาะแสเท่านั้นที่รู้ว่ามีเบาะแสกี่เรื่อง"),
    ] {
        let table = ok(&["report", "--data", &data, "--lang", lang]);
        assert!(table.contains(label) && table.contains(note), "{table}");
        assert!(!table.contains("TIPS"), "{table}");
    }
    for (lang, label, note) in [
        (
            "en",
            "Sealed slots received",
            "only the tip desk knows how many are tips",
        ),
        (
            "th",
            "ซองปิดผนึกที่ได้รับ",
            "มีเพียงโต๊ะรับเบาะแสเท่านั้นที่รู้ว่ามีเบาะแสกี่เรื่อง",
        ),
    ] {
        for province in ["TH-44", "TH-40"] {
            let page = super::relay_last_sync::dashboard_page(
                &hq_data,
                &hq.url,
                &format!("/dashboard/province/{province}?lang={lang}"),
            );
            let figure = format!(
                "data-province=\"{province}\" data-figure=\"sealed_slots\" data-value=\"{slots}\""
            );
            assert!(page.contains(&figure), "{province} {lang}: no {figure}");
            assert!(page.contains(label) && page.contains(note), "{page}");
            assert!(!page.contains("Tips received") && !page.contains("เบาะแสที่ได้รับ"));
        }
    }

    ok(&desk(
        &desk_dir,
        &[
            "enroll",
            &invite(&hq_data, "TH-44", "admin", &hq.url, &desk_key),
            "--network-key",
            &nk,
        ],
    ));
    let pulled = ok(&desk(&desk_dir, &["pull"]));
    let all = phones.len() * slots;
    for line in [
        format!("pulled {TIPS} new tip(s); 0 already here"),
        format!(
            "opened {all} cover slot(s): {TIPS} carried parts of tips or evidence, {} carried \
             nothing (cover, discarded)",
            all - TIPS
        ),
        format!("put together {TIPS} tip(s) and 0 evidence chunk(s) from their slots"),
    ] {
        assert!(pulled.contains(&line), "no {line:?} in:\n{pulled}");
    }
    let listed = ok(&desk(&desk_dir, &["list"]));
    assert_eq!(listed.matches("นายก อบต.").count(), TIPS, "{listed}");
    let (exit, _) = hq.terminate();
    assert!(exit.success());
}
