//! Chunked attachment encryption: a 10 MB file goes through encrypt → chunks → verify → decrypt
//! byte-identical, in order or not; every chunk (manifest included) has the same size; every
//! tampering — a flipped byte, two chunks swapped, the last chunk dropped, a chunk added, a wrong
//! key, a substituted manifest — is refused with its own error, both by the manifest checks and
//! by STREAM underneath them; sizes around the chunk boundaries round-trip; Thai file names
//! survive.

#![allow(clippy::unwrap_used)]

use phakhi_core::attach::stream::decrypt_data;
use phakhi_core::attach::{
    Added, Assembler, AttachmentKey, AttachmentRef, AttachmentStatus, CHUNK_DATA_LEN, CHUNK_LEN,
    ChunkError, EncryptedAttachment, MediaType, encrypt_attachment, open_attachment,
};
use proptest::prelude::*;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn random_bytes(rng: &mut ChaCha20Rng, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    data
}

fn encrypt(rng: &mut ChaCha20Rng, data: &[u8]) -> EncryptedAttachment {
    encrypt_attachment(rng, MediaType::Pdf, None, data).unwrap()
}

fn slices(chunks: &[Vec<u8>]) -> Vec<&[u8]> {
    chunks.iter().map(Vec::as_slice).collect()
}

#[test]
fn ten_megabytes_round_trip_in_order_and_out_of_order() {
    let rng = &mut ChaCha20Rng::seed_from_u64(10);
    let data = random_bytes(rng, 10_000_000);
    let enc = encrypt(rng, &data);
    assert_eq!(enc.chunks.len(), 10_000_000usize.div_ceil(CHUNK_DATA_LEN));
    assert_eq!(enc.manifest.size, 10_000_000);
    assert!(enc.chunks.iter().all(|c| c.len() == CHUNK_LEN));
    assert_eq!(enc.manifest_chunk.len(), CHUNK_LEN);

    let opened =
        open_attachment(&enc.reference, &enc.manifest_chunk, &slices(&enc.chunks)).unwrap();
    assert!(opened.data.as_slice() == data.as_slice());
    assert_eq!(opened.manifest.media_type, MediaType::Pdf);

    // The desk receives chunks in any order, data before manifest refused, duplicates ignored.
    let mut desk = Assembler::new(enc.reference.clone());
    assert!(matches!(
        desk.add_chunk(&enc.chunks[0]).unwrap_err(),
        ChunkError::Unexpected { .. }
    ));
    assert_eq!(
        desk.status(),
        AttachmentStatus::NeedManifest {
            manifest_id: enc.reference.manifest_id
        }
    );
    assert_eq!(
        desk.add_chunk(&enc.manifest_chunk).unwrap(),
        Added::Manifest
    );
    assert_eq!(
        desk.add_chunk(&enc.manifest_chunk).unwrap(),
        Added::Duplicate
    );
    for (index, chunk) in enc.chunks.iter().enumerate().rev() {
        assert!(!desk.is_complete());
        assert_eq!(desk.add_chunk(chunk).unwrap(), Added::Data { index });
    }
    assert_eq!(desk.add_chunk(&enc.chunks[7]).unwrap(), Added::Duplicate);
    assert_eq!(desk.status(), AttachmentStatus::Complete);
    let opened = desk.finish().unwrap();
    assert!(opened.data.as_slice() == data.as_slice());
}

#[test]
fn every_tampering_is_refused_with_its_own_error() {
    let rng = &mut ChaCha20Rng::seed_from_u64(11);
    let data = random_bytes(rng, 5 * CHUNK_DATA_LEN + 1234);
    let enc = encrypt(rng, &data);
    let n = enc.chunks.len();
    assert_eq!(n, 6);
    let reference = &enc.reference;
    let key = &reference.key;
    let open =
        |chunks: &[Vec<u8>]| open_attachment(reference, &enc.manifest_chunk, &slices(chunks));

    // A flipped byte.
    let mut flipped = enc.chunks.clone();
    flipped[3][1000] ^= 0x01;
    assert_eq!(
        open(&flipped).unwrap_err(),
        ChunkError::HashMismatch { index: 3 }
    );
    assert_eq!(
        decrypt_data(key, &slices(&flipped)).unwrap_err(),
        ChunkError::Undecryptable { index: 3 }
    );
    let mut desk = Assembler::new(reference.clone());
    desk.add_chunk(&enc.manifest_chunk).unwrap();
    assert!(matches!(
        desk.add_chunk(&flipped[3]).unwrap_err(),
        ChunkError::Unexpected { .. }
    ));

    // Two chunks swapped.
    let mut swapped = enc.chunks.clone();
    swapped.swap(1, 2);
    assert_eq!(
        open(&swapped).unwrap_err(),
        ChunkError::HashMismatch { index: 1 }
    );
    assert_eq!(
        decrypt_data(key, &slices(&swapped)).unwrap_err(),
        ChunkError::Undecryptable { index: 1 }
    );

    // The last chunk dropped.
    let truncated = enc.chunks[..n - 1].to_vec();
    assert_eq!(
        open(&truncated).unwrap_err(),
        ChunkError::CountMismatch {
            expected: n,
            found: n - 1
        }
    );
    assert_eq!(
        decrypt_data(key, &slices(&truncated)).unwrap_err(),
        ChunkError::Undecryptable { index: n - 2 },
        "STREAM's last-chunk flag catches a cut stream"
    );
    let mut desk = Assembler::new(reference.clone());
    desk.add_chunk(&enc.manifest_chunk).unwrap();
    for chunk in &truncated {
        desk.add_chunk(chunk).unwrap();
    }
    assert_eq!(
        desk.status(),
        AttachmentStatus::Incomplete {
            missing: vec![enc.manifest.chunks[n - 1]],
            total: n
        }
    );
    assert_eq!(
        desk.finish().unwrap_err(),
        ChunkError::Missing {
            missing: 1,
            total: n
        }
    );

    // An extra chunk: one of another attachment, or a copy of the last one.
    let other = encrypt(rng, &data);
    let mut extra = enc.chunks.clone();
    extra.push(other.chunks[0].clone());
    assert_eq!(
        open(&extra).unwrap_err(),
        ChunkError::CountMismatch {
            expected: n,
            found: n + 1
        }
    );
    let mut repeated = enc.chunks.clone();
    repeated.push(enc.chunks[n - 1].clone());
    assert_eq!(
        decrypt_data(key, &slices(&repeated)).unwrap_err(),
        ChunkError::Undecryptable { index: n - 1 },
        "after the last chunk nothing may follow"
    );
    let mut desk = Assembler::new(reference.clone());
    desk.add_chunk(&enc.manifest_chunk).unwrap();
    assert!(matches!(
        desk.add_chunk(&other.chunks[0]).unwrap_err(),
        ChunkError::Unexpected { .. }
    ));

    // A wrong key.
    let wrong = AttachmentRef {
        key: AttachmentKey::generate(rng),
        manifest_id: reference.manifest_id,
    };
    assert_eq!(
        open_attachment(&wrong, &enc.manifest_chunk, &slices(&enc.chunks)).unwrap_err(),
        ChunkError::ManifestUndecryptable
    );
    assert_eq!(
        Assembler::new(wrong.clone())
            .add_chunk(&enc.manifest_chunk)
            .unwrap_err(),
        ChunkError::ManifestUndecryptable
    );
    assert_eq!(
        decrypt_data(&wrong.key, &slices(&enc.chunks)).unwrap_err(),
        ChunkError::Undecryptable { index: 0 }
    );
    // Chunks of another attachment under this key, in their own order.
    assert_eq!(
        decrypt_data(key, &slices(&other.chunks)).unwrap_err(),
        ChunkError::Undecryptable { index: 0 }
    );

    // Another attachment's manifest in place of this one's.
    assert_eq!(
        open_attachment(reference, &other.manifest_chunk, &slices(&enc.chunks)).unwrap_err(),
        ChunkError::ManifestHashMismatch
    );

    // Wrong sizes and versions.
    let mut short = enc.chunks.clone();
    short[2].pop();
    assert_eq!(
        open(&short).unwrap_err(),
        ChunkError::WrongSize {
            index: 2,
            len: CHUNK_LEN - 1,
            expected: CHUNK_LEN
        }
    );
    let mut versioned = enc.chunks.clone();
    versioned[0][0] = 9;
    assert_eq!(
        decrypt_data(key, &slices(&versioned)).unwrap_err(),
        ChunkError::UnknownVersion {
            index: 0,
            version: 9
        }
    );
    assert!(
        Assembler::new(reference.clone())
            .add_chunk(&[0u8; 10])
            .is_err()
    );
    assert_eq!(decrypt_data(key, &[]).unwrap_err(), ChunkError::Empty);

    // Untouched, it still opens.
    assert!(open(&enc.chunks).unwrap().data.as_slice() == data.as_slice());
}

#[test]
fn manifest_keeps_thai_file_names_and_ids_are_sha256_of_chunks() {
    let rng = &mut ChaCha20Rng::seed_from_u64(12);
    let name = "ภาพถ่ายหลักฐาน_สะพานบ้านหนองโน_๒๕๖๘.jpg";
    let data = random_bytes(rng, 3 * CHUNK_DATA_LEN);
    let enc = encrypt_attachment(rng, MediaType::Jpeg, Some(name), &data).unwrap();
    assert_eq!(enc.chunks.len(), 3);
    let opened =
        open_attachment(&enc.reference, &enc.manifest_chunk, &slices(&enc.chunks)).unwrap();
    assert_eq!(opened.manifest.file_name.as_deref(), Some(name));
    assert_eq!(opened.manifest.media_type, MediaType::Jpeg);
    for (id, chunk) in enc.all_chunks() {
        assert_eq!(
            id.0,
            <sha2::Sha256 as sha2::Digest>::digest(chunk).as_slice()
        );
    }
    // The name is inside the ciphertext only.
    for (_, chunk) in enc.all_chunks() {
        assert!(!chunk.windows(name.len()).any(|w| w == name.as_bytes()));
    }
    // Two encryptions of the same file share no chunk (fresh key each time).
    let again = encrypt_attachment(rng, MediaType::Jpeg, Some(name), &data).unwrap();
    assert!(
        again
            .all_chunks()
            .all(|(id, _)| enc.all_chunks().all(|(other, _)| other != id))
    );
    // Debug never shows the key.
    let shown = format!("{:?} {:?}", enc.reference, enc.reference.key);
    assert!(!shown.contains(&hex::encode(enc.reference.key.as_bytes())));
}

fn boundary_size() -> impl Strategy<Value = usize> {
    let c = CHUNK_DATA_LEN;
    prop_oneof![
        Just(0),
        Just(1),
        Just(c - 1),
        Just(c),
        Just(c + 1),
        Just(2 * c - 1),
        Just(2 * c),
        Just(2 * c + 1),
        0..4 * c,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_size_round_trips_in_equal_sized_chunks(len in boundary_size(), seed in any::<u64>()) {
        let rng = &mut ChaCha20Rng::seed_from_u64(seed);
        let data = random_bytes(rng, len);
        let enc = encrypt(rng, &data);
        prop_assert_eq!(enc.chunks.len(), len.div_ceil(CHUNK_DATA_LEN).max(1));
        prop_assert!(enc.all_chunks().all(|(_, c)| c.len() == CHUNK_LEN));
        let opened = open_attachment(&enc.reference, &enc.manifest_chunk, &slices(&enc.chunks)).unwrap();
        prop_assert_eq!(opened.data.as_slice(), data.as_slice());
        prop_assert_eq!(opened.manifest.size, len as u64);
        let mut desk = Assembler::new(enc.reference.clone());
        desk.add_chunk(&enc.manifest_chunk).unwrap();
        for chunk in enc.chunks.iter().rev() {
            desk.add_chunk(chunk).unwrap();
        }
        let assembled = desk.finish().unwrap();
        prop_assert_eq!(assembled.data.as_slice(), data.as_slice());
    }
}
