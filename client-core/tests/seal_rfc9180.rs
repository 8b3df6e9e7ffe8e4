//! RFC 9180 Appendix A.2 known-answer tests for the one suite Phakhi uses,
//! DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305, run through `seal::suite`:
//! A.2.1 (mode base) and A.2.3 (mode auth). The ephemeral key is fixed by feeding `ikmE` through
//! a deterministic generator, so encapsulations, ciphertexts and exports compare byte for byte.

#![allow(clippy::unwrap_used)] // test helpers fail loudly on purpose

use phakhi_core::seal::suite;
use phakhi_core::seal::{PublicKey, StaticKeyPair};
use rand_core::{CryptoRng, RngCore};

/// Hands out exactly the bytes it was given, then refuses to be used again.
struct FixedRng(Vec<u8>);

impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert!(dest.len() <= self.0.len(), "fixed generator exhausted");
        let rest = self.0.split_off(dest.len());
        dest.copy_from_slice(&self.0);
        self.0 = rest;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for FixedRng {}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

const INFO: &str = "4f6465206f6e2061204772656369616e2055726e";
const PT: &str = "4265617574792069732074727574682c20747275746820626561757479";

struct Vector {
    ikm_e: &'static str,
    ikm_r: &'static str,
    ikm_s: Option<&'static str>,
    sk_rm: &'static str,
    pk_rm: &'static str,
    pk_sm: Option<&'static str>,
    enc: &'static str,
    /// (sequence number, aad, ciphertext)
    encryptions: [(u32, &'static str, &'static str); 6],
    /// (exporter context, exported value), L = 32
    exports: [(&'static str, &'static str); 3],
}

/// RFC 9180 A.2.1: mode base.
const BASE: Vector = Vector {
    ikm_e: "909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b",
    ikm_r: "1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df",
    ikm_s: None,
    sk_rm: "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb",
    pk_rm: "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a",
    pk_sm: None,
    enc: "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a",
    encryptions: [
        (
            0,
            "436f756e742d30",
            "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28",
        ),
        (
            1,
            "436f756e742d31",
            "6b53c051e4199c518de79594e1c4ab18b96f081549d45ce015be002090bb119e85285337cc95ba5f59992dc98c",
        ),
        (
            2,
            "436f756e742d32",
            "71146bd6795ccc9c49ce25dda112a48f202ad220559502cef1f34271e0cb4b02b4f10ecac6f48c32f878fae86b",
        ),
        (
            4,
            "436f756e742d34",
            "63357a2aa291f5a4e5f27db6baa2af8cf77427c7c1a909e0b37214dd47db122bb153495ff0b02e9e54a50dbe16",
        ),
        (
            255,
            "436f756e742d323535",
            "18ab939d63ddec9f6ac2b60d61d36a7375d2070c9b683861110757062c52b8880a5f6b3936da9cd6c23ef2a95c",
        ),
        (
            256,
            "436f756e742d323536",
            "7a4a13e9ef23978e2c520fd4d2e757514ae160cd0cd05e556ef692370ca53076214c0c40d4c728d6ed9e727a5b",
        ),
    ],
    exports: [
        (
            "",
            "4bbd6243b8bb54cec311fac9df81841b6fd61f56538a775e7c80a9f40160606e",
        ),
        (
            "00",
            "8c1df14732580e5501b00f82b10a1647b40713191b7c1240ac80e2b68808ba69",
        ),
        (
            "54657374436f6e74657874",
            "5acb09211139c43b3090489a9da433e8a30ee7188ba8b0a9a1ccf0c229283e53",
        ),
    ],
};

/// RFC 9180 A.2.3: mode auth.
const AUTH: Vector = Vector {
    ikm_e: "938d3daa5a8904540bc24f48ae90eed3f4f7f11839560597b55e7c9598c996c0",
    ikm_r: "64835d5ee64aa7aad57c6f2e4f758f7696617f8829e70bc9ac7a5ef95d1c756c",
    ikm_s: Some("9d8f94537d5a3ddef71234c0baedfad4ca6861634d0b94c3007fed557ad17df6"),
    sk_rm: "3ca22a6d1cda1bb9480949ec5329d3bf0b080ca4c45879c95eddb55c70b80b82",
    pk_rm: "1a478716d63cb2e16786ee93004486dc151e988b34b475043d3e0175bdb01c44",
    pk_sm: Some("f0f4f9e96c54aeed3f323de8534fffd7e0577e4ce269896716bcb95643c8712b"),
    enc: "f7674cc8cd7baa5872d1f33dbaffe3314239f6197ddf5ded1746760bfc847e0e",
    encryptions: [
        (
            0,
            "436f756e742d30",
            "ab1a13c9d4f01a87ec3440dbd756e2677bd2ecf9df0ce7ed73869b98e00c09be111cb9fdf077347aeb88e61bdf",
        ),
        (
            1,
            "436f756e742d31",
            "3265c7807ffff7fdace21659a2c6ccffee52a26d270c76468ed74202a65478bfaedfff9c2b7634e24f10b71016",
        ),
        (
            2,
            "436f756e742d32",
            "3aadee86ad2a05081ea860033a9d09dbccb4acac2ded0891da40f51d4df19925f7a767b076a5cbc9355c8fd35e",
        ),
        (
            4,
            "436f756e742d34",
            "502ecccd5c2be3506a081809cc58b43b94f77cbe37b8b31712d9e21c9e61aa6946a8e922f54eae630f88eb8033",
        ),
        (
            255,
            "436f756e742d323535",
            "652e597ba20f3d9241cda61f33937298b1169e6adf72974bbe454297502eb4be132e1c5064702fc165c2ddbde8",
        ),
        (
            256,
            "436f756e742d323536",
            "3be14e8b3bbd1028cf2b7d0a691dbbeff71321e7dec92d3c2cfb30a0994ab246af76168480285a60037b4ba13a",
        ),
    ],
    exports: [
        (
            "",
            "070cffafd89b67b7f0eeb800235303a223e6ff9d1e774dce8eac585c8688c872",
        ),
        (
            "00",
            "2852e728568d40ddb0edde284d36a4359c56558bb2fb8837cd3d92e46a3a14a8",
        ),
        (
            "54657374436f6e74657874",
            "1df39dc5dd60edcbf5f9ae804e15ada66e885b28ed7929116f768369a3f950ee",
        ),
    ],
};

fn run(v: &Vector) {
    let recipient = StaticKeyPair::derive(&h(v.ikm_r));
    assert_eq!(recipient.secret_bytes().to_vec(), h(v.sk_rm), "skRm");
    assert_eq!(recipient.public().to_bytes().to_vec(), h(v.pk_rm), "pkRm");
    let sender = v.ikm_s.map(|ikm| StaticKeyPair::derive(&h(ikm)));
    if let (Some(s), Some(pk)) = (&sender, v.pk_sm) {
        assert_eq!(s.public().to_bytes().to_vec(), h(pk), "pkSm");
    }

    let mut rng = FixedRng(h(v.ikm_e));
    let (enc, mut sctx) =
        suite::setup_sender(&mut rng, recipient.public(), sender.as_ref(), &h(INFO)).unwrap();
    assert_eq!(enc.to_vec(), h(v.enc), "enc");
    assert!(rng.0.is_empty(), "the ephemeral key consumed exactly ikmE");

    let sender_pk: Option<PublicKey> = sender.as_ref().map(|s| *s.public());
    let mut rctx = suite::setup_receiver(&recipient, &enc, sender_pk.as_ref(), &h(INFO)).unwrap();

    // Seal and open in sequence 0..=256, comparing the published sequence numbers.
    let mut expected = v.encryptions.iter().peekable();
    for seq in 0u32..=256 {
        let aad = format!("Count-{seq}").into_bytes();
        let ct = sctx.seal(&h(PT), &aad).unwrap();
        let pt = rctx.open(&ct, &aad).unwrap();
        assert_eq!(pt.as_slice(), h(PT).as_slice());
        if let Some(&&(n, aad_hex, ct_hex)) = expected.peek()
            && n == seq
        {
            assert_eq!(aad, h(aad_hex), "aad {seq}");
            assert_eq!(ct, h(ct_hex), "ciphertext at sequence {seq}");
            expected.next();
        }
    }
    assert!(
        expected.next().is_none(),
        "every published encryption compared"
    );

    for (ctx_hex, value_hex) in v.exports {
        let mut s = [0u8; 32];
        let mut r = [0u8; 32];
        sctx.export(&h(ctx_hex), &mut s).unwrap();
        rctx.export(&h(ctx_hex), &mut r).unwrap();
        assert_eq!(s.to_vec(), h(value_hex), "sender export {ctx_hex:?}");
        assert_eq!(r.to_vec(), h(value_hex), "receiver export {ctx_hex:?}");
    }
}

#[test]
fn seal_rfc9180_a2_1_base_mode_vectors() {
    run(&BASE);
}

#[test]
fn seal_rfc9180_a2_3_auth_mode_vectors() {
    run(&AUTH);
}

#[test]
fn seal_rfc9180_auth_mode_rejects_wrong_sender() {
    let recipient = StaticKeyPair::derive(&h(AUTH.ikm_r));
    let sender = StaticKeyPair::derive(&h(AUTH.ikm_s.unwrap()));
    let impostor = StaticKeyPair::derive(&[7u8; 32]);
    let mut rng = FixedRng(h(AUTH.ikm_e));
    let (enc, mut sctx) =
        suite::setup_sender(&mut rng, recipient.public(), Some(&sender), &h(INFO)).unwrap();
    let ct = sctx.seal(&h(PT), b"").unwrap();
    let mut rctx =
        suite::setup_receiver(&recipient, &enc, Some(impostor.public()), &h(INFO)).unwrap();
    assert!(rctx.open(&ct, b"").is_err());
}
