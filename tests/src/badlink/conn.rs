//! One proxied connection: two shaped directions, a planned cut, and the abrupt close that ends it.
//!
//! Each direction is a reader and a writer joined by a queue of [`Chunk`]s. The reader takes bytes
//! from its side, waits for the direction's token bucket, and stamps each chunk with the instant it
//! becomes deliverable (`sent + one_way_delay`); the writer sleeps until that instant and writes.
//! So the delay is a delay line, not a per-chunk pause, and throughput is set by the bucket alone.
//!
//! The logic is generic over the two streams so it runs on in-memory pipes under a paused clock in
//! unit tests, and on TCP sockets in the proxy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::profile::{Bandwidth, Profile, UNSHAPED_CHUNK};
use super::shaper::{Chunk, TokenBucket};
use super::stats::{CutCause, CutRecord, LinkStats};

/// Chunks queued in one direction before the reader stops taking bytes; with a bandwidth cap the
/// queue holds at most about `rate × delay` bytes anyway.
const QUEUE_CHUNKS: usize = 256;

/// A stream the proxy can close abruptly.
pub trait Abort: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Closes the stream at once, resetting it where the transport can.
    fn abort(self);
}

impl Abort for tokio::net::TcpStream {
    fn abort(self) {
        // A zero linger makes close send RST instead of FIN. If the option cannot be set the
        // stream is still dropped, which is an abrupt (if orderly) close.
        let _ = self.set_zero_linger();
        drop(self);
    }
}

impl Abort for tokio::io::DuplexStream {
    fn abort(self) {
        drop(self);
    }
}

/// Where, if anywhere, a connection will be cut. Drawn from the link's seed and the connection's
/// number alone, so the same seed cuts the same connections at the same byte in every run, however
/// the connections interleave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutPlan {
    /// Bytes delivered (both directions together) before the cut, or `None` for no cut.
    pub after_bytes: Option<u64>,
}

impl CutPlan {
    /// The plan for connection number `conn` of a link seeded with `seed`.
    pub fn draw(seed: u64, conn: u64, profile: &Profile) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(conn);
        let p = profile.cut_probability();
        // `gen_bool` rejects values outside 0..=1; profiles are checked on build, but the clamp
        // keeps a hand-made value from panicking here.
        let chosen = rng.gen_bool(p.clamp(0.0, 1.0));
        let at = rng.gen_range(profile.cut_after_bytes());
        Self {
            after_bytes: chosen.then_some(at),
        }
    }
}

/// One direction's shaping: its cap (shared by every connection on the link) and its delay.
#[derive(Debug, Clone)]
pub struct Shape {
    /// The link-wide bucket for this direction, if capped.
    pub bucket: Option<Arc<Mutex<TokenBucket>>>,
    /// Bytes per read.
    pub chunk: usize,
    /// One-way delay.
    pub delay: Duration,
}

impl Shape {
    /// The shaping for a direction with cap `cap` and delay `delay`, its bucket full from `now`.
    pub fn new(cap: Option<Bandwidth>, delay: Duration, now: Instant) -> Self {
        Self {
            bucket: cap.map(|c| Arc::new(Mutex::new(TokenBucket::for_cap(c, now)))),
            chunk: cap.map_or(UNSHAPED_CHUNK, |c| c.chunk()),
            delay,
        }
    }

    /// When `bytes` read at `now` may leave.
    fn send_at(&self, bytes: usize, now: Instant) -> Instant {
        match &self.bucket {
            Some(bucket) => {
                let n = u64::try_from(bytes).unwrap_or(u64::MAX);
                // A poisoned lock means another connection panicked mid-reserve; the bucket's
                // numbers are still whole, so carry on with them.
                let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
                b.reserve(n, now)
            }
            None => now,
        }
    }
}

/// Everything a connection needs from its link.
#[derive(Debug, Clone)]
pub struct ConnCtx {
    /// The connection's number on its link, from 0 in accept order.
    pub id: u64,
    /// Client → target shaping.
    pub up: Shape,
    /// Target → client shaping.
    pub down: Shape,
    /// Where the connection will be cut.
    pub plan: CutPlan,
    /// The link's counters.
    pub stats: Arc<LinkStats>,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Both directions finished with an orderly close.
    Completed,
    /// The proxy cut it.
    Cut(CutCause),
    /// A side reset or errored; the other side was closed abruptly to match.
    Failed,
}

/// Per-connection counters shared by its two directions.
#[derive(Debug)]
struct ConnState {
    /// Bytes the connection may still deliver before its planned cut (`u64::MAX` when none).
    budget: AtomicU64,
    /// Bytes taken from one side and not yet written to the other.
    in_flight: AtomicU64,
    /// Bytes written to either side.
    delivered: AtomicU64,
}

impl ConnState {
    /// Claims up to `want` bytes of the budget; returns how many may be written and whether the
    /// budget is spent once they are.
    fn claim(&self, want: u64) -> (u64, bool) {
        let mut left = self.budget.load(Ordering::Acquire);
        loop {
            if left == u64::MAX {
                return (want, false);
            }
            let take = want.min(left);
            match self.budget.compare_exchange_weak(
                left,
                left - take,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return (take, left - take == 0),
                Err(now) => left = now,
            }
        }
    }
}

/// Why a direction stopped early.
#[derive(Debug)]
enum Stop {
    /// The planned cut point was reached.
    Planned,
    /// A side reset or errored.
    Io,
}

/// Which way a direction carries bytes, for the link's counters.
#[derive(Debug, Clone, Copy)]
enum Way {
    Up,
    Down,
}

/// Carries one connection between `client` and `target` until both sides close, a side fails,
/// the planned cut is reached or `cut_all` changes. Records the outcome in the link's counters
/// before closing the streams, so a peer that sees the close can already read the counters.
pub async fn run<C: Abort, T: Abort>(
    client: C,
    target: T,
    ctx: ConnCtx,
    mut cut_all: watch::Receiver<u64>,
) -> Outcome {
    let state = ConnState {
        budget: AtomicU64::new(ctx.plan.after_bytes.unwrap_or(u64::MAX)),
        in_flight: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
    };
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let (mut target_rd, mut target_wr) = tokio::io::split(target);

    let ended = {
        let up = pump(
            &mut client_rd,
            &mut target_wr,
            &ctx.up,
            &state,
            &ctx,
            Way::Up,
        );
        let down = pump(
            &mut target_rd,
            &mut client_wr,
            &ctx.down,
            &state,
            &ctx,
            Way::Down,
        );
        let cut_now = async {
            // A dropped sender means the link is going away; its tasks are aborted then anyway.
            if cut_all.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            r = async { tokio::try_join!(up, down) } => r.map(|_| ()),
            () = cut_now => Err(None),
        }
    };

    let client = client_rd.unsplit(client_wr);
    let target = target_rd.unsplit(target_wr);
    let cause = match ended {
        Ok(()) => {
            ctx.stats.completed.fetch_add(1, Ordering::Relaxed);
            return Outcome::Completed;
        }
        Err(Some(Stop::Io)) => None,
        Err(Some(Stop::Planned)) => Some(CutCause::Planned),
        Err(None) => Some(CutCause::CutAll),
    };
    let outcome = match cause {
        Some(cause) => {
            ctx.stats.record_cut(CutRecord {
                conn: ctx.id,
                cause,
                delivered: state.delivered.load(Ordering::Acquire),
                in_flight: state.in_flight.load(Ordering::Acquire),
            });
            Outcome::Cut(cause)
        }
        None => {
            ctx.stats.failed.fetch_add(1, Ordering::Relaxed);
            Outcome::Failed
        }
    };
    client.abort();
    target.abort();
    outcome
}

/// Carries one direction: reads from `src`, shapes, delivers to `dst`, and half-closes `dst` once
/// `src` has ended and everything in flight was delivered.
async fn pump<R, W>(
    src: &mut R,
    dst: &mut W,
    shape: &Shape,
    state: &ConnState,
    ctx: &ConnCtx,
    way: Way,
) -> Result<(), Option<Stop>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<Chunk>(QUEUE_CHUNKS);
    let reader = async move {
        loop {
            let mut buf = vec![0u8; shape.chunk.max(1)];
            let n = src.read(&mut buf).await.map_err(|_| Some(Stop::Io))?;
            if n == 0 {
                return Ok::<(), Option<Stop>>(());
            }
            buf.truncate(n);
            state.in_flight.fetch_add(n as u64, Ordering::AcqRel);
            let sent = shape.send_at(n, Instant::now());
            tokio::time::sleep_until(sent).await;
            let chunk = Chunk {
                deliver_at: sent + shape.delay,
                data: buf,
            };
            if tx.send(chunk).await.is_err() {
                // The writer has stopped; its error ends the connection.
                return Ok(());
            }
        }
    };
    let writer = async {
        while let Some(chunk) = rx.recv().await {
            tokio::time::sleep_until(chunk.deliver_at).await;
            let len = chunk.data.len() as u64;
            let (take, spent) = state.claim(len);
            let take_usize = usize::try_from(take).unwrap_or(chunk.data.len());
            let part = chunk.data.get(..take_usize).unwrap_or(&chunk.data);
            dst.write_all(part).await.map_err(|_| Some(Stop::Io))?;
            state.in_flight.fetch_sub(take, Ordering::AcqRel);
            state.delivered.fetch_add(take, Ordering::AcqRel);
            let counter = match way {
                Way::Up => &ctx.stats.bytes_up,
                Way::Down => &ctx.stats.bytes_down,
            };
            counter.fetch_add(take, Ordering::Relaxed);
            if spent {
                return Err(Some(Stop::Planned));
            }
        }
        dst.shutdown().await.map_err(|_| Some(Stop::Io))?;
        Ok(())
    };
    tokio::try_join!(reader, writer).map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;

    use tokio::io::DuplexStream;
    use tokio::task::JoinHandle;

    use super::*;

    const PIPE: usize = 64 * 1024;

    struct Harness {
        client: DuplexStream,
        target: DuplexStream,
        cut_all: watch::Sender<u64>,
        stats: Arc<LinkStats>,
        conn: JoinHandle<Outcome>,
    }

    fn start(up: Shape, down: Shape, plan: CutPlan) -> Harness {
        let (client, client_side) = tokio::io::duplex(PIPE);
        let (target_side, target) = tokio::io::duplex(PIPE);
        let stats = Arc::new(LinkStats::default());
        let cut_all = watch::Sender::new(0);
        let ctx = ConnCtx {
            id: 0,
            up,
            down,
            plan,
            stats: Arc::clone(&stats),
        };
        let conn = tokio::spawn(run(client_side, target_side, ctx, cut_all.subscribe()));
        Harness {
            client,
            target,
            cut_all,
            stats,
            conn,
        }
    }

    fn plain(delay: Duration) -> Shape {
        Shape::new(None, delay, Instant::now())
    }

    fn capped(rate: u64, burst: u64, delay: Duration) -> Shape {
        let cap = Bandwidth::new(
            NonZeroU64::new(rate).unwrap(),
            NonZeroU64::new(burst).unwrap(),
        );
        Shape::new(Some(cap), delay, Instant::now())
    }

    const NO_CUT: CutPlan = CutPlan { after_bytes: None };

    /// Reads until EOF or error; returns the bytes and whether it ended in an error.
    async fn read_all(s: &mut DuplexStream) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return (out, false),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => return (out, true),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn delay_is_a_delay_line_not_a_pause_per_chunk() {
        let delay = Duration::from_millis(500);
        let mut h = start(plain(delay), plain(delay), NO_CUT);
        let t0 = Instant::now();
        let writer = tokio::spawn(async move {
            for i in 0..20u8 {
                h.client.write_all(&[i; 100]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            h.client.shutdown().await.unwrap();
            h.client
        });
        let mut arrivals = Vec::new();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = h.target.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            arrivals.push((Instant::now() - t0, got.len()));
        }
        let expected: Vec<u8> = (0..20u8).flat_map(|i| [i; 100]).collect();
        assert_eq!(got, expected);
        // Chunk k was sent at 50k ms and arrives 500 ms later: nothing arrives before the delay,
        // and the last chunk lands at 950 + 500 ms, not after 20 × 500 ms.
        let (first, _) = arrivals[0];
        let (last, total) = *arrivals.last().unwrap();
        assert!(first >= delay, "first bytes after {first:?}");
        assert_eq!(total, 2000);
        assert!(
            last >= Duration::from_millis(1450) && last < Duration::from_millis(1460),
            "last bytes after {last:?}"
        );
        for (at, len) in &arrivals {
            // By time `at`, only chunks sent by `at - delay` may have arrived.
            let sent_by = at.saturating_sub(delay).as_millis() / 50 + 1;
            assert!(*len as u128 <= sent_by * 100, "{len} bytes at {at:?}");
        }
        drop(writer.await.unwrap());
        drop(h.target);
        assert_eq!(h.conn.await.unwrap(), Outcome::Completed);
    }

    #[tokio::test(start_paused = true)]
    async fn capped_direction_delivers_no_more_than_rate_times_elapsed_plus_burst() {
        let (rate, burst) = (10_000u64, 1_000u64);
        let delay = Duration::from_millis(200);
        let mut h = start(capped(rate, burst, delay), plain(delay), NO_CUT);
        let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let sent = payload.clone();
        let t0 = Instant::now();
        let writer = tokio::spawn(async move {
            h.client.write_all(&sent).await.unwrap();
            h.client.shutdown().await.unwrap();
            h.client
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = h.target.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            // Bytes arriving by `t` left the bucket by `t - delay`.
            let sending = (Instant::now() - t0).saturating_sub(delay);
            let allowed = u128::from(burst) + u128::from(rate) * sending.as_nanos() / 1_000_000_000;
            assert!(
                got.len() as u128 <= allowed,
                "{} bytes by {sending:?} of sending, cap allows {allowed}",
                got.len()
            );
        }
        assert_eq!(got, payload);
        // The cap is also reached, not just respected: 49 000 bytes past the burst take 4.9 s.
        let took = Instant::now() - t0;
        assert!(
            took >= Duration::from_millis(4_900) + delay,
            "took {took:?}"
        );
        assert!(took < Duration::from_millis(5_200) + delay, "took {took:?}");
        drop(writer.await.unwrap());
        drop(h.target);
        assert_eq!(h.conn.await.unwrap(), Outcome::Completed);
        assert_eq!(h.stats.snapshot().bytes_up, 50_000);
    }

    #[tokio::test(start_paused = true)]
    async fn planned_cut_delivers_exactly_the_cut_point_then_closes_both_sides() {
        let plan = CutPlan {
            after_bytes: Some(1_000),
        };
        let mut h = start(plain(Duration::ZERO), plain(Duration::ZERO), plan);
        h.client.write_all(&[7u8; 5_000]).await.unwrap();
        let (at_target, _) = read_all(&mut h.target).await;
        assert_eq!(at_target, vec![7u8; 1_000]);
        let (at_client, _) = read_all(&mut h.client).await;
        assert!(at_client.is_empty());
        assert_eq!(h.conn.await.unwrap(), Outcome::Cut(CutCause::Planned));
        let s = h.stats.snapshot();
        assert_eq!(s.cut, 1);
        assert_eq!(s.bytes_up, 1_000);
        assert_eq!(s.cuts[0].delivered, 1_000);
        assert_eq!(s.cuts[0].cause, CutCause::Planned);
        assert!(s.cuts[0].in_flight <= 4_000);
        assert_eq!(s.in_flight_at_cut, s.cuts[0].in_flight);
    }

    #[tokio::test(start_paused = true)]
    async fn cut_all_counts_the_bytes_still_on_the_wire() {
        let delay = Duration::from_secs(1);
        let mut h = start(plain(delay), plain(delay), NO_CUT);
        h.client.write_all(&[1u8; 3_000]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        h.cut_all.send_modify(|g| *g += 1);
        assert_eq!(h.conn.await.unwrap(), Outcome::Cut(CutCause::CutAll));
        let (at_target, _) = read_all(&mut h.target).await;
        assert!(at_target.is_empty());
        let s = h.stats.snapshot();
        assert_eq!(s.cuts.len(), 1);
        assert_eq!(s.cuts[0].delivered, 0);
        assert_eq!(s.cuts[0].in_flight, 3_000);
        assert_eq!(s.in_flight_at_cut, 3_000);
    }

    #[tokio::test(start_paused = true)]
    async fn half_close_is_carried_and_thai_text_round_trips() {
        let delay = Duration::from_millis(100);
        let mut h = start(plain(delay), plain(delay), NO_CUT);
        let tip = "ภาคี: รายงานการทุจริตจากหมู่บ้าน".repeat(50);
        h.client.write_all(tip.as_bytes()).await.unwrap();
        h.client.shutdown().await.unwrap();
        let (request, failed) = read_all(&mut h.target).await;
        assert!(!failed);
        assert_eq!(String::from_utf8(request).unwrap(), tip);
        let reply = "รับแล้ว ✓";
        h.target.write_all(reply.as_bytes()).await.unwrap();
        h.target.shutdown().await.unwrap();
        let (got, failed) = read_all(&mut h.client).await;
        assert!(!failed);
        assert_eq!(String::from_utf8(got).unwrap(), reply);
        assert_eq!(h.conn.await.unwrap(), Outcome::Completed);
        let s = h.stats.snapshot();
        assert_eq!(s.completed, 1);
        assert_eq!(s.bytes_up, tip.len() as u64);
        assert_eq!(s.bytes_down, reply.len() as u64);
    }

    #[test]
    fn cut_plans_depend_on_seed_and_connection_only() {
        let p = Profile::builder("half")
            .cut_probability(0.5)
            .cut_after_bytes(10..=20)
            .build()
            .unwrap();
        let a: Vec<_> = (0..64).map(|c| CutPlan::draw(42, c, &p)).collect();
        let b: Vec<_> = (0..64).rev().map(|c| CutPlan::draw(42, c, &p)).collect();
        assert!(a.iter().eq(b.iter().rev()));
        let cut = a.iter().filter(|x| x.after_bytes.is_some()).count();
        assert!((16..=48).contains(&cut), "{cut} of 64 cut at p = 0.5");
        assert!(
            a.iter()
                .flat_map(|x| x.after_bytes)
                .all(|n| (10..=20).contains(&n))
        );
        let other: Vec<_> = (0..64).map(|c| CutPlan::draw(43, c, &p)).collect();
        assert_ne!(a, other);

        let never = Profile::loopback();
        assert!((0..64).all(|c| CutPlan::draw(1, c, &never).after_bytes.is_none()));
        let always = p.to_builder().cut_probability(1.0).build().unwrap();
        assert!((0..64).all(|c| CutPlan::draw(1, c, &always).after_bytes.is_some()));
    }
}
