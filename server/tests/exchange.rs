//! End-to-end exchanges against the in-process `Router` with a real SQLite data folder: devices
//! built from `phakhi_core` (static keys, sealed transport, sync initiator) enrol with signed
//! invites and sync documents and mailbox envelopes.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT, ReadDoc};
use axum::body::{Body, to_bytes};
use axum::extract::Path as UrlPath;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use phakhi_core::client::talk::{self, OneShot, SyncTalk};
use phakhi_core::client::{Conversation, Driver, Route, Transmit, Turn};
use phakhi_core::mailbox::{EnvelopeKind, Have, MailItem, MailboxMessage, Push};
use phakhi_core::protocol::{EnrolResponse, ErrorCode, decode_section, encode_section};
use phakhi_core::seal::{self, PublicKey, StaticKeyPair};
use phakhi_core::sync::wire::{Chunk, DocEntry, DocStatus, Kind, Message};
use phakhi_core::sync::{self, DocName, Initiator, PeerState, PrefixScope, Progress};
use phakhi_server::config::{Config, Limits};
use phakhi_server::db::{self, devices::Role};
use phakhi_server::error::{AppError, ERROR_HEADER};
use phakhi_server::http::{all_routes, app, with_layers};
use phakhi_server::invite::{InviteRequest, issue};
use phakhi_server::routes::now_unix;
use phakhi_server::state::AppState;
use rand_core::OsRng;
use tower::ServiceExt;

struct Server {
    dir: crate::tempdata::TempData,
    state: AppState,
}

impl Server {
    fn start(limits: Limits) -> Server {
        let dir = crate::tempdata::TempData::new();
        let state = open(&dir, limits);
        Server { dir, state }
    }

    /// Stops the server (dropping its state releases the data folder) and opens it again.
    fn restart(self) -> Server {
        let Server { dir, state } = self;
        let limits = state.config().limits.clone();
        drop(state);
        let state = open(&dir, limits);
        Server { dir, state }
    }

    fn invite(&self, province: &str, role: Role) -> String {
        issue(
            self.state.config(),
            &InviteRequest {
                provinces: vec![province.into()],
                role,
                expires: "1d".into(),
                server_url: None,
                tip_desk_key: Some(hex::encode([7u8; 32])),
                server_key: None,
            },
            now_unix(),
            &mut OsRng,
        )
        .unwrap()
    }

    fn key(&self) -> PublicKey {
        self.state.keys().static_public()
    }

    /// Raw POST: (status, error code, body).
    async fn post(&self, path: &str, body: Vec<u8>) -> (StatusCode, String, Vec<u8>) {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from(body))
            .unwrap();
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let code = response
            .headers()
            .get(ERROR_HEADER)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = to_bytes(response.into_body(), 64 << 20).await.unwrap();
        (status, code, body.to_vec())
    }

    /// Drives `driver` to the end of its conversation against the in-process router, as a
    /// phone's carrier does: the core's client driver seals every request and opens every
    /// answer. A refusal ends it with the status and code (the conversation rewinds).
    async fn drive<C>(&self, driver: &mut Driver<C>) -> Result<C::Outcome, (StatusCode, String)>
    where
        C: Conversation<Ctx = ()>,
        C::Error: std::fmt::Debug,
    {
        loop {
            let transmit = driver
                .poll_transmit(&mut (), now(), &mut OsRng)
                .unwrap()
                .expect("the conversation has a request to send");
            let (status, code, body) = self.post(transmit.route.path(), transmit.bytes).await;
            if status != StatusCode::OK {
                driver.handle_lost(&mut ());
                return Err((status, code));
            }
            if let Turn::Done(outcome) = driver
                .handle_answer(&mut (), &body, now(), &mut OsRng)
                .unwrap()
            {
                return Ok(outcome);
            }
        }
    }

    /// One request of `payload` from `device` to `route`; its opened answer.
    async fn exchange(
        &self,
        route: Route,
        device: &StaticKeyPair,
        payload: &[u8],
    ) -> Result<Vec<u8>, (StatusCode, String)> {
        self.drive(&mut self.driver(device, OneShot::new(route, payload.to_vec())))
            .await
    }

    /// A driver speaking as `device` to this server.
    fn driver<C: Conversation>(&self, device: &StaticKeyPair, conversation: C) -> Driver<C> {
        Driver::new(device, self.key(), conversation)
    }

    /// `payload` to `route`, sealed from `device` by the client driver but not carried: for
    /// requests posted by hand (a replay, a crafted message). The driver opens the answer.
    fn sealed(
        &self,
        device: &StaticKeyPair,
        route: Route,
        payload: Vec<u8>,
    ) -> (Driver<OneShot<Vec<u8>>>, Transmit) {
        let mut driver = self.driver(device, OneShot::new(route, payload));
        let transmit = driver
            .poll_transmit(&mut (), now(), &mut OsRng)
            .unwrap()
            .unwrap();
        (driver, transmit)
    }

    async fn enrol(
        &self,
        device: &StaticKeyPair,
        invite: &str,
    ) -> Result<EnrolResponse, (StatusCode, String)> {
        self.drive(&mut self.driver(device, talk::enrol::<EnrolResponse>(invite)))
            .await
    }

    fn count(&self, table: &str) -> i64 {
        let conn = db::open(self.dir.path()).unwrap();
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }
}

/// The time the driver seals with.
fn now() -> time::OffsetDateTime {
    phakhi_core::client::at_unix(now_unix())
}

fn start_relay(hq_key: Option<String>) -> Server {
    let dir = crate::tempdata::TempData::new();
    let state = AppState::open(Config {
        data: dir.path().to_path_buf(),
        role: phakhi_server::config::ServerRole::Relay,
        hq_key,
        ..Config::default()
    })
    .unwrap()
    .state;
    Server { dir, state }
}

fn open(dir: &crate::tempdata::TempData, limits: Limits) -> AppState {
    AppState::open(Config {
        data: dir.path().to_path_buf(),
        limits,
        ..Config::default()
    })
    .unwrap()
    .state
}

/// A field device: its key, its documents and its sync state with the server.
struct Phone {
    key: StaticKeyPair,
    docs: BTreeMap<DocName, AutoCommit>,
    state: PeerState,
}

impl Phone {
    fn new() -> Phone {
        Phone {
            key: StaticKeyPair::generate(&mut OsRng),
            docs: BTreeMap::new(),
            state: PeerState::new(),
        }
    }

    /// The automerge actor this phone writes under (bound to its key, as a phone's is).
    fn actor(&self) -> automerge::ActorId {
        phakhi_core::policy::authority::device_actor(
            self.key.public().as_bytes(),
            0,
            [0; phakhi_core::policy::authority::FRESH_BYTES],
        )
    }

    fn write(&mut self, doc: &str, key: &str, value: &str) {
        let actor = self.actor();
        let doc = self.docs.entry(DocName::parse(doc).unwrap()).or_default();
        doc.set_actor(actor);
        doc.put(ROOT, key, value).unwrap();
        doc.commit();
    }

    fn read(&self, doc: &str, key: &str) -> Option<String> {
        let doc = self.docs.get(&DocName::parse(doc).unwrap())?;
        let (value, _) = doc.get(ROOT, key).unwrap()?;
        value.into_string().ok()
    }

    /// Sync exchanges through the client driver (one or two rounds each) until nothing is left
    /// to send; returns the server's mailbox section.
    async fn sync(
        &mut self,
        server: &Server,
        mailbox: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, (StatusCode, String)> {
        let mut mailbox = mailbox;
        let mut answered = None;
        loop {
            let mut talk = SyncTalk::new(
                Initiator::new(self.state.clone(), sync::Limits::default()),
                std::mem::take(&mut self.docs),
                PrefixScope::everything(),
            );
            talk.set_mailbox(mailbox.take());
            let mut driver = server.driver(&self.key, talk).with_max_rounds(2);
            let done = server.drive(&mut driver).await;
            let mut talk = driver.into_conversation();
            self.docs = talk.take_docs();
            let done = done?;
            self.state = talk.initiator.state().clone();
            answered = done.mailbox.or(answered);
            if done.progress == Progress::Done {
                return Ok(answered);
            }
        }
    }
}

const ACTIVITIES_44: &str = "province/TH-44/activities/2026";

#[tokio::test]
async fn devices_of_one_province_converge_and_other_provinces_never_see_it() {
    let server = Server::start(Limits::default());
    let mut a = Phone::new();
    let mut b = Phone::new();
    let mut c = Phone::new();
    let enrolled = server
        .enrol(&a.key, &server.invite("TH-44", Role::Leader))
        .await
        .unwrap();
    assert_eq!(enrolled.provinces, vec!["TH-44".to_string()]);
    assert_eq!(enrolled.role, "leader");
    assert_eq!(enrolled.server_role, "hq");
    server
        .enrol(&b.key, &server.invite("TH-44", Role::Coordinator))
        .await
        .unwrap();
    server
        .enrol(&c.key, &server.invite("TH-40", Role::Leader))
        .await
        .unwrap();

    a.write(ACTIVITIES_44, "title", "อบรมเยาวชนต้านทุจริต");
    a.write("province/TH-44", "centre", "ศูนย์ประสานงานมหาสารคาม");
    c.write(
        "province/TH-40/activities/2026",
        "title",
        "เวทีภาคเอกชน ขอนแก่น",
    );
    a.sync(&server, None).await.unwrap();
    c.sync(&server, None).await.unwrap();

    // Concurrent offline edits on B, then both converge.
    b.write(ACTIVITIES_44, "attendance_note", "ผู้เข้าร่วม 40 คน");
    b.sync(&server, None).await.unwrap();
    a.sync(&server, None).await.unwrap();
    for phone in [&a, &b] {
        assert_eq!(
            phone.read(ACTIVITIES_44, "title").as_deref(),
            Some("อบรมเยาวชนต้านทุจริต")
        );
        assert_eq!(
            phone.read(ACTIVITIES_44, "attendance_note").as_deref(),
            Some("ผู้เข้าร่วม 40 คน")
        );
        assert_eq!(
            phone.read("province/TH-44", "centre").as_deref(),
            Some("ศูนย์ประสานงานมหาสารคาม")
        );
        assert!(
            phone
                .docs
                .keys()
                .all(|name| !name.as_str().contains("TH-40"))
        );
    }
    c.sync(&server, None).await.unwrap();
    assert!(
        c.docs.keys().all(|name| !name.as_str().contains("TH-44")),
        "{:?}",
        c.docs.keys()
    );

    // An out-of-scope ask is refused as a whole and changes nothing.
    let before = (
        server.count("document_chunks"),
        server.count("replay_guard"),
    );
    c.write(ACTIVITIES_44, "title", "ของปลอม");
    let err = c.sync(&server, None).await.unwrap_err();
    assert_eq!(err, (StatusCode::NOT_FOUND, "out_of_scope".to_string()));
    assert_eq!(
        (
            server.count("document_chunks"),
            server.count("replay_guard")
        ),
        before
    );

    // Every acknowledged change survives a restart (the cache is gone, SQLite is read again).
    let server = server.restart();
    let mut d = Phone::new();
    server
        .enrol(&d.key, &server.invite("TH-44", Role::Leader))
        .await
        .unwrap();
    d.sync(&server, None).await.unwrap();
    assert_eq!(
        d.read(ACTIVITIES_44, "attendance_note").as_deref(),
        Some("ผู้เข้าร่วม 40 คน")
    );
    assert_eq!(
        d.read(ACTIVITIES_44, "title").as_deref(),
        Some("อบรมเยาวชนต้านทุจริต")
    );
}

#[tokio::test]
async fn the_directory_is_read_only_for_devices() {
    let server = Server::start(Limits::default());
    // HQ's directory, written straight into storage.
    let mut directory = AutoCommit::new();
    directory.put(ROOT, "region", "อีสานตอนกลาง").unwrap();
    directory.commit();
    {
        let conn = db::open(server.dir.path()).unwrap();
        db::documents::append(&conn, "directory", &directory.save(), 1).unwrap();
    }
    let mut phone = Phone::new();
    server
        .enrol(&phone.key, &server.invite("TH-44", Role::Leader))
        .await
        .unwrap();
    phone.sync(&server, None).await.unwrap();
    assert_eq!(
        phone.read("directory", "region").as_deref(),
        Some("อีสานตอนกลาง")
    );

    phone.write("directory", "region", "แก้ไขโดยเครื่อง");
    phone.sync(&server, None).await.unwrap();
    let conn = db::open(server.dir.path()).unwrap();
    let chunks = db::documents::load(&conn, "directory").unwrap().unwrap();
    assert_eq!(chunks.len(), 1, "the device's change was not stored");
    let stored = AutoCommit::load(&chunks[0]).unwrap();
    let (value, _) = stored.get(ROOT, "region").unwrap().unwrap();
    assert_eq!(value.into_string().unwrap(), "อีสานตอนกลาง");
}

#[tokio::test]
async fn unknown_revoked_and_replayed_requests_are_refused_and_change_nothing() {
    let server = Server::start(Limits::default());
    let mut stranger = Phone::new();
    stranger.write(ACTIVITIES_44, "title", "x");
    let err = stranger.sync(&server, None).await.unwrap_err();
    assert_eq!(
        err,
        (StatusCode::UNAUTHORIZED, "unknown_device".to_string())
    );

    let mut phone = Phone::new();
    let enrolled = server
        .enrol(&phone.key, &server.invite("TH-44", Role::Leader))
        .await
        .unwrap();
    phone.write(ACTIVITIES_44, "title", "ก่อนถูกเพิกถอน");
    phone.sync(&server, None).await.unwrap();

    // The same envelope twice: the second is a replay.
    let payload = Initiator::new(PeerState::new(), sync::Limits::default())
        .poll_request(&mut phone.docs, None)
        .unwrap();
    let (mut driver, transmit) = server.sealed(&phone.key, Route::Sync, payload);
    let (status, _, answer) = server.post("/v1/sync", transmit.bytes.clone()).await;
    assert_eq!(status, StatusCode::OK);
    driver
        .handle_answer(&mut (), &answer, now(), &mut OsRng)
        .unwrap();
    let (status, code, _) = server.post("/v1/sync", transmit.bytes).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "replayed"));

    phakhi_server::admin::revoke(server.dir.path(), &enrolled.device_id, 5).unwrap();
    let chunks = server.count("document_chunks");
    phone.write(ACTIVITIES_44, "title", "หลังถูกเพิกถอน");
    let err = phone.sync(&server, None).await.unwrap_err();
    assert_eq!(err, (StatusCode::FORBIDDEN, "device_revoked".to_string()));
    assert_eq!(server.count("document_chunks"), chunks);
}

#[tokio::test]
async fn invites_are_one_time_signed_and_for_this_server() {
    let server = Server::start(Limits::default());
    let invite = server.invite("TH-44", Role::Leader);
    server
        .enrol(&StaticKeyPair::generate(&mut OsRng), &invite)
        .await
        .unwrap();
    let err = server
        .enrol(&StaticKeyPair::generate(&mut OsRng), &invite)
        .await
        .unwrap_err();
    assert_eq!(err, (StatusCode::CONFLICT, "invite_used".to_string()));

    // Signed by another HQ.
    let other = Server::start(Limits::default());
    let foreign = other.invite("TH-44", Role::Leader);
    let err = server
        .enrol(&StaticKeyPair::generate(&mut OsRng), &foreign)
        .await
        .unwrap_err();
    assert_eq!(err, (StatusCode::BAD_REQUEST, "invite_invalid".to_string()));

    let err = server
        .enrol(&StaticKeyPair::generate(&mut OsRng), "PHAKHI1:NOPE")
        .await
        .unwrap_err();
    assert_eq!(err, (StatusCode::BAD_REQUEST, "invite_invalid".to_string()));
    assert_eq!(server.count("devices"), 1);
    assert_eq!(server.count("used_invites"), 1);
}

fn tip(fill: u8) -> MailItem {
    let mut envelope = vec![fill; 1024];
    envelope[0] = seal::ENVELOPE_VERSION;
    envelope[1] = seal::KIND_TIP;
    MailItem {
        kind: EnvelopeKind::Tip,
        province: "TH-44".into(),
        envelope,
    }
}

#[tokio::test]
async fn tips_are_stored_acknowledged_and_bounded_by_the_device_quota() {
    let server = Server::start(Limits {
        mailbox_envelopes_per_device: 2,
        ..Limits::default()
    });
    let mut phone = Phone::new();
    server
        .enrol(&phone.key, &server.invite("TH-44", Role::Leader))
        .await
        .unwrap();
    let section = encode_section(&[
        MailboxMessage::Push(Push {
            items: vec![tip(1), tip(2)],
        }),
        MailboxMessage::Have(Have::default()),
    ]);
    let answer = phone.sync(&server, Some(section)).await.unwrap().unwrap();
    let answer = decode_section(&answer).unwrap();
    let acked = answer.iter().find_map(|m| match m {
        MailboxMessage::Ack(ack) => Some(ack.ids.clone()),
        _ => None,
    });
    let mut expected = vec![tip(1).id(), tip(2).id()];
    let mut acked = acked.unwrap();
    expected.sort();
    acked.sort();
    assert_eq!(acked, expected);
    assert_eq!(server.count("mailbox"), 2);

    let over = encode_section(&[MailboxMessage::Push(Push {
        items: vec![tip(3)],
    })]);
    let err = phone.sync(&server, Some(over)).await.unwrap_err();
    assert_eq!(
        err,
        (
            StatusCode::INSUFFICIENT_STORAGE,
            "mailbox_quota_exceeded".to_string()
        )
    );
    assert_eq!(server.count("mailbox"), 2);

    // Another province's mailbox is out of scope.
    let mut foreign = tip(4);
    foreign.province = "TH-40".into();
    let section = encode_section(&[MailboxMessage::Push(Push {
        items: vec![foreign],
    })]);
    let err = phone.sync(&server, Some(section)).await.unwrap_err();
    assert_eq!(err.0, StatusCode::NOT_FOUND);
    assert_eq!(server.count("mailbox"), 2);
}

#[tokio::test]
async fn message_limits_have_their_own_errors() {
    let server = Server::start(Limits {
        max_documents_per_exchange: 2,
        max_changes_per_message: 3,
        ..Limits::default()
    });
    let mut phone = Phone::new();
    server
        .enrol(&phone.key, &server.invite("TH-44", Role::Leader))
        .await
        .unwrap();
    for year in 2020..2023 {
        phone.write(&format!("province/TH-44/activities/{year}"), "title", "ปี");
    }
    let err = phone.sync(&server, None).await.unwrap_err();
    assert_eq!(
        err,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_documents".to_string()
        )
    );

    let mut busy = Phone::new();
    server
        .enrol(&busy.key, &server.invite("TH-44", Role::Leader))
        .await
        .unwrap();
    for n in 0..4 {
        busy.write(ACTIVITIES_44, "title", &format!("แก้ครั้งที่ {n}"));
    }
    let err = busy.sync(&server, None).await.unwrap_err();
    assert_eq!(
        err,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_changes".to_string()
        )
    );
    assert_eq!(server.count("document_chunks"), 0);
}

#[tokio::test]
async fn a_device_over_its_request_rate_is_told_to_wait() {
    let server = Server::start(Limits {
        requests_per_minute: 1,
        request_burst: 6,
        ..Limits::default()
    });
    let mut phone = Phone::new();
    let mut other = Phone::new();
    server
        .enrol(&phone.key, &server.invite("TH-44", Role::Leader))
        .await
        .unwrap();
    server
        .enrol(&other.key, &server.invite("TH-44", Role::Leader))
        .await
        .unwrap();
    phone.write(ACTIVITIES_44, "title", "ครั้งแรก");
    // Enrolment took one token and this sync one or two.
    phone.sync(&server, None).await.unwrap();
    let chunks = server.count("document_chunks");
    phone.write(ACTIVITIES_44, "title", "ครั้งต่อไป");
    let mut answered = 0;
    let refusal = loop {
        let payload = Initiator::new(phone.state.clone(), sync::Limits::default())
            .poll_request(&mut phone.docs, None)
            .unwrap();
        match server.exchange(Route::Sync, &phone.key, &payload).await {
            Ok(_) => answered += 1,
            Err(error) => break error,
        }
        assert!(answered <= 6, "never limited");
    };
    assert_eq!(
        refusal,
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited".to_string())
    );
    assert!((3..=4).contains(&answered), "{answered} answered");
    assert!(server.count("document_chunks") > chunks);
    let stored = server.count("document_chunks");
    let payload = Initiator::new(phone.state.clone(), sync::Limits::default())
        .poll_request(&mut phone.docs, None)
        .unwrap();
    assert!(
        server
            .exchange(Route::Sync, &phone.key, &payload)
            .await
            .is_err()
    );
    assert_eq!(
        server.count("document_chunks"),
        stored,
        "a refused request stores nothing"
    );
    // The bucket is per device.
    other.sync(&server, None).await.unwrap();
    assert_eq!(
        other.read(ACTIVITIES_44, "title").as_deref(),
        Some("ครั้งต่อไป")
    );
}

fn reply(fill: u8, province: &str) -> MailItem {
    let mut envelope = vec![fill; 1024];
    envelope[0] = seal::ENVELOPE_VERSION;
    envelope[1] = seal::KIND_REPLY;
    MailItem {
        kind: EnvelopeKind::Reply,
        province: province.into(),
        envelope,
    }
}

fn pushed(section: &[MailboxMessage]) -> Vec<MailItem> {
    section
        .iter()
        .flat_map(|m| match m {
            MailboxMessage::Push(push) => push.items.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn cursor(section: &[MailboxMessage]) -> u64 {
    section
        .iter()
        .find_map(|m| match m {
            MailboxMessage::Have(have) => Some(have.cursor),
            _ => None,
        })
        .unwrap()
}

#[tokio::test]
async fn replies_go_down_to_every_device_of_their_province_only() {
    let server = Server::start(Limits::default());
    // Replies as the tip desk would leave them, stored by an earlier run of the server.
    {
        let conn = db::open(server.dir.path()).unwrap();
        for (seq, item) in [
            (1, reply(1, "TH-44")),
            (2, reply(2, "TH-40")),
            (3, reply(3, "TH-44")),
        ] {
            let stored = phakhi_core::mailbox::StoredItem {
                id: item.id(),
                seq,
                item,
            };
            // Arrived today: replies older than `reply_keep_days` are dropped.
            let today = i64::try_from(phakhi_server::routes::now_unix()).unwrap();
            db::mailbox::insert(&conn, &stored, today).unwrap();
        }
    }
    let server = server.restart();
    let mut phone = Phone::new();
    let mut far = Phone::new();
    server
        .enrol(&phone.key, &server.invite("TH-44", Role::Leader))
        .await
        .unwrap();
    server
        .enrol(&far.key, &server.invite("TH-40", Role::Leader))
        .await
        .unwrap();

    let ask = |cursor| {
        encode_section(&[MailboxMessage::Have(Have {
            cursor,
            ids: vec![],
            more: false,
        })])
    };
    let answer = phone.sync(&server, Some(ask(0))).await.unwrap().unwrap();
    let answer = decode_section(&answer).unwrap();
    assert_eq!(pushed(&answer), vec![reply(1, "TH-44"), reply(3, "TH-44")]);
    let seen = cursor(&answer);
    assert_eq!(seen, 3);
    // Asking again from the returned cursor brings nothing new.
    let again = phone.sync(&server, Some(ask(seen))).await.unwrap().unwrap();
    assert!(pushed(&decode_section(&again).unwrap()).is_empty());

    let answer = far.sync(&server, Some(ask(0))).await.unwrap().unwrap();
    assert_eq!(
        pushed(&decode_section(&answer).unwrap()),
        vec![reply(2, "TH-40")]
    );
}

#[tokio::test]
async fn many_syncs_compact_the_document_and_a_tiny_cache_changes_nothing() {
    let dir = crate::tempdata::TempData::new();
    let state = AppState::open(Config {
        data: dir.path().to_path_buf(),
        cache_bytes: 0,
        limits: Limits {
            request_burst: 1_000,
            ..Limits::default()
        },
        ..Config::default()
    })
    .unwrap()
    .state;
    let server = Server { dir, state };
    let mut phone = Phone::new();
    server
        .enrol(&phone.key, &server.invite("TH-44", Role::Leader))
        .await
        .unwrap();
    let compact_after = db::documents::COMPACT_AFTER_CHUNKS as usize;
    for n in 0..compact_after + 5 {
        phone.write(ACTIVITIES_44, &format!("note-{n}"), &format!("บันทึก {n}"));
        phone.sync(&server, None).await.unwrap();
    }
    let conn = db::open(server.dir.path()).unwrap();
    let stats = db::documents::stats(&conn, ACTIVITIES_44).unwrap().unwrap();
    assert!(stats.chunk_count <= 6, "not compacted: {stats:?}");
    let mut reader = Phone::new();
    server
        .enrol(&reader.key, &server.invite("TH-44", Role::Leader))
        .await
        .unwrap();
    reader.sync(&server, None).await.unwrap();
    for n in 0..compact_after + 5 {
        assert_eq!(
            reader.read(ACTIVITIES_44, &format!("note-{n}")),
            Some(format!("บันทึก {n}"))
        );
    }

    let response = app(server.state.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let syncs: usize = text
        .lines()
        .find_map(|line| line.strip_prefix("phakhi_syncs_total "))
        .unwrap()
        .parse()
        .unwrap();
    // At least one exchange per device sync (a first sync may take two).
    assert!(syncs >= compact_after + 6, "{text}");
    assert!(text.contains("\nphakhi_enrolments_total 2\n"));
    assert!(text.contains("\nphakhi_devices 2\n"));
    assert!(text.contains("\nphakhi_documents 1\n"));
    assert!(!text.contains("\nphakhi_bytes_in_total 0\n"));
}

#[tokio::test]
async fn a_relay_enrols_phones_with_invites_hq_signed_for_it() {
    let hq = Server::start(Limits::default());
    let hq_key = hex::encode(hq.state.keys().verifying().unwrap().as_bytes());
    let relay = start_relay(Some(hq_key));
    assert!(relay.state.keys().signing().is_none());
    let for_relay = |state: &AppState| {
        issue(
            hq.state.config(),
            &InviteRequest {
                provinces: vec!["TH-44".into()],
                role: Role::Leader,
                expires: "1d".into(),
                server_url: Some("http://192.0.2.44:7744".into()),
                tip_desk_key: Some(hex::encode([7u8; 32])),
                server_key: Some(hex::encode(state.keys().static_public().as_bytes())),
            },
            now_unix(),
            &mut OsRng,
        )
        .unwrap()
    };
    // HQ signs invites only for a relay that joined it, in that relay's provinces.
    let joined = |state: &AppState| {
        let conn = phakhi_server::db::open_existing(&hq.state.config().data)
            .unwrap()
            .unwrap();
        phakhi_server::db::devices::insert(
            &conn,
            state.keys().static_public().as_bytes(),
            Role::Relay,
            &["TH-44".to_string()],
            i64::try_from(now_unix()).unwrap(),
        )
        .unwrap()
        .unwrap();
    };
    joined(&relay.state);
    let mut phone = Phone::new();
    let enrolled = relay
        .enrol(&phone.key, &for_relay(&relay.state))
        .await
        .unwrap();
    assert_eq!(enrolled.server_role, "relay");
    phone.write(ACTIVITIES_44, "title", "ศูนย์ประสานงานจังหวัด");
    phone.sync(&relay, None).await.unwrap();

    // An invite pinned to the relay is refused by HQ, and a relay without HQ's key can't check.
    let err = hq
        .enrol(
            &StaticKeyPair::generate(&mut OsRng),
            &for_relay(&relay.state),
        )
        .await
        .unwrap_err();
    assert_eq!(err, (StatusCode::BAD_REQUEST, "invite_invalid".to_string()));
    let lost = start_relay(None);
    joined(&lost.state);
    let err = lost
        .enrol(
            &StaticKeyPair::generate(&mut OsRng),
            &for_relay(&lost.state),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured".to_string()
        )
    );
    assert_eq!(lost.count("devices"), 0);
}

#[tokio::test]
async fn a_new_document_sent_whole_is_stored_as_sent_and_reads_back_the_same() {
    let server = Server::start(Limits::default());
    let mut phone = Phone::new();
    server
        .enrol(&phone.key, &server.invite("TH-44", Role::Leader))
        .await
        .unwrap();
    for n in 0..200 {
        phone.write(
            ACTIVITIES_44,
            &format!("act-{n:04}"),
            &format!("อบรมครั้งที่ {n}"),
        );
    }
    let sent = phone
        .docs
        .get_mut(&DocName::parse(ACTIVITIES_44).unwrap())
        .unwrap()
        .save();
    phone.sync(&server, None).await.unwrap();

    // Stored as the one chunk the phone sent (its saved document), not re-encoded.
    let conn = db::open(server.dir.path()).unwrap();
    let chunks = db::documents::load(&conn, ACTIVITIES_44).unwrap().unwrap();
    assert_eq!(chunks, vec![sent.clone()]);
    drop(conn);

    // Later changes go on top as increments, and everything reads back after a restart.
    phone.write(ACTIVITIES_44, "act-9999", "ประชุมสรุปผล");
    phone.sync(&server, None).await.unwrap();
    let server = server.restart();
    let mut reader = Phone::new();
    server
        .enrol(&reader.key, &server.invite("TH-44", Role::Leader))
        .await
        .unwrap();
    reader.sync(&server, None).await.unwrap();
    let name = DocName::parse(ACTIVITIES_44).unwrap();
    let mut theirs = reader.docs.remove(&name).unwrap();
    let mut ours = phone.docs.remove(&name).unwrap();
    assert_eq!(theirs.get_heads(), ours.get_heads());
    for n in [0, 57, 199] {
        let key = format!("act-{n:04}");
        assert_eq!(
            theirs
                .get(ROOT, &key)
                .unwrap()
                .unwrap()
                .0
                .into_string()
                .ok(),
            Some(format!("อบรมครั้งที่ {n}"))
        );
    }
    assert_eq!(
        theirs
            .get(ROOT, "act-9999")
            .unwrap()
            .unwrap()
            .0
            .into_string()
            .ok(),
        Some("ประชุมสรุปผล".to_string())
    );
}

/// An `AppError` of each code a request can be refused with; `None` for the codes no handler
/// returns as an `AppError` (the test provokes those for real). Exhaustive, so a new code cannot
/// be left out of the test.
fn refusal_of(code: ErrorCode) -> Option<AppError> {
    Some(match code {
        ErrorCode::BodyTooLarge => AppError::BodyTooLarge { limit: 1024 },
        ErrorCode::UnsupportedMediaType => AppError::UnsupportedMediaType,
        ErrorCode::BadEnvelope => AppError::BadEnvelope,
        ErrorCode::Replayed => AppError::Replayed,
        ErrorCode::ClockSkew => AppError::ClockSkew,
        ErrorCode::WrongServer => AppError::WrongServer,
        ErrorCode::BadRequest => AppError::BadRequest("ข้อมูลเสีย".into()),
        ErrorCode::UnknownDevice => AppError::UnknownDevice,
        ErrorCode::DeviceRevoked => AppError::DeviceRevoked,
        ErrorCode::NotAdmin => AppError::NotAdmin,
        ErrorCode::HqOnly => AppError::HqOnly,
        ErrorCode::ProvinceNotServed => AppError::ProvinceNotServed("TH-40".into()),
        ErrorCode::AlreadyEnrolled => AppError::AlreadyEnrolled,
        ErrorCode::InviteInvalid => AppError::InviteInvalid("ลายเซ็นไม่ถูกต้อง".into()),
        ErrorCode::InviteExpired => AppError::InviteExpired,
        ErrorCode::InviteUsed => AppError::InviteUsed,
        ErrorCode::OutOfScope => AppError::OutOfScope("province/TH-40".into()),
        ErrorCode::ReadOnlyDocument => AppError::ReadOnly("directory".into()),
        ErrorCode::TooManyDocuments => AppError::TooManyDocuments { limit: 2 },
        ErrorCode::TooManyChanges => AppError::TooManyChanges { limit: 3 },
        ErrorCode::MailboxQuotaExceeded => AppError::MailboxQuota,
        ErrorCode::ChunkQuotaExceeded => AppError::ChunkQuota,
        ErrorCode::DocumentBudgetExceeded => AppError::DocumentBudget {
            limit: 1024,
            used: 1000,
        },
        ErrorCode::RateLimited => AppError::RateLimited {
            retry_after_secs: 7,
        },
        ErrorCode::Timeout => AppError::Timeout,
        ErrorCode::NoRoute => AppError::NoRoute,
        ErrorCode::MethodNotAllowed => AppError::MethodNotAllowed,
        ErrorCode::Busy => AppError::Busy,
        ErrorCode::NotConfigured => AppError::NotConfigured,
        ErrorCode::UpgradeRequired => AppError::UpgradeRequired(
            phakhi_core::protocol::VersionSkew::of("the sync message", 0, 1),
        ),
        ErrorCode::Internal => AppError::Internal,
        ErrorCode::DocumentRefused
        | ErrorCode::DecodeLimit
        | ErrorCode::WrongAuthor
        | ErrorCode::NotRecordOwner
        | ErrorCode::InvalidContent
        | ErrorCode::NoSession => return None,
    })
}

/// Answers the `AppError` of the code in the path, as a handler would.
async fn refuse(UrlPath(code): UrlPath<String>) -> AppError {
    ErrorCode::parse(&code)
        .and_then(refusal_of)
        .expect("a code answered as an AppError")
}

/// Every error code is counted in `/metrics` under its own name, never as `other`. A refused
/// request goes through the server's own routes and layers (one route is added that refuses
/// with the `AppError` of a given code, as a handler does); a dashboard page without a session
/// and a damaged document in a sync exchange are provoked for real.
#[tokio::test]
async fn every_error_code_is_counted_in_metrics_under_its_own_name() {
    let server = Server::start(Limits::default());
    let router = with_layers(
        all_routes(&server.state).route("/test/refuse/{code}", get(refuse)),
        server.state.clone(),
    );
    let call = |request: Request<Body>| {
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let header = response
                .headers()
                .get(ERROR_HEADER)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
            (status, header, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let mut phone = Phone::new();
    server
        .enrol(&phone.key, &server.invite("TH-44", Role::Leader))
        .await
        .unwrap();
    for code in ErrorCode::ALL {
        match refusal_of(*code) {
            Some(error) => {
                let uri = format!("/test/refuse/{code}");
                let (status, header, body) =
                    call(Request::get(uri).body(Body::empty()).unwrap()).await;
                assert_eq!(status, error.status(), "{code}");
                assert_eq!(header, code.as_str());
                let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(json["error"], code.as_str(), "{body}");
            }
            None if *code == ErrorCode::NoSession => {
                let (status, header, _) =
                    call(Request::get("/dashboard").body(Body::empty()).unwrap()).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED);
                assert_eq!(header, code.as_str());
            }
            None => {
                // Changes that are not automerge data (or a saved document that would expand
                // to 2^40 rows), after heads the server does not have: the exchange is answered
                // and that one document is refused.
                let chunk = match code {
                    ErrorCode::DocumentRefused => {
                        Chunk::Changes(vec!["ไม่ใช่ข้อมูล".as_bytes().to_vec()])
                    }
                    ErrorCode::DecodeLimit => Chunk::Document {
                        changes: 1,
                        bytes: phakhi_core::sync::bounds::craft::long_run(1 << 40),
                    },
                    // A change under an actor bound to no device.
                    ErrorCode::WrongAuthor => {
                        let mut doc = AutoCommit::new();
                        doc.put(ROOT, "member:x", "x").unwrap();
                        doc.commit();
                        Chunk::Changes(vec![doc.get_changes(&[])[0].raw_bytes().to_vec()])
                    }
                    // The phone's own change, deleting a record another actor wrote.
                    ErrorCode::NotRecordOwner => {
                        let mut doc = AutoCommit::new();
                        doc.put(ROOT, "member:x", "x").unwrap();
                        doc.commit();
                        let heads = doc.get_heads();
                        doc.set_actor(phone.actor());
                        doc.delete(ROOT, "member:x").unwrap();
                        doc.commit();
                        Chunk::Changes(vec![doc.get_changes(&heads)[0].raw_bytes().to_vec()])
                    }
                    // The phone's own change, naming a newer schema.
                    ErrorCode::InvalidContent => {
                        let mut doc = AutoCommit::new().with_actor(phone.actor());
                        doc.put(ROOT, "schema", 99u64).unwrap();
                        doc.commit();
                        Chunk::Changes(vec![doc.get_changes(&[])[0].raw_bytes().to_vec()])
                    }
                    other => panic!("{other} has no way to be provoked here"),
                };
                let entry = DocEntry {
                    name: ACTIVITIES_44.into(),
                    status: DocStatus::Ok,
                    heads: vec![automerge::ChangeHash([0x44; 32])],
                    chunk: Some(chunk),
                };
                let message = Message {
                    kind: Kind::Request,
                    round: 1,
                    echo: [0; 8],
                    docs: vec![entry],
                    mailbox: None,
                };
                let (_, sealed) = server.sealed(&phone.key, Route::Sync, message.encode());
                let request = Request::post("/v1/sync")
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(Body::from(sealed.bytes))
                    .unwrap();
                let (status, _, body) = call(request).await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        }
    }
    phone.write(ACTIVITIES_44, "title", "ยังซิงก์ได้");
    phone.sync(&server, None).await.unwrap();

    let (status, _, text) = call(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    for code in ErrorCode::ALL {
        let line = format!("phakhi_errors_total{{code=\"{code}\"}} ");
        let count: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .unwrap_or_else(|| panic!("{code} is not counted under its own name:\n{text}"))
            .parse()
            .unwrap();
        assert!(count >= 1, "{code}: {count}");
    }
    assert!(!text.contains("code=\"other\""), "{text}");
}
