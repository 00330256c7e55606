//! Writing the laid-out pages as a PDF/A-2b file: content streams, the embedded subset fonts (Type0 /
//! CIDFontType2 with Identity-H and a ToUnicode map), the sRGB OutputIntent, XMP and the Info dictionary.

use std::collections::BTreeMap;

use pdf_writer::types::{CidFontType, FontFlags, OutputIntentSubtype, SystemInfo, UnicodeCmap};
use pdf_writer::{Content, Date as PdfDate, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{Face, Op, PageText, PAGE_H, PAGE_W};
use crate::error::CertError;

/// An embedded font: parsed face, the glyphs used so far (remapped to consecutive ids) and their text.
pub(super) struct Font {
    data: &'static [u8],
    face: ttf_parser::Face<'static>,
    remapper: subsetter::GlyphRemapper,
    unicode: BTreeMap<u16, char>,
    base_name: &'static str,
}

impl Font {
    pub(super) fn new(data: &'static [u8], base_name: &'static str) -> Result<Self, CertError> {
        let face =
            ttf_parser::Face::parse(data, 0).map_err(|e| CertError::Pdf(format!("font: {e}")))?;
        Ok(Font {
            data,
            face,
            remapper: subsetter::GlyphRemapper::new(),
            unicode: BTreeMap::new(),
            base_name,
        })
    }

    fn units(&self) -> f32 {
        f32::from(self.face.units_per_em())
    }

    fn glyph(&self, c: char) -> u16 {
        self.face
            .glyph_index(c)
            .or_else(|| self.face.glyph_index('?'))
            .map(|g| g.0)
            .unwrap_or(0)
    }

    /// Text width in points at `size`.
    pub(super) fn width(&self, text: &str, size: f32) -> f32 {
        let units: f32 = text
            .chars()
            .map(|c| {
                f32::from(
                    self.face
                        .glyph_hor_advance(ttf_parser::GlyphId(self.glyph(c)))
                        .unwrap_or(0),
                )
            })
            .sum();
        units * size / self.units()
    }

    /// Encodes text as 2-byte CIDs (new glyph ids), recording the glyphs for subsetting and ToUnicode.
    fn encode(&mut self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() * 2);
        for c in text.chars() {
            let old = self.glyph(c);
            let new = self.remapper.remap(old);
            self.unicode.entry(new).or_insert(c);
            out.extend(new.to_be_bytes());
        }
        out
    }
}

fn content_stream(ops: &[Op], regular: &mut Font, bold: &mut Font) -> Vec<u8> {
    let mut c = Content::new();
    for op in ops {
        match op {
            Op::Text {
                face,
                size,
                x,
                y,
                text,
                white,
            } => {
                let (font, name) = match face {
                    Face::Regular => (&mut *regular, Name(b"F1")),
                    Face::Bold => (&mut *bold, Name(b"F2")),
                };
                let encoded = font.encode(text);
                if *white {
                    c.set_fill_gray(1.0);
                }
                c.begin_text();
                c.set_font(name, *size);
                c.set_text_matrix([1.0, 0.0, 0.0, 1.0, *x, *y]);
                c.show(Str(&encoded));
                c.end_text();
                if *white {
                    c.set_fill_gray(0.0);
                }
            }
            Op::Rect {
                x,
                y,
                w,
                h,
                fill,
                stroke,
            } => {
                c.save_state();
                if let Some((r, g, b)) = fill {
                    c.set_fill_rgb(*r, *g, *b);
                }
                c.set_line_width(0.8);
                c.rect(*x, *y, *w, *h);
                match (fill.is_some(), *stroke) {
                    (true, true) => c.fill_nonzero_and_stroke(),
                    (true, false) => c.fill_nonzero(),
                    _ => c.stroke(),
                };
                c.restore_state();
            }
            Op::Shield { x, y, w, h } => {
                c.save_state();
                c.set_line_width(1.0);
                c.move_to(*x, y + h);
                c.line_to(x + w, y + h);
                c.line_to(x + w, y + h * 0.45);
                c.line_to(x + w / 2.0, *y);
                c.line_to(*x, y + h * 0.45);
                c.close_path();
                c.stroke();
                c.restore_state();
            }
            Op::Qr {
                x,
                y,
                size,
                width,
                dark,
            } => {
                // Four modules of quiet zone on each side, as the QR standard asks.
                let module = size / (*width as f32 + 8.0);
                c.save_state();
                c.set_fill_gray(0.0);
                for row in 0..*width {
                    let mut col = 0;
                    while col < *width {
                        if dark[row * width + col] {
                            let start = col;
                            while col < *width && dark[row * width + col] {
                                col += 1;
                            }
                            let run = (col - start) as f32;
                            c.rect(
                                x + module * (start as f32 + 4.0),
                                y + size - module * (row as f32 + 5.0),
                                module * run,
                                module,
                            );
                        } else {
                            col += 1;
                        }
                    }
                }
                c.fill_nonzero();
                c.restore_state();
            }
        }
    }
    c.finish().to_vec()
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = std::io::Write::write_all(&mut z, data);
    z.finish().unwrap_or_default()
}

fn pdf_date(t: OffsetDateTime) -> PdfDate {
    PdfDate::new(t.year().clamp(0, 9999) as u16)
        .month(u8::from(t.month()))
        .day(t.day())
        .hour(t.hour())
        .minute(t.minute())
        .second(t.second())
        .utc_offset_hour(0)
        .utc_offset_minute(0)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) fn write_pdf(
    pages: &[Vec<Op>],
    regular: &mut Font,
    bold: &mut Font,
    t: &PageText,
) -> Result<Vec<u8>, CertError> {
    let mut pdf = Pdf::new();
    pdf.set_version(1, 7);
    let mut next = 1;
    let mut alloc = || {
        let r = Ref::new(next);
        next += 1;
        r
    };
    let catalog = alloc();
    let page_tree = alloc();
    let info = alloc();
    let metadata = alloc();
    let icc = alloc();
    let font_refs: Vec<[Ref; 5]> = (0..2)
        .map(|_| [alloc(), alloc(), alloc(), alloc(), alloc()])
        .collect();
    let page_refs: Vec<(Ref, Ref)> = pages.iter().map(|_| (alloc(), alloc())).collect();

    // Content first: encoding the text decides which glyphs the font subsets need.
    let contents: Vec<Vec<u8>> = pages
        .iter()
        .map(|ops| deflate(&content_stream(ops, regular, bold)))
        .collect();

    let title = t.title.clone();
    let author = format!("Comune di {}", t.comune);
    let producer = concat!("Sportello certificates ", env!("CARGO_PKG_VERSION"));
    let date = t
        .issued_at
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| CertError::Pdf(e.to_string()))?;
    // XMP wants +00:00 to match the Info dictionary's D:...+00'00'.
    let date =
        date.trim_end_matches('Z').to_owned() + if date.ends_with('Z') { "+00:00" } else { "" };
    let doc_uuid = {
        let h = Sha256::digest(t.document_id.as_bytes());
        format!(
            "{}-{}-{}-{}-{}",
            hex::encode(&h[0..4]),
            hex::encode(&h[4..6]),
            hex::encode(&h[6..8]),
            hex::encode(&h[8..10]),
            hex::encode(&h[10..16])
        )
    };

    let mut cat = pdf.catalog(catalog);
    cat.pages(page_tree)
        .metadata(metadata)
        .lang(TextStr("it-IT"));
    cat.output_intents()
        .push()
        .subtype(OutputIntentSubtype::PDFA)
        .output_condition_identifier(TextStr("sRGB IEC61966-2.1"))
        .output_condition(TextStr("sRGB IEC61966-2.1"))
        .info(TextStr("sRGB IEC61966-2.1"))
        .dest_output_profile(icc);
    cat.finish();

    pdf.pages(page_tree)
        .kids(page_refs.iter().map(|(p, _)| *p))
        .count(pages.len() as i32);
    for ((page_ref, content_ref), content) in page_refs.iter().zip(&contents) {
        let mut page = pdf.page(*page_ref);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(page_tree);
        page.contents(*content_ref);
        let mut res = page.resources();
        let mut fonts = res.fonts();
        fonts.pair(Name(b"F1"), font_refs[0][0]);
        fonts.pair(Name(b"F2"), font_refs[1][0]);
        fonts.finish();
        res.finish();
        page.finish();
        pdf.stream(*content_ref, content)
            .filter(Filter::FlateDecode);
    }

    for (font, refs) in [(&*regular, font_refs[0]), (&*bold, font_refs[1])] {
        write_font(&mut pdf, font, refs)?;
    }

    let icc_bytes = deflate(&crate::icc::srgb_profile());
    pdf.icc_profile(icc, &icc_bytes)
        .n(3)
        .filter(Filter::FlateDecode);

    let xmp = format!(
        concat!(
            "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n",
            "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\n",
            "<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n",
            "<rdf:Description rdf:about=\"\" xmlns:pdfaid=\"http://www.aiim.org/pdfa/ns/id/\">\n",
            "<pdfaid:part>2</pdfaid:part>\n<pdfaid:conformance>B</pdfaid:conformance>\n</rdf:Description>\n",
            "<rdf:Description rdf:about=\"\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\">\n",
            "<dc:format>application/pdf</dc:format>\n",
            "<dc:title><rdf:Alt><rdf:li xml:lang=\"x-default\">{title}</rdf:li></rdf:Alt></dc:title>\n",
            "<dc:creator><rdf:Seq><rdf:li>{author}</rdf:li></rdf:Seq></dc:creator>\n",
            "<dc:language><rdf:Bag><rdf:li>it-IT</rdf:li></rdf:Bag></dc:language>\n",
            "</rdf:Description>\n",
            "<rdf:Description rdf:about=\"\" xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\">\n",
            "<xmp:CreateDate>{date}</xmp:CreateDate>\n<xmp:ModifyDate>{date}</xmp:ModifyDate>\n",
            "<xmp:MetadataDate>{date}</xmp:MetadataDate>\n<xmp:CreatorTool>Sportello</xmp:CreatorTool>\n",
            "</rdf:Description>\n",
            "<rdf:Description rdf:about=\"\" xmlns:pdf=\"http://ns.adobe.com/pdf/1.3/\">\n",
            "<pdf:Producer>{producer}</pdf:Producer>\n</rdf:Description>\n",
            "<rdf:Description rdf:about=\"\" xmlns:xmpMM=\"http://ns.adobe.com/xap/1.0/mm/\">\n",
            "<xmpMM:DocumentID>uuid:{uuid}</xmpMM:DocumentID>\n<xmpMM:InstanceID>uuid:{uuid}</xmpMM:InstanceID>\n",
            "</rdf:Description>\n",
            "</rdf:RDF>\n</x:xmpmeta>\n<?xpacket end=\"w\"?>"
        ),
        title = xml_escape(&title),
        author = xml_escape(&author),
        date = date,
        producer = producer,
        uuid = doc_uuid,
    );
    pdf.metadata(metadata, xmp.as_bytes());

    let when = pdf_date(t.issued_at);
    let mut di = pdf.document_info(info);
    di.title(TextStr(&title))
        .author(TextStr(&author))
        .creator(TextStr("Sportello"))
        .producer(TextStr(producer))
        .creation_date(when)
        .modified_date(when);
    // The stamp text, so `verify_file` finds it without rendering; Base45 needs no escaping in a string.
    di.pair(Name(b"SportelloStamp"), Str(t.stamp.as_bytes()));
    di.finish();

    let id = Sha256::digest(t.document_id.as_bytes())[..16].to_vec();
    pdf.set_file_id((id.clone(), id));
    Ok(pdf.finish())
}

fn write_font(pdf: &mut Pdf, font: &Font, refs: [Ref; 5]) -> Result<(), CertError> {
    let [type0, cid, descriptor, cmap, file] = refs;
    let subset = subsetter::subset(font.data, 0, &font.remapper)
        .map_err(|e| CertError::Pdf(format!("font subset: {e}")))?;
    // A subset font's name carries a six-letter tag derived from its glyph set.
    let tag: String = Sha256::digest(
        font.remapper
            .remapped_gids()
            .flat_map(u16::to_be_bytes)
            .collect::<Vec<u8>>(),
    )
    .iter()
    .take(6)
    .map(|b| (b'A' + b % 26) as char)
    .collect();
    let base = format!("{tag}+{}", font.base_name);
    let units = font.units();
    let scale = |v: f32| v * 1000.0 / units;

    pdf.type0_font(type0)
        .base_font(Name(base.as_bytes()))
        .encoding_predefined(Name(b"Identity-H"))
        .descendant_font(cid)
        .to_unicode(cmap);

    let widths: Vec<f32> = font
        .remapper
        .remapped_gids()
        .map(|old| {
            scale(f32::from(
                font.face
                    .glyph_hor_advance(ttf_parser::GlyphId(old))
                    .unwrap_or(0),
            ))
        })
        .collect();
    let mut cid_font = pdf.cid_font(cid);
    cid_font
        .subtype(CidFontType::Type2)
        .base_font(Name(base.as_bytes()))
        .system_info(SystemInfo {
            registry: Str(b"Adobe"),
            ordering: Str(b"Identity"),
            supplement: 0,
        })
        .font_descriptor(descriptor)
        .default_width(0.0)
        .cid_to_gid_map_predefined(Name(b"Identity"));
    cid_font.widths().consecutive(0, widths);
    cid_font.finish();

    let bbox = font.face.global_bounding_box();
    let mut flags = FontFlags::SYMBOLIC;
    if font.face.is_bold() {
        flags |= FontFlags::FORCE_BOLD;
    }
    pdf.font_descriptor(descriptor)
        .name(Name(base.as_bytes()))
        .flags(flags)
        .bbox(Rect::new(
            scale(f32::from(bbox.x_min)),
            scale(f32::from(bbox.y_min)),
            scale(f32::from(bbox.x_max)),
            scale(f32::from(bbox.y_max)),
        ))
        .italic_angle(0.0)
        .ascent(scale(f32::from(font.face.ascender())))
        .descent(scale(f32::from(font.face.descender())))
        .cap_height(scale(f32::from(
            font.face.capital_height().unwrap_or(font.face.ascender()),
        )))
        .stem_v(if font.face.is_bold() { 120.0 } else { 80.0 })
        .font_file2(file);

    let mut map = UnicodeCmap::new(
        Name(b"Custom"),
        SystemInfo {
            registry: Str(b"Adobe"),
            ordering: Str(b"UCS"),
            supplement: 0,
        },
    );
    for (gid, c) in &font.unicode {
        map.pair(*gid, *c);
    }
    let map = map.finish();
    pdf.cmap(cmap, map.as_slice());

    let compressed = deflate(&subset);
    pdf.stream(file, &compressed)
        .filter(Filter::FlateDecode)
        .pair(Name(b"Length1"), subset.len() as i32);
    Ok(())
}
