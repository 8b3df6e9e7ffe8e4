//! A walk over automerge's binary chunks that runs *before* automerge decodes them, so that the
//! work and memory any peer's bytes can cost are bounded by [`Limits`] rather than by what the
//! bytes claim.
//!
//! automerge 0.12 trusts two kinds of length while parsing, before any checksum can help:
//!
//! * **Deflated data.** A column of a document or bundle, and a whole compressed change (chunk
//!   type 2), may be DEFLATE-compressed; automerge inflates them with an uncapped `read_to_end`.
//!   DEFLATE reaches about 1000:1, so a 16 MiB request can ask for gigabytes.
//! * **Run lengths.** Columns are run-length encoded: a few bytes can say "this value, 2^62
//!   times". automerge expands some runs into vectors and iterates others row by row (a bundle
//!   with a valid checksum and one huge run kept its verifier busy for minutes).
//!
//! This module walks the same layout (chunk header, the prefix of each chunk type, the column
//! metadata, each column's runs; see <https://alexjg.github.io/automerge-storage-docs/>), inflates
//! every deflated column itself through a reader capped at what is left of the message's budget,
//! and adds up every column's rows. Bytes that would inflate past
//! [`Limits::max_inflated_bytes`] or expand past [`Limits::max_decoded_rows`] are refused with
//! [`DocError::DecodeLimit`] before automerge sees them; bytes this walk cannot follow are
//! refused as [`DocError::BadChunk`] (automerge would refuse them too). Nothing is kept: each
//! inflated column is dropped once counted, so the walk itself holds at most one column.

use std::io::Read;

use super::error::DocError;
#[cfg(doc)]
use super::scope::Limits;

/// What the walk may still spend, for one whole message (every chunk of every document).
/// The sync engine starts each received message with [`Limits::max_inflated_bytes`] and
/// [`Limits::max_decoded_rows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeBudget {
    /// Bytes that deflated data may still inflate to.
    pub inflated: u64,
    /// Rows (one value of one column) that run-length encoding may still expand to.
    pub rows: u64,
}

/// The first bytes of every automerge chunk.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// The deflate bit of a column specification.
const DEFLATE_BIT: u32 = 0b1000;

/// Checks every chunk in `bytes` (one or several concatenated, as `AutoCommit::load` reads them)
/// against `budget`, taking from it what the walk spent, refused or not: the work was done. A
/// refusal for the budget empties it, so the rest of that message is refused at once.
pub fn check(bytes: &[u8], budget: &mut DecodeBudget) -> Result<(), DocError> {
    let mut input = Cursor::new(bytes);
    if input.is_empty() {
        return Err(DocError::BadChunk);
    }
    while !input.is_empty() {
        if let Err(error) = chunk(&mut input, budget) {
            if error == DocError::DecodeLimit {
                *budget = DecodeBudget {
                    inflated: 0,
                    rows: 0,
                };
            }
            return Err(error);
        }
    }
    Ok(())
}

/// One chunk: its header, then its body by type.
fn chunk(input: &mut Cursor<'_>, budget: &mut DecodeBudget) -> Result<(), DocError> {
    if input.take(4)? != MAGIC {
        return Err(DocError::BadChunk);
    }
    input.take(4)?; // checksum: automerge checks it (and the engine, for bundles)
    let chunk_type = input.byte()?;
    let len = input.length()?;
    let mut body = Cursor::new(input.take(len)?);
    match chunk_type {
        0 => document(&mut body, budget),
        1 => change(&mut body, budget),
        2 => {
            let inflated = inflate(body.rest(), budget)?;
            change(&mut Cursor::new(&inflated), budget)
        }
        3 => bundle(&mut body, budget),
        _ => Err(DocError::BadChunk),
    }
}

/// A document chunk: actors, heads, change and operation column metadata, their data, then the
/// head indices.
fn document(body: &mut Cursor<'_>, budget: &mut DecodeBudget) -> Result<(), DocError> {
    actors(body)?;
    hashes(body)?;
    let changes = columns_meta(body)?;
    let ops = columns_meta(body)?;
    columns(body, &changes, budget)?;
    columns(body, &ops, budget)?;
    // What remains are the head indices, one small integer per head; automerge reads them.
    Ok(())
}

/// A change chunk (or the inflated body of a compressed one). automerge refuses deflated
/// columns inside a change; so does this.
fn change(body: &mut Cursor<'_>, budget: &mut DecodeBudget) -> Result<(), DocError> {
    hashes(body)?; // dependencies
    body.bytes_prefixed()?; // actor
    body.uleb()?; // sequence number
    body.uleb()?; // start op
    body.sleb()?; // timestamp
    body.bytes_prefixed()?; // message
    actors(body)?; // other actors
    let ops = columns_meta(body)?;
    if ops.iter().any(|&(spec, _)| spec & DEFLATE_BIT != 0) {
        return Err(DocError::BadChunk);
    }
    columns(body, &ops, budget)
}

/// A bundle chunk: dependencies, actors, change columns with their data, then operation columns
/// with theirs.
fn bundle(body: &mut Cursor<'_>, budget: &mut DecodeBudget) -> Result<(), DocError> {
    hashes(body)?;
    actors(body)?;
    let changes = columns_meta(body)?;
    columns(body, &changes, budget)?;
    let ops = columns_meta(body)?;
    columns(body, &ops, budget)
}

/// A count-prefixed list of length-prefixed actor ids.
fn actors(body: &mut Cursor<'_>) -> Result<(), DocError> {
    let n = body.uleb()?;
    for _ in 0..n {
        // Each actor takes at least its length byte: a huge count runs out of input at once.
        body.bytes_prefixed()?;
    }
    Ok(())
}

/// A count-prefixed list of 32-byte change hashes.
fn hashes(body: &mut Cursor<'_>) -> Result<(), DocError> {
    let n = body.uleb()?;
    let len = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_mul(32))
        .ok_or(DocError::BadChunk)?;
    body.take(len)?;
    Ok(())
}

/// Column metadata: a count, then (specification, data length) pairs.
fn columns_meta(body: &mut Cursor<'_>) -> Result<Vec<(u32, usize)>, DocError> {
    let n = body.uleb()?;
    // Every pair takes at least two bytes: refuse a count the input cannot hold before
    // reserving room for it.
    if n > (body.remaining() / 2) as u64 {
        return Err(DocError::BadChunk);
    }
    let mut out = Vec::with_capacity(usize::try_from(n).map_err(|_| DocError::BadChunk)?);
    for _ in 0..n {
        let spec = u32::try_from(body.uleb()?).map_err(|_| DocError::BadChunk)?;
        let len = body.length()?;
        out.push((spec, len));
    }
    Ok(out)
}

/// The data of the columns described by `meta`, in order: each inflated (capped) if deflated,
/// then its rows counted.
fn columns(
    body: &mut Cursor<'_>,
    meta: &[(u32, usize)],
    budget: &mut DecodeBudget,
) -> Result<(), DocError> {
    for &(spec, len) in meta {
        let data = body.take(len)?;
        if spec & DEFLATE_BIT != 0 {
            let inflated = inflate(data, budget)?;
            rows(spec, &inflated, budget)?;
        } else {
            rows(spec, data, budget)?;
        }
    }
    Ok(())
}

/// Inflates `data`, refusing as soon as the output would pass the budget.
fn inflate(data: &[u8], budget: &mut DecodeBudget) -> Result<Vec<u8>, DocError> {
    let cap = budget.inflated;
    let mut out = Vec::new();
    flate2::bufread::DeflateDecoder::new(data)
        .take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|_| DocError::BadChunk)?;
    let used = out.len() as u64;
    if used > cap {
        return Err(DocError::DecodeLimit);
    }
    budget.inflated -= used;
    Ok(out)
}

/// How the values of a column are encoded, from the low three bits of its specification.
#[derive(Clone, Copy)]
enum Encoding {
    /// Run-length encoded unsigned integers (groups, actor indices, integers, value metadata).
    Unsigned,
    /// Run-length encoded signed integers (delta columns).
    Signed,
    /// Run-length encoded length-prefixed strings.
    Text,
    /// Alternating run lengths of false and true.
    Boolean,
    /// Raw value bytes, laid out by a value-metadata column: no runs.
    Raw,
}

fn encoding(spec: u32) -> Encoding {
    match spec & 0b111 {
        3 => Encoding::Signed,
        4 => Encoding::Boolean,
        5 => Encoding::Text,
        7 => Encoding::Raw,
        _ => Encoding::Unsigned,
    }
}

/// Adds the rows of one column to what the budget has spent.
fn rows(spec: u32, data: &[u8], budget: &mut DecodeBudget) -> Result<(), DocError> {
    let mut column = Cursor::new(data);
    let mut spend = |n: u64| -> Result<(), DocError> {
        budget.rows = budget.rows.checked_sub(n).ok_or(DocError::DecodeLimit)?;
        Ok(())
    };
    match encoding(spec) {
        Encoding::Raw => Ok(()),
        Encoding::Boolean => {
            while !column.is_empty() {
                spend(column.uleb()?)?;
            }
            Ok(())
        }
        kind => {
            while !column.is_empty() {
                let count = column.sleb()?;
                if count > 0 {
                    spend(count.unsigned_abs())?;
                    value(&mut column, kind)?;
                } else if count < 0 {
                    let n = count.unsigned_abs();
                    spend(n)?;
                    // Each literal takes at least one byte: the budget bounds this loop.
                    for _ in 0..n {
                        value(&mut column, kind)?;
                    }
                } else {
                    spend(column.uleb()?)?;
                }
            }
            Ok(())
        }
    }
}

/// Skips one value of a run-length encoded column.
fn value(column: &mut Cursor<'_>, kind: Encoding) -> Result<(), DocError> {
    match kind {
        Encoding::Signed => column.sleb().map(|_| ()),
        Encoding::Text => column.bytes_prefixed().map(|_| ()),
        _ => column.uleb().map(|_| ()),
    }
}

/// A reading position in borrowed bytes; every read that runs past the end is a
/// [`DocError::BadChunk`].
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DocError> {
        if n > self.bytes.len() {
            return Err(DocError::BadChunk);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, DocError> {
        let (&b, tail) = self.bytes.split_first().ok_or(DocError::BadChunk)?;
        self.bytes = tail;
        Ok(b)
    }

    /// Unsigned LEB128, at most 10 bytes, fitting in 64 bits.
    fn uleb(&mut self) -> Result<u64, DocError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                return Err(DocError::BadChunk);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DocError::BadChunk)
    }

    /// Signed LEB128, at most 10 bytes.
    fn sleb(&mut self) -> Result<i64, DocError> {
        let mut value: i64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            if shift >= 64 {
                return Err(DocError::BadChunk);
            }
            value |= i64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Ok(value);
            }
        }
    }

    /// An unsigned LEB128 length that must fit in memory.
    fn length(&mut self) -> Result<usize, DocError> {
        usize::try_from(self.uleb()?).map_err(|_| DocError::BadChunk)
    }

    /// A length-prefixed byte string.
    fn bytes_prefixed(&mut self) -> Result<&'a [u8], DocError> {
        let len = self.length()?;
        self.take(len)
    }
}

/// Builders of hostile automerge chunks, for tests here and elsewhere (the hostile-phone harness
/// in `tests/`, the fuzz targets and their regressions): what a peer holding a device key can
/// send. They build bytes and nothing else.
pub mod craft {
    use std::io::Write;

    use sha2::{Digest, Sha256};

    use super::MAGIC;
    use crate::sync::wire::put_varint;

    /// A chunk of `chunk_type` around `data`, with a correct checksum.
    pub fn chunk(chunk_type: u8, data: &[u8]) -> Vec<u8> {
        let mut header = vec![chunk_type];
        put_varint(&mut header, data.len() as u64);
        let digest = Sha256::new()
            .chain_update(&header)
            .chain_update(data)
            .finalize();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(digest.get(..4).unwrap_or_default());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out
    }

    /// A saved-document chunk (correct checksum) with one actor, no heads, no change columns
    /// and one operation column of `spec` holding `data`.
    pub fn document_with_op_column(spec: u32, data: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        put_varint(&mut body, 1); // one actor
        put_varint(&mut body, 8);
        body.extend_from_slice(&[0x42; 8]);
        put_varint(&mut body, 0); // no heads
        put_varint(&mut body, 0); // no change columns
        put_varint(&mut body, 1); // one op column
        put_varint(&mut body, u64::from(spec));
        put_varint(&mut body, data.len() as u64);
        body.extend_from_slice(data);
        chunk(0, &body)
    }

    /// A saved document whose one deflated operation column inflates to `inflated` zero bytes
    /// (which decode as empty null runs): about 1,000 times smaller than what it asks a decoder
    /// to allocate.
    pub fn deflate_bomb(inflated: usize) -> Vec<u8> {
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        let mut left = inflated;
        while left > 0 {
            let n = left.min(zeros.len());
            // Writing to a Vec cannot fail.
            let _ = encoder.write_all(zeros.get(..n).unwrap_or_default());
            left -= n;
        }
        let compressed = encoder.finish().unwrap_or_default();
        // Column 0 (object actor), type actor (1), with the deflate bit.
        document_with_op_column(0x1 | super::DEFLATE_BIT, &compressed)
    }

    /// A saved document whose one operation column is a single run of `rows` equal values:
    /// a dozen bytes that decode to `rows` rows.
    pub fn long_run(rows: u64) -> Vec<u8> {
        let mut column = Vec::new();
        // A signed LEB128 run length, then the repeated value (actor index 0).
        let mut v = rows;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 && byte & 0x40 == 0 {
                column.push(byte);
                break;
            }
            column.push(byte | 0x80);
        }
        column.push(0);
        document_with_op_column(0x1, &column)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

    use automerge::transaction::Transactable;
    use automerge::{ActorId, AutoCommit, ChangeHash, ObjType, ROOT};

    use super::*;

    fn full() -> DecodeBudget {
        DecodeBudget {
            inflated: 64 << 20,
            rows: 1 << 24,
        }
    }

    /// A document with Thai text long enough that `save()` deflates some columns.
    fn thai_doc() -> AutoCommit {
        let mut doc = AutoCommit::new().with_actor(ActorId::from(vec![3u8; 8]));
        let text = doc.put_object(ROOT, "บันทึก", ObjType::Text).unwrap();
        for i in 0..400 {
            doc.splice_text(&text, 0, 0, &format!("กิจกรรม {i} ที่ขอนแก่น "))
                .unwrap();
            doc.put(ROOT, format!("k{}", i % 37), i).unwrap();
            doc.commit();
        }
        doc
    }

    #[test]
    fn every_chunk_automerge_writes_passes_and_is_counted() {
        let mut doc = thai_doc();
        let saved = doc.save();
        let mut budget = full();
        check(&saved, &mut budget).unwrap();
        let spent_rows = full().rows - budget.rows;
        assert!(spent_rows > 400, "rows counted: {spent_rows}");
        assert!(
            budget.inflated < full().inflated,
            "save() deflated nothing: the test does not cover inflation"
        );

        let hashes: Vec<ChangeHash> = doc.get_changes_meta(&[]).iter().map(|m| m.hash).collect();
        let bundle = doc.bundle(hashes).unwrap().bytes().to_vec();
        check(&bundle, &mut full()).unwrap();

        // One large change, which automerge sends compressed (chunk type 2).
        let before = doc.get_heads();
        let text = doc.put_object(ROOT, "ยาว", ObjType::Text).unwrap();
        doc.splice_text(&text, 0, 0, &"รายงานการทุจริต ".repeat(200))
            .unwrap();
        doc.commit();
        let mut compressed_seen = false;
        for change in doc.get_changes(&before).iter_mut() {
            check(change.raw_bytes(), &mut full()).unwrap();
            let bytes = change.bytes().into_owned();
            compressed_seen |= bytes.get(8) == Some(&2);
            check(&bytes, &mut full()).unwrap();
        }
        assert!(
            compressed_seen,
            "no compressed change: the test does not cover type 2"
        );
        let saved = doc.save();
        // A saved document followed by incremental changes, as `AutoCommit::load` reads them.
        let heads = doc.get_heads();
        doc.put(ROOT, "ท้าย", "ค่า").unwrap();
        doc.commit();
        let mut both = saved.clone();
        both.extend(doc.save_after(&heads));
        check(&both, &mut full()).unwrap();
    }

    #[test]
    fn a_deflate_bomb_is_refused_before_it_is_inflated_past_the_budget() {
        let bomb = craft::deflate_bomb(256 << 20);
        assert!(bomb.len() < 300 << 10, "bomb is {} bytes", bomb.len());
        let mut budget = full();
        assert_eq!(check(&bomb, &mut budget), Err(DocError::DecodeLimit));
        // The budget is spent: the rest of the message is refused at once.
        assert_eq!(
            budget,
            DecodeBudget {
                inflated: 0,
                rows: 0
            }
        );
        let saved = thai_doc().save();
        assert_eq!(check(&saved, &mut budget), Err(DecodeLimit));
        // Under a budget it fits, the same shape passes: the cap is what refused it.
        let small = craft::deflate_bomb(1 << 20);
        check(&small, &mut full()).unwrap();
    }

    use DocError::DecodeLimit;

    #[test]
    fn a_long_run_is_refused_before_it_is_expanded() {
        let mut budget = full();
        assert_eq!(
            check(&craft::long_run(1 << 62), &mut budget),
            Err(DecodeLimit)
        );
        let mut budget = full();
        check(&craft::long_run(1000), &mut budget).unwrap();
        assert_eq!(full().rows - budget.rows, 1000);
        // Null runs and boolean runs count too.
        let mut nulls = vec![0u8];
        put_varint_for_test(&mut nulls, 1 << 40);
        assert_eq!(
            check(&craft::document_with_op_column(0x1, &nulls), &mut full()),
            Err(DecodeLimit)
        );
        let mut booleans = Vec::new();
        put_varint_for_test(&mut booleans, 5);
        put_varint_for_test(&mut booleans, 1 << 40);
        assert_eq!(
            check(&craft::document_with_op_column(0x4, &booleans), &mut full()),
            Err(DecodeLimit)
        );
    }

    fn put_varint_for_test(out: &mut Vec<u8>, v: u64) {
        crate::sync::wire::put_varint(out, v);
    }

    #[test]
    fn cut_or_garbled_chunks_are_bad_chunks() {
        let saved = thai_doc().save();
        for cut in [0, 3, 8, 9, 12, saved.len() / 2, saved.len() - 1] {
            assert_eq!(
                check(&saved[..cut], &mut full()),
                Err(DocError::BadChunk),
                "cut at {cut}"
            );
        }
        let mut wrong_type = saved.clone();
        wrong_type[8] = 9;
        assert_eq!(check(&wrong_type, &mut full()), Err(DocError::BadChunk));
        // A column count the input cannot hold.
        let mut body = Vec::new();
        put_varint_for_test(&mut body, 0);
        put_varint_for_test(&mut body, 0);
        put_varint_for_test(&mut body, u64::MAX >> 1);
        assert_eq!(
            check(&craft::chunk(0, &body), &mut full()),
            Err(DocError::BadChunk)
        );
    }
}
