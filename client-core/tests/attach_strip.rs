//! Metadata stripping, checked on the bytes that leave the device: a phone photo loses its GPS
//! position, camera serial, make, model and times (in EXIF, XMP, IPTC, comments and a second
//! picture appended after the image) and still decodes to the same pixels; a PNG loses its
//! EXIF, XMP, text and time chunks; a PDF loses its information dictionary, XMP, file identifier
//! and the EXIF of the photo it shows, and still parses with its page intact. Formats that cannot
//! be stripped are refused or need the member's consent.

#![allow(clippy::unwrap_used)]

mod attach_common;

use attach_common::*;
use img_parts::Bytes;
use img_parts::png::Png;
use phakhi_core::attach::{
    AttachError, AttachLimits, MediaType, PreparedAttachment, Removed, Residual, StripError,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn prepare(bytes: &[u8]) -> PreparedAttachment {
    PreparedAttachment::prepare(bytes, None, &AttachLimits::default()).unwrap()
}

/// Every identifying value planted by the test files.
fn secrets() -> Vec<Vec<u8>> {
    vec![
        SERIAL.as_bytes().to_vec(),
        MAKE.as_bytes().to_vec(),
        MODEL.as_bytes().to_vec(),
        TAKEN.as_bytes().to_vec(),
        AUTHOR.as_bytes().to_vec(),
        rationals(&LATITUDE),
        rationals(&LONGITUDE),
        b"Exif\0\0".to_vec(),
        b"http://ns.adobe.com/xap/1.0/".to_vec(),
    ]
}

#[test]
fn jpeg_loses_gps_serial_and_every_metadata_block_and_still_decodes_to_the_same_pixels() {
    let original = camera_jpeg();
    for secret in secrets() {
        assert!(contains(&original, &secret), "fixture lacks {secret:?}");
    }
    let prepared = prepare(&original);
    assert_eq!(prepared.media_type(), MediaType::Jpeg);
    let out = prepared.bytes();
    for secret in secrets() {
        assert!(
            !contains(out, &secret),
            "{:?} left the device",
            String::from_utf8_lossy(&secret)
        );
    }
    let removed = &prepared.report().removed;
    assert!(removed.iter().any(|r| matches!(r, Removed::Exif { .. })));
    assert!(removed.iter().any(|r| matches!(r, Removed::Xmp { .. })));
    assert!(removed.iter().any(|r| matches!(r, Removed::Iptc { .. })));
    assert!(removed.iter().any(|r| matches!(r, Removed::Comment { .. })));
    assert!(
        removed
            .iter()
            .any(|r| matches!(r, Removed::TrailingData { bytes } if *bytes > 0))
    );
    assert!(
        prepared
            .report()
            .residual
            .contains(&Residual::OrientationDropped)
    );
    assert!(
        !prepared.needs_consent(),
        "a stripped photo needs no consent"
    );

    let before = decode(Format::Jpeg, &original);
    let after = decode(Format::Jpeg, out);
    assert_eq!((after.width, after.height), (48, 32));
    assert_eq!(before.rgb, after.rgb, "the scan data must be untouched");
    assert!(out.ends_with(&[0xFF, 0xD9]));
    assert!(out.len() < original.len());

    // Stripping is idempotent: a clean file comes out unchanged and reports nothing removed.
    let again = prepare(out);
    assert_eq!(again.bytes(), out);
    assert!(again.report().removed.is_empty());
}

#[test]
fn jpeg_metadata_hidden_between_scan_data_and_end_of_image_is_removed() {
    let clean = encode(Format::Jpeg);
    let mut hidden = clean[..clean.len() - 2].to_vec();
    let mut segment = b"Exif\0\0".to_vec();
    segment.extend_from_slice(&exif_block());
    hidden.extend_from_slice(&[0xFF, 0xE1]);
    hidden.extend_from_slice(&((segment.len() + 2) as u16).to_be_bytes());
    hidden.extend_from_slice(&segment);
    hidden.extend_from_slice(&[0xFF, 0xD9]);
    assert!(contains(&hidden, SERIAL.as_bytes()));
    let prepared = prepare(&hidden);
    assert!(!contains(prepared.bytes(), SERIAL.as_bytes()));
    assert!(!contains(prepared.bytes(), &rationals(&LATITUDE)));
    assert_eq!(prepared.bytes(), clean.as_slice());
}

#[test]
fn jpeg_thumbnail_in_the_jfif_header_is_dropped() {
    let clean = encode(Format::Jpeg);
    let mut jpeg = img_parts::jpeg::Jpeg::from_bytes(Bytes::from(clean.clone())).unwrap();
    // JFIF 1.02, no units, 1:1, with a 2×1 RGB thumbnail.
    let app0 = b"JFIF\0\x01\x02\0\0\x01\0\x01\x02\x01\xAA\xBB\xCC\xDD\xEE\xFF".to_vec();
    jpeg.segments_mut()[0] =
        img_parts::jpeg::JpegSegment::new_with_contents(0xE0, Bytes::from(app0));
    let prepared = prepare(&jpeg.encoder().bytes());
    assert!(!contains(
        prepared.bytes(),
        &[0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF]
    ));
    assert!(
        prepared
            .report()
            .removed
            .contains(&Removed::Thumbnail { bytes: 6 })
    );
    decode(Format::Jpeg, prepared.bytes());
}

#[test]
fn png_loses_exif_xmp_text_and_time_chunks_and_trailing_bytes() {
    let original = tagged_png();
    assert!(contains(&original, SERIAL.as_bytes()));
    let prepared = prepare(&original);
    assert_eq!(prepared.media_type(), MediaType::Png);
    let out = prepared.bytes();
    for secret in secrets() {
        assert!(
            !contains(out, &secret),
            "{:?} left the device",
            String::from_utf8_lossy(&secret)
        );
    }
    let kinds: Vec<[u8; 4]> = Png::from_bytes(Bytes::copy_from_slice(out))
        .unwrap()
        .chunks()
        .iter()
        .map(|c| c.kind())
        .collect();
    for kind in &kinds {
        assert!(
            [
                *b"IHDR", *b"PLTE", *b"IDAT", *b"IEND", *b"tRNS", *b"gAMA", *b"cHRM", *b"sRGB",
                *b"sBIT"
            ]
            .contains(kind),
            "kept {}",
            String::from_utf8_lossy(kind)
        );
    }
    let removed = &prepared.report().removed;
    assert!(removed.iter().any(|r| matches!(r, Removed::Exif { .. })));
    assert!(removed.iter().any(|r| matches!(r, Removed::Xmp { .. })));
    assert!(removed.iter().any(|r| matches!(r, Removed::Comment { .. })));
    assert!(
        removed
            .iter()
            .any(|r| matches!(r, Removed::Other { name, .. } if name.contains("tIME")))
    );
    assert!(
        removed
            .iter()
            .any(|r| matches!(r, Removed::TrailingData { .. }))
    );
    let before = decode(Format::Png, &original);
    let after = decode(Format::Png, out);
    assert_eq!(before.rgb, after.rgb);
}

#[test]
fn pdf_loses_info_xmp_file_id_and_photo_exif_and_still_parses() {
    let original = tagged_pdf();
    for secret in [
        AUTHOR,
        "ScanCorp",
        "DESKTOP-SOMCHAI",
        SERIAL,
        "0123456789abcdef",
    ] {
        assert!(
            contains(&original, secret.as_bytes()),
            "fixture lacks {secret}"
        );
    }
    let prepared = prepare(&original);
    assert_eq!(prepared.media_type(), MediaType::Pdf);
    let out = prepared.bytes();
    for secret in [
        AUTHOR,
        THAI_AUTHOR,
        "ScanCorp",
        "DESKTOP-SOMCHAI",
        SERIAL,
        "0123456789abcdef",
        "xmpmeta",
        MAKE,
    ] {
        assert!(
            !contains(out, secret.as_bytes()),
            "{secret} left the device"
        );
    }
    assert!(!contains(out, &rationals(&LATITUDE)));
    let report = prepared.report();
    let info_keys = report
        .removed
        .iter()
        .find_map(|r| match r {
            Removed::PdfInfo { keys } => Some(keys.clone()),
            _ => None,
        })
        .unwrap();
    for key in ["Author", "Producer", "Creator", "CreationDate"] {
        assert!(info_keys.iter().any(|k| k == key), "{key} not reported");
    }
    assert!(report.removed.contains(&Removed::PdfDocumentId));
    assert!(
        report
            .removed
            .iter()
            .any(|r| matches!(r, Removed::PdfXmp { streams } if *streams >= 1))
    );
    assert!(
        report
            .removed
            .contains(&Removed::PdfImageMetadata { images: 1 })
    );
    assert!(
        report
            .removed
            .contains(&Removed::PdfAnnotationAuthors { annotations: 1 })
    );
    assert!(
        !contains(out, b"20251121093000"),
        "the comment's date left the device"
    );
    assert!(
        contains(out, b"see the second invoice"),
        "the comment itself stays"
    );
    assert!(
        contains(out, b"invoice_number"),
        "a form field keeps its name"
    );
    assert!(report.residual.contains(&Residual::PdfContent));
    assert!(!prepared.needs_consent());

    let doc = lopdf::Document::load_mem(out).unwrap();
    assert!(!doc.trailer.has(b"Info"));
    assert!(!doc.trailer.has(b"ID"));
    assert!(!doc.catalog().unwrap().has(b"Metadata"));
    let pages = doc.get_pages();
    assert_eq!(pages.len(), 1);
    let page = *pages.values().next().unwrap();
    let content = doc.get_page_content(page);
    assert!(contains(&content, b"Receipt 2568-114 evidence page"));
    // The photo on the page is still a decodable picture.
    let photo = doc
        .objects
        .values()
        .find_map(|o| match o {
            lopdf::Object::Stream(s) if s.dict.has(b"Width") => Some(s.content.clone()),
            _ => None,
        })
        .unwrap();
    let decoded = decode(Format::Jpeg, &photo);
    assert_eq!((decoded.width, decoded.height), (48, 32));
}

#[test]
fn heic_is_refused_as_cannot_strip() {
    let mut heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
    heic.extend_from_slice(SERIAL.as_bytes());
    let err = PreparedAttachment::prepare(&heic, None, &AttachLimits::default()).unwrap_err();
    assert!(matches!(
        err,
        AttachError::Strip(StripError::CannotStrip {
            media: MediaType::Heic,
            ..
        })
    ));
    assert!(
        err.to_string().contains("JPEG"),
        "tells the member what to do: {err}"
    );
}

#[test]
fn audio_is_passed_through_only_with_the_members_consent() {
    let mut mp3 = b"ID3\x04\0\0\0\0\0\x20TPE1\0\0\0\x10\0\0\x03".to_vec();
    mp3.extend_from_slice(AUTHOR.as_bytes());
    mp3.extend_from_slice(&[0xFF, 0xFB, 0x90, 0x64, 0, 0, 0, 0]);
    let mut prepared = prepare(&mp3);
    assert_eq!(prepared.media_type(), MediaType::AudioMpeg);
    assert_eq!(prepared.bytes(), mp3.as_slice(), "audio is not altered");
    assert_eq!(
        prepared.report().residual,
        [Residual::NotInspected {
            media: MediaType::AudioMpeg
        }]
    );
    assert!(
        prepared.report().residual[0]
            .to_string()
            .contains("metadata not inspected")
    );
    assert!(prepared.needs_consent());
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    assert_eq!(
        prepared.encrypt(&mut rng).unwrap_err(),
        AttachError::ConsentRequired
    );
    prepared.accept_residual_risks();
    assert!(!prepared.needs_consent());
    prepared.encrypt(&mut rng).unwrap();

    for (bytes, media) in [
        (b"OggS\0\x02rest".to_vec(), MediaType::AudioOgg),
        (b"RIFF\x24\0\0\0WAVEfmt ".to_vec(), MediaType::AudioWav),
        (b"#!AMR\n\x3c".to_vec(), MediaType::AudioAmr),
        (b"\0\0\0\x20ftypM4A \0\0\0\0".to_vec(), MediaType::AudioMp4),
    ] {
        assert_eq!(prepare(&bytes).media_type(), media);
    }
}

#[test]
fn unknown_damaged_and_oversized_files_are_refused() {
    let limits = AttachLimits::default();
    assert_eq!(
        PreparedAttachment::prepare(b"just some text", None, &limits).unwrap_err(),
        AttachError::Strip(StripError::UnknownFormat)
    );
    let jpeg = camera_jpeg();
    for cut in [3, 20, 200, jpeg.len() / 2] {
        let err = PreparedAttachment::prepare(&jpeg[..cut], None, &limits).unwrap_err();
        assert!(
            matches!(
                err,
                AttachError::Strip(StripError::Malformed {
                    media: MediaType::Jpeg,
                    ..
                })
            ),
            "cut at {cut}: {err:?}"
        );
    }
    let png = tagged_png();
    assert!(PreparedAttachment::prepare(&png[..png.len() / 2], None, &limits).is_err());
    let pdf = tagged_pdf();
    assert!(matches!(
        PreparedAttachment::prepare(&pdf[..40], None, &limits).unwrap_err(),
        AttachError::Strip(StripError::Malformed {
            media: MediaType::Pdf,
            ..
        })
    ));
    let small = AttachLimits {
        max_attachment_bytes: 1000,
        ..AttachLimits::default()
    };
    assert_eq!(
        PreparedAttachment::prepare(&jpeg, None, &small).unwrap_err(),
        AttachError::TooLarge {
            len: jpeg.len(),
            max: 1000
        }
    );
}

#[test]
fn file_names_keep_thai_and_refuse_paths() {
    let jpeg = encode(Format::Jpeg);
    let limits = AttachLimits::default();
    let name = "ใบเสร็จรับเงิน_อบต._๒๕๖๘.jpg";
    let prepared = PreparedAttachment::prepare(&jpeg, Some(name), &limits).unwrap();
    assert_eq!(prepared.file_name(), Some(name));
    for bad in [
        "../../etc/passwd",
        "a\\b.jpg",
        "",
        "  ",
        "bad\nname.jpg",
        "..",
    ] {
        assert!(
            matches!(
                PreparedAttachment::prepare(&jpeg, Some(bad), &limits).unwrap_err(),
                AttachError::FileName(_)
            ),
            "{bad:?} accepted"
        );
    }
    let long = "ก".repeat(171);
    assert!(PreparedAttachment::prepare(&jpeg, Some(&long), &limits).is_err());
}

#[test]
fn hostile_bytes_behind_a_valid_signature_never_panic() {
    let limits = AttachLimits::default();
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let seeds = [camera_jpeg(), tagged_png(), tagged_pdf()];
    for seed in &seeds {
        for _ in 0..40 {
            let mut bytes = seed.clone();
            for _ in 0..8 {
                let at = (rand::RngCore::next_u32(&mut rng) as usize) % bytes.len();
                bytes[at] = rand::RngCore::next_u32(&mut rng) as u8;
            }
            bytes[..4].copy_from_slice(&seed[..4]);
            // Either stripped or refused with an error; never a panic.
            let _ = PreparedAttachment::prepare(&bytes, None, &limits);
        }
    }
}
