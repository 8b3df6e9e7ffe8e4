//! A bad link for synchronous tests. Many end-to-end tests drive `phakhi serve` with a blocking
//! HTTP client; this wrapper runs the proxy on a runtime of its own (one worker thread) so those
//! tests need no async code. Call it from plain threads, not from inside an async runtime.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{BadLink, BadLinkError, Profile, StatsSnapshot};

/// How long dropping the wrapper waits for the proxy's runtime to wind down.
const RUNTIME_GRACE: Duration = Duration::from_secs(2);

/// How often [`BlockingBadLink::cut_when`] looks at the link's figures.
const CUT_POLL: Duration = Duration::from_millis(1);

/// How long [`BlockingBadLink::cut_when`] waits for a cut connection to be counted.
const CUT_SETTLE: Duration = Duration::from_millis(500);

/// A [`BadLink`] with its own runtime, driven from blocking code.
#[derive(Debug)]
pub struct BlockingBadLink {
    link: BadLink,
    runtime: Option<tokio::runtime::Runtime>,
}

impl BlockingBadLink {
    /// Starts a bad link on `127.0.0.1:0` in front of the loopback address `target`.
    pub fn start(target: SocketAddr, profile: Profile, seed: u64) -> Result<Self, BadLinkError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("badlink")
            .enable_all()
            .build()
            .map_err(BadLinkError::Runtime)?;
        let link = runtime.block_on(BadLink::start(target, profile, seed))?;
        Ok(Self {
            link,
            runtime: Some(runtime),
        })
    }

    fn link(&self) -> &BadLink {
        &self.link
    }

    /// See [`BadLink::addr`].
    pub fn addr(&self) -> SocketAddr {
        self.link().addr()
    }

    /// See [`BadLink::seed`].
    pub fn seed(&self) -> u64 {
        self.link().seed()
    }

    /// See [`BadLink::profile`].
    pub fn profile(&self) -> &Profile {
        self.link().profile()
    }

    /// See [`BadLink::stats`].
    pub fn stats(&self) -> StatsSnapshot {
        self.link().stats()
    }

    /// See [`BadLink::live_connections`].
    pub fn live_connections(&self) -> usize {
        self.link().live_connections()
    }

    /// See [`BadLink::set_refusing`].
    pub fn set_refusing(&self, refusing: bool) {
        self.link().set_refusing(refusing);
    }

    /// See [`BadLink::is_refusing`].
    pub fn is_refusing(&self) -> bool {
        self.link().is_refusing()
    }

    /// See [`BadLink::cut_all`].
    pub fn cut_all(&self) {
        self.link().cut_all();
    }

    /// Cuts every live connection once `reached` holds for the link's figures, and makes sure
    /// the cut ended one: a cut that finds no connection open (the client between two
    /// exchanges) or one that was finishing anyway is tried again on the next live
    /// connection. Returns false, without cutting, if `done` is set first.
    pub fn cut_when(&self, reached: impl Fn(&StatsSnapshot) -> bool, done: &AtomicBool) -> bool {
        loop {
            if done.load(Ordering::SeqCst) {
                return false;
            }
            let stats = self.stats();
            if reached(&stats) && self.live_connections() > 0 {
                self.cut_all();
                let settle = Instant::now() + CUT_SETTLE;
                while Instant::now() < settle {
                    if self.stats().cut > stats.cut {
                        return true;
                    }
                    std::thread::sleep(CUT_POLL);
                }
            }
            std::thread::sleep(CUT_POLL);
        }
    }

    /// See [`BadLink::wait_idle`]; blocks the calling thread.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        match &self.runtime {
            Some(rt) => rt.block_on(self.link.wait_idle(timeout)),
            None => self.link.live_connections() == 0,
        }
    }

    /// See [`BadLink::shutdown`]; blocks until every connection is closed.
    pub fn shutdown(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.block_on(self.link.stop_and_wait());
            rt.shutdown_timeout(RUNTIME_GRACE);
        }
    }
}

impl Drop for BlockingBadLink {
    fn drop(&mut self) {
        // Dropping the link aborts its tasks; the runtime then winds down in the background, so
        // this is safe even if the wrapper is dropped on an async thread by mistake.
        self.link.abort();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(RUNTIME_GRACE);
        }
    }
}
