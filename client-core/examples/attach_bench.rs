//! Throughput and size overhead of attachment encryption (STREAM, padded 64 KiB chunks, SHA-256
//! ids, sealed manifest) and of the desk's checks and decryption, for a 10 MB file. Figures are
//! printed, never asserted:
//!
//! ```sh
//! cargo run -p phakhi-core --example attach_bench --release
//! ```

#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // a benchmark reads the clock

use std::time::Instant;

use phakhi_core::attach::{CHUNK_LEN, MediaType, encrypt_attachment, open_attachment};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const SIZE: usize = 10_000_000;
const RUNS: u32 = 5;

fn main() {
    let rng = &mut ChaCha20Rng::seed_from_u64(1);
    let mut data = vec![0u8; SIZE];
    rng.fill_bytes(&mut data);

    let mut best_enc = f64::MAX;
    let mut best_dec = f64::MAX;
    let mut wire = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let enc = encrypt_attachment(rng, MediaType::Pdf, None, &data).unwrap();
        best_enc = best_enc.min(start.elapsed().as_secs_f64());
        wire = (enc.chunks.len() + 1) * CHUNK_LEN;
        let chunks: Vec<&[u8]> = enc.chunks.iter().map(Vec::as_slice).collect();
        let start = Instant::now();
        let opened = open_attachment(&enc.reference, &enc.manifest_chunk, &chunks).unwrap();
        best_dec = best_dec.min(start.elapsed().as_secs_f64());
        assert_eq!(opened.data.len(), SIZE);
    }
    let mb = SIZE as f64 / 1e6;
    println!("attachment of {SIZE} bytes, best of {RUNS} runs");
    println!(
        "  encrypt + pad + hash: {:.1} ms, {:.0} MB/s",
        best_enc * 1e3,
        mb / best_enc
    );
    println!(
        "  verify + decrypt:     {:.1} ms, {:.0} MB/s",
        best_dec * 1e3,
        mb / best_dec
    );
    println!(
        "  on the wire: {} chunks of {CHUNK_LEN} bytes (manifest included) = {wire} bytes, overhead ratio {:.4}",
        wire / CHUNK_LEN,
        wire as f64 / SIZE as f64
    );
}
