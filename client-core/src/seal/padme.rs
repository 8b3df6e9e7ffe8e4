//! Size classes of the peer transport: the Padmé padding function of Nikitin, Barman, Lueks,
//! Underwood, Hubaux and Ford, "Reducing Metadata Leakage from Encrypted Files and Communication
//! with PURBs" (PETS 2019). A length `L` with `E = floor(log2 L)` and `S = floor(log2 E) + 1` is
//! rounded up to a multiple of `2^(E-S)`: the padded length has at most `S` significant bits
//! after its leading one, so it tells an observer O(log log L) bits about `L`, and the padding
//! costs at most about 12% (less than 6.25% from 256 bytes on). Power-of-two classes leak a
//! little less (log log L bits, one class per doubling) but cost up to 100%; Padmé has `2^S`
//! classes per doubling (16 between 256 B and 64 KiB, 32 up to 4 GiB), about twice the bits, for
//! an overhead bounded by a small fraction of the length.
//!
//! Transport envelopes are Padmé lengths between [`MIN_TRANSPORT_ENVELOPE`] and
//! [`MAX_TRANSPORT_ENVELOPE`]; an envelope of any other length is refused before any other work.
//! Tips and replies keep their four coarse buckets (`super::pad`): a tip's size says more about
//! its content than a sync's does.

/// The smallest transport envelope: 256 bytes (one request header with a small body).
pub const MIN_TRANSPORT_ENVELOPE: usize = 256;
/// The largest transport envelope: 16 MiB (itself a Padmé length).
pub const MAX_TRANSPORT_ENVELOPE: usize = 16 * 1024 * 1024;

/// Padmé: `len` rounded up to the next length whose bits after the leading `S + 1` are zero
/// (`S = floor(log2 floor(log2 len)) + 1`). Lengths 0 and 1 are their own class. `None` only
/// when the rounded length does not fit in a `usize`.
pub const fn padme(len: usize) -> Option<usize> {
    if len < 2 {
        return Some(len);
    }
    // E = floor(log2 L) >= 1, S = floor(log2 E) + 1 <= E.
    let e = usize::BITS - 1 - len.leading_zeros();
    let s = u32::BITS - e.leading_zeros();
    let mask = (1usize << (e - s)) - 1;
    match len.checked_add(mask) {
        Some(up) => Some(up & !mask),
        None => None,
    }
}

/// The transport envelope length for `needed` bytes of header, body and tag: the Padmé class of
/// `needed` (at least [`MIN_TRANSPORT_ENVELOPE`]); `None` beyond [`MAX_TRANSPORT_ENVELOPE`].
pub const fn transport_size(needed: usize) -> Option<usize> {
    let floor = if needed < MIN_TRANSPORT_ENVELOPE {
        MIN_TRANSPORT_ENVELOPE
    } else {
        needed
    };
    match padme(floor) {
        Some(len) if len <= MAX_TRANSPORT_ENVELOPE => Some(len),
        _ => None,
    }
}

/// Is `len` a length a transport envelope may have (a Padmé length in the allowed range)?
pub const fn is_transport_size(len: usize) -> bool {
    if len < MIN_TRANSPORT_ENVELOPE || len > MAX_TRANSPORT_ENVELOPE {
        return false;
    }
    matches!(padme(len), Some(p) if p == len)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

    use super::*;

    /// Padmé written out the long way, from the paper's definition, to check the bit tricks.
    fn by_definition(len: usize) -> usize {
        let e = (len as f64).log2().floor() as u32;
        let s = (f64::from(e)).log2().floor() as u32 + 1;
        let step = 1usize << (e - s);
        len.div_ceil(step) * step
    }

    #[test]
    fn known_values_follow_the_definition() {
        // E = 8, S = 4: steps of 16 between 256 and 511.
        assert_eq!(padme(256), Some(256));
        assert_eq!(padme(257), Some(272));
        assert_eq!(padme(272), Some(272));
        assert_eq!(padme(273), Some(288));
        assert_eq!(padme(511), Some(512));
        // E = 9, S = 4: steps of 32.
        assert_eq!(padme(1000), Some(1024));
        assert_eq!(padme(513), Some(544));
        // E = 10, S = 4: steps of 64.
        assert_eq!(padme(1025), Some(1088));
        // E = 16, S = 5: steps of 2 KiB; E = 20, S = 5: steps of 32 KiB.
        assert_eq!(padme(65_738), Some(67_584));
        assert_eq!(padme(1_049_153), Some(1_081_344));
        // Small lengths: E = 1..3.
        assert_eq!(padme(2), Some(2));
        assert_eq!(padme(3), Some(3));
        assert_eq!(padme(9), Some(10));
        assert_eq!(padme(11), Some(12));
        assert_eq!(padme(17), Some(18));
        assert_eq!(padme(100), Some(104));
        // Powers of two are their own class.
        for k in 1..usize::BITS - 1 {
            assert_eq!(padme(1 << k), Some(1 << k));
        }
        assert_eq!(padme(0), Some(0));
        assert_eq!(padme(1), Some(1));
        assert_eq!(padme(usize::MAX), None);
        for len in (2..5000).chain((5000..5_000_000).step_by(997)) {
            assert_eq!(padme(len), Some(by_definition(len)), "{len}");
        }
    }

    #[test]
    fn padme_is_monotonic_idempotent_and_never_shrinks() {
        let mut last = 0;
        for len in (0..300_000).chain((300_000..=MAX_TRANSPORT_ENVELOPE).step_by(4093)) {
            let p = padme(len).unwrap();
            assert!(p >= len, "{len} -> {p}");
            assert!(p >= last, "{len} -> {p} < {last}");
            assert_eq!(padme(p), Some(p), "{len} -> {p} is not a fixed point");
            last = p;
        }
    }

    #[test]
    fn padding_costs_at_most_twelve_percent_and_under_a_sixteenth_from_256() {
        for len in 2..1 << 18 {
            let extra = padme(len).unwrap() - len;
            assert!(extra * 100 <= len * 12, "{len} pads by {extra}");
            if len >= MIN_TRANSPORT_ENVELOPE {
                assert!(extra * 16 < len, "{len} pads by {extra}");
            }
        }
        for len in (1 << 18..=MAX_TRANSPORT_ENVELOPE).step_by(1021) {
            let extra = padme(len).unwrap() - len;
            assert!(extra * 16 < len, "{len} pads by {extra}");
        }
    }

    #[test]
    fn each_doubling_holds_few_classes() {
        // Between 2^E and 2^(E+1) there are 2^S classes, S = floor(log2 E) + 1 <= 2E: the class
        // says about log2(2E) bits of the length, where a power-of-two bucket says none.
        for e in 8u32..24 {
            let low = 1usize << e;
            let classes = (low..low * 2).filter(|&len| is_transport_size(len)).count();
            let s = u32::BITS - e.leading_zeros();
            assert_eq!(classes, 1 << s, "E = {e}");
            assert!(classes <= 2 * e as usize);
        }
    }

    #[test]
    fn transport_sizes_have_a_floor_and_a_ceiling() {
        assert_eq!(transport_size(0), Some(256));
        assert_eq!(transport_size(166), Some(256));
        assert_eq!(transport_size(256), Some(256));
        assert_eq!(transport_size(257), Some(272));
        assert_eq!(
            transport_size(MAX_TRANSPORT_ENVELOPE),
            Some(MAX_TRANSPORT_ENVELOPE)
        );
        assert_eq!(transport_size(MAX_TRANSPORT_ENVELOPE + 1), None);
        assert_eq!(transport_size(usize::MAX), None);
        for len in [0, 1, 16, 255, 257, 1023, 1025, MAX_TRANSPORT_ENVELOPE + 1] {
            assert!(!is_transport_size(len), "{len}");
        }
        for len in [256, 272, 1024, 1088, 67_584, MAX_TRANSPORT_ENVELOPE] {
            assert!(is_transport_size(len), "{len}");
        }
        for needed in (0..100_000).step_by(7) {
            let len = transport_size(needed).unwrap();
            assert!(is_transport_size(len) && len >= needed, "{needed} -> {len}");
        }
    }
}
