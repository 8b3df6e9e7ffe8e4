//! A user-space bad link. Phakhi's field leaders sync over 2G links that are slow, far away and
//! drop; this machine's kernel has no netem, so end-to-end tests put this TCP proxy between a
//! client and a real `phakhi serve` on loopback and make the link as bad as a [`Profile`] says:
//! one-way delay, a bandwidth cap per direction, connections cut part-way with an abrupt reset,
//! refusal of new connections while the link is "down", and a switch to cut everything now.
//!
//! Every random choice comes from one seed, so a failing run replays. The proxy listens and
//! forwards on loopback only, carries a bounded number of connections, and stops when dropped.
//!
//! ```no_run
//! # async fn demo(server: std::net::SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
//! use phakhi_tests::badlink::{BadLink, Profile};
//! let link = BadLink::start(server, Profile::two_g(), 7).await?;
//! // Point the client at `link.addr()` instead of `server`.
//! link.set_refusing(true); // the phone loses signal
//! link.cut_all();
//! link.set_refusing(false);
//! assert_eq!(link.stats().refused, 0);
//! # Ok(()) }
//! ```

mod blocking;
mod conn;
mod error;
mod profile;
mod shaper;
mod stats;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

pub use blocking::BlockingBadLink;
pub use conn::{Abort, ConnCtx, CutPlan, Outcome, Shape, run as run_connection};
pub use error::{BadLinkError, ProfileError};
pub use profile::{Bandwidth, DEFAULT_MAX_CONNECTIONS, MAX_ONE_WAY_DELAY, Profile, ProfileBuilder};
pub use shaper::{Chunk, TokenBucket};
pub use stats::{CutCause, CutRecord, LinkStats, StatsSnapshot};

/// How often [`BadLink::wait_idle`] looks at the connection count.
const IDLE_POLL: Duration = Duration::from_millis(5);

/// State shared by the handle, the accept loop and every connection.
#[derive(Debug)]
struct Shared {
    stats: Arc<LinkStats>,
    refusing: AtomicBool,
    cut_all: watch::Sender<u64>,
    slots: Arc<Semaphore>,
    max_connections: usize,
}

/// A running bad link: a proxy on `127.0.0.1` that forwards to a loopback target through the
/// impairments of its [`Profile`]. Dropping it stops it (its tasks are aborted); [`Self::shutdown`]
/// stops it and waits until every connection is closed.
#[derive(Debug)]
pub struct BadLink {
    addr: SocketAddr,
    target: SocketAddr,
    profile: Profile,
    seed: u64,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl BadLink {
    /// Starts a bad link on `127.0.0.1:0` in front of `target`, which must be a loopback address.
    pub async fn start(
        target: SocketAddr,
        profile: Profile,
        seed: u64,
    ) -> Result<Self, BadLinkError> {
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self::start_on(listen, target, profile, seed).await
    }

    /// Starts a bad link listening on `listen`; both addresses must be loopback addresses.
    pub async fn start_on(
        listen: SocketAddr,
        target: SocketAddr,
        profile: Profile,
        seed: u64,
    ) -> Result<Self, BadLinkError> {
        for (role, addr) in [("listen", listen), ("target", target)] {
            if !addr.ip().is_loopback() {
                return Err(BadLinkError::NotLoopback { role, addr });
            }
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| BadLinkError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| BadLinkError::Bind {
            addr: listen,
            source,
        })?;
        let max_connections = profile.max_connections();
        let shared = Arc::new(Shared {
            stats: Arc::new(LinkStats::default()),
            refusing: AtomicBool::new(false),
            cut_all: watch::Sender::new(0),
            slots: Arc::new(Semaphore::new(max_connections)),
            max_connections,
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let accept = AcceptLoop {
            listener,
            target,
            profile: profile.clone(),
            seed,
            shared: Arc::clone(&shared),
        };
        let task = tokio::spawn(accept.run(stop_rx));
        Ok(Self {
            addr,
            target,
            profile,
            seed,
            shared,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The address clients connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The impairments applied.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The seed every random choice is drawn from; report it with a failure to replay it.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The counters as they are now.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Connections being carried right now.
    pub fn live_connections(&self) -> usize {
        self.shared
            .max_connections
            .saturating_sub(self.shared.slots.available_permits())
    }

    /// Takes the link down (`true`: every new connection is reset as soon as it arrives, and
    /// counted as refused) or brings it back up (`false`). Live connections are not touched;
    /// use [`Self::cut_all`] for them.
    pub fn set_refusing(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::Release);
    }

    /// Whether new connections are being refused.
    pub fn is_refusing(&self) -> bool {
        self.shared.refusing.load(Ordering::Acquire)
    }

    /// Cuts every connection live now, abruptly, on both sides. Connections accepted later are
    /// not affected.
    pub fn cut_all(&self) {
        self.shared.cut_all.send_modify(|generation| {
            *generation = generation.wrapping_add(1);
        });
    }

    /// Waits until no connection is live, for at most `timeout`; says whether it got there.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.live_connections() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(IDLE_POLL).await;
        }
    }

    /// Stops listening, closes every connection and waits until all of them are gone.
    pub async fn shutdown(mut self) {
        self.stop_and_wait().await;
    }

    /// [`Self::shutdown`] for a link that is owned by something else.
    pub(crate) async fn stop_and_wait(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // The loop ends on the signal; an abort or panic inside it leaves nothing to wait for.
            let _ = task.await;
        }
    }
}

impl Drop for BadLink {
    fn drop(&mut self) {
        self.abort();
    }
}

impl BadLink {
    /// Stops the link without waiting: aborting the accept loop drops its task set, which aborts
    /// every connection.
    pub(crate) fn abort(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The listening half of a link: accepts, refuses or forwards.
struct AcceptLoop {
    listener: TcpListener,
    target: SocketAddr,
    profile: Profile,
    seed: u64,
    shared: Arc<Shared>,
}

impl AcceptLoop {
    async fn run(self, mut stop: oneshot::Receiver<()>) {
        let now = Instant::now();
        let up = Shape::new(self.profile.up(), self.profile.one_way_delay(), now);
        let down = Shape::new(self.profile.down(), self.profile.one_way_delay(), now);
        let mut conns = JoinSet::new();
        let mut next_id = 0u64;
        loop {
            let accepted = tokio::select! {
                _ = &mut stop => break,
                accepted = self.listener.accept() => accepted,
            };
            while conns.try_join_next().is_some() {}
            let client = match accepted {
                Ok((client, _peer)) => client,
                Err(_) => {
                    // Out of descriptors or a connection that died in the queue: try again
                    // shortly rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let stats = &self.shared.stats;
            if self.shared.refusing.load(Ordering::Acquire) {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                client.abort();
                continue;
            }
            let Ok(permit) = Arc::clone(&self.shared.slots).try_acquire_owned() else {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                client.abort();
                continue;
            };
            stats.accepted.fetch_add(1, Ordering::Relaxed);
            let id = next_id;
            next_id += 1;
            let ctx = ConnCtx {
                id,
                up: up.clone(),
                down: down.clone(),
                plan: CutPlan::draw(self.seed, id, &self.profile),
                stats: Arc::clone(stats),
            };
            let cut_all = self.shared.cut_all.subscribe();
            let target = self.target;
            conns.spawn(async move {
                let _permit = permit;
                let _ = client.set_nodelay(true);
                match TcpStream::connect(target).await {
                    Ok(upstream) => {
                        let _ = upstream.set_nodelay(true);
                        run_connection(client, upstream, ctx, cut_all).await;
                    }
                    Err(_) => {
                        ctx.stats.upstream_failed.fetch_add(1, Ordering::Relaxed);
                        client.abort();
                    }
                }
            });
        }
        drop(self.listener);
        conns.shutdown().await;
    }
}
