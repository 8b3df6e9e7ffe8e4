//! The documents the benchmark syncs, built deterministically with raw automerge: a province's
//! activity document with one commit per record (one user action, as a phone makes them), the
//! same shape the model writes (kind, Thai title, description as text, date, district,
//! attendance counter, organiser).

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue};

const DISTRICTS: [&str; 6] = [
    "เมืองมหาสารคาม",
    "กันทรวิชัย",
    "บรบือ",
    "วาปีปทุม",
    "โกสุมพิสัย",
    "เชียงยืน",
];

/// A fixed actor id made of one repeated byte.
pub fn actor(b: u8) -> ActorId {
    ActorId::from(vec![b; 16])
}

/// Appends `n` activity records numbered from `start`, one commit per record.
pub fn add_records(
    doc: &mut AutoCommit,
    start: usize,
    n: usize,
) -> Result<(), automerge::AutomergeError> {
    let acts = match doc.get(ROOT, "activities")? {
        Some((_, id)) => id,
        None => {
            let id = doc.put_object(ROOT, "activities", ObjType::Map)?;
            doc.commit();
            id
        }
    };
    for i in start..start + n {
        let rec = doc.put_object(&acts, format!("act-{i:06}"), ObjType::Map)?;
        doc.put(
            &rec,
            "kind",
            if i % 3 == 0 { "campaign" } else { "training" },
        )?;
        doc.put(&rec, "title", format!("อบรมต่อต้านการทุจริต ครั้งที่ {i}"))?;
        let text = doc.put_object(&rec, "description", ObjType::Text)?;
        doc.splice_text(
            &text,
            0,
            0,
            &format!("ภาคีเครือข่ายให้ความรู้เรื่องงบประมาณและการจัดซื้อจัดจ้าง รอบที่ {i}"),
        )?;
        doc.put(
            &rec,
            "date",
            format!("2026-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
        )?;
        doc.put(&rec, "district", DISTRICTS[i % DISTRICTS.len()])?;
        doc.put(&rec, "attendance", ScalarValue::counter((i % 90) as i64))?;
        doc.put(&rec, "organiser", format!("leader-{}", i % 37))?;
        doc.commit();
    }
    Ok(())
}

/// Appends `n` small changes (an attendance tally each), one commit per change: a long history
/// of small edits, for the steady-state document.
pub fn add_tallies(doc: &mut AutoCommit, n: usize) -> Result<(), automerge::AutomergeError> {
    let tally = match doc.get(ROOT, "tally")? {
        Some((_, id)) => id,
        None => {
            let id = doc.put_object(ROOT, "tally", ObjType::Map)?;
            doc.commit();
            id
        }
    };
    for i in 0..n {
        doc.put(&tally, format!("d-{}", i % 500), ScalarValue::Int(i as i64))?;
        doc.commit();
    }
    Ok(())
}

/// A province document of `records` records, one commit each.
pub fn province(records: usize) -> Result<AutoCommit, automerge::AutomergeError> {
    let mut doc = AutoCommit::new().with_actor(actor(1));
    add_records(&mut doc, 0, records)?;
    Ok(doc)
}

/// A copy of a saved document under another actor.
pub fn replica(saved: &[u8], a: u8) -> Result<AutoCommit, automerge::AutomergeError> {
    Ok(AutoCommit::load(saved)?.with_actor(actor(a)))
}
