//! A phone new to a province gets the bytes the server stores for it, and stores them as they
//! came: no `save()` for that phone at the server, no re-encoding at the phone. The server is the
//! library's in-process entry (`exchange::answer_sealed` on a real data folder), the phones are
//! `phakhi_core::device::Device`s on real encrypted stores; what each side stores is read back
//! from its SQLite file.

#![allow(clippy::unwrap_used)]

use automerge::AutoCommit;
use phakhi_core::client::Route;
use phakhi_core::device::{Device, SyncStep};
use phakhi_core::model::{Date, Edit, MemberRole, NewMember, ProvinceCode};
use phakhi_core::seal::HqVerifyingKey;
use phakhi_core::store::{StorageKey, Store, StoredRow};
use phakhi_server::config::{Config, Limits};
use phakhi_server::db::{self, devices::Role, documents};
use phakhi_server::exchange::answer_sealed;
use phakhi_server::invite::{InviteRequest, issue};
use phakhi_server::state::AppState;
use rand::SeedableRng;
use rand::rngs::StdRng;
use time::OffsetDateTime;

/// 2026-11-20, the moment every exchange here happens at.
const NOW: u64 = 1_795_132_800;
const PROVINCE: &str = "TH-44";
const DOC: &str = "province/TH-44";

fn th44() -> ProvinceCode {
    ProvinceCode::parse(PROVINCE).unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(i64::try_from(NOW).unwrap()).unwrap()
}

struct Hq {
    dir: tempfile::TempDir,
    state: AppState,
}

impl Hq {
    fn start() -> Hq {
        let dir = tempfile::tempdir().unwrap();
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

    /// The province's stored chunks, in order.
    fn stored(&self) -> Vec<Vec<u8>> {
        let conn = db::open(self.dir.path()).unwrap();
        documents::load(&conn, DOC)
            .unwrap()
            .expect("the province is stored")
    }
}

struct Phone {
    dir: tempfile::TempDir,
    key: StorageKey,
    device: Device,
    rng: StdRng,
}

impl Phone {
    fn enrolled(hq: &Hq, seed: u64) -> Phone {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let key = StorageKey::generate(&mut rng);
        let mut device = Device::open(
            dir.path().join("phone.db"),
            key.clone(),
            &mut StdRng::seed_from_u64(seed ^ 0x5eed),
        )
        .unwrap();
        let invite = issue(
            hq.state.config(),
            &InviteRequest {
                provinces: vec![PROVINCE.into()],
                role: Role::Leader,
                expires: "7d".into(),
                server_url: None,
                tip_desk_key: Some(hex::encode([7u8; 32])),
                server_key: None,
            },
            NOW,
            &mut rng,
        )
        .unwrap();
        let network = hq.state.keys().verifying().unwrap().to_bytes();
        let network = HqVerifyingKey::from_bytes(&network).unwrap();
        let (request, pending) = device
            .enrol_request(&invite, &network, &mut rng, NOW)
            .unwrap();
        let answer = answer_sealed(&hq.state, Route::Enroll, &request, NOW).unwrap();
        device
            .enrol_response(pending, &answer, &mut rng, now())
            .unwrap();
        device.switch_cover_off_for_tests().unwrap();
        Phone {
            dir,
            key,
            device,
            rng,
        }
    }

    /// Records a leader candidate (Thai alias), offline.
    fn record(&mut self, alias: &str) {
        let edit = Edit::new("record", now());
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

    /// One whole exchange with HQ; how many round trips it took.
    fn sync(&mut self, hq: &Hq) -> u32 {
        let mut session = self.device.begin_sync(&mut self.rng).unwrap();
        let mut rounds = 0;
        loop {
            rounds += 1;
            let request = self
                .device
                .sync_request(&mut session, &mut self.rng, NOW)
                .unwrap();
            let answer = answer_sealed(&hq.state, Route::Sync, &request, NOW).unwrap();
            match self
                .device
                .sync_response(&mut session, &answer, &mut self.rng, now())
                .unwrap()
            {
                SyncStep::Again => continue,
                SyncStep::Done(report) => {
                    assert!(report.doc_errors.is_empty(), "{:?}", report.doc_errors);
                    return rounds;
                }
            }
        }
    }

    fn aliases(&mut self) -> Vec<String> {
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

    /// The rows the phone's store holds for the province, read from its file once the app is
    /// closed.
    fn into_rows(self) -> Vec<StoredRow> {
        let path = self.dir.path().join("phone.db");
        drop(self.device);
        let store = Store::open(&path, self.key, StdRng::seed_from_u64(1)).unwrap();
        store
            .doc_rows(DOC)
            .unwrap()
            .expect("the phone stores the province")
    }
}

fn alias(n: usize) -> String {
    format!("ผู้สมัครที่ {n} มหาสารคาม")
}

/// HQ holding the province as three syncs of one phone left it: its first upload and two
/// increments. Returns HQ, that phone and the aliases recorded.
fn province_in_three_chunks() -> (Hq, Phone, Vec<String>) {
    let hq = Hq::start();
    let mut first = Phone::enrolled(&hq, 1);
    let mut aliases = Vec::new();
    for round in 0..3 {
        for n in 0..3 {
            let name = alias(round * 3 + n);
            first.record(&name);
            aliases.push(name);
        }
        first.sync(&hq);
    }
    aliases.sort();
    (hq, first, aliases)
}

#[test]
fn a_phone_new_to_a_province_stores_the_bytes_the_server_stores() {
    let (hq, _first, aliases) = province_in_three_chunks();
    let stored = hq.stored();
    assert!(
        stored.len() >= 2,
        "HQ stores the province in {} chunk",
        stored.len()
    );
    let stored = stored.concat();
    // What the server stores is not what `save()` makes of the document: a server that encodes
    // the document for the phone cannot send these bytes.
    assert_ne!(AutoCommit::load(&stored).unwrap().save(), stored);

    let mut second = Phone::enrolled(&hq, 2);
    second.sync(&hq);
    assert_eq!(second.aliases(), aliases);
    let rows = second.into_rows();
    assert!(
        rows == [StoredRow::Snapshot(stored.clone())],
        "the phone stores {rows:?}, not the {} bytes HQ stores",
        stored.len()
    );
}

#[test]
fn a_phone_that_recorded_before_its_first_sync_gets_the_stored_bytes_of_the_province_before_its_push()
 {
    let (hq, mut first, mut aliases) = province_in_three_chunks();
    let before = hq.stored().concat();
    // A phone that recorded two candidates before it ever synced: its request changes the
    // province, so the document the server answers from no longer has the heads its stored
    // bytes reach. The answer is the stored bytes of the province as it was before the request
    // (the phone holds the rest: its own records).
    let mut late = Phone::enrolled(&hq, 3);
    for n in [100, 101] {
        late.record(&alias(n));
        aliases.push(alias(n));
    }
    aliases.sort();
    // Round 1 carries its heads only (it shares none with HQ yet); HQ lacks them and asks for
    // what follows its own heads; round 2 carries the phone's whole province and gets HQ's.
    assert_eq!(late.sync(&hq), 2);
    assert_eq!(late.aliases(), aliases);
    // HQ took the phone's records, and the first phone gets them.
    first.sync(&hq);
    assert_eq!(first.aliases(), aliases);
    // Stored: HQ's bytes as they came, then one row of the phone's own records on top.
    let rows = late.into_rows();
    assert!(
        matches!(
            rows.as_slice(),
            [StoredRow::Snapshot(bytes), StoredRow::Increment(_)] if *bytes == before
        ),
        "the phone stores {rows:?}, not the {} bytes HQ stored before its push and its own \
         records",
        before.len()
    );
}
