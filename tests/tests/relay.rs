//! A provincial relay and HQ as real `phakhi` processes on loopback. The relay joins HQ, serves
//! its phones while HQ is down (they enrol with HQ-signed invites, record in Thai and send a
//! sealed tip), and catches up when HQ returns: HQ then holds the same documents and the tip,
//! knows the phones, and its revocation reaches the relay. A link to HQ that cuts connections
//! part-way costs at most the document in flight, never the ones already finished.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use automerge::{AutoCommit, ChangeHash};
use phakhi_core::protocol::relay::{self, UpstreamRequest};
use phakhi_core::seal::{MemberCode, StaticKeyPair};
use phakhi_tests::badlink::{BlockingBadLink, Profile};
use phakhi_tests::cluster::{join_relay, relay_phone_invite};
use phakhi_tests::server::{
    Device, Failure, ServerProcess, admin, invite, joined_relay_key, network_key, phakhi_bin,
    relay_join, wait_for,
};
use rand_core::OsRng;

const PASSPHRASE: &str = "รหัสผ่าน-ของ-โทรศัพท์";
/// How long the relay may take to catch up once HQ answers (it retries within seconds).
const CATCH_UP: Duration = Duration::from_secs(90);

/// A config file with rate limits high enough for a test's bursts.
fn config(dir: &Path) -> String {
    let path = dir.join("phakhi.toml");
    std::fs::write(
        &path,
        "[limits]\nrequests_per_minute = 100000\nrequest_burst = 100000\n",
    )
    .expect("config");
    path.display().to_string()
}

/// A tip-desk public key (tests need a real X25519 key to seal tips to).
fn tip_desk_key() -> String {
    hex::encode(StaticKeyPair::generate(&mut OsRng).public().as_bytes())
}

const DESK_PASSPHRASE: &str = "desk passphrase ภาคี";

/// `phakhi tipdesk --dir <dir> --passphrase-env TD <args>`, which must succeed; its stdout.
fn desk(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(phakhi_bin())
        .args(["tipdesk", "--dir"])
        .arg(dir)
        .args(["--passphrase-env", "TD"])
        .args(args)
        .env("TD", DESK_PASSPHRASE)
        .stdin(Stdio::null())
        .output()
        .expect("run phakhi tipdesk");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "phakhi tipdesk {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `phakhi device --store <store> --passphrase-env PW <args>`, with the member code in `MC`.
fn device(store: &Path, args: &[&str], code: Option<&str>) -> Output {
    let mut command = Command::new(phakhi_bin());
    command
        .args(["device", "--store"])
        .arg(store)
        .args(["--passphrase-env", "PW"])
        .args(args)
        .env("PW", PASSPHRASE)
        .stdin(Stdio::null());
    if let Some(code) = code {
        command.env("MC", code);
    }
    phakhi_tests::cli::cover_setting(&mut command);
    command.output().expect("run phakhi device")
}

fn ok(store: &Path, args: &[&str], code: Option<&str>) -> String {
    let out = device(store, args, code);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "phakhi device {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The database of a data folder (the server may be running: WAL lets both in).
macro_rules! open {
    ($data:expr) => {
        phakhi_server::db::open_existing($data)
            .expect("open the data folder")
            .expect("a database")
    };
}

/// Heads of every stored document of a data folder, by name.
fn all_heads(data: &Path) -> BTreeMap<String, Vec<ChangeHash>> {
    let conn = open!(data);
    let mut out = BTreeMap::new();
    for name in phakhi_server::db::documents::names(&conn).expect("names") {
        let chunks = phakhi_server::db::documents::load(&conn, &name)
            .expect("load")
            .expect("stored");
        let mut chunks = chunks.into_iter();
        let mut doc = AutoCommit::load(&chunks.next().expect("a chunk")).expect("a document");
        for chunk in chunks {
            doc.load_incremental(&chunk).expect("a chunk");
        }
        let mut heads = doc.get_heads();
        heads.sort();
        out.insert(name, heads);
    }
    out
}

/// Ids (hex) of the stored mailbox envelopes of a kind (1 tip, 2 reply).
fn mailbox_ids(data: &Path, kind: i64) -> Vec<String> {
    let conn = open!(data);
    let mut statement = conn
        .prepare("SELECT hex(id) FROM mailbox WHERE kind = ?1 ORDER BY seq")
        .expect("query");
    statement
        .query_map([kind], |row| row.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("read")
}

fn acked_ids(data: &Path) -> Vec<String> {
    let conn = open!(data);
    let mut statement = conn
        .prepare("SELECT hex(id) FROM mailbox_acked")
        .expect("query");
    statement
        .query_map([], |row| row.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("read")
}

fn devices(data: &Path) -> Vec<phakhi_server::db::devices::Device> {
    phakhi_server::db::devices::list(&open!(data)).expect("devices")
}

fn upstream(relay: &ServerProcess) -> serde_json::Value {
    relay.health()["upstream"].clone()
}

#[test]
fn a_relay_serves_phones_while_hq_is_down_and_catches_up_when_it_returns() {
    // It counts or opens the tips the servers hold: tips leave bare, without cover slots.
    phakhi_tests::cli::send_tips_bare();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(tmp.path());
    let (hq_dir, relay_dir) = (tmp.path().join("hq"), tmp.path().join("relay"));
    // The investigators' tip desk, whose public key the invites pin.
    let desk_dir = tmp.path().join("desk");
    desk(&desk_dir, &["init"]);
    let tip_desk = std::fs::read_to_string(desk_dir.join("tipdesk.pub"))
        .expect("tip desk key")
        .trim()
        .to_owned();

    // HQ, and the relay joining it.
    let hq = ServerProcess::start(&hq_dir, &["--config", &config]);
    let hq_port = hq.addr.port();
    let nk = network_key(&hq_dir);
    let phone_invite = invite(&hq_dir, "TH-44", "leader", &hq.url, &tip_desk);
    let refused = relay_join(&relay_dir, &phone_invite, &nk);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not a relay"),
        "{refused:?}"
    );
    let relay_invite = invite(&hq_dir, "TH-44", "relay", &hq.url, &tip_desk);
    let joined = relay_join(&relay_dir, &relay_invite, &nk);
    assert!(joined.status.success(), "{joined:?}");
    assert!(String::from_utf8_lossy(&joined.stdout).contains("joined HQ at"));
    let relay_key = joined_relay_key(&joined);
    let again = relay_join(&relay_dir, &relay_invite, &nk);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already joined"),
        "{again:?}"
    );

    // HQ goes down; joining now says what to do.
    let (exit, _) = hq.terminate();
    assert!(exit.success());
    let late = relay_join(
        &tmp.path().join("late-relay"),
        &invite(
            &hq_dir,
            "TH-40",
            "relay",
            &format!("http://127.0.0.1:{hq_port}"),
            &tip_desk,
        ),
        &nk,
    );
    let late_err = String::from_utf8_lossy(&late.stderr);
    assert!(
        late_err.contains("cannot reach HQ") && late_err.contains("run `phakhi relay join` again"),
        "{late_err}"
    );

    // The relay starts with HQ down (no --hq-key: the join recorded HQ's verifying key).
    let relay = ServerProcess::start_relay(&relay_dir, None, 1, 2, &["--config", &config]);
    assert_eq!(relay.health()["role"], "relay");

    // Two phones enrol at the relay with HQ-signed invites made while HQ is stopped.
    let (a, b) = (tmp.path().join("a.store"), tmp.path().join("b.store"));
    let invite_a = relay_phone_invite(&hq_dir, "TH-44", &relay.url, &relay_key, &tip_desk);
    let invite_b = relay_phone_invite(&hq_dir, "TH-44", &relay.url, &relay_key, &tip_desk);
    let enrolled = ok(&a, &["enroll", &invite_a, "--network-key", &nk], None);
    let id_a = enrolled
        .split_whitespace()
        .nth(3)
        .expect("enrolled as device ID")
        .to_owned();
    ok(&b, &["enroll", &invite_b, "--network-key", &nk], None);

    // They record in Thai, one sends a tip, all offline; then they sync with the relay.
    let title_a = "อบรมต่อต้านการทุจริตให้เยาวชนบ้านหนองโน";
    let title_b = "ประชุมภาคเอกชนเรื่องความโปร่งใสในการจัดซื้อ";
    for (store, title) in [(&a, title_a), (&b, title_b)] {
        ok(
            store,
            &["member", "add", "--alias", "สมชาย", "--role", "core-leader"],
            None,
        );
        ok(
            store,
            &[
                "activity",
                "add",
                "--kind",
                "awareness-training",
                "--audience",
                "youth",
                "--title",
                title,
                "--date",
                "2569-11-20",
                "--district",
                "เมืองมหาสารคาม",
                "--organiser",
                "สมชาย",
            ],
            None,
        );
    }
    let report = tmp.path().join("tip.txt");
    std::fs::write(&report, "นายก อบต. เรียกรับเงินจากผู้รับเหมา 50,000 บาท").expect("tip");
    let code = MemberCode::generate(&mut OsRng).to_string();
    let submitted = ok(
        &a,
        &[
            "tip",
            "submit",
            "--file",
            report.to_str().expect("path"),
            "--district",
            "เมืองมหาสารคาม",
            "--code-env",
            "MC",
        ],
        Some(&code),
    );
    let receipt = submitted
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("receipt: "))
        .expect("a receipt")
        .to_owned();
    assert!(ok(&a, &["sync"], None).contains("1 tip(s) delivered"));
    ok(&b, &["sync"], None);
    let listed = ok(&a, &["sync"], None);
    assert!(listed.starts_with("synced"), "{listed}");
    let listed = ok(&a, &["activity", "list"], None);
    assert!(
        listed.contains(title_a) && listed.contains(title_b),
        "{listed}"
    );

    // The relay holds the tip and knows HQ is away.
    let tips = mailbox_ids(&relay_dir, 1);
    assert_eq!(tips.len(), 1);
    let status = wait_for("the relay to report HQ unreachable", CATCH_UP, || {
        let status = upstream(&relay);
        (status["last_error"].is_string() && status["pending_envelopes"] == 1).then_some(status)
    });
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach HQ")),
        "{status}"
    );
    assert_eq!(status["pending_registrations"], 2, "{status}");

    // HQ comes back on the same folder and port; the relay catches up by itself.
    let hq = ServerProcess::start_at(&hq_dir, hq_port, &["--config", &config]);
    let status = wait_for("the relay to catch up with HQ", CATCH_UP, || {
        let status = upstream(&relay);
        (status["last_error"].is_null()
            && status["pending_envelopes"] == 0
            && status["pending_registrations"] == 0)
            .then_some(status)
    });
    eprintln!("relay upstream after catching up: {status}");

    // HQ holds the same documents (same heads) ...
    let relay_docs = all_heads(&relay_dir);
    assert!(
        relay_docs
            .keys()
            .any(|name| name.starts_with("province/TH-44/activities/")),
        "{relay_docs:?}"
    );
    let hq_docs = wait_for("HQ to hold the relay's documents", CATCH_UP, || {
        let hq_docs = all_heads(&hq_dir);
        relay_docs
            .iter()
            .all(|(name, heads)| hq_docs.get(name) == Some(heads))
            .then_some(hq_docs)
    });
    assert!(hq_docs.len() >= relay_docs.len());
    // ... the tip, which the relay pruned after HQ's acknowledgement and will not take again ...
    assert_eq!(mailbox_ids(&hq_dir, 1), tips);
    assert!(mailbox_ids(&relay_dir, 1).is_empty());
    assert!(acked_ids(&relay_dir).contains(&tips[0]));
    assert_eq!(status["envelopes_pruned"], 1, "{status}");
    // ... and the two phones, registered with the relay's keys and roles; the relay's last sync.
    let at_hq = devices(&hq_dir);
    for phone in devices(&relay_dir) {
        let registered = at_hq
            .iter()
            .find(|device| device.public_key == phone.public_key)
            .unwrap_or_else(|| panic!("HQ does not know {}", phone.device_id));
        assert_eq!(registered.device_id, phone.device_id);
        assert_eq!(registered.role, phone.role);
        assert_eq!(registered.provinces, vec!["TH-44".to_string()]);
    }
    assert_eq!(at_hq.len(), 3, "the relay and its two phones");
    let relay_row = at_hq
        .iter()
        .find(|device| device.public_key == *relay_key.as_bytes())
        .expect("the relay at HQ");
    assert!(relay_row.last_sync.is_some());

    // A phone enrolled at HQ reads both phones' Thai records.
    let c = tmp.path().join("c.store");
    ok(
        &c,
        &[
            "enroll",
            &invite(&hq_dir, "TH-44", "leader", &hq.url, &tip_desk),
            "--network-key",
            &nk,
        ],
        None,
    );
    ok(&c, &["sync"], None);
    let at_hq_list = ok(&c, &["activity", "list"], None);
    assert!(
        at_hq_list.contains(title_a) && at_hq_list.contains(title_b),
        "{at_hq_list}"
    );

    // The tip desk opens the tip at HQ and answers; the answer comes down through the relay
    // to the phone that sent the tip.
    assert!(
        desk(
            &desk_dir,
            &["pull", "--data", hq_dir.to_str().expect("path")]
        )
        .contains("pulled 1 new tip(s)")
    );
    let (exit, _) = hq.terminate();
    assert!(exit.success());
    let message = "ได้รับเบาะแสแล้ว เจ้าหน้าที่กำลังตรวจสอบ";
    desk(
        &desk_dir,
        &[
            "reply",
            &receipt,
            "--status",
            "under-review",
            "--message",
            message,
            "--data",
            hq_dir.to_str().expect("path"),
        ],
    );
    let hq = ServerProcess::start_at(&hq_dir, hq_port, &["--config", &config]);
    wait_for("HQ's reply to reach the relay", CATCH_UP, || {
        (mailbox_ids(&relay_dir, 2).len() == 1).then_some(())
    });
    assert!(ok(&a, &["sync"], None).contains("1 repl(ies) received"));
    let status_a = ok(&a, &["tip", "status"], None);
    assert!(
        status_a.contains(&receipt) && status_a.contains(message),
        "{status_a}"
    );
    assert!(ok(&b, &["sync"], None).contains("0 repl(ies) received"));

    // HQ revokes phone A: the revocation reaches the relay, which then refuses it.
    let revoked = admin(&hq_dir, &["revoke", &id_a]);
    assert!(revoked.status.success(), "{revoked:?}");
    wait_for("the relay to apply HQ's revocation", CATCH_UP, || {
        devices(&relay_dir)
            .into_iter()
            .find(|device| device.device_id == id_a)
            .and_then(|device| device.revoked_at)
    });
    let refused = device(&a, &["sync"], None);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("revoked"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    ok(&b, &["sync"], None);
    assert!(upstream(&relay)["revocations_applied"] == 1);

    let (exit, _) = relay.terminate();
    assert!(exit.success());
    let (exit, _) = hq.terminate();
    assert!(exit.success());
}

#[test]
fn a_cut_link_to_hq_resumes_without_resending_finished_documents() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(tmp.path());
    let (hq_dir, relay_dir) = (tmp.path().join("hq"), tmp.path().join("relay"));
    let tip_desk = tip_desk_key();
    let hq = ServerProcess::start(&hq_dir, &["--config", &config]);
    let relay_invite = invite(&hq_dir, "TH-44", "relay", &hq.url, &tip_desk);
    let nk = network_key(&hq_dir);
    let joined = relay_join(&relay_dir, &relay_invite, &nk);
    assert!(joined.status.success(), "{joined:?}");
    let relay_key = joined_relay_key(&joined);
    // The same invite for another relay: HQ refuses it, and the message says what to do.
    let twice = relay_join(&tmp.path().join("other-relay"), &relay_invite, &nk);
    let twice_err = String::from_utf8_lossy(&twice.stderr);
    assert!(
        twice_err.contains("HQ refused the invite (invite_used)")
            && twice_err.contains("ask HQ for a new relay invite"),
        "{twice_err}"
    );

    // The relay reaches HQ through a link that is down for now, then cuts connections part-way.
    let profile = Profile::builder("cutting")
        .cut_probability(0.5)
        .cut_after_bytes(300..=3_000)
        .build()
        .expect("profile");
    let link = BlockingBadLink::start(hq.addr, profile, 44).expect("bad link");
    link.set_refusing(true);
    let link_url = format!("http://{}", link.addr());
    let relay =
        ServerProcess::start_relay(&relay_dir, Some(&link_url), 1, 1, &["--config", &config]);

    // A phone fills nine documents at the relay.
    let invite_text = relay_phone_invite(&hq_dir, "TH-44", &relay.url, &relay_key, &tip_desk);
    let (mut phone, _) = Device::enrol(&relay.url, &invite_text, relay_key).expect("enrol");
    let mut names = vec!["province/TH-44".to_string()];
    names.extend((2018..2026).map(|year| format!("province/TH-44/activities/{year}")));
    for name in &names {
        for n in 0..12 {
            phone.write(
                name,
                &format!("record-{n}"),
                &format!("กิจกรรมรณรงค์ครั้งที่ {n} ของ {name}: ประชาชนร่วมตรวจสอบงบประมาณ"),
            );
        }
    }
    phone.sync().expect("sync with the relay");
    assert_eq!(phone.sync(), Ok(()));
    wait_for("the relay to find HQ unreachable", CATCH_UP, || {
        upstream(&relay)["last_error"].is_string().then_some(())
    });
    let before = upstream(&relay);

    // The link comes up, cutting; the relay gets everything to HQ.
    link.set_refusing(false);
    let relay_docs = all_heads(&relay_dir);
    assert_eq!(relay_docs.len(), names.len());
    wait_for(
        "HQ to hold the relay's nine documents",
        CATCH_UP * 2,
        || {
            let hq_docs = all_heads(&hq_dir);
            relay_docs
                .iter()
                .all(|(name, heads)| hq_docs.get(name) == Some(heads))
                .then_some(())
        },
    );
    let after = wait_for("a completed round", CATCH_UP, || {
        let status = upstream(&relay);
        status["last_error"].is_null().then_some(status)
    });
    let stat = |key: &str| after[key].as_u64().unwrap_or(0) - before[key].as_u64().unwrap_or(0);
    let (failed, chunks) = (stat("exchanges_failed"), stat("doc_chunks_sent"));
    eprintln!(
        "cut link: {} connections cut, {failed} exchanges failed, {chunks} document chunks sent \
         for {} documents ({} rounds cut after finished documents), {} document bytes, {} \
         sealed bytes up, {} down",
        link.stats().cut,
        names.len(),
        stat("rounds_cut_after_progress"),
        stat("doc_bytes_sent"),
        stat("bytes_sent"),
        stat("bytes_received"),
    );
    assert!(
        link.stats().cut > 0,
        "the link cut nothing: the test proves nothing"
    );
    assert!(failed > 0, "{after}");
    // At least one round was cut after finishing some documents, so resuming was exercised.
    assert!(stat("rounds_cut_after_progress") > 0, "{after}");
    // Each failed exchange costs at most the one document it carried: finished documents are
    // never sent again (sending the whole round again would cost nine per failure).
    assert!(
        chunks >= names.len() as u64 && chunks <= names.len() as u64 + failed,
        "{chunks} chunks for {} documents with {failed} failures",
        names.len()
    );

    // A phone enrolled at HQ directly reads what the relay's phone wrote, in Thai.
    let (mut reader, _) = Device::enrol(
        &hq.url,
        &invite(&hq_dir, "TH-44", "leader", &hq.url, &tip_desk),
        hq.static_key(),
    )
    .expect("enrol at HQ");
    reader.sync().expect("sync at HQ");
    assert_eq!(
        reader
            .read("province/TH-44/activities/2020", "record-11")
            .as_deref(),
        Some("กิจกรรมรณรงค์ครั้งที่ 11 ของ province/TH-44/activities/2020: ประชาชนร่วมตรวจสอบงบประมาณ")
    );
    assert_eq!(
        Device::enrol(&relay.url, &invite_text, relay_key).err(),
        Some(Failure::Refused(409, "invite_used".into()))
    );
    // A phone may not send the relay section, and a relay only sends it to HQ.
    let section = UpstreamRequest::default().encode();
    let wrapped = relay::wrap(&[1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &section);
    assert_eq!(
        phone.exchange("/v1/sync", &wrapped).err(),
        Some(Failure::Refused(400, "bad_request".into()))
    );

    // The shared heads with HQ live in the relay's database: after a restart its rounds send
    // no document again.
    let (exit, _) = relay.terminate();
    assert!(exit.success());
    let relay = ServerProcess::start_relay(&relay_dir, Some(&hq.url), 1, 1, &["--config", &config]);
    let restarted = wait_for("a round after the restart", CATCH_UP, || {
        let status = upstream(&relay);
        (status["rounds"].as_u64() >= Some(2)).then_some(status)
    });
    assert_eq!(restarted["doc_chunks_sent"], 0, "{restarted}");
    assert_eq!(restarted["exchanges_failed"], 0, "{restarted}");

    link.shutdown();
    let (exit, _) = relay.terminate();
    assert!(exit.success());
    let (exit, _) = hq.terminate();
    assert!(exit.success());
}

#[test]
fn a_full_quota_at_hq_holds_tips_back_but_not_the_rest() {
    // It counts or opens the tips the servers hold: tips leave bare, without cover slots.
    phakhi_tests::cli::send_tips_bare();
    let tmp = tempfile::tempdir().expect("tempdir");
    let relay_config = config(tmp.path());
    let hq_config = tmp.path().join("hq.toml");
    std::fs::write(
        &hq_config,
        "[limits]\nrequests_per_minute = 100000\nrequest_burst = 100000\n\
         mailbox_envelopes_per_device = 0\n",
    )
    .expect("config");
    let hq_config = hq_config.display().to_string();
    let (hq_dir, relay_dir) = (tmp.path().join("hq"), tmp.path().join("relay"));
    let tip_desk = tip_desk_key();
    // Serving upstream needs a join first, and says so.
    let unjoined = Command::new(phakhi_bin())
        .args([
            "serve",
            "--addr",
            "127.0.0.1",
            "--port",
            "0",
            "--upstream",
            "--data",
        ])
        .arg(tmp.path().join("never-joined"))
        .output()
        .expect("run phakhi serve");
    assert!(!unjoined.status.success());
    assert!(
        String::from_utf8_lossy(&unjoined.stderr).contains("run `phakhi relay join INVITE"),
        "{unjoined:?}"
    );
    let hq = ServerProcess::start(&hq_dir, &["--config", &hq_config]);
    let relay_key = join_relay(&hq_dir, &hq.url, &relay_dir, "TH-44", &tip_desk);
    let relay = ServerProcess::start_relay(&relay_dir, None, 1, 1, &["--config", &relay_config]);

    let phone = tmp.path().join("phone.store");
    ok(
        &phone,
        &[
            "enroll",
            &relay_phone_invite(&hq_dir, "TH-44", &relay.url, &relay_key, &tip_desk),
            "--network-key",
            &network_key(&hq_dir),
        ],
        None,
    );
    ok(
        &phone,
        &["member", "add", "--alias", "น้องใหม่", "--role", "member"],
        None,
    );
    let report = tmp.path().join("tip.txt");
    std::fs::write(&report, "มีการฮั้วประมูลโครงการขุดลอกคลอง").expect("tip");
    let code = MemberCode::generate(&mut OsRng).to_string();
    ok(
        &phone,
        &[
            "tip",
            "submit",
            "--file",
            report.to_str().expect("path"),
            "--district",
            "โกสุมพิสัย",
            "--code-env",
            "MC",
        ],
        Some(&code),
    );
    assert!(ok(&phone, &["sync"], None).contains("1 tip(s) delivered"));

    // The tip waits at the relay, with the reason; the phone and its records reach HQ anyway.
    let status = wait_for("the relay to report HQ's full quota", CATCH_UP, || {
        let status = upstream(&relay);
        (status["pending_registrations"] == 0
            && status["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("mailbox_envelopes_per_device")))
        .then_some(status)
    });
    assert_eq!(status["pending_envelopes"], 1, "{status}");
    assert_eq!(mailbox_ids(&relay_dir, 1).len(), 1);
    assert!(mailbox_ids(&hq_dir, 1).is_empty());
    assert_eq!(devices(&hq_dir).len(), 2, "the relay and its phone");
    let relay_docs = all_heads(&relay_dir);
    assert!(relay_docs.contains_key("province/TH-44"), "{relay_docs:?}");
    wait_for("HQ to hold the relay's documents", CATCH_UP, || {
        let hq_docs = all_heads(&hq_dir);
        relay_docs
            .iter()
            .all(|(name, heads)| hq_docs.get(name) == Some(heads))
            .then_some(())
    });

    let (exit, _) = relay.terminate();
    assert!(exit.success());
    let (exit, _) = hq.terminate();
    assert!(exit.success());
}
