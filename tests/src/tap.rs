//! A byte-counting TCP proxy on 127.0.0.1, put in front of a server to see what its operator (or
//! anyone on its network) sees of each client: connections with their bytes each way and the
//! times they opened and closed. The test names the client it is about to drive
//! ([`Tap::watch`]); bytes and connections are counted for whoever is named while they flow.
//! It forwards to a loopback address only and stops when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// No client is being watched.
const NOBODY: usize = usize::MAX;

/// One connection through the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// Since the proxy started.
    pub opened: Duration,
    pub closed: Option<Duration>,
    /// Client to server.
    pub up: u64,
    /// Server to client.
    pub down: u64,
}

/// What the proxy saw while one client was watched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub connections: u64,
    pub up: u64,
    pub down: u64,
}

#[derive(Default)]
struct Books {
    connections: Vec<Connection>,
    per_client: std::collections::BTreeMap<usize, Seen>,
}

struct Shared {
    started: Instant,
    watched: AtomicUsize,
    books: Mutex<Books>,
}

impl Shared {
    fn count(&self, connection: usize, up: bool, n: u64) {
        let watched = self.watched.load(Ordering::SeqCst);
        let mut books = self.books.lock().expect("the proxy's books");
        if let Some(c) = books.connections.get_mut(connection) {
            if up {
                c.up += n;
            } else {
                c.down += n;
            }
        }
        if watched != NOBODY {
            let seen = books.per_client.entry(watched).or_default();
            if up {
                seen.up += n;
            } else {
                seen.down += n;
            }
        }
    }
}

/// A running proxy. `url` is what clients are given instead of the server's.
pub struct Tap {
    pub url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Tap {
    /// Starts a proxy on a free loopback port in front of `server` (an `http://127.0.0.1:…` URL).
    pub fn start(server: &str) -> Tap {
        let target: SocketAddr = server
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("the server's URL is http://IP:PORT");
        assert!(
            target.ip().is_loopback(),
            "the proxy forwards to loopback only"
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("the listener's address")
        );
        let shared = Arc::new(Shared {
            started: Instant::now(),
            watched: AtomicUsize::new(NOBODY),
            books: Mutex::new(Books::default()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let inner = shared.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the proxy's runtime");
            runtime.block_on(async move {
                let listener =
                    TcpListener::from_std(listener).expect("the listener in the runtime");
                let accept = async {
                    while let Ok((client, _)) = listener.accept().await {
                        tokio::spawn(relay(client, target, inner.clone()));
                    }
                };
                tokio::select! {
                    _ = stopped => {}
                    () = accept => {}
                }
            });
        });
        Tap {
            url,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Counts what flows from now on for client `who` (`None`: for nobody).
    pub fn watch(&self, who: Option<usize>) {
        self.shared
            .watched
            .store(who.unwrap_or(NOBODY), Ordering::SeqCst);
    }

    /// Everything seen per client so far.
    pub fn seen(&self) -> std::collections::BTreeMap<usize, Seen> {
        self.shared
            .books
            .lock()
            .expect("the proxy's books")
            .per_client
            .clone()
    }

    /// Every connection so far, in the order they opened.
    pub fn connections(&self) -> Vec<Connection> {
        self.shared
            .books
            .lock()
            .expect("the proxy's books")
            .connections
            .clone()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn relay(client: TcpStream, target: SocketAddr, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let index = {
        let watched = shared.watched.load(Ordering::SeqCst);
        let mut books = shared.books.lock().expect("the proxy's books");
        books.connections.push(Connection {
            opened: shared.started.elapsed(),
            ..Connection::default()
        });
        if watched != NOBODY {
            books.per_client.entry(watched).or_default().connections += 1;
        }
        books.connections.len() - 1
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, &shared, index, true),
        pump(server_read, client_write, &shared, index, false),
    );
    let closed = shared.started.elapsed();
    if let Some(c) = shared
        .books
        .lock()
        .expect("the proxy's books")
        .connections
        .get_mut(index)
    {
        c.closed = Some(closed);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: &Shared,
    index: usize,
    up: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        shared.count(index, up, n as u64);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
