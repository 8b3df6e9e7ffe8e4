//! The tip desk's key survives its machine: a desk backed up into 5 shares with threshold 3 is
//! rebuilt from 3 of them in a fresh folder, enrols at HQ again and opens the tips sent before
//! the backup, with the member-code registry back. Two shares, or three with one altered, are
//! refused with a clear message and leave no desk behind.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use phakhi_tests::cli::{desk, desk_with_code, device, fails, ok, ok_with};
use phakhi_tests::server::{ServerProcess, invite, network_key};

#[test]
fn three_of_five_shares_rebuild_the_desk_and_two_or_a_damaged_one_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let (hq, old_desk, shares, phone) = (
        path("hq"),
        path("desk"),
        path("shares"),
        path("phone.store"),
    );
    let (key, code) = desk_with_code(&old_desk, "นายเอ");
    let server = ServerProcess::start(Path::new(&hq), &[]);
    let nk = network_key(Path::new(&hq));
    let phone_invite = invite(Path::new(&hq), "TH-44", "leader", &server.url, &key);
    ok(&device(
        &phone,
        &["enroll", &phone_invite, "--network-key", &nk],
    ));
    let report = tmp.path().join("tip.txt");
    std::fs::write(&report, "นายก อบต. เรียกรับเงิน 50,000 บาท").unwrap();
    let out = ok_with(
        &device(
            &phone,
            &[
                "tip",
                "submit",
                "--file",
                report.to_str().unwrap(),
                "--category",
                "bribery",
                "--district",
                "เมืองมหาสารคาม",
                "--code-env",
                "MC",
            ],
        ),
        Some(&code),
    );
    let receipt = out
        .lines()
        .find_map(|l| l.strip_prefix("receipt: "))
        .unwrap()
        .to_owned();
    ok(&device(&phone, &["sync"]));

    let made = ok(&desk(
        &old_desk,
        &[
            "backup",
            "--shares",
            "5",
            "--threshold",
            "3",
            "--out",
            &shares,
        ],
    ));
    assert!(made.contains("wrote 5 shares"), "{made}");
    let share = |n: usize| format!("{shares}/share-{n}.txt");
    for n in 1..=5 {
        let text = std::fs::read_to_string(share(n)).unwrap();
        assert!(text.contains("PHAKHI-SHARE1:"), "{text}");
        // Printable: the text carries the QR code too, and an SVG of it lies beside it.
        assert!(text.contains('█') || text.contains('▀'), "{text}");
        let svg = std::fs::read_to_string(format!("{shares}/share-{n}.svg")).unwrap();
        assert!(svg.contains("<svg"));
    }
    // The machine is lost.
    std::fs::remove_dir_all(&old_desk).unwrap();

    // Two shares are not enough, and nothing is left behind.
    let too_few = path("too-few");
    let err = fails(&desk(
        &too_few,
        &["restore", "--share", &share(1), "--share", &share(4)],
    ));
    assert!(
        err.contains("only 2 different share(s)") && err.contains("needs 3"),
        "{err}"
    );
    assert!(!Path::new(&too_few).join("tipdesk.key").exists());

    // Three with one damaged: the damaged one is named.
    let damaged = path("damaged-share.txt");
    let text = std::fs::read_to_string(share(2)).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("PHAKHI-SHARE1:"))
        .unwrap();
    let at = line.len() - 30;
    let flipped = if &line[at..=at] == "a" { "b" } else { "a" };
    let mut altered = line.to_owned();
    altered.replace_range(at..=at, flipped);
    std::fs::write(&damaged, &altered).unwrap();
    let err = fails(&desk(
        &too_few,
        &[
            "restore",
            "--share",
            &share(1),
            "--share",
            &damaged,
            "--share",
            &share(5),
        ],
    ));
    assert!(
        err.contains("damaged") && err.contains("damaged-share.txt"),
        "{err}"
    );
    assert!(!Path::new(&too_few).join("tipdesk.key").exists());

    // Three good ones (and the sealed registry) rebuild the desk in a fresh folder.
    let new_desk = path("new-desk");
    let restored = ok(&desk(
        &new_desk,
        &[
            "restore",
            "--share",
            &share(5),
            "--share",
            &share(2),
            "--share",
            &share(3),
            "--codes",
            &format!("{shares}/codes.sealed"),
        ],
    ));
    assert!(restored.contains(&key), "{restored}");
    assert!(restored.contains("1 issued code(s) restored"), "{restored}");
    let admin_invite = invite(Path::new(&hq), "TH-44", "admin", &server.url, &key);
    ok(&desk(
        &new_desk,
        &["enroll", &admin_invite, "--network-key", &nk],
    ));
    let pulled = ok(&desk(&new_desk, &["pull"]));
    assert!(pulled.contains("pulled 1 new tip"), "{pulled}");
    let shown = ok(&desk(&new_desk, &["show", &receipt]));
    assert!(shown.contains("เรียกรับเงิน 50,000 บาท"), "{shown}");
    assert!(
        shown.contains("นายเอ"),
        "the member code is still recognised: {shown}"
    );
    drop(server);
}
