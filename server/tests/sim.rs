//! Outages and lossy links on a simulated clock, in the style of quinn-proto's tests: no
//! socket, no real time. A phone (`phakhi_core::device::Device` on a real encrypted SQLite store
//! in a temporary folder) talks to a server in the same process (`exchange::answer_sealed` on a
//! real data folder) through a simulated link that can lose a request, lose an answer after the
//! server committed, deliver a request twice or late, and go down for days. Time is a number the
//! test advances; the link draws its losses from a seeded RNG, so every run of a seed is the
//! same run. Every case asserts what the server and the phone hold afterwards.
//!
//! The server's per-minute request limit reads the wall clock, so the simulated server gets a
//! limit no simulation reaches.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;

use phakhi_core::client::Route;
use phakhi_core::device::{Device, SyncReport, SyncStep};
use phakhi_core::model::{Date, Edit, Era, MemberRole, NewMember, ProvinceCode};
use phakhi_core::protocol::ErrorCode;
use phakhi_core::seal::{HqVerifyingKey, MemberCode, TipCategory, TipDraft};
use phakhi_core::store::StorageKey;
use phakhi_server::config::{Config, Limits};
use phakhi_server::db::{self, devices::Role};
use phakhi_server::exchange::answer_sealed;
use phakhi_server::invite::{InviteRequest, issue};
use phakhi_server::report::{self, Lang};
use phakhi_server::state::AppState;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The simulation's first moment (Unix seconds): 2026-11-20.
pub(super) const START: u64 = 1_795_132_800;
const HOUR: u64 = 60 * 60;
const DAY: u64 = 24 * HOUR;
pub(super) const PROVINCE: &str = "TH-44";

pub(super) fn at(unix: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap()).unwrap()
}

pub(super) fn th44() -> ProvinceCode {
    ProvinceCode::parse(PROVINCE).unwrap()
}

/// HQ, answering sealed requests in process at the simulated time.
pub(super) struct Hq {
    pub(super) dir: crate::tempdata::TempData,
    pub(super) state: AppState,
}

impl Hq {
    pub(super) fn start() -> Hq {
        let dir = crate::tempdata::TempData::new();
        let state = AppState::open(Config {
            data: dir.path().to_path_buf(),
            limits: Limits {
                requests_per_minute: 1_000_000,
                request_burst: 1_000_000,
                ..Limits::default()
            },
            ..Config::default()
        })
        .unwrap()
        .state;
        Hq { dir, state }
    }

    fn network_key(&self) -> HqVerifyingKey {
        let key = self.state.keys().verifying().unwrap();
        HqVerifyingKey::from_bytes(&key.to_bytes()).unwrap()
    }

    fn invite(&self, now: u64, rng: &mut StdRng) -> String {
        let request = InviteRequest {
            provinces: vec![PROVINCE.into()],
            role: Role::Leader,
            expires: "7d".into(),
            server_url: None,
            tip_desk_key: Some(hex::encode([7u8; 32])),
            server_key: None,
        };
        issue(self.state.config(), &request, now, rng).unwrap()
    }

    /// The server's answer to one request, or its refusal code.
    pub(super) fn answer(
        &self,
        route: Route,
        request: &[u8],
        now: u64,
    ) -> Result<Vec<u8>, ErrorCode> {
        answer_sealed(&self.state, route, request, now).map_err(|error| error.code())
    }

    /// Every row of every table of the data folder, hashed: what "changes nothing" is checked
    /// against.
    fn fingerprint(&self) -> [u8; 32] {
        let conn = db::open(self.dir.path()).unwrap();
        let mut tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        tables.retain(|name| !name.starts_with("sqlite_"));
        let mut hash = Sha256::new();
        for table in tables {
            hash.update(table.as_bytes());
            let mut statement = conn
                .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY 1"))
                .unwrap();
            let columns = statement.column_count();
            let mut rows = statement.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                for column in 0..columns {
                    hash.update(format!("{:?}", row.get_ref(column).unwrap()).as_bytes());
                }
            }
        }
        hash.finalize().into()
    }

    /// What HQ's report counts for the province: leader candidates by alias, and sealed slots
    /// (here tips, sent bare: see `Phone::enrolled`).
    fn figures(&self) -> (Vec<String>, u64) {
        let mut conn = db::open(self.dir.path()).unwrap();
        let tx = conn.transaction().unwrap();
        let dataset = report::collect(&tx, Lang::En, Era::Common).unwrap();
        let Some(province) = dataset.report.provinces.iter().find(|p| p.code == PROVINCE) else {
            return (Vec::new(), 0);
        };
        let mut aliases = dataset.details[PROVINCE].candidates.clone();
        aliases.sort();
        (aliases, province.sealed_slots)
    }
}

/// A phone with its own (possibly wrong) clock.
pub(super) struct Phone {
    pub(super) dir: crate::tempdata::TempData,
    pub(super) key: StorageKey,
    pub(super) device: Device,
    pub(super) rng: StdRng,
    /// Seconds the phone's clock is ahead of the true time (behind when negative).
    skew: i64,
}

impl Phone {
    /// A phone enrolled at HQ over a perfect link at `now`.
    pub(super) fn enrolled(hq: &Hq, now: u64, seed: u64) -> Phone {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = crate::tempdata::TempData::new();
        let key = StorageKey::generate(&mut rng);
        let device = Device::open(
            dir.path().join("phone.db"),
            key.clone(),
            &mut StdRng::seed_from_u64(seed ^ 0x5eed),
        )
        .unwrap();
        let mut phone = Phone {
            dir,
            key,
            device,
            rng,
            skew: 0,
        };
        let invite = hq.invite(now, &mut phone.rng);
        let (request, pending) = phone
            .device
            .enrol_request(&invite, &hq.network_key(), &mut phone.rng, now)
            .unwrap();
        let answer = hq.answer(Route::Enroll, &request, now).unwrap();
        phone
            .device
            .enrol_response(pending, &answer, &mut phone.rng, at(now))
            .unwrap();
        // These cases count the tips HQ holds once delivered: tips leave bare, not in cover slots
        // (with cover every exchange brings slots, and the seized-relay tests show what they hide).
        phone.device.switch_cover_off_for_tests().unwrap();
        phone
    }

    /// What the phone's clock says at the true time `now`.
    fn clock(&self, now: u64) -> u64 {
        now.checked_add_signed(self.skew).unwrap()
    }

    /// Closes the device and opens its store again, as after the app was killed.
    fn reopen(&mut self) {
        let device = Device::open(
            self.dir.path().join("phone.db"),
            self.key.clone(),
            &mut StdRng::seed_from_u64(self.rng.r#gen()),
        )
        .unwrap();
        self.device = device;
    }

    /// Records a leader candidate (Thai alias) in the province, offline.
    pub(super) fn record(&mut self, alias: &str, now: u64) {
        let edit = Edit::new("record", at(self.clock(now)));
        let joined = Date::from_ymd(2026, 11, 20).unwrap();
        self.device
            .edit_province(th44(), &mut self.rng, |p, rng| {
                p.add_member(
                    NewMember {
                        alias: alias.into(),
                        role: MemberRole::LeaderCandidate,
                        centre: None,
                        joined,
                    },
                    &edit,
                    &mut &mut *rng,
                )
            })
            .unwrap();
    }

    /// Seals a tip (Thai text) into the outbox, offline.
    fn tip(&mut self, text: &str, now: u64) {
        let edit = Edit::new("tip", at(self.clock(now)));
        let date = Date::from_ymd(2026, 11, 20).unwrap();
        let code = MemberCode::generate(&mut self.rng);
        self.device
            .submit_tip(
                TipDraft {
                    category: TipCategory::ProcurementFraud,
                    report: text.into(),
                    date: date.as_time(),
                    province: PROVINCE.into(),
                    district: "เมืองมหาสารคาม".into(),
                    place: None,
                    involved: vec![],
                    member_code: code,
                    want_reply: false,
                },
                date,
                &mut self.rng,
                &edit,
            )
            .unwrap();
    }

    /// The leader candidates the phone holds, by alias.
    pub(super) fn aliases(&mut self) -> Vec<String> {
        let mut aliases = self
            .device
            .province(th44(), &mut self.rng, |p| {
                p.members(false)
                    .into_iter()
                    .map(|m| m.alias)
                    .collect::<Vec<_>>()
            })
            .unwrap();
        aliases.sort();
        aliases
    }

    fn outbox(&self) -> usize {
        self.device.outbox().unwrap().len()
    }
}

/// What the link does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// The request reaches the server and its answer the phone.
    Deliver,
    /// The request never reaches the server.
    LoseRequest,
    /// The server answers (and committed); the answer never reaches the phone.
    LoseAnswer,
    /// The request reaches the server twice; the first answer reaches the phone.
    Duplicate,
    /// The request reaches the server this many seconds later, when the phone no longer waits.
    Delay(u64),
}

/// The simulated link between the phones and HQ.
struct Link {
    rng: StdRng,
    /// The chance that a request or its answer is lost.
    loss: f64,
    /// The chance that a delivered request is delivered twice, and that it is delivered late.
    duplicate: f64,
    delay: f64,
    /// Fates to use before drawing any (a scripted case).
    script: VecDeque<Fate>,
    /// Down until this moment.
    down_until: u64,
    /// Requests on their way late: when they arrive, and their bytes.
    late: Vec<(u64, Vec<u8>)>,
    /// Every request the server received, kept as an eavesdropper would.
    recorded: Vec<Vec<u8>>,
    /// What the server said to each duplicate and late delivery.
    stray_answers: Vec<Result<(), ErrorCode>>,
    lost: usize,
}

impl Link {
    fn perfect() -> Link {
        Link::lossy(0, 0.0)
    }

    fn lossy(seed: u64, loss: f64) -> Link {
        Link {
            rng: StdRng::seed_from_u64(seed),
            loss,
            duplicate: 0.0,
            delay: 0.0,
            script: VecDeque::new(),
            down_until: 0,
            late: Vec::new(),
            recorded: Vec::new(),
            stray_answers: Vec::new(),
            lost: 0,
        }
    }

    fn fate(&mut self, now: u64) -> Fate {
        if now < self.down_until {
            return Fate::LoseRequest;
        }
        if let Some(fate) = self.script.pop_front() {
            return fate;
        }
        // Drawn in a fixed order, so a seed always makes the same run.
        let (lost, which, twice, late) = (
            self.rng.gen_bool(self.loss),
            self.rng.gen_bool(0.5),
            self.rng.gen_bool(self.duplicate),
            self.rng.gen_bool(self.delay),
        );
        match (lost, which, twice, late) {
            (true, true, ..) => Fate::LoseRequest,
            (true, false, ..) => Fate::LoseAnswer,
            (false, _, true, _) => Fate::Duplicate,
            (false, _, false, true) => Fate::Delay(self.rng.gen_range(60..3 * HOUR)),
            (false, _, false, false) => Fate::Deliver,
        }
    }
}

/// Why an exchange ended without completing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Lost,
    Refused(ErrorCode),
}

/// The server, the link and the true time.
struct Sim {
    now: u64,
    hq: Hq,
    link: Link,
}

impl Sim {
    fn new(link: Link) -> Sim {
        Sim {
            now: START,
            hq: Hq::start(),
            link,
        }
    }

    /// Moves the true time on; requests due on the way reach the server (whose answers go
    /// nowhere: the phone stopped waiting for them).
    fn advance(&mut self, secs: u64) {
        self.now += secs;
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.link.late)
            .into_iter()
            .partition(|(when, _)| *when <= now);
        self.link.late = later;
        for (when, request) in due {
            let answer = self.hq.answer(Route::Sync, &request, when);
            self.link.stray_answers.push(answer.map(drop));
        }
    }

    /// Carries one request over the link: the answer, or why none came.
    fn carry(&mut self, request: &[u8]) -> Result<Vec<u8>, Ended> {
        let fate = self.link.fate(self.now);
        if fate == Fate::LoseRequest {
            self.link.lost += 1;
            return Err(Ended::Lost);
        }
        if let Fate::Delay(secs) = fate {
            self.link.late.push((self.now + secs, request.to_vec()));
            self.link.lost += 1;
            return Err(Ended::Lost);
        }
        self.link.recorded.push(request.to_vec());
        let answer = self.hq.answer(Route::Sync, request, self.now);
        if fate == Fate::Duplicate {
            let again = self.hq.answer(Route::Sync, request, self.now);
            self.link.stray_answers.push(again.map(drop));
        }
        let answer = answer.map_err(Ended::Refused)?;
        if fate == Fate::LoseAnswer {
            self.link.lost += 1;
            return Err(Ended::Lost);
        }
        Ok(answer)
    }

    /// One whole sync exchange of `phone` (one or two round trips) over the link.
    fn sync(&mut self, phone: &mut Phone) -> Result<SyncReport, Ended> {
        let mut session = phone.device.begin_sync(&mut phone.rng).unwrap();
        loop {
            let clock = phone.clock(self.now);
            let request = phone
                .device
                .sync_request(&mut session, &mut phone.rng, clock)
                .unwrap();
            let answer = match self.carry(&request) {
                Ok(answer) => answer,
                Err(ended) => {
                    phone.device.sync_lost(session).unwrap();
                    return Err(ended);
                }
            };
            let step = phone
                .device
                .sync_response(&mut session, &answer, &mut phone.rng, at(clock))
                .unwrap();
            match step {
                SyncStep::Again => continue,
                SyncStep::Done(report) => return Ok(report),
            }
        }
    }

    /// Syncs `phone` every `every` seconds until an exchange completes with nothing more
    /// waiting; returns how many exchanges that took, or `None` past `bound`.
    fn sync_until_quiet(&mut self, phone: &mut Phone, every: u64, bound: usize) -> Option<usize> {
        for attempt in 1..=bound {
            match self.sync(phone) {
                Ok(report) if !report.more_waiting => return Some(attempt),
                Ok(_) | Err(Ended::Lost) => {}
                Err(Ended::Refused(code)) => panic!("refused on a sound link: {code:?}"),
            }
            self.advance(every);
        }
        None
    }
}

pub(super) fn alias(n: usize) -> String {
    format!("ผู้สมัครที่ {n} มหาสารคาม")
}

#[test]
fn a_phone_offline_for_days_keeps_every_record_and_delivers_them_when_the_link_returns() {
    let mut sim = Sim::new(Link::perfect());
    let mut phone = Phone::enrolled(&sim.hq, sim.now, 1);
    let before = sim.hq.fingerprint();
    // Five days without a link: three records and a tip a day, a sync tried every six hours.
    sim.link.down_until = sim.now + 5 * DAY;
    let mut expected = Vec::new();
    for day in 0..5 {
        for n in 0..3 {
            let name = alias(day * 3 + n);
            phone.record(&name, sim.now);
            expected.push(name);
        }
        phone.tip(&format!("แจ้งเบาะแสวันที่ {day}: ฮั้วประมูลถนน"), sim.now);
        for _ in 0..4 {
            assert_eq!(sim.sync(&mut phone).unwrap_err(), Ended::Lost);
            sim.advance(6 * HOUR);
        }
    }
    expected.sort();
    assert_eq!(
        sim.hq.fingerprint(),
        before,
        "nothing reached HQ while down"
    );
    // The app was killed meanwhile: everything is in the phone's store.
    phone.reopen();
    assert_eq!(phone.aliases(), expected);
    assert_eq!(phone.outbox(), 5);

    // The link is back.
    assert!(sim.now >= sim.link.down_until);
    let exchanges = sim.sync_until_quiet(&mut phone, HOUR, 4).unwrap();
    assert!(exchanges <= 2, "{exchanges} exchanges");
    assert_eq!(sim.hq.figures(), (expected.clone(), 5));
    assert_eq!(phone.outbox(), 0);
    // Thai text round-trips: a second phone gets every alias as it was typed.
    let mut other = Phone::enrolled(&sim.hq, sim.now, 2);
    sim.sync_until_quiet(&mut other, HOUR, 2).unwrap();
    assert_eq!(other.aliases(), expected);
}

#[test]
fn an_answer_lost_after_the_server_committed_neither_duplicates_nor_loses_records() {
    let mut sim = Sim::new(Link::perfect());
    let mut phone = Phone::enrolled(&sim.hq, sim.now, 3);
    // A first exchange sets up the sync state; then records and a tip, offline.
    phone.record(&alias(0), sim.now);
    sim.sync_until_quiet(&mut phone, HOUR, 2).unwrap();
    let expected: Vec<String> = {
        let mut names: Vec<String> = (0..4).map(alias).collect();
        names.sort();
        names
    };
    for name in expected.iter().skip(1) {
        phone.record(name, sim.now);
    }
    phone.tip("เงินทอนจากโครงการขุดลอกคลอง", sim.now);

    // The answer of the first round is lost after HQ committed it.
    sim.link.script.push_back(Fate::LoseAnswer);
    assert_eq!(sim.sync(&mut phone).unwrap_err(), Ended::Lost);
    assert_eq!(sim.hq.figures(), (expected.clone(), 1), "HQ committed");
    assert_eq!(phone.outbox(), 1, "the phone does not know it yet");
    // The retry's first answer is lost too.
    sim.advance(HOUR);
    sim.link.script.push_back(Fate::LoseAnswer);
    assert_eq!(sim.sync(&mut phone).unwrap_err(), Ended::Lost);
    assert_eq!(sim.hq.figures(), (expected.clone(), 1), "still once");
    assert_eq!(phone.outbox(), 1);

    sim.advance(HOUR);
    sim.sync_until_quiet(&mut phone, HOUR, 3).unwrap();
    assert_eq!(sim.hq.figures(), (expected.clone(), 1), "once, not twice");
    assert_eq!(phone.outbox(), 0);
    assert_eq!(phone.aliases(), expected);
}

#[test]
fn a_request_replayed_later_is_refused_and_changes_nothing() {
    let mut sim = Sim::new(Link::perfect());
    let mut phone = Phone::enrolled(&sim.hq, sim.now, 4);
    phone.record(&alias(0), sim.now);
    phone.tip("ผู้ใหญ่บ้านเรียกรับเงิน", sim.now);
    sim.sync_until_quiet(&mut phone, HOUR, 2).unwrap();
    let recorded = sim.link.recorded.clone();
    assert!(!recorded.is_empty());
    let settled = sim.hq.fingerprint();

    // The same bytes at once (a link that delivers twice), an hour later, and a day and a
    // half later (past the clock window, where the replay guard need not remember it).
    for (later, code) in [
        (0, ErrorCode::Replayed),
        (HOUR, ErrorCode::Replayed),
        (DAY + DAY / 2, ErrorCode::ClockSkew),
    ] {
        sim.advance(later);
        for request in &recorded {
            assert_eq!(
                sim.hq.answer(Route::Sync, request, sim.now).unwrap_err(),
                code
            );
            // Handed in as a carried bundle, the 14-day window does not let it in either.
            assert_eq!(
                sim.hq.answer(Route::Bundle, request, sim.now).unwrap_err(),
                ErrorCode::Replayed
            );
        }
        assert_eq!(sim.hq.fingerprint(), settled, "{later} s later");
    }
    assert_eq!(sim.hq.figures(), (vec![alias(0)], 1));
}

#[test]
fn a_clock_skewed_phone_gets_the_documented_answer() {
    let mut sim = Sim::new(Link::perfect());
    let mut phone = Phone::enrolled(&sim.hq, sim.now, 5);
    let mut expected = Vec::new();
    // Within the window (one day either way): answered.
    let window = 23 * HOUR as i64;
    for (n, skew) in [window, -window].into_iter().enumerate() {
        phone.skew = skew;
        phone.record(&alias(n), sim.now);
        expected.push(alias(n));
        sim.sync_until_quiet(&mut phone, HOUR, 2).unwrap();
        assert_eq!(sim.hq.figures().0, expected);
        sim.advance(HOUR);
    }
    // Beyond it, ahead or behind: `clock_skew`, and nothing changes.
    phone.record(&alias(2), sim.now);
    phone.tip("รับสินบนใบอนุญาตก่อสร้าง", sim.now);
    let settled = sim.hq.fingerprint();
    for skew in [25 * HOUR as i64, -(25 * HOUR as i64), 30 * DAY as i64] {
        phone.skew = skew;
        assert_eq!(
            sim.sync(&mut phone).unwrap_err(),
            Ended::Refused(ErrorCode::ClockSkew)
        );
        assert_eq!(sim.hq.fingerprint(), settled, "skew {skew}");
    }
    assert_eq!(phone.outbox(), 1, "the phone keeps its tip");
    // Once its clock is set right, everything goes.
    phone.skew = 0;
    sim.sync_until_quiet(&mut phone, HOUR, 2).unwrap();
    expected.push(alias(2));
    expected.sort();
    assert_eq!(sim.hq.figures(), (expected, 1));
    assert_eq!(phone.outbox(), 0);
}

/// What one seed's run over the lossy link saw.
#[derive(Default)]
struct LossyRun {
    /// Requests and answers the link lost (a late request counts as lost to the phone).
    lost: usize,
    /// Requests the server saw twice, and requests it saw late.
    replays_refused: usize,
    late_answered: usize,
    /// Exchanges the writer and the reader took to converge at the end.
    exchanges: (usize, usize),
}

/// A day of work over a link that loses 30 % of requests or answers, delivers 5 % twice and
/// 5 % late: a writer records eight leader candidates and three tips, a reader reads them.
fn lossy_run(seed: u64) -> LossyRun {
    const BOUND: usize = 40;
    let mut link = Link::lossy(seed, 0.3);
    link.duplicate = 0.05;
    link.delay = 0.05;
    let mut sim = Sim::new(link);
    let mut writer = Phone::enrolled(&sim.hq, sim.now, seed * 2);
    let mut reader = Phone::enrolled(&sim.hq, sim.now, seed * 2 + 1);
    let mut expected = Vec::new();
    // Records and tips, and a sync attempt of each phone after each record.
    for n in 0..8 {
        writer.record(&alias(n), sim.now);
        expected.push(alias(n));
        if n % 3 == 0 {
            writer.tip(&format!("เบาะแสที่ {n}"), sim.now);
        }
        for phone in [&mut writer, &mut reader] {
            let attempt = sim.sync(phone);
            assert!(
                !matches!(attempt, Err(Ended::Refused(_))),
                "seed {seed}: {attempt:?}"
            );
        }
        sim.advance(HOUR);
    }
    expected.sort();
    let writer_exchanges = sim.sync_until_quiet(&mut writer, 10 * 60, BOUND);
    let reader_exchanges = sim.sync_until_quiet(&mut reader, 10 * 60, BOUND);
    let (Some(w), Some(r)) = (writer_exchanges, reader_exchanges) else {
        panic!("seed {seed}: did not converge within {BOUND} exchanges");
    };
    // Late copies still on their way arrive; they add nothing.
    sim.advance(4 * HOUR);
    assert!(sim.link.late.is_empty());
    assert_eq!(sim.hq.figures(), (expected.clone(), 3), "seed {seed}");
    assert_eq!(writer.outbox(), 0, "seed {seed}");
    assert_eq!(writer.aliases(), expected, "seed {seed}");
    assert_eq!(reader.aliases(), expected, "seed {seed}");
    // Every stray copy was answered (a late one) or refused as a replay (a second one).
    let mut run = LossyRun {
        lost: sim.link.lost,
        exchanges: (w, r),
        ..LossyRun::default()
    };
    for answer in &sim.link.stray_answers {
        match answer {
            Ok(()) => run.late_answered += 1,
            Err(ErrorCode::Replayed) => run.replays_refused += 1,
            Err(other) => panic!("seed {seed}: a stray copy was refused {other:?}"),
        }
    }
    run
}

#[test]
fn a_lossy_link_converges_within_a_bounded_number_of_exchanges_for_every_seed() {
    // The seeds run side by side: each has its own server, phones and link.
    let runs: Vec<(u64, LossyRun)> = std::thread::scope(|scope| {
        let handles: Vec<_> = [11, 12, 13, 14, 15, 16]
            .into_iter()
            .map(|seed| (seed, scope.spawn(move || lossy_run(seed))))
            .collect();
        handles
            .into_iter()
            .map(|(seed, handle)| (seed, handle.join().unwrap()))
            .collect()
    });
    for (seed, run) in &runs {
        eprintln!(
            "seed {seed}: {} lost, {} refused as replays, {} answered late; converged in {} + {} \
             exchanges",
            run.lost, run.replays_refused, run.late_answered, run.exchanges.0, run.exchanges.1
        );
        assert!(run.lost > 0, "seed {seed}: the link lost nothing");
    }
    // Across the seeds the link also delivered twice and late, so both were exercised.
    assert!(runs.iter().any(|(_, run)| run.replays_refused > 0));
    assert!(runs.iter().any(|(_, run)| run.late_answered > 0));
}
