//! The bad link over real loopback sockets: bytes pass unchanged, cuts land where the seed says and
//! are counted, the link can be taken down and brought back, and the 2G profile's throughput is
//! measured (printed, never asserted: wall-clock figures vary with the machine).

// Test helpers fail the test loudly on a broken fixture, as the tests themselves do.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use phakhi_tests::badlink::{
    BadLink, BadLinkError, BlockingBadLink, CutCause, CutPlan, Profile, ProfileError,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

/// No single exchange in this file should come near this; it only keeps a hang from lasting.
const GUARD: Duration = Duration::from_secs(15);

fn localhost() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// An echo server on loopback: every connection gets back what it sends, and a half-close once
/// the client half-closes.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(localhost()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = stream.into_split();
                if tokio::io::copy(&mut rd, &mut wr).await.is_ok() {
                    let _ = wr.shutdown().await;
                }
            });
        }
    });
    addr
}

/// A server that answers any first byte with `len` bytes and closes, like a download.
async fn source_server(len: usize) -> SocketAddr {
    let listener = TcpListener::bind(localhost()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut one = [0u8; 1];
                if stream.read_exact(&mut one).await.is_ok() {
                    let _ = stream.write_all(&vec![0x5a; len]).await;
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    addr
}

fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = "ภาคี รายงานจากภาคสนาม ".as_bytes().to_vec();
    let mut noise = vec![0u8; len.saturating_sub(bytes.len())];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut noise);
    bytes.extend_from_slice(&noise);
    bytes.truncate(len);
    bytes
}

/// What a client saw of one exchange.
#[derive(Debug)]
struct Exchange {
    received: Vec<u8>,
    /// The read side ended in an error (a reset) rather than EOF.
    reset: bool,
}

/// Sends `data` (then half-closes) while reading everything that comes back until EOF or error.
async fn exchange(addr: SocketAddr, data: &[u8]) -> Exchange {
    timeout(GUARD, async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let data = data.to_vec();
        let writer = tokio::spawn(async move {
            // A cut link makes these fail; the reader reports what the client saw.
            if wr.write_all(&data).await.is_ok() {
                let _ = wr.shutdown().await;
            }
            wr
        });
        let (received, reset) = read_until_closed(&mut rd).await;
        drop(writer.await.unwrap());
        Exchange { received, reset }
    })
    .await
    .expect("exchange finished in time")
}

async fn read_until_closed(rd: &mut (impl AsyncReadExt + Unpin)) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) => return (received, false),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(_) => return (received, true),
        }
    }
}

/// Opens a connection and checks one echo round trip on it.
async fn open_echoing(addr: SocketAddr, tag: &[u8]) -> TcpStream {
    let mut s = timeout(GUARD, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    s.write_all(tag).await.unwrap();
    let mut back = vec![0u8; tag.len()];
    timeout(GUARD, s.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, tag);
    s
}

/// The connection was closed by the link: reading gives an error or EOF, never data.
async fn assert_closed_by_link(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match timeout(GUARD, s.read(&mut buf)).await.unwrap() {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("{n} bytes arrived on a connection that should be closed"),
    }
}

#[tokio::test]
async fn loopback_profile_passes_bytes_unchanged_both_ways() {
    let server = echo_server().await;
    let link = BadLink::start(server, Profile::loopback(), 1)
        .await
        .unwrap();
    let data = payload(1, 256 * 1024);
    let got = exchange(link.addr(), &data).await;
    assert!(!got.reset);
    assert_eq!(got.received, data);
    assert!(link.wait_idle(GUARD).await);
    let s = link.stats();
    assert_eq!((s.accepted, s.completed, s.cut, s.refused), (1, 1, 0, 0));
    assert_eq!(s.bytes_up, data.len() as u64);
    assert_eq!(s.bytes_down, data.len() as u64);
    link.shutdown().await;
}

#[tokio::test]
async fn two_g_shape_with_more_bandwidth_passes_bytes_unchanged_on_parallel_connections() {
    let server = echo_server().await;
    // The 2G delay and shaping path, with bandwidth raised so the test stays short.
    let profile = Profile::two_g()
        .to_builder()
        .name("2g-fast")
        .bandwidth(512 * 1024)
        .cut_probability(0.0)
        .build()
        .unwrap();
    assert_eq!(profile.round_trip(), Duration::from_secs(1));
    let link = BadLink::start(server, profile, 2).await.unwrap();
    let a = payload(21, 96 * 1024);
    let b = payload(22, 64 * 1024 + 3);
    let (got_a, got_b) = tokio::join!(exchange(link.addr(), &a), exchange(link.addr(), &b));
    assert_eq!(got_a.received, a);
    assert_eq!(got_b.received, b);
    assert!(link.wait_idle(GUARD).await);
    let s = link.stats();
    assert_eq!((s.accepted, s.completed, s.cut), (2, 2, 0));
    assert_eq!(s.bytes_up, (a.len() + b.len()) as u64);
    assert_eq!(s.bytes_down, (a.len() + b.len()) as u64);
}

#[tokio::test]
async fn every_connection_is_cut_when_the_probability_is_one() {
    let server = echo_server().await;
    let profile = Profile::builder("always-cut")
        .cut_probability(1.0)
        .cut_after_bytes(1..=16 * 1024)
        .build()
        .unwrap();
    let seed = 3;
    let link = BadLink::start(server, profile.clone(), seed).await.unwrap();
    let data = payload(3, 64 * 1024);
    for _ in 0..6 {
        let got = exchange(link.addr(), &data).await;
        assert!(
            got.received.len() < data.len(),
            "a cut connection delivered the whole payload"
        );
        // What did arrive is an unaltered prefix.
        assert_eq!(got.received[..], data[..got.received.len()]);
    }
    assert!(link.wait_idle(GUARD).await);
    let s = link.stats();
    assert_eq!((s.accepted, s.cut, s.completed), (6, 6, 0));
    assert_eq!(s.planned_cuts(), (0..6).collect::<Vec<_>>());
    for cut in &s.cuts {
        let plan = CutPlan::draw(seed, cut.conn, &profile);
        assert_eq!(Some(cut.delivered), plan.after_bytes, "{cut:?}");
    }
    let delivered: u64 = s.cuts.iter().map(|c| c.delivered).sum();
    assert_eq!(s.bytes_up + s.bytes_down, delivered);
    assert_eq!(
        s.in_flight_at_cut,
        s.cuts.iter().map(|c| c.in_flight).sum::<u64>()
    );
}

/// Runs twelve connections one after another through a link seeded with `seed`; returns which
/// ones the client saw cut, and the link's cut records.
async fn cut_pattern(seed: u64) -> (Vec<bool>, Vec<(u64, u64)>) {
    let server = echo_server().await;
    let profile = Profile::builder("flaky")
        .cut_probability(0.4)
        .cut_after_bytes(1..=8 * 1024)
        .build()
        .unwrap();
    let link = BadLink::start(server, profile, seed).await.unwrap();
    let data = payload(seed, 8 * 1024);
    let mut seen = Vec::new();
    for _ in 0..12 {
        let got = exchange(link.addr(), &data).await;
        seen.push(got.received != data);
    }
    assert!(link.wait_idle(GUARD).await);
    let s = link.stats();
    assert_eq!(s.accepted, 12);
    assert_eq!(s.cut + s.completed, 12);
    let records = s.cuts.iter().map(|c| (c.conn, c.delivered)).collect();
    (seen, records)
}

#[tokio::test]
async fn the_same_seed_cuts_the_same_connections_at_the_same_byte() {
    let (first, first_records) = cut_pattern(2026).await;
    let (second, second_records) = cut_pattern(2026).await;
    assert_eq!(first, second);
    assert_eq!(first_records, second_records);
    // What the client saw is what the link recorded.
    let seen_cut: Vec<u64> = (0u64..)
        .zip(&first)
        .filter(|(_, c)| **c)
        .map(|(i, _)| i)
        .collect();
    let recorded: Vec<u64> = first_records.iter().map(|(conn, _)| *conn).collect();
    assert_eq!(seen_cut, recorded);
    assert!(
        !recorded.is_empty() && recorded.len() < 12,
        "seed 2026 should cut some connections and spare others: {first:?}"
    );
    let (other, _) = cut_pattern(7).await;
    assert_ne!(first, other, "another seed gives another pattern");
}

#[tokio::test]
async fn refusing_new_connections_can_be_toggled_back() {
    let server = echo_server().await;
    let link = BadLink::start(server, Profile::loopback(), 4)
        .await
        .unwrap();
    let mut before = open_echoing(link.addr(), b"before").await;

    link.set_refusing(true);
    assert!(link.is_refusing());
    let mut refused = TcpStream::connect(link.addr()).await.unwrap();
    let _ = refused.write_all(b"anyone there?").await;
    assert_closed_by_link(&mut refused).await;
    assert_eq!(link.stats().refused, 1);
    // A connection made before the link went down is left alone.
    before.write_all(b" still up").await.unwrap();
    let mut back = [0u8; 9];
    before.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b" still up");

    link.set_refusing(false);
    let data = payload(4, 10_000);
    assert_eq!(exchange(link.addr(), &data).await.received, data);
    let s = link.stats();
    assert_eq!((s.accepted, s.refused, s.cut), (2, 1, 0));
}

#[tokio::test]
async fn cut_all_cuts_every_live_connection_and_spares_later_ones() {
    let server = echo_server().await;
    let link = BadLink::start(server, Profile::loopback(), 5)
        .await
        .unwrap();
    let mut live = Vec::new();
    for tag in [b"one".as_slice(), b"two", b"three"] {
        live.push(open_echoing(link.addr(), tag).await);
    }
    assert_eq!(link.live_connections(), 3);
    link.cut_all();
    for s in &mut live {
        assert_closed_by_link(s).await;
    }
    assert!(link.wait_idle(GUARD).await);
    let s = link.stats();
    assert_eq!(s.cut, 3);
    assert!(s.cuts.iter().all(|c| c.cause == CutCause::CutAll));
    assert_eq!(s.planned_cuts(), Vec::<u64>::new());

    let data = payload(5, 4_000);
    assert_eq!(exchange(link.addr(), &data).await.received, data);
    assert_eq!(link.stats().cut, 3);
}

/// A cut is a reset, not a polite close, on both the client's and the server's side.
#[tokio::test]
async fn a_cut_resets_both_sides() {
    let listener = TcpListener::bind(localhost()).await.unwrap();
    let link = BadLink::start(listener.local_addr().unwrap(), Profile::loopback(), 11)
        .await
        .unwrap();
    let mut client = TcpStream::connect(link.addr()).await.unwrap();
    let (mut server, _) = timeout(GUARD, listener.accept()).await.unwrap().unwrap();
    client.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    timeout(GUARD, server.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"ping");

    link.cut_all();
    let mut buf = [0u8; 8];
    for side in [&mut client, &mut server] {
        let err = timeout(GUARD, side.read(&mut buf))
            .await
            .unwrap()
            .expect_err("a cut side reads a reset, not EOF");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    }
    assert_eq!(link.stats().cut, 1);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let server = echo_server().await;
    let profile = Profile::builder("two-slots")
        .max_connections(2)
        .build()
        .unwrap();
    let link = BadLink::start(server, profile, 6).await.unwrap();
    let first = open_echoing(link.addr(), b"a").await;
    let _second = open_echoing(link.addr(), b"b").await;
    let mut third = TcpStream::connect(link.addr()).await.unwrap();
    assert_closed_by_link(&mut third).await;
    assert_eq!(link.stats().refused, 1);

    drop(first);
    let deadline = Instant::now() + GUARD;
    while link.live_connections() > 1 {
        assert!(
            Instant::now() < deadline,
            "the closed connection was never released"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _fourth = open_echoing(link.addr(), b"d").await;
    let s = link.stats();
    assert_eq!((s.accepted, s.refused), (3, 1));
}

#[tokio::test]
async fn an_unreachable_target_resets_the_client_and_is_counted() {
    let gone = {
        let l = TcpListener::bind(localhost()).await.unwrap();
        l.local_addr().unwrap()
    };
    let link = BadLink::start(gone, Profile::loopback(), 8).await.unwrap();
    let got = exchange(link.addr(), b"hello").await;
    assert!(got.received.is_empty());
    assert!(link.wait_idle(GUARD).await);
    let s = link.stats();
    assert_eq!((s.accepted, s.upstream_failed), (1, 1));
}

#[tokio::test]
async fn only_loopback_addresses_are_accepted() {
    let outside: SocketAddr = "192.0.2.1:80".parse().unwrap();
    match BadLink::start(outside, Profile::loopback(), 0).await {
        Err(BadLinkError::NotLoopback { role: "target", .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    let server = echo_server().await;
    let wildcard: SocketAddr = "0.0.0.0:0".parse().unwrap();
    match BadLink::start_on(wildcard, server, Profile::loopback(), 0).await {
        Err(BadLinkError::NotLoopback { role: "listen", .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn two_g_profile_and_builder_checks() {
    let p = Profile::two_g();
    let up = p.up().unwrap();
    let down = p.down().unwrap();
    assert_eq!(up.bytes_per_sec().get(), 6_250);
    assert_eq!(down.bytes_per_sec().get(), 6_250);
    assert_eq!(p.round_trip(), Duration::from_secs(1));
    assert_eq!(p.cut_probability(), 0.05);
    assert!(Profile::loopback().up().is_none());

    let custom = Profile::builder("custom")
        .round_trip(Duration::from_millis(300))
        .upload(1_000)
        .download(8_000)
        .burst(200)
        .build()
        .unwrap();
    assert_eq!(custom.one_way_delay(), Duration::from_millis(150));
    assert_eq!(custom.up().unwrap().burst().get(), 200);
    assert_eq!(custom.down().unwrap().bytes_per_sec().get(), 8_000);
    assert_eq!(
        Profile::builder("x")
            .bandwidth_kbit(50)
            .build()
            .unwrap()
            .up(),
        p.up()
    );

    let b = || Profile::builder("bad");
    assert_eq!(
        b().cut_probability(1.5).build(),
        Err(ProfileError::CutProbability(1.5))
    );
    assert_eq!(b().bandwidth(0).build(), Err(ProfileError::ZeroBandwidth));
    assert_eq!(
        b().bandwidth(10).burst(0).build(),
        Err(ProfileError::ZeroBurst)
    );
    assert!(matches!(
        b().cut_after_bytes(0..=10).build(),
        Err(ProfileError::CutRange { .. })
    ));
    assert_eq!(
        b().max_connections(0).build(),
        Err(ProfileError::ZeroMaxConnections)
    );
    assert!(matches!(
        b().one_way_delay(Duration::from_secs(3600)).build(),
        Err(ProfileError::DelayTooLong(_))
    ));
}

/// A blocking echo server for the synchronous test; it serves `conns` connections and stops.
fn blocking_echo_server(conns: usize) -> SocketAddr {
    let listener = std::net::TcpListener::bind(localhost()).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(conns) {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn blocking_wrapper_serves_synchronous_clients() {
    let server = blocking_echo_server(2);
    let profile = Profile::builder("sync")
        .round_trip(Duration::from_millis(40))
        .bandwidth(256 * 1024)
        .build()
        .unwrap();
    let link = BlockingBadLink::start(server, profile, 9).unwrap();
    let data = payload(9, 20_000);

    let mut s = std::net::TcpStream::connect(link.addr()).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.write_all(&data).unwrap();
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, data);

    link.cut_all();
    let mut buf = [0u8; 16];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));

    link.set_refusing(true);
    let mut refused = std::net::TcpStream::connect(link.addr()).unwrap();
    refused.set_read_timeout(Some(GUARD)).unwrap();
    assert!(matches!(refused.read(&mut buf), Ok(0) | Err(_)));
    link.set_refusing(false);

    let mut again = std::net::TcpStream::connect(link.addr()).unwrap();
    again.set_read_timeout(Some(GUARD)).unwrap();
    again.write_all("ภาคี".as_bytes()).unwrap();
    let mut thai = vec![0u8; "ภาคี".len()];
    again.read_exact(&mut thai).unwrap();
    assert_eq!(String::from_utf8(thai).unwrap(), "ภาคี");
    drop(again);
    assert!(link.wait_idle(GUARD));

    let st = link.stats();
    assert_eq!((st.accepted, st.refused, st.cut), (2, 1, 1));
    assert_eq!(st.bytes_up, (data.len() + "ภาคี".len()) as u64);
    link.shutdown();
}

/// Measures the 2G profile (cuts off, so the figure is about shaping): the time to the first byte
/// of a reply, and the download rate once bytes flow. Printed as a figure, not asserted.
#[tokio::test]
async fn two_g_profile_throughput_figure() {
    let len = 16 * 1024;
    let server = source_server(len).await;
    let profile = Profile::two_g()
        .to_builder()
        .cut_probability(0.0)
        .build()
        .unwrap();
    let link = BadLink::start(server, profile, 10).await.unwrap();
    let mut s = TcpStream::connect(link.addr()).await.unwrap();
    let t0 = Instant::now();
    s.write_all(b"?").await.unwrap();
    let mut first = [0u8; 1];
    timeout(GUARD, s.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    let t_first = Instant::now();
    let (rest, reset) = timeout(GUARD, read_until_closed(&mut s)).await.unwrap();
    let t_end = Instant::now();
    assert!(!reset);
    assert_eq!(rest.len() + 1, len);
    assert!(rest.iter().all(|b| *b == 0x5a));
    let flow = (t_end - t_first).as_secs_f64();
    println!(
        "figure: 2g profile, {len} bytes down: first byte after {:.0} ms (configured round trip \
         1000 ms), then {:.0} B/s = {:.1} kbit/s (configured 6250 B/s = 50 kbit/s), total {:.2} s",
        (t_first - t0).as_secs_f64() * 1000.0,
        (len - 1) as f64 / flow,
        (len - 1) as f64 * 8.0 / flow / 1000.0,
        (t_end - t0).as_secs_f64(),
    );
}
