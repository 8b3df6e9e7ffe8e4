//! A relay forwarding attachment chunks to HQ, both in this process on loopback with real
//! SQLite data folders: HQ serves on a socket, the relay joins it with a relay invite, and the
//! relay's upstream task (`relay::upstream::run`) carries the chunks its phones left. It asks
//! HQ first and sends only what HQ lacks, prunes each chunk's bytes after HQ's answer, and
//! when HQ's quota for it is full keeps the rest and says which setting to raise.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use phakhi_core::attach::{CHUNK_LEN, ChunkId};
use phakhi_server::config::{Config, Limits, ServerRole, UpstreamConfig};
use phakhi_server::db::{self, chunks, devices::Role};
use phakhi_server::invite::{InviteRequest, issue};
use phakhi_server::metrics::Gauges;
use phakhi_server::relay::status::UpstreamStatus;
use phakhi_server::routes::now_unix;
use phakhi_server::state::AppState;
use rand::{RngCore, SeedableRng};
use rand_core::OsRng;
use tokio::sync::watch;

/// HQ serving on loopback until the returned sender is dropped or set.
async fn start_hq(dir: &Path, limits: Limits) -> (AppState, String, watch::Sender<bool>) {
    let state = AppState::open(Config {
        data: dir.to_path_buf(),
        role: ServerRole::Hq,
        limits,
        ..Config::default()
    })
    .unwrap()
    .state;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, mut stopped) = watch::channel(false);
    let serving = state.clone();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        phakhi_server::http::serve(listener, serving, shutdown)
            .await
            .unwrap();
    });
    (state, url, stop)
}

/// A relay joined to HQ, holding `count` chunks (random bytes, as encrypted chunks look)
/// uploaded by one of its phones; returns its ids in upload order.
async fn relay_with_chunks(
    hq: &AppState,
    hq_url: &str,
    dir: &Path,
    count: usize,
) -> Vec<(ChunkId, Vec<u8>)> {
    let invite = issue(
        hq.config(),
        &InviteRequest {
            provinces: vec!["TH-44".into()],
            role: Role::Relay,
            expires: "1d".into(),
            server_url: Some(hq_url.to_owned()),
            tip_desk_key: Some(hex::encode([7u8; 32])),
            server_key: None,
        },
        now_unix(),
        &mut OsRng,
    )
    .unwrap();
    let data = dir.to_path_buf();
    let network_key = hq.keys().verifying().unwrap();
    tokio::task::spawn_blocking(move || {
        phakhi_server::relay::join::join(
            &data,
            &invite,
            &network_key,
            None,
            now_unix(),
            &mut OsRng,
        )
        .unwrap();
    })
    .await
    .unwrap();
    let conn = db::open(dir).unwrap();
    db::devices::insert(&conn, &[9; 32], Role::Leader, &["TH-44".into()], 0)
        .unwrap()
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(44);
    (0..count)
        .map(|_| {
            let mut bytes = vec![0u8; CHUNK_LEN];
            rng.fill_bytes(&mut bytes);
            let id = ChunkId::of(&bytes);
            assert!(chunks::insert(&conn, &id, &bytes, "TH-44").unwrap());
            (id, bytes)
        })
        .collect()
}

/// The relay's server state with its upstream task running; the task stops when the returned
/// sender is set.
fn start_relay(dir: &Path) -> (AppState, watch::Sender<bool>) {
    let upstream = UpstreamConfig {
        url: None,
        interval: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(1),
    };
    let state = AppState::open(Config {
        data: dir.to_path_buf(),
        role: ServerRole::Relay,
        upstream: Some(upstream.clone()),
        ..Config::default()
    })
    .unwrap()
    .state;
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(phakhi_server::relay::upstream::run(
        state.clone(),
        upstream,
        stopped,
    ));
    (state, stop)
}

async fn wait_for(
    relay: &AppState,
    what: &str,
    done: impl Fn(&UpstreamStatus) -> bool,
) -> UpstreamStatus {
    for _ in 0..600 {
        if let Some(status) = relay.upstream_status()
            && done(&status)
        {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "timed out waiting for {what}: {:?}",
        relay.upstream_status()
    );
}

fn limits() -> Limits {
    Limits {
        requests_per_minute: 100_000,
        request_burst: 100_000,
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_sends_hq_only_the_chunks_it_lacks_and_prunes_them_after_the_answer() {
    let dir = crate::tempdata::TempData::new();
    let (hq, hq_url, hq_stop) = start_hq(&dir.path().join("hq"), limits()).await;
    let relay_dir = dir.path().join("relay");
    let sent = relay_with_chunks(&hq, &hq_url, &relay_dir, 40).await;
    // HQ already holds three of them (they went before an answer was lost).
    let early: Vec<(ChunkId, Vec<u8>)> = vec![sent[0].clone(), sent[17].clone(), sent[39].clone()];
    let stored = early.clone();
    hq.with_core(move |core| {
        for (id, bytes) in &stored {
            chunks::insert(&core.conn, id, bytes, "TH-44")?;
        }
        Ok(())
    })
    .await
    .unwrap();

    let (relay, relay_stop) = start_relay(&relay_dir);
    let status = wait_for(&relay, "every chunk at HQ", |s| {
        s.chunks_acked == 40 && s.chunks_waiting == 0
    })
    .await;
    relay_stop.send(true).unwrap();

    // Asked first, so the three HQ held were never sent; every other went exactly once.
    assert_eq!(status.chunks_found_held, 3, "{status:?}");
    assert_eq!(status.chunks_sent, 37, "{status:?}");
    assert_eq!(status.chunks_in_failed_exchanges, 0);
    assert_eq!(status.chunk_last_error, None);
    assert!(status.chunk_exchanges >= 2, "{status:?}");
    assert!(
        status.chunk_batch > 1,
        "a quick link grows the batch: {status:?}"
    );
    let metrics = hq.metrics().render(Gauges {
        full: true,
        ..Gauges::default()
    });
    assert!(
        metrics.contains("\nphakhi_chunks_received_total 37\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nphakhi_chunks_stored_total 37\n"),
        "{metrics}"
    );

    // HQ holds every chunk byte for byte; what the relay handed over is counted in memory only
    // (the early ones were not handed over by it).
    let ids: Vec<ChunkId> = sent.iter().map(|(id, _)| *id).collect();
    let held = hq
        .with_reader(move |conn| {
            let mut held = Vec::new();
            for id in &ids {
                held.push(chunks::get(conn, id)?);
            }
            Ok(held)
        })
        .await
        .unwrap();
    for ((_, bytes), at_hq) in sent.iter().zip(&held) {
        assert_eq!(at_hq.as_ref(), Some(bytes));
    }
    let counted = hq
        .with_core(|core| Ok(core.allowance.devices_counted()))
        .await
        .unwrap();
    assert_eq!(counted, 1, "only the relay handed chunks over");

    // The relay deleted them: still known as passed on, no bytes, nothing waiting.
    let conn = db::open(&relay_dir).unwrap();
    assert_eq!(chunks::totals(&conn).unwrap(), (0, 0));
    assert_eq!(chunks::count_unacked(&conn).unwrap(), 0);
    let ids: Vec<ChunkId> = sent.iter().map(|(id, _)| *id).collect();
    assert_eq!(chunks::held(&conn, &ids).unwrap().len(), 40);
    let _ = hq_stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_chunk_quota_at_hq_keeps_the_rest_at_the_relay_and_names_the_setting() {
    let dir = crate::tempdata::TempData::new();
    let (hq, hq_url, hq_stop) = start_hq(
        &dir.path().join("hq"),
        Limits {
            chunks_per_relay: 5,
            // A relay with no phones at HQ gets one phone's share if that is more.
            chunks_per_device: 5,
            ..limits()
        },
    )
    .await;
    let relay_dir = dir.path().join("relay");
    let sent = relay_with_chunks(&hq, &hq_url, &relay_dir, 8).await;
    let (relay, relay_stop) = start_relay(&relay_dir);
    let status = wait_for(&relay, "the quota refusal", |s| {
        s.chunk_last_error
            .as_deref()
            .is_some_and(|e| e.contains("chunks_per_relay"))
            && s.chunks_acked == 5
    })
    .await;
    relay_stop.send(true).unwrap();
    assert_eq!(status.chunks_waiting, 3, "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("chunks_per_relay")),
        "{status:?}"
    );

    // HQ holds the first five in upload order; the relay still has the last three's bytes.
    let conn = db::open(&relay_dir).unwrap();
    assert_eq!(chunks::totals(&conn).unwrap(), (3, 3 * CHUNK_LEN as i64));
    let waiting: Vec<ChunkId> = chunks::unacked(&conn, 10)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let last: Vec<ChunkId> = sent[5..].iter().map(|(id, _)| *id).collect();
    assert_eq!(waiting, last);
    let first: Vec<ChunkId> = sent[..5].iter().map(|(id, _)| *id).collect();
    let all: Vec<ChunkId> = sent.iter().map(|(id, _)| *id).collect();
    let at_hq = hq
        .with_reader(move |conn| chunks::held(conn, &all))
        .await
        .unwrap();
    assert_eq!(at_hq, first);
    // HQ's operator sees the refusals in /metrics under their own code.
    let metrics = scrape(&hq_url, "/metrics").await;
    assert!(
        metrics.contains("phakhi_errors_total{code=\"chunk_quota_exceeded\"} "),
        "{metrics}"
    );
    assert!(!metrics.contains("code=\"other\""), "{metrics}");
    let _ = hq_stop.send(true);
}

/// The body of `GET path` from the server at `url`, over its socket.
async fn scrape(url: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}
