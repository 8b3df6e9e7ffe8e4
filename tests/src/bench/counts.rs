//! Counted work: the instructions one side of an exchange executes, counted by valgrind's
//! callgrind, so that a change's cost shows on a shared, noisy machine where wall time does not.
//!
//! Each case runs in a child process of its own under `valgrind --tool=callgrind
//! --instr-atstart=no`: the child prepares everything outside the count (loads the documents,
//! builds the peer's message), says `ready`, and the parent switches instrumentation on with
//! `callgrind_control -i on` just before the counted step and off after it. The count is the
//! step alone: the same exchange gives the same count run to run (within a few thousand
//! instructions of hashing seeds), whatever else the machine is doing. Fixtures (the province
//! document, the phone stores) are built once, natively, in a temporary folder.
//!
//! `cargo build --profile counts -p phakhi-tests --bin counts && target/counts/counts` prints
//! every case beside its baseline. `target/debug/counts` (the CI build) runs too, but its counts
//! are mostly automerge's debug assertions (`OpSet::validate_op_order` walks the whole document
//! on every applied batch): read them with `callgrind_annotate` minus that function. Nothing here
//! runs in the test suite.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use automerge::{ActorId, AutoCommit, ChangeHash};
use phakhi_core::policy::authority::{FRESH_BYTES, actor_tag, device_actor};
use phakhi_core::store::{StorageKey, Store};
use phakhi_core::sync::{
    DocName, Initiator, Limits, PeerState, PrefixScope, Responder, SavedForms,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::docs::{actor, add_records, province};
use super::{Result, progress};

/// The province document every case syncs.
pub const DOC: &str = "province/TH-44/activities/2026";

/// One counted step: what it is, and how the child runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    /// The name the child is started with.
    pub name: &'static str,
    /// What is counted, for the report.
    pub what: &'static str,
}

/// Every case, in report order.
pub const CASES: [Case; 11] = [
    Case {
        name: "phone-receive-10",
        what: "phone: receive and store 10 new records on the province document (apply, sealed store write)",
    },
    Case {
        name: "phone-receive-10-resave",
        what: "the same, storing by re-encoding what arrived (`save_doc`, the path before stored-as-received)",
    },
    Case {
        name: "phone-receive-10-phones",
        what: "phone: receive and store 10 new records from 10 phones new to a province of 51 writers, their actors made after the province's (time first)",
    },
    Case {
        name: "phone-receive-10-phones-untimed",
        what: "the same, the 10 actors of the earlier layout (tag first): they sort among the province's",
    },
    Case {
        name: "phone-first-sync",
        what: "phone: first sync of the province onto an empty phone, receive and store",
    },
    Case {
        name: "phone-first-sync-own",
        what: "phone: first sync of the province onto a phone holding 10 records of its own (its records up in round 1, the province down from the stored bytes), receive and store",
    },
    Case {
        name: "load-and-write",
        what: "baseline: `AutoCommit::load` of the province's saved bytes plus one sealed store write of them",
    },
    Case {
        name: "server-first-sync",
        what: "server engine: answer an empty phone's first sync (the whole province)",
    },
    Case {
        name: "server-first-sync-own",
        what: "server engine: answer the first sync of a phone holding 10 records of its own (its records up in round 1)",
    },
    Case {
        name: "server-first-sync-save",
        what: "server engine: the same, encoding the answer with `save()` (the path before serving stored bytes)",
    },
    Case {
        name: "server-receive-10",
        what: "server engine: take 10 new records from a phone and answer",
    },
];

fn key() -> StorageKey {
    StorageKey::from_bytes([7; 32])
}

fn name() -> Result<DocName> {
    Ok(DocName::parse(DOC)?)
}

/// Builds the fixtures in `dir`: the province document of `records` records (saved), 10 more
/// records by a second phone, a phone's own 10 records on a document it started offline, and
/// the phone stores holding each.
pub fn prepare(dir: &Path, records: usize) -> Result<()> {
    progress(format!(
        "counts: building the {records}-record province document"
    ));
    let mut doc = province(records)?;
    let saved = doc.save();
    let heads = doc.get_heads();
    std::fs::write(dir.join("province.am"), &saved)?;
    // Ten more records by another phone, after the province's heads.
    let mut other = AutoCommit::load(&saved)?.with_actor(actor(2));
    add_records(&mut other, records, 10)?;
    std::fs::write(dir.join("ten.am"), other.save_after(&heads))?;
    // A phone that recorded 10 records of its own before it ever synced the province: its
    // document starts from the province's first change (the activities map) only.
    let first = doc
        .get_changes(&[])
        .first()
        .cloned()
        .ok_or("the province document has no changes")?;
    let mut own = AutoCommit::new().with_actor(actor(3));
    own.apply_changes([first])?;
    add_records(&mut own, 900_000, 10)?;
    std::fs::write(dir.join("own.am"), own.save())?;
    let mut store = Store::open(dir.join("phone.db"), key(), ChaCha20Rng::seed_from_u64(1))?;
    store.save_doc(DOC, &mut doc)?;
    prepare_writers(dir, &saved, records)?;
    let mut store = Store::open(dir.join("own.db"), key(), ChaCha20Rng::seed_from_u64(2))?;
    store.save_doc(DOC, &mut own)?;
    Ok(())
}

/// An actor of the earlier layout for the device with key `[k; 32]`: its tag, then 16 bytes.
fn untimed_actor(k: u8) -> ActorId {
    let mut bytes = actor_tag(&[k; 32]).to_vec();
    bytes.extend_from_slice(&[k; 16]);
    ActorId::from(bytes.as_slice())
}

/// The fixtures of the `phone-receive-10-phones` cases: the province after 50 more devices of
/// the earlier layout wrote a record each (`many.am`, and the phone store `many.db`), as a
/// province written over many sessions holds actors all over the sort order; then 10 phones new
/// to it, a record each, under actors of the current layout (`ten-timed.am`) or of the earlier
/// one (`ten-untimed.am`).
fn prepare_writers(dir: &Path, saved: &[u8], records: usize) -> Result<()> {
    let mut many = AutoCommit::load(saved)?;
    for k in 0..50u8 {
        let mut writer = many.fork().with_actor(untimed_actor(100 + k));
        add_records(&mut writer, 800_000 + usize::from(k), 1)?;
        many.merge(&mut writer)?;
    }
    let many_saved = many.save();
    std::fs::write(dir.join("many.am"), &many_saved)?;
    let heads = many.get_heads();
    for (file, timed) in [("ten-timed.am", true), ("ten-untimed.am", false)] {
        let mut bytes = Vec::new();
        for p in 0..10u8 {
            let actor = if timed {
                device_actor(&[p; 32], 1_764_000_000_000 + u64::from(p), [p; FRESH_BYTES])
            } else {
                untimed_actor(p)
            };
            let mut phone = AutoCommit::load(&many_saved)?.with_actor(actor);
            add_records(&mut phone, records + 100 * usize::from(p), 1)?;
            bytes.extend(phone.save_after(&heads));
        }
        std::fs::write(dir.join(file), bytes)?;
    }
    let mut store = Store::open(dir.join("many.db"), key(), ChaCha20Rng::seed_from_u64(3))?;
    store.save_doc(DOC, &mut many)?;
    Ok(())
}

/// What the child does between `ready` and `done`.
type Step = Box<dyn FnOnce() -> Result<()>>;

/// The documents a responder serves: the province, plus `extra` changes.
fn server_docs(dir: &Path, extra: &[&str]) -> Result<BTreeMap<DocName, AutoCommit>> {
    server_docs_from(dir, "province.am", extra)
}

/// The documents a responder serves: the saved document `base`, plus `extra` changes.
fn server_docs_from(
    dir: &Path,
    base: &str,
    extra: &[&str],
) -> Result<BTreeMap<DocName, AutoCommit>> {
    let mut doc = AutoCommit::load(&std::fs::read(dir.join(base))?)?;
    for file in extra {
        doc.load_incremental(&std::fs::read(dir.join(file))?)?;
    }
    Ok(BTreeMap::from([(name()?, doc)]))
}

/// A copy of the fixture store `file` that the case may change.
fn phone_store(dir: &Path, file: &str) -> Result<Store> {
    let work = dir.join(format!("work-{}-{file}", std::process::id()));
    std::fs::copy(dir.join(file), &work)?;
    Ok(Store::open(&work, key(), ChaCha20Rng::seed_from_u64(9))?)
}

/// The phone that recorded 10 records of its own before its first sync, as a phone syncs:
/// its initiator (a first sync carries what it recorded in round 1), its document and its store.
fn own_phone(dir: &Path) -> Result<(Initiator, BTreeMap<DocName, AutoCommit>, Store)> {
    let store = phone_store(dir, "own.db")?;
    let doc = store
        .load_doc(DOC)?
        .ok_or("phone store lacks its document")?;
    let phone = BTreeMap::from([(name()?, doc)]);
    Ok((
        Initiator::new(PeerState::new(), Limits::for_phone()),
        phone,
        store,
    ))
}

/// One round: the initiator's request answered by the responder over `server`.
fn round(
    initiator: &mut Initiator,
    phone: &mut BTreeMap<DocName, AutoCommit>,
    server: &mut BTreeMap<DocName, AutoCommit>,
) -> Result<Vec<u8>> {
    let request = initiator.poll_request(phone, None)?;
    let reply =
        Responder::new(Limits::default()).handle_request(&request, server, &everything())?;
    Ok(reply.into_bytes(None))
}

fn everything() -> PrefixScope {
    PrefixScope::everything()
}

/// The phone's side: applies `response` and stores what changed.
fn phone_step(
    mut initiator: Initiator,
    mut phone: BTreeMap<DocName, AutoCommit>,
    response: Vec<u8>,
    mut store: Store,
    resave: bool,
) -> Step {
    Box::new(move || {
        initiator.handle_response(&response, &mut phone, &everything())?;
        let received = initiator.take_received();
        for (name, doc) in &mut phone {
            match received.get(name) {
                Some(arrived) if !resave => store.save_doc_received(name.as_str(), doc, arrived)?,
                _ => store.save_doc(name.as_str(), doc)?,
            }
        }
        Ok(())
    })
}

/// A phone holding the document of the fixture store `files.0` receives the changes `files.2`
/// that a server holding `files.1` has on top of it.
fn receive(dir: &Path, files: (&str, &str, &str), resave: bool) -> Result<Step> {
    let (store_file, base, extra) = files;
    let doc_name = name()?;
    let store = phone_store(dir, store_file)?;
    let mut doc = store
        .load_doc(DOC)?
        .ok_or("phone store lacks the document")?;
    let mut state = PeerState::new();
    state.set_shared_heads(doc_name.clone(), doc.get_heads());
    let mut phone = BTreeMap::from([(doc_name, doc)]);
    let mut server = server_docs_from(dir, base, &[extra])?;
    let mut initiator = Initiator::new(state, Limits::default());
    let response = round(&mut initiator, &mut phone, &mut server)?;
    Ok(phone_step(initiator, phone, response, store, resave))
}

/// Sets a case up in this process and returns its counted step.
fn setup(case: &str, dir: &Path) -> Result<Step> {
    let doc_name = name()?;
    Ok(match case {
        "phone-receive-10" | "phone-receive-10-resave" => receive(
            dir,
            ("phone.db", "province.am", "ten.am"),
            case == "phone-receive-10-resave",
        )?,
        "phone-receive-10-phones" => receive(dir, ("many.db", "many.am", "ten-timed.am"), false)?,
        "phone-receive-10-phones-untimed" => {
            receive(dir, ("many.db", "many.am", "ten-untimed.am"), false)?
        }
        "phone-first-sync" => {
            let store = phone_store(dir, "phone-empty.db")?;
            let mut phone = BTreeMap::new();
            let mut server = server_docs(dir, &[])?;
            let mut initiator = Initiator::new(PeerState::new(), Limits::default());
            let response = round(&mut initiator, &mut phone, &mut server)?;
            phone_step(initiator, phone, response, store, false)
        }
        "phone-first-sync-own" => {
            let (mut initiator, mut phone, store) = own_phone(dir)?;
            let mut server = server_docs(dir, &[])?;
            // Round 1 carries the phone's records up; the server answers from its stored bytes.
            let request = initiator.poll_request(&mut phone, None)?;
            let reply = Responder::new(Limits::default()).handle_request_saved(
                &request,
                &mut server,
                &everything(),
                &mut Stored(std::fs::read(dir.join("province.am"))?),
            )?;
            phone_step(initiator, phone, reply.into_bytes(None), store, false)
        }
        "load-and-write" => {
            let bytes = std::fs::read(dir.join("province.am"))?;
            let mut store = phone_store(dir, "phone-empty.db")?;
            Box::new(move || {
                let doc = AutoCommit::load(&bytes)?;
                store.put("counts", b"province", &bytes)?;
                drop(doc);
                Ok(())
            })
        }
        "server-first-sync" => {
            let mut server = server_docs(dir, &[])?;
            let request = Initiator::new(PeerState::new(), Limits::default())
                .poll_request(&mut BTreeMap::new(), None)?;
            let saved = std::fs::read(dir.join("province.am"))?;
            server_step(request, server_take(&mut server), Some(saved))
        }
        "server-first-sync-own" | "server-first-sync-save" => {
            let (mut initiator, mut phone, _) = own_phone(dir)?;
            let request = initiator.poll_request(&mut phone, None)?;
            let saved = if case == "server-first-sync-own" {
                Some(std::fs::read(dir.join("province.am"))?)
            } else {
                None
            };
            server_step(request, server_take(&mut server_docs(dir, &[])?), saved)
        }
        "server-receive-10" => {
            let mut server = server_docs(dir, &[])?;
            let mut phone = server_docs(dir, &["ten.am"])?;
            let heads: Vec<ChangeHash> = server
                .values_mut()
                .next()
                .map(|d| d.get_heads())
                .unwrap_or_default();
            let mut state = PeerState::new();
            state.set_shared_heads(doc_name, heads);
            let request =
                Initiator::new(state, Limits::default()).poll_request(&mut phone, None)?;
            server_step(request, server_take(&mut server), None)
        }
        other => return Err(format!("unknown case {other}").into()),
    })
}

fn server_take(server: &mut BTreeMap<DocName, AutoCommit>) -> BTreeMap<DocName, AutoCommit> {
    std::mem::take(server)
}

/// The bytes a server stores for the province: what it answers a device new to it with.
struct Stored(Vec<u8>);

impl SavedForms for Stored {
    fn saved(&mut self, _: &DocName, _: &[ChangeHash]) -> Option<Vec<u8>> {
        Some(self.0.clone())
    }
}

/// The server's side: the engine answers `request` over `docs`, from the stored bytes `saved`
/// when given (the path since serving stored bytes), else encoding with `save()`.
fn server_step(
    request: Vec<u8>,
    mut docs: BTreeMap<DocName, AutoCommit>,
    saved: Option<Vec<u8>>,
) -> Step {
    Box::new(move || {
        let responder = Responder::new(Limits::default());
        let reply = match saved {
            Some(bytes) => responder.handle_request_saved(
                &request,
                &mut docs,
                &everything(),
                &mut Stored(bytes),
            )?,
            None => responder.handle_request(&request, &mut docs, &everything())?,
        };
        let bytes = reply.into_bytes(None);
        if bytes.is_empty() {
            return Err("empty answer".into());
        }
        Ok(())
    })
}

/// The child: sets the case up, says `ready`, runs the step when told `go`, says `done`, and
/// exits when told to (so that nothing after the step is counted).
pub fn child(case: &str, dir: &Path) -> Result<()> {
    let step = setup(case, dir)?;
    let mut out = std::io::stdout();
    let mut input = BufReader::new(std::io::stdin());
    let mut line = String::new();
    writeln!(out, "ready")?;
    out.flush()?;
    input.read_line(&mut line)?;
    step()?;
    writeln!(out, "done")?;
    out.flush()?;
    line.clear();
    input.read_line(&mut line)?;
    // Exit without dropping the documents: their teardown is nobody's exchange.
    std::process::exit(0);
}

/// Whether valgrind and callgrind_control are installed.
pub fn available() -> bool {
    let runs = |program: &str| {
        Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    runs("valgrind") && runs("callgrind_control")
}

/// Counts the instructions of `case`'s step, in a child started as `exe child CASE DIR`.
pub fn count(exe: &Path, case: &str, dir: &Path) -> Result<u64> {
    let out = dir.join(format!("callgrind.{case}.out"));
    let mut child = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--instr-atstart=no")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(["child", case])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id().to_string();
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let mut expect = |word: &str| -> Result<()> {
        match lines.next() {
            Some(Ok(line)) if line == word => Ok(()),
            other => Err(format!("case {case}: expected {word:?}, got {other:?}").into()),
        }
    };
    let control = |on: &str| -> Result<()> {
        let status = Command::new("callgrind_control")
            .args(["-i", on, &pid])
            .stdout(Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("callgrind_control -i {on} {pid} failed").into())
        }
    };
    let result = (|| -> Result<()> {
        expect("ready")?;
        control("on")?;
        writeln!(stdin, "go")?;
        expect("done")?;
        control("off")?;
        writeln!(stdin, "exit")?;
        Ok(())
    })();
    if result.is_err() {
        let _ = child.kill();
    }
    let status = child.wait()?;
    result?;
    if !status.success() {
        return Err(format!("case {case}: child {status}").into());
    }
    let text = std::fs::read_to_string(&out)?;
    let total = text
        .lines()
        // `summary:` is written before the toggled part is known (0); `totals:` is the count.
        .find_map(|l| l.strip_prefix("totals:"))
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no totals in {}", out.display()))?;
    Ok(total)
}

/// Every case's count, with fixtures of `records` records built in a fresh folder.
pub fn run(records: usize, only: &[String]) -> Result<Vec<(Case, u64)>> {
    if !available() {
        return Err("valgrind is not installed (apt-get install valgrind)".into());
    }
    let exe = std::env::current_exe()?;
    let temp = tempfile::tempdir()?;
    // `PHAKHI_COUNTS_KEEP=<empty folder>` keeps the fixtures and each case's `callgrind.<case>.out`
    // there, for `callgrind_annotate`.
    let dir = match std::env::var_os("PHAKHI_COUNTS_KEEP") {
        Some(folder) => {
            std::fs::create_dir_all(&folder)?;
            PathBuf::from(folder)
        }
        None => temp.path().to_path_buf(),
    };
    let dir = dir.as_path();
    prepare(dir, records)?;
    Store::open(
        dir.join("phone-empty.db"),
        key(),
        ChaCha20Rng::seed_from_u64(3),
    )?;
    let mut counts = Vec::new();
    for case in CASES {
        if !only.is_empty() && !only.iter().any(|o| o == case.name) {
            continue;
        }
        progress(format!("counts: {} under callgrind", case.name));
        counts.push((case, count(&exe, case.name, dir)?));
    }
    Ok(counts)
}

/// The child's folder argument.
pub fn child_dir(arg: Option<String>) -> Result<PathBuf> {
    Ok(PathBuf::from(arg.ok_or("child needs a folder")?))
}
