//! Removing what identifies the member from a file before it is encrypted. A phone photo's EXIF
//! block carries GPS coordinates, the camera's make, model and serial number and the time it was
//! taken; XMP and IPTC blocks repeat and extend it; a PDF's information dictionary and XMP stream
//! name its author and the software and machine that made it. The format containers are read and
//! rewritten with maintained crates (`img-parts` for JPEG segments and PNG chunks, `lopdf` for PDF
//! objects); this module decides what to keep and reports the rest.
//!
//! The rule is an allow-list: only what a viewer needs to show the content is kept (JPEG frame,
//! tables and scans, the JFIF header without its thumbnail, the Adobe colour-transform marker;
//! PNG's critical and colour chunks), everything else is removed and listed in the
//! [`StripReport`]. Bytes after a JPEG's end-of-image marker or a PNG's `IEND` (motion-photo
//! videos, second pictures, editing leftovers) are dropped too. What cannot be checked is listed
//! as a [`Residual`]; residual *metadata* risks need the member's consent before sending.
//!
//! HEIC is refused: no maintained Rust crate rewrites HEIF containers, and its metadata lives in
//! item boxes that a hand-written parser would have to relocate. Audio is passed through
//! unchanged with a residual risk, for the member to decide.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use img_parts::Bytes;
use img_parts::jpeg::{Jpeg, JpegSegment, markers};
use img_parts::png::Png;
use lopdf::{Document, Object};
use zeroize::Zeroizing;

use super::error::StripError;
use super::manifest::MediaType;

const EXIF_PREFIX: &[u8] = b"Exif\0";
const XMP_PREFIX: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const XMP_EXTENSION_PREFIX: &[u8] = b"http://ns.adobe.com/xmp/extension/\0";
const ICC_PREFIX: &[u8] = b"ICC_PROFILE\0";
const JFIF_PREFIX: &[u8] = b"JFIF\0";
/// JFIF APP0 without thumbnail: identifier (5), version (2), units (1), densities (4), 0×0.
const JFIF_HEADER_LEN: usize = 14;
const ADOBE_PREFIX: &[u8] = b"Adobe";
const ADOBE_LEN: usize = 12;

/// PNG chunks kept: what a viewer needs for pixels, transparency, colour and animation.
const PNG_KEEP: [&[u8; 4]; 12] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"acTL",
    b"fcTL", b"fdAT",
];

/// Something stripping removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// EXIF: GPS position, camera make, model and serial number, times, thumbnail.
    Exif { bytes: usize },
    /// XMP: editing history, creator tools, often a copy of EXIF.
    Xmp { bytes: usize },
    /// IPTC / Photoshop information: author, captions, places.
    Iptc { bytes: usize },
    /// An ICC colour profile (may name the device).
    IccProfile { bytes: usize },
    /// A JPEG comment or PNG text chunk.
    Comment { bytes: usize },
    /// A JPEG thumbnail in the JFIF header (may show the uncropped picture).
    Thumbnail { bytes: usize },
    /// Another metadata block, named by its segment or chunk.
    Other { name: String, bytes: usize },
    /// Bytes after the end of the image (motion-photo video, second pictures).
    TrailingData { bytes: usize },
    /// The PDF's document information dictionary, with the keys it held.
    PdfInfo { keys: Vec<String> },
    /// XMP metadata streams of the PDF (document, pages, images).
    PdfXmp { streams: usize },
    /// The PDF's file identifier (links copies and versions of one file).
    PdfDocumentId,
    /// Private application data (`/PieceInfo`) of the PDF.
    PdfPieceInfo { count: usize },
    /// Metadata removed from JPEG images inside the PDF.
    PdfImageMetadata { images: usize },
    /// Authors (`/T`) and dates (`/M`, `/CreationDate`) of comments and highlights in the PDF.
    PdfAnnotationAuthors { annotations: usize },
}

/// Something that may still identify the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Residual {
    /// The file was not inspected at all (audio): tags may name the device, person or place.
    NotInspected { media: MediaType },
    /// Images inside the PDF in formats whose metadata is not checked (JPEG 2000, filtered JPEG).
    PdfImagesNotInspected { images: usize },
    /// Files embedded in the PDF, passed through unchecked.
    PdfEmbeddedFiles,
    /// Notice: the PDF's visible content (text, signatures, annotations, form fields).
    PdfContent,
    /// Notice: the picture itself (faces, places, reflections) is not altered.
    PictureContent,
    /// Notice: the EXIF orientation went with EXIF; the photo may show rotated.
    OrientationDropped,
}

impl Residual {
    /// Whether metadata may remain (the member must accept before sending), as opposed to a
    /// notice about the visible content.
    pub fn needs_consent(&self) -> bool {
        matches!(
            self,
            Residual::NotInspected { .. }
                | Residual::PdfImagesNotInspected { .. }
                | Residual::PdfEmbeddedFiles
        )
    }
}

impl fmt::Display for Removed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Removed::Exif { bytes } => write!(
                f,
                "EXIF ({bytes} bytes): GPS position, camera make, model and serial number, times"
            ),
            Removed::Xmp { bytes } => write!(f, "XMP metadata ({bytes} bytes)"),
            Removed::Iptc { bytes } => write!(f, "IPTC/Photoshop information ({bytes} bytes)"),
            Removed::IccProfile { bytes } => write!(f, "colour profile ({bytes} bytes)"),
            Removed::Comment { bytes } => write!(f, "comment or text ({bytes} bytes)"),
            Removed::Thumbnail { bytes } => write!(f, "embedded thumbnail ({bytes} bytes)"),
            Removed::Other { name, bytes } => write!(f, "{name} ({bytes} bytes)"),
            Removed::TrailingData { bytes } => {
                write!(f, "{bytes} bytes after the end of the image")
            }
            Removed::PdfInfo { keys } => {
                write!(f, "PDF document information: {}", keys.join(", "))
            }
            Removed::PdfXmp { streams } => write!(f, "{streams} PDF XMP metadata stream(s)"),
            Removed::PdfDocumentId => f.write_str("PDF file identifier"),
            Removed::PdfPieceInfo { count } => {
                write!(f, "{count} block(s) of private application data in the PDF")
            }
            Removed::PdfImageMetadata { images } => {
                write!(f, "metadata of {images} JPEG image(s) inside the PDF")
            }
            Removed::PdfAnnotationAuthors { annotations } => write!(
                f,
                "author names and dates of {annotations} comment(s) in the PDF"
            ),
        }
    }
}

impl fmt::Display for Residual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Residual::NotInspected { media } => write!(
                f,
                "{media}: metadata not inspected; recording tags may name the phone, a person or a place"
            ),
            Residual::PdfImagesNotInspected { images } => write!(
                f,
                "PDF: {images} embedded image(s) in formats that are not checked may carry EXIF"
            ),
            Residual::PdfEmbeddedFiles => {
                f.write_str("PDF: files embedded in the document are not checked")
            }
            Residual::PdfContent => f.write_str(
                "PDF: the visible text, signatures, annotations and form fields are not changed",
            ),
            Residual::PictureContent => {
                f.write_str("photo: the picture itself (faces, places, reflections) is not changed")
            }
            Residual::OrientationDropped => {
                f.write_str("photo: the rotation flag was removed with EXIF; it may show sideways")
            }
        }
    }
}

/// What stripping did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripReport {
    pub media_type: MediaType,
    pub removed: Vec<Removed>,
    pub residual: Vec<Residual>,
}

impl StripReport {
    fn new(media_type: MediaType) -> Self {
        Self {
            media_type,
            removed: Vec::new(),
            residual: Vec::new(),
        }
    }

    /// Whether any residual risk needs the member's consent.
    pub fn needs_consent(&self) -> bool {
        self.residual.iter().any(Residual::needs_consent)
    }
}

/// Strips `bytes` of the given (sniffed) type. A panic inside a format crate on a hostile file
/// becomes [`StripError::Malformed`].
pub fn strip(
    media_type: MediaType,
    bytes: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, StripReport), StripError> {
    let run = || match media_type {
        MediaType::Jpeg => strip_jpeg(bytes),
        MediaType::Png => strip_png(bytes),
        MediaType::Pdf => strip_pdf(bytes),
        MediaType::Heic => Err(StripError::CannotStrip {
            media: MediaType::Heic,
            reason: "no maintained library rewrites HEIC files safely; share the photo as JPEG \
                     (\"Most Compatible\" on iPhone) and attach that",
        }),
        media if media.is_audio() => {
            let mut report = StripReport::new(media);
            report.residual.push(Residual::NotInspected { media });
            Ok((Zeroizing::new(bytes.to_vec()), report))
        }
        media => Err(StripError::CannotStrip {
            media,
            reason: "not supported",
        }),
    };
    catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|_| {
        Err(StripError::Malformed {
            media: media_type,
            reason: "the file could not be read".to_owned(),
        })
    })
}

fn malformed(media: MediaType, reason: impl fmt::Display) -> StripError {
    StripError::Malformed {
        media,
        reason: reason.to_string(),
    }
}

fn strip_jpeg(bytes: &[u8]) -> Result<(Zeroizing<Vec<u8>>, StripReport), StripError> {
    let mut report = StripReport::new(MediaType::Jpeg);
    let stripped = strip_jpeg_into(bytes, &mut report.removed)?;
    if report
        .removed
        .iter()
        .any(|r| matches!(r, Removed::Exif { .. }))
    {
        report.residual.push(Residual::OrientationDropped);
    }
    report.residual.push(Residual::PictureContent);
    Ok((stripped, report))
}

/// Strips one JPEG, appending what was removed to `removed`.
fn strip_jpeg_into(
    bytes: &[u8],
    removed: &mut Vec<Removed>,
) -> Result<Zeroizing<Vec<u8>>, StripError> {
    let bad = |reason: &str| malformed(MediaType::Jpeg, reason);
    let jpeg = Jpeg::from_bytes(Bytes::copy_from_slice(bytes))
        .map_err(|e| malformed(MediaType::Jpeg, e))?;
    let mut kept = Vec::with_capacity(jpeg.segments().len());
    let mut scan = None;
    for segment in jpeg.segments() {
        if segment.has_entropy() {
            scan = Some(segment);
            break;
        }
        if let Some(segment) = keep_segment(segment, removed) {
            kept.push(segment);
        }
    }
    let sos = scan.ok_or_else(|| bad("no image data"))?;
    let entropy_len = sos.len_with_entropy() - sos.len();
    let entropy = bytes
        .len()
        .checked_sub(entropy_len)
        .and_then(|start| bytes.get(start..))
        .ok_or_else(|| bad("image data out of place"))?;
    let cleaned = clean_scans(entropy, removed).ok_or_else(|| bad("image data is cut short"))?;
    kept.push(JpegSegment::new_with_entropy(
        markers::SOS,
        sos.contents().clone(),
        Bytes::from(cleaned),
    ));
    let mut out = Jpeg::from_bytes(Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xD9]))
        .map_err(|e| malformed(MediaType::Jpeg, e))?;
    *out.segments_mut() = kept;
    Ok(Zeroizing::new(out.encoder().bytes().to_vec()))
}

/// The segment to keep in place of `segment` (before the first scan), or `None` to drop it.
fn keep_segment(segment: &JpegSegment, removed: &mut Vec<Removed>) -> Option<JpegSegment> {
    let contents = segment.contents();
    let bytes = segment.len();
    let marker = segment.marker();
    match marker {
        markers::APP0 if contents.starts_with(JFIF_PREFIX) => {
            if contents.len() <= JFIF_HEADER_LEN {
                return Some(segment.clone());
            }
            // Keep the header, zero the thumbnail's dimensions, drop its pixels.
            let mut header = contents.get(..JFIF_HEADER_LEN)?.to_vec();
            header[JFIF_HEADER_LEN - 2] = 0;
            header[JFIF_HEADER_LEN - 1] = 0;
            removed.push(Removed::Thumbnail {
                bytes: contents.len() - JFIF_HEADER_LEN,
            });
            Some(JpegSegment::new_with_contents(marker, Bytes::from(header)))
        }
        markers::APP14 if contents.starts_with(ADOBE_PREFIX) && contents.len() == ADOBE_LEN => {
            Some(segment.clone())
        }
        markers::APP1 if contents.starts_with(EXIF_PREFIX) => {
            removed.push(Removed::Exif { bytes });
            None
        }
        markers::APP1
            if contents.starts_with(XMP_PREFIX) || contents.starts_with(XMP_EXTENSION_PREFIX) =>
        {
            removed.push(Removed::Xmp { bytes });
            None
        }
        markers::APP2 if contents.starts_with(ICC_PREFIX) => {
            removed.push(Removed::IccProfile { bytes });
            None
        }
        markers::APP13 => {
            removed.push(Removed::Iptc { bytes });
            None
        }
        markers::COM => {
            removed.push(Removed::Comment { bytes });
            None
        }
        markers::APP0..=markers::APP15 => {
            removed.push(Removed::Other {
                name: format!("JPEG APP{} segment", marker - markers::APP0),
                bytes,
            });
            None
        }
        _ => Some(segment.clone()),
    }
}

/// Walks the first scan's data to the end-of-image marker: keeps entropy-coded data, restart
/// markers and the tables and scan headers of later scans (whole, by their length, so table bytes
/// are never taken for markers); drops application segments and comments between scans and
/// everything after the end of the image. `None` if the data ends before the end-of-image marker.
fn clean_scans(data: &[u8], removed: &mut Vec<Removed>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    let mut pos = 0;
    loop {
        let ff = pos + data.get(pos..)?.iter().position(|&b| b == 0xFF)?;
        out.extend_from_slice(data.get(pos..ff)?);
        let marker = *data.get(ff + 1)?;
        match marker {
            // Byte stuffing, restart markers, the temporary marker: no length.
            0x00 | 0x01 | markers::RST0..=markers::RST7 => {
                out.extend_from_slice(data.get(ff..ff + 2)?);
                pos = ff + 2;
            }
            // A fill byte before a marker.
            0xFF => pos = ff + 1,
            markers::EOI => {
                out.extend_from_slice(data.get(ff..ff + 2)?);
                let trailing = data.len() - (ff + 2);
                if trailing > 0 {
                    removed.push(Removed::TrailingData { bytes: trailing });
                }
                return Some(out);
            }
            _ => {
                let len = usize::from(u16::from_be_bytes([*data.get(ff + 2)?, *data.get(ff + 3)?]));
                let end = ff.checked_add(2)?.checked_add(len)?;
                let segment = data.get(ff..end)?;
                match marker {
                    markers::APP0..=markers::APP15 | markers::COM => {
                        removed.push(Removed::Other {
                            name: format!("JPEG segment {marker:#04X} between scans"),
                            bytes: segment.len(),
                        });
                    }
                    _ => out.extend_from_slice(segment),
                }
                pos = end;
            }
        }
    }
}

fn strip_png(bytes: &[u8]) -> Result<(Zeroizing<Vec<u8>>, StripReport), StripError> {
    let mut report = StripReport::new(MediaType::Png);
    let mut png =
        Png::from_bytes(Bytes::copy_from_slice(bytes)).map_err(|e| malformed(MediaType::Png, e))?;
    if png.chunks().last().map(|c| c.kind()) != Some(*b"IEND") {
        return Err(malformed(
            MediaType::Png,
            "the image is cut short (no IEND)",
        ));
    }
    let parsed_len = png.len();
    for chunk in png.chunks() {
        let kind = chunk.kind();
        if PNG_KEEP.contains(&&kind) {
            continue;
        }
        let bytes = chunk.len();
        let contents = chunk.contents();
        report.removed.push(match &kind {
            b"eXIf" => Removed::Exif { bytes },
            b"iTXt" if contents.starts_with(b"XML:com.adobe.xmp\0") => Removed::Xmp { bytes },
            b"zTXt" | b"tEXt" | b"iTXt" if contents.starts_with(b"Raw profile type exif\0") => {
                Removed::Exif { bytes }
            }
            b"zTXt" | b"tEXt" | b"iTXt" if contents.starts_with(b"Raw profile type iptc\0") => {
                Removed::Iptc { bytes }
            }
            b"tEXt" | b"zTXt" | b"iTXt" => Removed::Comment { bytes },
            b"iCCP" => Removed::IccProfile { bytes },
            b"tIME" => Removed::Other {
                name: "PNG modification time (tIME)".to_owned(),
                bytes,
            },
            other => Removed::Other {
                name: format!("PNG chunk {}", String::from_utf8_lossy(other)),
                bytes,
            },
        });
    }
    png.chunks_mut()
        .retain(|chunk| PNG_KEEP.contains(&&chunk.kind()));
    if parsed_len < bytes.len() {
        report.removed.push(Removed::TrailingData {
            bytes: bytes.len() - parsed_len,
        });
    }
    report.residual.push(Residual::PictureContent);
    Ok((Zeroizing::new(png.encoder().bytes().to_vec()), report))
}

/// A comment-like annotation (a note, highlight, ink mark…), whose `/T` is its author's name.
/// Form fields (`/Widget`) are left alone: their `/T` is the field's name, which forms need.
fn is_markup_annotation(dict: &lopdf::Dictionary) -> bool {
    let subtype = match dict.get(b"Subtype") {
        Ok(Object::Name(name)) => name.as_slice(),
        _ => return false,
    };
    dict.has(b"Rect") && !matches!(subtype, b"Widget" | b"Link" | b"Popup" | b"Image" | b"Form")
}

fn strip_pdf(bytes: &[u8]) -> Result<(Zeroizing<Vec<u8>>, StripReport), StripError> {
    let mut report = StripReport::new(MediaType::Pdf);
    let mut doc = open_pdf(bytes)?;
    strip_pdf_trailer(&mut doc, &mut report);
    let mut found = PdfFindings::default();
    for (id, object) in doc.objects.iter_mut() {
        found.strip_object(*id, object)?;
    }
    for id in &found.metadata_streams {
        doc.objects.remove(id);
    }
    found.report_into(&mut report);
    doc.prune_objects();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    doc.save_to(&mut *out)
        .map_err(|e| malformed(MediaType::Pdf, e))?;
    Ok((out, report))
}

/// Parses a PDF, refusing an encrypted one: its metadata cannot be read, so it cannot be
/// removed.
fn open_pdf(bytes: &[u8]) -> Result<Document, StripError> {
    let doc = Document::load_mem(bytes).map_err(|e| match e {
        lopdf::Error::Decryption(_) | lopdf::Error::InvalidPassword => StripError::EncryptedPdf,
        other => malformed(MediaType::Pdf, other),
    })?;
    if doc.is_encrypted() || doc.trailer.has(b"Encrypt") {
        return Err(StripError::EncryptedPdf);
    }
    Ok(doc)
}

/// Drops the trailer's document information dictionary (author, producer, dates…) and the
/// document id, naming the keys the dictionary held.
fn strip_pdf_trailer(doc: &mut Document, report: &mut StripReport) {
    if let Some(info) = doc.trailer.remove(b"Info") {
        let dict = match &info {
            Object::Reference(id) => doc.get_object(*id).ok().and_then(|o| o.as_dict().ok()),
            Object::Dictionary(d) => Some(d),
            _ => None,
        };
        let keys = dict
            .map(|d| {
                d.iter()
                    .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        report.removed.push(Removed::PdfInfo { keys });
    }
    if doc.trailer.remove(b"ID").is_some() {
        report.removed.push(Removed::PdfDocumentId);
    }
}

/// What stripping a PDF's objects found and removed, counted until it goes into the report.
#[derive(Default)]
struct PdfFindings {
    xmp: usize,
    piece_info: usize,
    jpeg_images: usize,
    unchecked_images: usize,
    embedded_files: bool,
    annotations: usize,
    jpeg_removed: Vec<Removed>,
    metadata_streams: Vec<lopdf::ObjectId>,
}

impl PdfFindings {
    /// Strips one object's dictionary (XMP and PieceInfo references, annotation authors and
    /// dates), notes a metadata stream to drop and embedded files, and strips a JPEG image.
    fn strip_object(&mut self, id: lopdf::ObjectId, object: &mut Object) -> Result<(), StripError> {
        let dict = match object {
            Object::Dictionary(d) => d,
            Object::Stream(s) => &mut s.dict,
            _ => return Ok(()),
        };
        if dict.remove(b"Metadata").is_some() {
            self.xmp += 1;
        }
        if dict.remove(b"PieceInfo").is_some() {
            self.piece_info += 1;
        }
        if is_markup_annotation(dict) {
            let mut touched = false;
            for key in [&b"T"[..], b"M", b"CreationDate"] {
                touched |= dict.remove(key).is_some();
            }
            self.annotations += usize::from(touched);
        }
        if dict.has_type(b"Metadata") {
            self.metadata_streams.push(id);
        }
        if dict.has(b"EmbeddedFiles") || dict.has(b"EF") || dict.has_type(b"EmbeddedFile") {
            self.embedded_files = true;
        }
        match object {
            Object::Stream(stream) => self.strip_image(stream),
            _ => Ok(()),
        }
    }

    /// Strips the metadata of a stream that is a JPEG image (`DCTDecode` alone); counts the
    /// images it cannot look into (JPEG behind another filter, JPEG 2000).
    fn strip_image(&mut self, stream: &mut lopdf::Stream) -> Result<(), StripError> {
        let is_image = matches!(stream.dict.get(b"Subtype"), Ok(Object::Name(n)) if n == b"Image");
        if !is_image {
            return Ok(());
        }
        let filters: Vec<&[u8]> = match stream.dict.get(b"Filter") {
            Ok(Object::Name(n)) => vec![n.as_slice()],
            Ok(Object::Array(a)) => a.iter().filter_map(|o| o.as_name().ok()).collect(),
            _ => Vec::new(),
        };
        match filters.as_slice() {
            [b"DCTDecode"] => {
                let stripped = strip_jpeg_into(&stream.content, &mut self.jpeg_removed)?;
                if stripped.as_slice() != stream.content.as_slice() {
                    self.jpeg_images += 1;
                }
                stream.set_content(stripped.to_vec());
            }
            filters
                if filters
                    .iter()
                    .any(|f| *f == b"DCTDecode" || *f == b"JPXDecode") =>
            {
                self.unchecked_images += 1;
            }
            _ => {}
        }
        Ok(())
    }

    /// What was removed and what remains, in the report's order.
    fn report_into(self, report: &mut StripReport) {
        let xmp = self.xmp.max(self.metadata_streams.len());
        if xmp > 0 {
            report.removed.push(Removed::PdfXmp { streams: xmp });
        }
        if self.piece_info > 0 {
            report.removed.push(Removed::PdfPieceInfo {
                count: self.piece_info,
            });
        }
        if self.jpeg_images > 0 {
            report.removed.push(Removed::PdfImageMetadata {
                images: self.jpeg_images,
            });
        }
        if self.annotations > 0 {
            report.removed.push(Removed::PdfAnnotationAuthors {
                annotations: self.annotations,
            });
        }
        if self.unchecked_images > 0 {
            report.residual.push(Residual::PdfImagesNotInspected {
                images: self.unchecked_images,
            });
        }
        if self.embedded_files {
            report.residual.push(Residual::PdfEmbeddedFiles);
        }
        report.residual.push(Residual::PdfContent);
    }
}
