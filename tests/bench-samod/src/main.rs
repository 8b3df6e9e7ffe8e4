//! The samod side of Phakhi's fleet benchmark (samod is the Rust implementation of
//! automerge-repo).
//!
//! `bench-samod serve --port P --data DIR`: a samod Repo with its tokio filesystem storage (the
//! same layout as automerge-repo's Node storage) behind an axum WebSocket endpoint on
//! 127.0.0.1:P; like the npm sync server it does not announce its documents to clients.
//!
//! `bench-samod drive --url ws://... --clients N --records R --concurrency C`: N samod client
//! Repos (in-memory storage), C connected at once; each creates one document, adds R records one
//! change each, waits until the server's sync state says it has every change, prints
//! `doc <document id> <heads>` and closes. Also prints `start`, `done`, or `error <message>`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT, ReadDoc, ScalarValue};
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::routing::get;
use samod::{BackoffConfig, PeerId, Repo};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
const DISTRICTS: [&str; 6] = [
    "เมืองมหาสารคาม",
    "กันทรวิชัย",
    "บรบือ",
    "วาปีปทุม",
    "โกสุมพิสัย",
    "เชียงยืน",
];

type Error = Box<dyn std::error::Error + Send + Sync>;

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn number(args: &[String], name: &str, default: usize) -> Result<usize, Error> {
    match flag(args, name) {
        Some(v) => Ok(v.parse()?),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("serve") => serve(&args).await,
        Some("drive") => drive(&args).await,
        _ => Err("usage: bench-samod serve --port P --data DIR | drive --url URL --clients N --records R --concurrency C".into()),
    };
    if let Err(e) = outcome {
        println!("error {}", e.to_string().replace('\n', " "));
        std::process::exit(1);
    }
}

async fn serve(args: &[String]) -> Result<(), Error> {
    let port: u16 = flag(args, "--port").ok_or("--port is required")?.parse()?;
    let data = PathBuf::from(flag(args, "--data").ok_or("--data is required")?);
    let repo = Repo::build_tokio()
        .with_peer_id(PeerId::from("samod-server"))
        .with_storage(samod::storage::TokioFilesystemStorage::new(&data))
        // Like automerge-repo's npm sync server (`sharePolicy: async () => false`): serve what a
        // client asks for or announces, never announce every stored document to every client.
        .with_share_policy(samod::ShareConfig::read_write().with_announce(false))
        .load()
        .await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let url: samod::Url = format!("ws://127.0.0.1:{port}/").parse()?;
    let acceptor = repo.make_acceptor(url).map_err(|_| "repo stopped")?;
    let app = Router::new().route(
        "/",
        get(move |upgrade: WebSocketUpgrade| {
            let acceptor = acceptor.clone();
            async move {
                upgrade.on_upgrade(move |socket| async move {
                    let _ = acceptor.accept_axum(socket, None);
                })
            }
        }),
    );
    axum::serve(listener, app).await?;
    Ok(())
}

async fn drive(args: &[String]) -> Result<(), Error> {
    let url: samod::Url = flag(args, "--url").ok_or("--url is required")?.parse()?;
    let clients = number(args, "--clients", 1000)?;
    let records = number(args, "--records", 10)?;
    let concurrency = number(args, "--concurrency", 32)?.max(1);
    println!("start");
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.min(clients) {
        let (next, url) = (next.clone(), url.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= clients {
                    return Ok::<(), Error>(());
                }
                tokio::time::timeout(CLIENT_TIMEOUT, client(i, records, url.clone()))
                    .await
                    .map_err(|_| format!("client {i}: server never acknowledged"))??;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    println!("done");
    Ok(())
}

async fn client(i: usize, records: usize, url: samod::Url) -> Result<(), Error> {
    let repo = Repo::build_tokio()
        .with_peer_id(PeerId::from(format!("bench-client-{i}").as_str()))
        .load()
        .await;
    let dialer = repo
        .dial_websocket(url, BackoffConfig::default())
        .map_err(|_| "repo stopped")?;
    dialer
        .established()
        .await
        .map_err(|e| format!("client {i}: could not connect: {e:?}"))?;
    let conn = dialer.connection_id().ok_or("no connection id")?;
    let mut doc = Automerge::new();
    doc.transact(|tx| {
        tx.put_object(ROOT, "activities", ObjType::Map)?;
        Ok::<(), automerge::AutomergeError>(())
    })
    .map_err(|e| format!("{e:?}"))?;
    let handle = repo.create(doc).await.map_err(|_| "repo stopped")?;
    for r in 0..records {
        let n = i * 100 + r;
        handle
            .with_document(|doc| {
                doc.transact(|tx| {
                    let (_, acts) = tx.get(ROOT, "activities")?.ok_or(automerge::AutomergeError::Fail)?;
                    let rec = tx.put_object(&acts, format!("act-{n:06}"), ObjType::Map)?;
                    tx.put(&rec, "kind", if n % 3 == 0 { "campaign" } else { "training" })?;
                    tx.put(&rec, "title", format!("อบรมต่อต้านการทุจริตสำหรับเยาวชน ครั้งที่ {n}"))?;
                    let text = tx.put_object(&rec, "description", ObjType::Text)?;
                    tx.splice_text(&text, 0, 0, "ณ โรงเรียนบ้านหนองแวง ให้ความรู้เรื่องงบประมาณท้องถิ่น")?;
                    tx.put(&rec, "date", format!("2026-{:02}-{:02}", 1 + r % 12, 1 + i % 28))?;
                    tx.put(&rec, "district", DISTRICTS[n % DISTRICTS.len()])?;
                    tx.put(&rec, "attendance", ScalarValue::counter((20 + n % 50) as i64))?;
                    tx.put(&rec, "organiser", format!("leader-{i}"))?;
                    Ok::<(), automerge::AutomergeError>(())
                })
            })
            .map_err(|e| format!("{e:?}"))?;
    }
    handle.they_have_our_changes(conn).await;
    let heads = handle.with_document(|doc| doc.get_heads());
    let heads: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
    println!("doc {} {}", handle.document_id(), heads.join(","));
    dialer.close();
    repo.stop().await;
    Ok(())
}
