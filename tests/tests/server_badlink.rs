//! Syncing through a bad link: a real `phakhi serve` behind the bad-link proxy that cuts
//! connections part-way (some requests never arrive, some answers are lost after the server
//! committed). The device simply tries again; nothing is lost or duplicated, and a device on a
//! clean link then sees everything.

use phakhi_tests::badlink::{BlockingBadLink, Profile};
use phakhi_tests::server::{Device, Failure, ServerProcess, invite};

const ACTIVITIES: &str = "province/TH-44/activities/2026";
const TIP_DESK: &str = "0707070707070707070707070707070707070707070707070707070707070707";

#[test]
fn cut_connections_lose_nothing_and_retries_converge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("phakhi.toml");
    std::fs::write(
        &config,
        "[limits]\nrequests_per_minute = 100000\nrequest_burst = 100000\n",
    )
    .expect("config");
    let server = ServerProcess::start(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    let key = server.static_key();
    let profile = Profile::builder("cutting")
        .cut_probability(0.4)
        .cut_after_bytes(200..=6_000)
        .build()
        .expect("profile");
    let link = BlockingBadLink::start(server.addr, profile, 44).expect("bad link");
    let link_url = format!("http://{}", link.addr());

    let (mut phone, _) = Device::enrol(
        &server.url,
        &invite(&server.data, "TH-44", "leader", &server.url, TIP_DESK),
        key,
    )
    .expect("enrol on a clean link");
    phone.url = link_url;
    let mut failures = 0;
    for n in 0..40 {
        phone.write(ACTIVITIES, &format!("visit-{n}"), &format!("ลงพื้นที่ครั้งที่ {n}"));
        match phone.sync() {
            Ok(()) => {}
            Err(Failure::Unreachable) => failures += 1,
            Err(refused) => panic!("the server refused a retry: {refused:?}"),
        }
    }
    assert!(
        failures > 0,
        "the link cut nothing; the test proves nothing"
    );
    assert!(link.stats().cut > 0);

    // Back on a clean link, one sync finishes the job.
    phone.url = server.url.clone();
    phone.sync().expect("clean sync");
    let (mut reader, _) = Device::enrol(
        &server.url,
        &invite(&server.data, "TH-44", "leader", &server.url, TIP_DESK),
        key,
    )
    .expect("enrol reader");
    reader.sync().expect("reader sync");
    for n in 0..40 {
        assert_eq!(
            reader.read(ACTIVITIES, &format!("visit-{n}")),
            Some(format!("ลงพื้นที่ครั้งที่ {n}")),
            "visit-{n} ({failures} exchanges were cut)"
        );
    }
    link.shutdown();
    let (exit, _) = server.terminate();
    assert!(exit.success());
}
