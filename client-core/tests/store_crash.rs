//! A process killed in the middle of writing leaves a store that opens and holds every save it
//! reported as committed. The test re-runs its own binary as the writer (an ignored test that
//! only runs when the parent asks for it) and SIGKILLs it at a random moment.

#![allow(clippy::unwrap_used)]

mod store_common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ReadDoc};
use phakhi_core::store::CompactionPolicy;
use rand_core::{OsRng, RngCore};
use store_common::*;

const ENV_DB: &str = "PHAKHI_STORE_CRASH_DB";
const DOC: &str = "province/TH-44";
const ROUNDS: usize = 5;

#[test]
#[ignore = "writer half of store_crash_keeps_every_committed_save; started by it"]
fn store_crash_child_writer() {
    let path = std::env::var(ENV_DB).expect("run by store_crash_keeps_every_committed_save");
    let mut store = open(std::path::Path::new(&path));
    store.set_compaction_policy(CompactionPolicy {
        max_increments: 6,
        max_increment_bytes: 64 * 1024,
    });
    let mut doc = AutoCommit::new();
    let saves = doc
        .put_object(automerge::ROOT, "saves", ObjType::Map)
        .unwrap();
    let padding = "บันทึกกิจกรรมภาคสนาม ".repeat(40);
    for i in 0u64.. {
        doc.put(&saves, format!("n{i:06}"), format!("{i} {padding}"))
            .unwrap();
        doc.commit();
        store.save_doc(DOC, &mut doc).unwrap();
        store
            .put("saves", &i.to_be_bytes(), padding.as_bytes())
            .unwrap();
        // Reported only after both transactions committed.
        println!("saved {i}");
    }
}

#[test]
fn store_crash_keeps_every_committed_save() {
    let exe = std::env::current_exe().unwrap();
    // The writer's test name, under this file's module in the crate's test binary (`core.rs`).
    let writer = match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::store_crash_child_writer"),
        None => "store_crash_child_writer".to_owned(),
    };
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let kill_after = 3 + (OsRng.next_u32() % 60) as u64;
        let extra_delay_us = u64::from(OsRng.next_u32() % 5_000);
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                &writer,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DB, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut committed: Option<u64> = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            parse(&line, &mut committed);
            if committed.is_some_and(|c| c >= kill_after) {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(extra_delay_us));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Whatever the writer printed before it died was committed too.
        for line in lines {
            parse(&line.unwrap(), &mut committed);
        }
        let committed = committed.expect("the writer reported no save");
        assert!(
            committed >= kill_after,
            "round {round}: writer stopped early"
        );

        let store = open(&path);
        let doc = store
            .load_doc(DOC)
            .unwrap_or_else(|e| panic!("round {round}: store unreadable after kill: {e}"))
            .expect("document present");
        let saves = doc.get(automerge::ROOT, "saves").unwrap().unwrap().1;
        let stored = doc.keys(&saves).count() as u64;
        assert!(
            stored > committed,
            "round {round}: {stored} saves stored, {} reported",
            committed + 1
        );
        for i in 0..=committed {
            let (v, _) = doc
                .get(&saves, format!("n{i:06}"))
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: committed save {i} lost"));
            assert!(v.as_str().is_some_and(|s| s.starts_with(&format!("{i} "))));
            assert!(store.get("saves", &i.to_be_bytes()).unwrap().is_some());
        }
        eprintln!(
            "round {round}: killed after {} reported saves ({extra_delay_us} µs later); store holds {stored}",
            committed + 1
        );
        assert_eq!(store.list_docs().unwrap(), vec![DOC]);
        assert!(store.list("saves").unwrap().len() as u64 > committed);
    }
}

fn parse(line: &str, committed: &mut Option<u64>) {
    if let Some(n) = line.strip_prefix("saved ") {
        *committed = Some(n.trim().parse().unwrap());
    }
}
