//! `phakhi tipdesk backup` and `tipdesk restore`: the desk's key and the member-code registry's
//! key split into k-of-n shares for k investigators to keep apart.
//!
//! The 64 secret bytes (the X25519 key that opens tips, then the key that hashes member codes)
//! are split with Shamir's scheme over GF(256) by the `blahaj` crate (the maintained fork of
//! `sharks`). Each share is one line of text, also drawn as a QR code:
//!
//! `PHAKHI-SHARE1:` then hex of `version (1) | set (8) | k (1) | n (1) | desk public key (32) |
//! commitment (32) | share (1 + 64) | checksum (8)`.
//!
//! - The checksum (the first 8 bytes of SHA-256 over everything before it, under a label) finds
//!   a share damaged in copying, typing or printing, and names it.
//! - The commitment (SHA-256 under a label of the set and the secret) and the public key find a
//!   share altered on purpose (its checksum recomputed): the rebuilt secret does not match them.
//! - The set id keeps shares of two backups apart.
//!
//! Fewer than k shares say nothing about the secret (Shamir's scheme is information-theoretic);
//! the commitment is a hash of 64 random bytes, so it cannot be searched either.
//!
//! The registry of issued codes (keyed hash → alias) lives in the desk's store; the backup also
//! writes it sealed (XChaCha20-Poly1305 under a key derived from the secret with HKDF-SHA256,
//! bound to the set) to `codes.sealed`, which may be kept anywhere: only k shares open it.

use std::path::{Path, PathBuf};

use blahaj::{Share, Sharks};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use phakhi_core::seal::{CodeHashKey, StaticKeyPair};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use phakhi_core::desk::TipDeskKeys;

/// Every share's text begins with this.
pub const SHARE_PREFIX: &str = "PHAKHI-SHARE1:";
const SHARE_VERSION: u8 = 1;
const SECRET_LEN: usize = 64;
const BODY_LEN: usize = 1 + 8 + 1 + 1 + 32 + 32 + 1 + SECRET_LEN;
const CHECK_LEN: usize = 8;
const CHECK_LABEL: &[u8] = b"phakhi/v1/desk-share/checksum";
const COMMIT_LABEL: &[u8] = b"phakhi/v1/desk-share/commitment";
const CODES_LABEL: &[u8] = b"phakhi/v1/desk-share/codes";
/// The sealed registry's file name.
pub const CODES_FILE: &str = "codes.sealed";

/// Why shares could not be made or used. Nothing is written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error(
        "give a threshold of at least 2 and at most the number of shares (at most 16), e.g. \
         --shares 5 --threshold 3"
    )]
    BadSplit,
    #[error("{0} is not a tip-desk share (it does not start with {SHARE_PREFIX})")]
    NotAShare(String),
    #[error(
        "the share in {0} is damaged (its checksum does not match): ask its holder for the \
         printed copy and type it again, or use another share"
    )]
    Damaged(String),
    #[error(
        "the shares belong to different backups or desks ({0} differs from the first): give \
         shares from one `tipdesk backup`"
    )]
    Mixed(String),
    #[error(
        "only {have} different share(s) given; this backup needs {need} of its {count}: collect \
         {need} shares from their holders"
    )]
    TooFew { have: usize, need: u8, count: u8 },
    #[error(
        "the shares do not rebuild the desk's key (one was altered and its checksum forged, or \
         they are not the shares this backup wrote): try another combination of shares; \
         nothing was written"
    )]
    Altered,
    #[error(
        "the sealed code registry {0} does not open with these shares: give the codes.sealed of the same backup"
    )]
    Codes(String),
}

/// What the shares rebuild.
pub struct Rebuilt {
    pub keys: StaticKeyPair,
    pub code_key: CodeHashKey,
    secret: Zeroizing<Vec<u8>>,
    set: [u8; 8],
}

/// One backup's shares (text).
pub struct Split {
    pub set: [u8; 8],
    pub shares: Vec<String>,
}

impl std::fmt::Debug for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Split")
            .field("shares", &self.shares.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Rebuilt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rebuilt")
            .field("public", self.keys.public())
            .finish_non_exhaustive()
    }
}

fn secret_of(keys: &TipDeskKeys) -> Zeroizing<Vec<u8>> {
    let mut secret = Zeroizing::new(Vec::with_capacity(SECRET_LEN));
    secret.extend_from_slice(keys.keys.secret_bytes().as_slice());
    secret.extend_from_slice(keys.code_key.to_bytes().as_slice());
    secret
}

fn commitment(set: &[u8; 8], secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(COMMIT_LABEL);
    h.update(set);
    h.update(secret);
    h.finalize().into()
}

fn checksum(body: &[u8]) -> [u8; CHECK_LEN] {
    let mut h = Sha256::new();
    h.update(CHECK_LABEL);
    h.update(body);
    let digest = h.finalize();
    let mut out = [0u8; CHECK_LEN];
    out.copy_from_slice(&digest[..CHECK_LEN]);
    out
}

/// Splits the desk's keys into `count` shares, any `threshold` of which rebuild them.
pub fn split(keys: &TipDeskKeys, threshold: u8, count: u8) -> Result<Split, ShareError> {
    if threshold < 2 || threshold > count || count > 16 {
        return Err(ShareError::BadSplit);
    }
    let secret = secret_of(keys);
    let mut set = [0u8; 8];
    OsRng.fill_bytes(&mut set);
    let commit = commitment(&set, &secret);
    let shares = Sharks(threshold)
        .dealer(&secret)
        .take(usize::from(count))
        .map(|share| {
            let share = Zeroizing::new(Vec::<u8>::from(&share));
            let mut body = Zeroizing::new(Vec::with_capacity(BODY_LEN + CHECK_LEN));
            body.push(SHARE_VERSION);
            body.extend_from_slice(&set);
            body.push(threshold);
            body.push(count);
            body.extend_from_slice(keys.keys.public().as_bytes());
            body.extend_from_slice(&commit);
            body.extend_from_slice(&share);
            let check = checksum(&body);
            body.extend_from_slice(&check);
            format!("{SHARE_PREFIX}{}", group(&hex::encode(body.as_slice())))
        })
        .collect();
    Ok(Split { set, shares })
}

/// Hex in groups of 8, so a printed share can be typed back in pieces.
fn group(hex: &str) -> String {
    hex.as_bytes()
        .chunks(8)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

struct Parsed {
    set: [u8; 8],
    threshold: u8,
    count: u8,
    public: [u8; 32],
    commit: [u8; 32],
    share: Share,
}

fn parse(label: &str, text: &str) -> Result<Parsed, ShareError> {
    let text = text.trim();
    let Some(rest) = text.strip_prefix(SHARE_PREFIX) else {
        return Err(ShareError::NotAShare(label.to_owned()));
    };
    let compact: String = rest
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    let bytes =
        Zeroizing::new(hex::decode(compact).map_err(|_| ShareError::Damaged(label.to_owned()))?);
    if bytes.len() != BODY_LEN + CHECK_LEN {
        return Err(ShareError::Damaged(label.to_owned()));
    }
    let (body, check) = bytes.split_at(BODY_LEN);
    if checksum(body) != check || body[0] != SHARE_VERSION {
        return Err(ShareError::Damaged(label.to_owned()));
    }
    let take = |range: std::ops::Range<usize>| body[range].to_vec();
    let mut set = [0u8; 8];
    set.copy_from_slice(&take(1..9));
    let mut public = [0u8; 32];
    public.copy_from_slice(&take(11..43));
    let mut commit = [0u8; 32];
    commit.copy_from_slice(&take(43..75));
    let share = Share::try_from(&body[75..]).map_err(|_| ShareError::Damaged(label.to_owned()))?;
    Ok(Parsed {
        set,
        threshold: body[9],
        count: body[10],
        public,
        commit,
        share,
    })
}

/// Rebuilds the desk's keys from shares given as (where it came from, its text).
pub fn combine(shares: &[(String, String)]) -> Result<Rebuilt, ShareError> {
    let mut parsed = Vec::with_capacity(shares.len());
    for (label, text) in shares {
        parsed.push((label, parse(label, text)?));
    }
    let Some((_, first)) = parsed.first() else {
        return Err(ShareError::TooFew {
            have: 0,
            need: 2,
            count: 0,
        });
    };
    let (set, threshold, count, public, commit) = (
        first.set,
        first.threshold,
        first.count,
        first.public,
        first.commit,
    );
    for (label, p) in &parsed {
        if (p.set, p.threshold, p.count, p.public, p.commit)
            != (set, threshold, count, public, commit)
        {
            return Err(ShareError::Mixed((*label).clone()));
        }
    }
    let distinct: std::collections::BTreeSet<u8> =
        parsed.iter().map(|(_, p)| p.share.x.0).collect();
    if distinct.len() < usize::from(threshold) {
        return Err(ShareError::TooFew {
            have: distinct.len(),
            need: threshold,
            count,
        });
    }
    let secret = Zeroizing::new(
        Sharks(threshold)
            .recover(parsed.iter().map(|(_, p)| &p.share))
            .map_err(|_| ShareError::Altered)?,
    );
    if secret.len() != SECRET_LEN || commitment(&set, &secret) != commit {
        return Err(ShareError::Altered);
    }
    let mut tip = Zeroizing::new([0u8; 32]);
    tip.copy_from_slice(&secret[..32]);
    let mut code = Zeroizing::new([0u8; 32]);
    code.copy_from_slice(&secret[32..]);
    let keys = StaticKeyPair::from_secret_bytes(&tip).map_err(|_| ShareError::Altered)?;
    if keys.public().as_bytes() != &public {
        return Err(ShareError::Altered);
    }
    Ok(Rebuilt {
        keys,
        code_key: CodeHashKey::from_bytes(*code),
        secret,
        set,
    })
}

fn codes_cipher(secret: &[u8]) -> XChaCha20Poly1305 {
    let hk = Hkdf::<Sha256>::new(None, secret);
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes are always a valid HKDF-SHA256 output length.
    let _ = hk.expand(CODES_LABEL, key.as_mut_slice());
    XChaCha20Poly1305::new(key.as_slice().into())
}

/// Seals the registry (`(keyed hash, alias)` pairs) for the backup `split` made.
pub fn seal_codes(keys: &TipDeskKeys, split: &Split, codes: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let plain: Vec<(String, String)> = codes
        .iter()
        .map(|(hash, alias)| {
            (
                hex::encode(hash),
                String::from_utf8_lossy(alias).into_owned(),
            )
        })
        .collect();
    let plain = Zeroizing::new(serde_json::to_vec(&plain).unwrap_or_default());
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut nonce);
    let sealed = codes_cipher(&secret_of(keys))
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &split.set,
            },
        )
        .unwrap_or_default();
    let mut out = split.set.to_vec();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens a registry sealed by [`seal_codes`] with the rebuilt secret.
pub fn open_codes(
    rebuilt: &Rebuilt,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<(Vec<u8>, String)>, ShareError> {
    let bad = || ShareError::Codes(path.display().to_string());
    if bytes.len() < 32 || bytes[..8] != rebuilt.set {
        return Err(bad());
    }
    let plain = Zeroizing::new(
        codes_cipher(&rebuilt.secret)
            .decrypt(
                XNonce::from_slice(&bytes[8..32]),
                Payload {
                    msg: &bytes[32..],
                    aad: &rebuilt.set,
                },
            )
            .map_err(|_| bad())?,
    );
    let pairs: Vec<(String, String)> = serde_json::from_slice(&plain).map_err(|_| bad())?;
    pairs
        .into_iter()
        .map(|(hash, alias)| Ok((hex::decode(hash).map_err(|_| bad())?, alias)))
        .collect()
}

/// The share as a QR code drawn with text blocks (for the terminal and the .txt file).
pub fn qr_text(share: &str) -> String {
    match qrcode::QrCode::new(share.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .build(),
        Err(_) => String::new(),
    }
}

/// The share as an SVG QR code, for printing.
pub fn qr_svg(share: &str) -> String {
    match qrcode::QrCode::new(share.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(400, 400)
            .build(),
        Err(_) => String::new(),
    }
}

/// Where share `n` of a backup is written in `out`.
pub fn share_path(out: &Path, n: usize, ext: &str) -> PathBuf {
    out.join(format!("share-{n}.{ext}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(shares: &[String]) -> Vec<(String, String)> {
        shares
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("share {}", i + 1), s.clone()))
            .collect()
    }

    #[test]
    fn any_three_of_five_rebuild_the_keys_and_fewer_or_damaged_ones_do_not() {
        let keys = TipDeskKeys::generate(&mut OsRng);
        let split = split(&keys, 3, 5).unwrap();
        assert_eq!(split.shares.len(), 5);
        let all = labelled(&split.shares);
        for pick in [[0, 1, 2], [0, 2, 4], [1, 3, 4]] {
            let chosen: Vec<_> = pick.iter().map(|&i| all[i].clone()).collect();
            let rebuilt = combine(&chosen).unwrap();
            assert_eq!(rebuilt.keys.public(), keys.keys.public());
            assert_eq!(*rebuilt.code_key.to_bytes(), *keys.code_key.to_bytes());
        }
        assert!(matches!(
            combine(&all[..2]),
            Err(ShareError::TooFew {
                have: 2,
                need: 3,
                count: 5
            })
        ));
        // The same share twice counts once.
        let twice = vec![all[0].clone(), all[0].clone(), all[1].clone()];
        assert!(matches!(
            combine(&twice),
            Err(ShareError::TooFew { have: 2, .. })
        ));
        // A typo is found by the checksum and named.
        let mut typo = all[..3].to_vec();
        let text = &mut typo[1].1;
        let at = text.len() - 20;
        let swapped = if &text[at..=at] == "0" { "1" } else { "0" };
        text.replace_range(at..=at, swapped);
        assert!(matches!(combine(&typo), Err(ShareError::Damaged(label)) if label == "share 2"));
        // An altered share with its checksum forged is found by the commitment.
        let mut forged = all[..3].to_vec();
        let mut bytes = hex::decode(forged[2].1[SHARE_PREFIX.len()..].replace('-', "")).unwrap();
        bytes[BODY_LEN - 1] ^= 0x55;
        let check = checksum(&bytes[..BODY_LEN]);
        bytes[BODY_LEN..].copy_from_slice(&check);
        forged[2].1 = format!("{SHARE_PREFIX}{}", hex::encode(bytes));
        assert!(matches!(combine(&forged), Err(ShareError::Altered)));
        // Shares of another backup do not mix.
        let other = split_again(&keys);
        let mixed = vec![all[0].clone(), all[1].clone(), ("other".into(), other)];
        assert!(matches!(combine(&mixed), Err(ShareError::Mixed(label)) if label == "other"));
        assert!(matches!(split_err(1, 3), ShareError::BadSplit));
        assert!(matches!(split_err(4, 3), ShareError::BadSplit));
    }

    fn split_again(keys: &TipDeskKeys) -> String {
        split(keys, 3, 5).unwrap().shares.remove(0)
    }

    fn split_err(k: u8, n: u8) -> ShareError {
        split(&TipDeskKeys::generate(&mut OsRng), k, n)
            .err()
            .unwrap()
    }

    #[test]
    fn the_sealed_registry_opens_only_with_the_shares_of_its_backup() {
        let keys = TipDeskKeys::generate(&mut OsRng);
        let split = split(&keys, 2, 3).unwrap();
        let codes = vec![(vec![1u8; 32], "นายเอ".as_bytes().to_vec())];
        let sealed = seal_codes(&keys, &split, &codes);
        let rebuilt = combine(&labelled(&split.shares[1..])).unwrap();
        let path = Path::new("codes.sealed");
        assert_eq!(
            open_codes(&rebuilt, path, &sealed).unwrap(),
            vec![(vec![1u8; 32], "นายเอ".to_owned())]
        );
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(open_codes(&rebuilt, path, &bad).is_err());
        assert!(!qr_text(&split.shares[0]).is_empty());
        assert!(qr_svg(&split.shares[0]).contains("<svg"));
    }
}
