//! The phone bindings, end to end: builds `phakhi-ffi` and the `phakhi` binary, generates the
//! Python bindings for the library just built, and runs `ffi/tests/test_phone_day.py` — a phone's
//! day through the same C interface the Kotlin and Swift apps use, against a real `phakhi serve`
//! process and `phakhi admin import-bundle` on its stopped data folder. Also checks that the
//! committed Kotlin and Swift bindings in `ffi/bindings/` are exactly what the current library
//! generates. The phone's day includes a tip with a photo: the test hands Python a JPEG carrying
//! GPS coordinates and a camera serial, built with the attachment tests' own builder. The phone
//! sends its cover slots as every phone does; the member sets the fast evidence pace through the
//! bindings, so the photo's chunks leave in the upload right after the sync.

#[path = "../../client-core/tests/attach_common/mod.rs"]
mod attach_common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The Python test is bounded: a phone's day takes seconds; a hang must not block the suite.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(300);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Builds the library and the bindgen binary in one cargo command, once.
fn built() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| phakhi_tests::server::cargo_build(&["-p", "phakhi-ffi"]))
}

fn library() -> PathBuf {
    let name = if cfg!(target_os = "macos") {
        "libphakhi_ffi.dylib"
    } else {
        "libphakhi_ffi.so"
    };
    // `cargo build` copies the library up to target/debug; the `cargo test` build that
    // `tests/run` makes first leaves it in target/debug/deps.
    if phakhi_tests::server::prebuilt() {
        built().join("deps").join(name)
    } else {
        built().join(name)
    }
}

fn generate(language: &str, out: &Path) {
    let output = Command::new(built().join("uniffi-bindgen"))
        .current_dir(workspace())
        .arg("generate")
        .arg("--library")
        .arg(library())
        .args(["--language", language, "--no-format", "--out-dir"])
        .arg(out)
        .output()
        .expect("run uniffi-bindgen");
    assert!(
        output.status.success(),
        "uniffi-bindgen generate --language {language} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every file under `dir`, as paths relative to it, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn committed_kotlin_and_swift_bindings_are_current() {
    let fresh = tempfile::tempdir().expect("temp dir");
    let advice = "the bindings in ffi/bindings/ are stale: run ffi/generate-bindings.sh and \
                  commit the result";
    for language in ["kotlin", "swift"] {
        let generated = fresh.path().join(language);
        generate(language, &generated);
        let committed = workspace().join("ffi/bindings").join(language);
        let names = files(&generated);
        assert!(!names.is_empty(), "uniffi-bindgen wrote no {language} file");
        assert_eq!(
            names,
            files(&committed),
            "{language} files differ; {advice}"
        );
        for rel in names {
            let new = std::fs::read(generated.join(&rel)).expect("read generated file");
            let old = std::fs::read(committed.join(&rel)).expect("read committed file");
            assert!(new == old, "{} differs; {advice}", rel.display());
        }
    }
}

/// Reads a child's pipe to its end on a thread, so a chatty child never blocks on a full pipe.
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

#[test]
fn python_phone_day_against_a_real_server() {
    let bindings = tempfile::tempdir().expect("temp dir");
    generate("python", bindings.path());
    // The generated module loads the library from its own folder.
    let lib = library();
    let lib_name = lib.file_name().expect("library file name");
    std::fs::copy(&lib, bindings.path().join(lib_name)).expect("copy the library");
    let phakhi = phakhi_tests::server::phakhi_bin();

    let photo = bindings.path().join("camera.jpg");
    std::fs::write(&photo, attach_common::camera_jpeg()).expect("write the test photo");

    let mut child = Command::new("python3")
        .arg(workspace().join("ffi/tests/test_phone_day.py"))
        .env("PHAKHI_TEST_JPEG", &photo)
        .env("PHAKHI_TEST_SERIAL", attach_common::SERIAL)
        .env("PHAKHI_FFI_BINDINGS", bindings.path())
        .env("PHAKHI_BIN", &phakhi)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (the Python test needs only its standard library)");
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + PYTHON_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for python3") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the Python phone-day test ran longer than {PYTHON_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    assert!(
        status.success(),
        "the Python phone-day test failed:\n{stdout}\n{stderr}"
    );
    // unittest reports on stderr: make sure every test ran and none was skipped.
    assert!(
        stderr.contains("Ran 2 tests") && stderr.contains("\nOK"),
        "unexpected unittest report:\n{stderr}"
    );
    assert!(
        !stderr.contains("skipped"),
        "a Python test was skipped:\n{stderr}"
    );
}
