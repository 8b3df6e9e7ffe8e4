//! `phakhi device export-bundle FILE` / `import-bundle FILE`: sync by files carried by hand.
//! The device keeps the exchange (sealed in its store) between the two commands, so they may
//! run days apart in different processes; the answer comes from `phakhi admin import-bundle`.

use std::path::Path;

use phakhi_core::device::{DeviceError, SyncStep, unix};

use super::{FieldError, Session};
use phakhi_server::bundle::{read_bundle_file, write_bundle_file};

pub(super) fn export(session: &mut Session, file: &Path) -> Result<(), FieldError> {
    let replacing = session.device.bundle_pending()?;
    let bundle = session
        .device
        .export_bundle(&mut session.rng, unix(session.now))?;
    write_bundle_file(file, &bundle).map_err(|source| FieldError::Write {
        path: file.display().to_string(),
        source,
    })?;
    if replacing {
        println!(
            "note: an earlier export was still waiting for its answer; this bundle replaces it \
             (its answer will be refused, nothing is lost)"
        );
    }
    println!(
        "exported {} bytes to {}: carry it to the server (`phakhi admin import-bundle {} \
         --answer ANSWER`), then run `import-bundle ANSWER` here",
        bundle.len(),
        file.display(),
        file.display()
    );
    Ok(())
}

pub(super) fn import(session: &mut Session, file: &Path) -> Result<(), FieldError> {
    let bytes = read_bundle_file(file).map_err(|e| FieldError::input(e.to_string()))?;
    let step = session
        .device
        .import_bundle(&bytes, &mut session.rng, session.now)
        .map_err(|e| match e {
            DeviceError::Bundle(error) => FieldError::input(format!("{}: {error}", file.display())),
            DeviceError::Seal(error) => FieldError::input(format!(
                "{}: the answer does not open ({error}): it is damaged or not for this device; \
                 nothing was changed, and the export still waits for its answer",
                file.display()
            )),
            other => other.into(),
        })?;
    match step {
        SyncStep::Again => println!(
            "answer applied; the server needs a second round: run `export-bundle FILE` again and \
             carry that bundle too"
        ),
        SyncStep::Done(report) => {
            println!(
                "bundle synced: {}; {} tip(s) delivered, {} repl(ies) received",
                super::changes_summary(&report),
                report.tips_delivered,
                report.replies_received
            );
            for (doc, error) in &report.doc_errors {
                eprintln!("warning: the server refused {doc}: {error}");
            }
            if report.more_waiting {
                println!("more waits on the server: export another bundle");
            }
        }
    }
    Ok(())
}
