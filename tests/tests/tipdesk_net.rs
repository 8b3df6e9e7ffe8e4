//! The tip desk over the network against a real `phakhi serve` on loopback: it enrols as an
//! admin device, pulls a Thai tip while HQ runs, opens it with the member code verified, replies
//! while HQ runs, and the reply reaches the submitting phone on its next sync — another phone of
//! the province receives the sealed reply but cannot open it. Acknowledging releases the tip at
//! HQ (its body is dropped and it stops counting against the phone's quota). A leader device is
//! refused at `/v1/admin`, and a replayed admin request is refused and changes nothing.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use phakhi_core::mailbox::{EnvelopeKind, MailItem, MailboxMessage};
use phakhi_core::protocol::{AdminRequest, AdminResponse, decode_section, encode_section};
use phakhi_core::seal::{self, Reply, ReplyStatus, StaticKeyPair};
use phakhi_core::sync::{Initiator, Limits, PeerState, PrefixScope};
use phakhi_tests::cli::{desk, desk_with_code, device, fails, ok, ok_with, run};
use phakhi_tests::server::{Device, Failure, ServerProcess, invite, network_key, now, post};
use rand_core::OsRng;

fn submit_tip(store: &str, report_file: &str, code: &str) -> String {
    let out = ok_with(
        &device(
            store,
            &[
                "tip",
                "submit",
                "--file",
                report_file,
                "--category",
                "bribery",
                "--district",
                "เมืองมหาสารคาม",
                "--code-env",
                "MC",
            ],
        ),
        Some(code),
    );
    out.lines()
        .next()
        .and_then(|l| l.strip_prefix("receipt: "))
        .unwrap()
        .to_owned()
}

/// (tip rows, reply rows, released rows) in HQ's database.
fn mailbox_rows(hq: &str) -> (i64, i64, i64) {
    let conn = phakhi_server::db::open(Path::new(hq)).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    (
        count("SELECT count(*) FROM mailbox WHERE kind = 1"),
        count("SELECT count(*) FROM mailbox WHERE kind = 2"),
        count("SELECT count(*) FROM mailbox_released"),
    )
}

/// The sealed replies of its province a raw device receives in one sync.
fn replies_received(phone: &mut Device) -> Vec<MailItem> {
    let mut initiator = Initiator::new(PeerState::new(), Limits::default());
    let section = encode_section(&[MailboxMessage::Have(phakhi_core::mailbox::Have {
        cursor: 0,
        ids: vec![],
        more: false,
    })]);
    let mut docs = BTreeMap::new();
    let request = initiator.poll_request(&mut docs, Some(section)).unwrap();
    let answer = phone.exchange("/v1/sync", &request).unwrap();
    initiator
        .handle_response(&answer, &mut docs, &PrefixScope::everything())
        .unwrap();
    let section = initiator.take_mailbox().unwrap();
    decode_section(&section)
        .unwrap()
        .into_iter()
        .flat_map(|m| match m {
            MailboxMessage::Push(push) => push.items,
            _ => vec![],
        })
        .filter(|i| i.kind == EnvelopeKind::Reply)
        .collect()
}

#[test]
fn the_tip_desk_pulls_replies_and_releases_over_the_network_while_hq_runs() {
    // It counts or opens the tips the servers hold: tips leave bare, without cover slots.
    phakhi_tests::cli::send_tips_bare();
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let (hq, desk_dir, a, b) = (path("hq"), path("desk"), path("a.store"), path("b.store"));

    // One envelope per phone: the second tip is refused until the desk releases the first.
    let config = path("hq.toml");
    std::fs::write(&config, "[limits]\nmailbox_envelopes_per_device = 1\n").unwrap();

    let (key, code) = desk_with_code(&desk_dir, "นายเอ");

    let server = ServerProcess::start(Path::new(&hq), &["--config", &config]);
    let nk = network_key(&server.data);

    // Not enrolled yet: the desk says what to do.
    let err = fails(&desk(&desk_dir, &["pull"]));
    assert!(err.contains("enroll INVITE"), "{err}");
    // A leader invite does not make a tip desk.
    let leader_invite = invite(Path::new(&hq), "TH-44", "leader", &server.url, &key);
    let err = fails(&desk(
        &desk_dir,
        &["enroll", &leader_invite, "--network-key", &nk],
    ));
    assert!(err.contains("--role admin"), "{err}");
    let admin_invite = invite(Path::new(&hq), "TH-44", "admin", &server.url, &key);
    let enrolled = ok(&desk(
        &desk_dir,
        &["enroll", &admin_invite, "--network-key", &nk],
    ));
    assert!(enrolled.contains("admin device"), "{enrolled}");
    // The desk's device key and HQ's key are kept encrypted: no trace of HQ's key in clear.
    let hq_key = hex::encode(server.static_key().as_bytes());
    for entry in std::fs::read_dir(&desk_dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(hq_key.len()).any(|w| w == hq_key.as_bytes()));
        assert!(
            !bytes
                .windows(32)
                .any(|w| w == server.static_key().as_bytes())
        );
    }

    // Two phones of Maha Sarakham.
    let invite_a = invite(Path::new(&hq), "TH-44", "leader", &server.url, &key);
    let invite_b = invite(Path::new(&hq), "TH-44", "leader", &server.url, &key);
    ok(&device(&a, &["enroll", &invite_a, "--network-key", &nk]));
    ok(&device(&b, &["enroll", &invite_b, "--network-key", &nk]));

    let report_text = "ผู้ใหญ่บ้านเรียกรับเงิน 20,000 บาท แลกกับการอนุมัติโครงการถนน";
    let report_file = path("tip.txt");
    std::fs::write(&report_file, report_text).unwrap();
    let receipt = submit_tip(&a, &report_file, &code);
    let stranger = seal::MemberCode::generate(&mut OsRng).to_string();
    let receipt_b = submit_tip(&b, &report_file, &stranger);
    assert!(ok(&device(&a, &["sync"])).contains("1 tip(s) delivered"));
    assert!(ok(&device(&b, &["sync"])).contains("1 tip(s) delivered"));
    // A's quota (one envelope) is full: a second tip waits.
    let second = submit_tip(&a, &report_file, &code);
    let refused = run(&device(&a, &["sync"]), None);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("undelivered envelopes"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(mailbox_rows(&hq), (2, 0, 0));

    // The desk pulls while HQ runs and opens the tip, Thai intact, member verified.
    let pulled = ok(&desk(&desk_dir, &["pull"]));
    assert!(pulled.contains("pulled 2 new tip(s)"), "{pulled}");
    assert!(
        pulled.contains("2 tip(s) held here are not released"),
        "{pulled}"
    );
    let again = ok(&desk(&desk_dir, &["pull"]));
    assert!(again.contains("pulled 0 new tip(s)"), "{again}");
    let shown = ok(&desk(&desk_dir, &["show", &receipt]));
    assert!(shown.contains(report_text), "{shown}");
    assert!(shown.contains("valid member (นายเอ)"), "{shown}");
    let shown_b = ok(&desk(&desk_dir, &["show", &receipt_b]));
    assert!(shown_b.contains("unknown code"), "{shown_b}");

    // The reply goes in while HQ runs, straight into its live mailbox.
    let message = "ได้รับเบาะแสแล้ว เจ้าหน้าที่กำลังตรวจสอบ";
    let replied = ok(&desk(
        &desk_dir,
        &[
            "reply",
            &receipt,
            "--status",
            "under-review",
            "--message",
            message,
        ],
    ));
    assert!(replied.contains("HQ's mailbox"), "{replied}");
    assert_eq!(mailbox_rows(&hq), (2, 1, 0));

    // Phone B receives nothing it can open.
    let synced_b = ok(&device(&b, &["sync"]));
    assert!(synced_b.contains("0 repl(ies) received"), "{synced_b}");
    let status_b = ok(&device(&b, &["tip", "status"]));
    assert!(status_b.contains(&receipt_b), "{status_b}");
    assert!(!status_b.contains(message), "{status_b}");
    // A third phone of the province does receive the sealed reply, and cannot open it.
    let invite_c = invite(Path::new(&hq), "TH-44", "leader", &server.url, &key);
    let (mut phone_c, _) = Device::enrol(&server.url, &invite_c, server.static_key()).unwrap();
    let received = replies_received(&mut phone_c);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].province, "TH-44");
    let strangers = [StaticKeyPair::generate(&mut OsRng)];
    assert!(seal::try_open_reply(&strangers, &received[0].envelope).is_none());
    assert!(
        !received[0]
            .envelope
            .windows(message.len())
            .any(|w| w == message.as_bytes())
    );

    // Phone A gets it on its next sync (its second tip is still refused by the quota, so the
    // sync fails; the reply comes once the desk releases A's first tip).
    let err = fails(&device(&a, &["sync"]));
    assert!(err.contains("undelivered envelopes"), "{err}");

    // Ack releases: bodies dropped at HQ, quotas freed.
    let acked = ok(&desk(&desk_dir, &["ack"]));
    assert!(acked.contains("HQ released 2 now"), "{acked}");
    assert_eq!(mailbox_rows(&hq), (0, 1, 2));
    assert!(ok(&desk(&desk_dir, &["ack"])).contains("nothing to acknowledge"));

    let synced_a = ok(&device(&a, &["sync"]));
    assert!(synced_a.contains("1 tip(s) delivered"), "{synced_a}");
    assert!(synced_a.contains("1 repl(ies) received"), "{synced_a}");
    let status_a = ok(&device(&a, &["tip", "status"]));
    assert!(status_a.contains(&receipt), "{status_a}");
    assert!(status_a.contains("under-review"), "{status_a}");
    assert!(status_a.contains(message), "{status_a}");
    assert!(status_a.contains(&second), "{status_a}");
    // The desk pulls the second tip only.
    let pulled = ok(&desk(&desk_dir, &["pull"]));
    assert!(pulled.contains("pulled 1 new tip(s)"), "{pulled}");
    // Released too: now the newest envelope HQ ever numbered is gone from its table.
    assert!(ok(&desk(&desk_dir, &["ack"])).contains("HQ released 1 now"));
    assert_eq!(mailbox_rows(&hq), (0, 1, 3));

    // HQ restarted: the released tips stay released, the reply stays.
    let (status, _) = server.terminate();
    assert!(status.success());
    let server = ServerProcess::start(Path::new(&hq), &["--config", &config]);
    let listed = ok(&desk(&desk_dir, &["list"]));
    assert!(listed.contains("under-review"), "{listed}");
    let unreachable = fails(&desk(
        &desk_dir,
        &["pull", "--server", "http://127.0.0.1:9"],
    ));
    assert!(unreachable.contains("cannot reach HQ"), "{unreachable}");
    // The restarted server listens on a new port: the desk and the phone are told where.
    let url = server.url.clone();
    assert!(ok(&desk(&desk_dir, &["pull", "--server", &url])).contains("pulled 0 new tip(s)"));
    // A reply after the restart gets a new arrival number (the released tips' numbers are not
    // reused), so phone A, whose cursor is past them, receives it.
    let message2 = "ส่งต่อให้หน่วยงานที่เกี่ยวข้องแล้ว";
    ok(&desk(
        &desk_dir,
        &[
            "reply",
            &second,
            "--status",
            "referred",
            "--message",
            message2,
            "--server",
            &url,
        ],
    ));
    let synced_a = ok(&device(&a, &["sync", "--server", &url]));
    assert!(synced_a.contains("1 repl(ies) received"), "{synced_a}");
    assert!(ok(&device(&a, &["tip", "status"])).contains(message2));

    // A revoked tip desk is told so, and what to do.
    let desk_id = enrolled
        .split("admin device ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap()
        .trim()
        .to_owned();
    let revoked = phakhi_tests::server::admin(Path::new(&hq), &["revoke", &desk_id]);
    assert!(revoked.status.success());
    let err = fails(&desk(&desk_dir, &["pull", "--server", &url]));
    assert!(
        err.contains("device_revoked") && err.contains("new admin invite"),
        "{err}"
    );
    drop(server);
}

#[test]
fn only_admin_devices_use_the_admin_route_and_a_replay_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let hq = tmp.path().join("hq");
    let server = ServerProcess::start(&hq, &[]);
    let desk_key = hex::encode(StaticKeyPair::generate(&mut OsRng).public().as_bytes());

    // A leader is refused, with its own code, and nothing is pulled.
    let leader_invite = invite(&hq, "TH-44", "leader", &server.url, &desk_key);
    let (leader, _) = Device::enrol(&server.url, &leader_invite, server.static_key()).unwrap();
    let pull = AdminRequest::Pull { after: 0, max: 10 }.encode();
    assert_eq!(
        leader.exchange("/v1/admin", &pull),
        Err(Failure::Refused(403, "not_admin".into()))
    );

    // An admin device pushes one reply.
    let admin_invite = invite(&hq, "TH-40", "admin", &server.url, &desk_key);
    let (admin, _) = Device::enrol(&server.url, &admin_invite, server.static_key()).unwrap();
    let reply_key = StaticKeyPair::generate(&mut OsRng);
    let envelope = seal::seal_reply(
        &mut OsRng,
        reply_key.public(),
        &Reply {
            receipt: seal::ReceiptId::of_envelope(&[1; 32]),
            status: ReplyStatus::Received,
            message: "รับเรื่องแล้ว".into(),
        },
    )
    .unwrap();
    let item = MailItem {
        kind: EnvelopeKind::Reply,
        province: "TH-44".into(),
        envelope,
    };
    let request = AdminRequest::PushReplies {
        replies: vec![item.clone()],
    }
    .encode();
    let (sealed, pending) = seal::seal_request(
        &mut OsRng,
        &admin.key,
        &server.static_key(),
        now(),
        &request,
    )
    .unwrap();
    let url = format!("{}/v1/admin", server.url);
    let (status, _, body) = post(&url, &sealed);
    assert_eq!(status, 200);
    let answer = AdminResponse::decode(&pending.open_response(&body).unwrap()).unwrap();
    assert_eq!(
        answer,
        AdminResponse::Stored {
            new: 1,
            ids: vec![item.id()]
        }
    );
    let snapshot = |hq: &Path| -> (i64, i64, Option<i64>) {
        let conn = phakhi_server::db::open(hq).unwrap();
        (
            conn.query_row("SELECT count(*) FROM mailbox", [], |r| r.get(0))
                .unwrap(),
            conn.query_row("SELECT count(*) FROM replay_guard", [], |r| r.get(0))
                .unwrap(),
            conn.query_row(
                "SELECT last_sync FROM devices WHERE role = 'admin'",
                [],
                |r| r.get(0),
            )
            .unwrap(),
        )
    };
    let before = snapshot(&hq);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (status, code, _) = post(&url, &sealed);
    assert_eq!((status, code.as_str()), (409, "replayed"));
    assert_eq!(snapshot(&hq), before);

    // Garbage inside a good envelope is a clear error, not a crash, and changes nothing.
    assert_eq!(
        admin.exchange("/v1/admin", &[1, 99]),
        Err(Failure::Refused(400, "bad_request".into()))
    );
    // A reply to a province that does not exist is refused.
    let mut bad = item;
    bad.province = "TH-99".into();
    let bad = AdminRequest::PushReplies { replies: vec![bad] }.encode();
    assert_eq!(
        admin.exchange("/v1/admin", &bad),
        Err(Failure::Refused(400, "bad_request".into()))
    );
    assert_eq!(snapshot(&hq).0, before.0);
    // The server still answers.
    let answer = admin.exchange("/v1/admin", &pull).unwrap();
    assert!(matches!(
        AdminResponse::decode(&answer).unwrap(),
        AdminResponse::Tips { tips, .. } if tips.is_empty()
    ));
    drop(server);
}
