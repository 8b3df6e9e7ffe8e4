//! Test files for the attachment tests, built here: small real images encoded and decoded with
//! the format crates (`jpeg-encoder`, `zune-jpeg`, `png`), EXIF blocks assembled tag by tag (GPS
//! position, camera serial), PDFs written with `lopdf`. Nothing is read from disk.

#![allow(clippy::unwrap_used, dead_code)]

use img_parts::jpeg::{Jpeg, JpegSegment, markers};
use img_parts::png::{Png, PngChunk};
use img_parts::{Bytes, ImageEXIF};
use lopdf::{Document, Object, Stream, dictionary};

/// The camera's serial number, planted in EXIF (and elsewhere) to be looked for afterwards.
pub const SERIAL: &str = "SN-4815162342";
pub const MAKE: &str = "PhakhiCam";
pub const MODEL: &str = "Field Phone X9";
pub const TAKEN: &str = "2025:11:20 14:31:07";
/// Latitude 16°14'45.5" N, longitude 103°15'30.25" E (Maha Sarakham) as EXIF rationals.
pub const LATITUDE: [(u32, u32); 3] = [(16, 1), (14, 1), (4550, 100)];
pub const LONGITUDE: [(u32, u32); 3] = [(103, 1), (15, 1), (3025, 100)];
pub const AUTHOR: &str = "Somchai Jaidee";
pub const THAI_AUTHOR: &str = "สมชาย ใจดี";

/// The bytes of three EXIF rationals, big-endian, as they sit in the file.
pub fn rationals(values: &[(u32, u32); 3]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|(n, d)| n.to_be_bytes().into_iter().chain(d.to_be_bytes()))
        .collect()
}

/// A test picture's two encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
}

/// Decoded pixels: 8-bit RGB, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// A small test picture with a gradient, so decoding can be compared pixel by pixel.
pub fn picture() -> Picture {
    let (width, height) = (48, 32);
    let rgb = (0..height)
        .flat_map(|y| (0..width).flat_map(move |x| [(x * 5) as u8, (y * 7) as u8, 128]))
        .collect();
    Picture { width, height, rgb }
}

/// The gradient picture, encoded.
pub fn encode(format: Format) -> Vec<u8> {
    encode_picture(format, &picture())
}

/// `picture` as a baseline JPEG (quality 75) or an 8-bit RGB PNG.
pub fn encode_picture(format: Format, picture: &Picture) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        Format::Jpeg => {
            let (width, height) = (picture.width as u16, picture.height as u16);
            jpeg_encoder::Encoder::new(&mut out, 75)
                .encode(&picture.rgb, width, height, jpeg_encoder::ColorType::Rgb)
                .unwrap();
        }
        Format::Png => {
            let mut encoder = png::Encoder::new(&mut out, picture.width, picture.height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().unwrap();
            writer.write_image_data(&picture.rgb).unwrap();
            writer.finish().unwrap();
        }
    }
    out
}

/// Decodes `bytes` as `format` to 8-bit RGB; panics when they are not a picture of that format.
pub fn decode(format: Format, bytes: &[u8]) -> Picture {
    match format {
        Format::Jpeg => {
            let options = zune_core::options::DecoderOptions::default()
                .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB);
            let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
                zune_core::bytestream::ZCursor::new(bytes),
                options,
            );
            let rgb = decoder.decode().unwrap();
            let info = decoder.info().unwrap();
            Picture {
                width: u32::from(info.width),
                height: u32::from(info.height),
                rgb,
            }
        }
        Format::Png => {
            let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
            decoder.set_transformations(png::Transformations::EXPAND);
            let mut reader = decoder.read_info().unwrap();
            let mut buf = vec![0; reader.output_buffer_size().unwrap()];
            let frame = reader.next_frame(&mut buf).unwrap();
            assert_eq!(frame.color_type, png::ColorType::Rgb);
            assert_eq!(frame.bit_depth, png::BitDepth::Eight);
            buf.truncate(frame.buffer_size());
            Picture {
                width: frame.width,
                height: frame.height,
                rgb: buf,
            }
        }
    }
}

struct Entry {
    tag: u16,
    kind: u16,
    count: u32,
    data: Vec<u8>,
}

fn ascii(tag: u16, text: &str) -> Entry {
    let mut data = text.as_bytes().to_vec();
    data.push(0);
    Entry {
        tag,
        kind: 2,
        count: data.len() as u32,
        data,
    }
}

fn long(tag: u16, value: u32) -> Entry {
    Entry {
        tag,
        kind: 4,
        count: 1,
        data: value.to_be_bytes().to_vec(),
    }
}

fn rational3(tag: u16, values: &[(u32, u32); 3]) -> Entry {
    Entry {
        tag,
        kind: 5,
        count: 3,
        data: rationals(values),
    }
}

/// Length of an IFD of `entries` including its out-of-line values.
fn ifd_len(entries: &[Entry]) -> usize {
    2 + 12 * entries.len()
        + 4
        + entries
            .iter()
            .map(|e| if e.data.len() > 4 { e.data.len() } else { 0 })
            .sum::<usize>()
}

/// Writes an IFD at `offset` (from the TIFF header), its values right after it.
fn write_ifd(out: &mut Vec<u8>, offset: usize, entries: &[Entry]) {
    assert_eq!(out.len(), offset);
    let mut values = Vec::new();
    let values_at = offset + 2 + 12 * entries.len() + 4;
    out.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.tag.to_be_bytes());
        out.extend_from_slice(&e.kind.to_be_bytes());
        out.extend_from_slice(&e.count.to_be_bytes());
        if e.data.len() <= 4 {
            let mut inline = e.data.clone();
            inline.resize(4, 0);
            out.extend_from_slice(&inline);
        } else {
            out.extend_from_slice(&((values_at + values.len()) as u32).to_be_bytes());
            values.extend_from_slice(&e.data);
        }
    }
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&values);
}

/// A big-endian TIFF/EXIF block: IFD0 (make, model, orientation, pointers), the EXIF IFD (time
/// taken, BodySerialNumber 0xA431) and the GPS IFD (latitude and longitude with references).
pub fn exif_block() -> Vec<u8> {
    let gps = vec![
        ascii(0x0001, "N"),
        rational3(0x0002, &LATITUDE),
        ascii(0x0003, "E"),
        rational3(0x0004, &LONGITUDE),
    ];
    let exif = vec![ascii(0x9003, TAKEN), ascii(0xA431, SERIAL)];
    let ifd0_len = ifd_len(&[
        ascii(0x010F, MAKE),
        ascii(0x0110, MODEL),
        long(0x0112, 1),
        long(0x8769, 0),
        long(0x8825, 0),
    ]);
    let exif_at = 8 + ifd0_len;
    let gps_at = exif_at + ifd_len(&exif);
    let ifd0 = vec![
        ascii(0x010F, MAKE),
        ascii(0x0110, MODEL),
        Entry {
            tag: 0x0112,
            kind: 3,
            count: 1,
            data: vec![0, 6],
        },
        long(0x8769, exif_at as u32),
        long(0x8825, gps_at as u32),
    ];
    let mut out = b"MM\0\x2A".to_vec();
    out.extend_from_slice(&8u32.to_be_bytes());
    write_ifd(&mut out, 8, &ifd0);
    write_ifd(&mut out, exif_at, &exif);
    write_ifd(&mut out, gps_at, &gps);
    out
}

pub fn xmp_packet() -> String {
    format!(
        "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF><rdf:Description \
         xmlns:dc=\"http://purl.org/dc/elements/1.1/\" \
         xmlns:aux=\"http://ns.adobe.com/exif/1.0/aux/\" aux:SerialNumber=\"{SERIAL}\">\
         <dc:creator>{AUTHOR} {THAI_AUTHOR}</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
}

/// A phone photo: EXIF with GPS and serial, XMP, IPTC, a comment, and after the end of the
/// image a second picture carrying the same EXIF (as multi-picture and motion photos do).
pub fn camera_jpeg() -> Vec<u8> {
    let mut jpeg = Jpeg::from_bytes(Bytes::from(encode(Format::Jpeg))).unwrap();
    jpeg.set_exif(Some(Bytes::from(exif_block())));
    let mut xmp = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    xmp.extend_from_slice(xmp_packet().as_bytes());
    let mut iptc = b"Photoshop 3.0\08BIM\x04\x04\0\0\0\0\0\x10".to_vec();
    iptc.extend_from_slice(AUTHOR.as_bytes());
    let comment = format!("taken by {AUTHOR}, camera {SERIAL}");
    let extra = [
        JpegSegment::new_with_contents(markers::APP1, Bytes::from(xmp)),
        JpegSegment::new_with_contents(markers::APP13, Bytes::from(iptc)),
        JpegSegment::new_with_contents(markers::COM, Bytes::from(comment.into_bytes())),
    ];
    let segments = jpeg.segments_mut();
    for (i, segment) in extra.into_iter().enumerate() {
        segments.insert(2 + i, segment);
    }
    let mut bytes = jpeg.encoder().bytes().to_vec();
    let mut trailer = Jpeg::from_bytes(Bytes::from(encode(Format::Jpeg))).unwrap();
    trailer.set_exif(Some(Bytes::from(exif_block())));
    bytes.extend_from_slice(&trailer.encoder().bytes());
    bytes
}

/// A PNG with EXIF (`eXIf`), XMP (`iTXt`), an author (`tEXt`), a time (`tIME`) and bytes after
/// `IEND`.
pub fn tagged_png() -> Vec<u8> {
    let mut png = Png::from_bytes(Bytes::from(encode(Format::Png))).unwrap();
    let mut itxt = b"XML:com.adobe.xmp\0\0\0\0\0".to_vec();
    itxt.extend_from_slice(xmp_packet().as_bytes());
    let mut text = b"Author\0".to_vec();
    text.extend_from_slice(AUTHOR.as_bytes());
    let chunks = [
        PngChunk::new(*b"eXIf", Bytes::from(exif_block())),
        PngChunk::new(*b"iTXt", Bytes::from(itxt)),
        PngChunk::new(*b"tEXt", Bytes::from(text)),
        PngChunk::new(*b"tIME", Bytes::from_static(&[7, 233, 11, 20, 14, 31, 7])),
    ];
    let at = png.chunks().len() - 1;
    for chunk in chunks.into_iter().rev() {
        png.chunks_mut().insert(at, chunk);
    }
    let mut bytes = png.encoder().bytes().to_vec();
    bytes.extend_from_slice(format!("trailing {SERIAL}").as_bytes());
    bytes
}

/// A one-page PDF with an information dictionary (Author, Producer, Creator, dates), a
/// document XMP stream, a file identifier and a photo (with its EXIF) drawn on the page.
pub fn tagged_pdf() -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
    });
    let photo = camera_jpeg();
    let image_id = doc.add_object(Stream::new(
        dictionary! {
            "Type" => "XObject", "Subtype" => "Image", "Width" => 48, "Height" => 32,
            "ColorSpace" => "DeviceRGB", "BitsPerComponent" => 8, "Filter" => "DCTDecode",
        },
        photo,
    ));
    let content = b"BT /F1 24 Tf 72 700 Td (Receipt 2568-114 evidence page) Tj ET q 48 0 0 32 72 600 cm /Im1 Do Q";
    let content_id = doc.add_object(Stream::new(dictionary! {}, content.to_vec()));
    let note_id = doc.add_object(dictionary! {
        "Type" => "Annot", "Subtype" => "Text",
        "Rect" => vec![10.into(), 10.into(), 30.into(), 30.into()],
        "Contents" => Object::string_literal("see the second invoice"),
        "T" => Object::string_literal(format!("{AUTHOR} (annotation)")),
        "M" => Object::string_literal("D:20251121093000+07'00'"),
    });
    let field_id = doc.add_object(dictionary! {
        "Type" => "Annot", "Subtype" => "Widget", "FT" => "Tx",
        "Rect" => vec![10.into(), 40.into(), 200.into(), 60.into()],
        "T" => Object::string_literal("invoice_number"),
    });
    let page_id = doc.add_object(dictionary! {
        "Annots" => vec![note_id.into(), field_id.into()],
        "Type" => "Page",
        "Parent" => pages_id,
        "Contents" => content_id,
        "Resources" => dictionary! {
            "Font" => dictionary! { "F1" => font_id },
            "XObject" => dictionary! { "Im1" => image_id },
        },
        "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1,
        }),
    );
    let xmp_id = doc.add_object(Stream::new(
        dictionary! { "Type" => "Metadata", "Subtype" => "XML" },
        xmp_packet().into_bytes(),
    ));
    let catalog_id = doc.add_object(dictionary! {
        "Type" => "Catalog", "Pages" => pages_id, "Metadata" => xmp_id,
    });
    let info_id = doc.add_object(dictionary! {
        "Author" => Object::string_literal(AUTHOR),
        "Producer" => Object::string_literal(format!("ScanCorp 9.1 {SERIAL}")),
        "Creator" => Object::string_literal("Office Writer on DESKTOP-SOMCHAI"),
        "CreationDate" => Object::string_literal("D:20251120143107+07'00'"),
    });
    doc.trailer.set("Root", catalog_id);
    doc.trailer.set("Info", info_id);
    doc.trailer.set(
        "ID",
        vec![
            Object::string_literal("0123456789abcdef"),
            Object::string_literal("0123456789abcdef"),
        ],
    );
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
