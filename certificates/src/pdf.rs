//! PDF/A-2b rendering of a certificate: A4, Italian, DejaVu Sans Condensed embedded as subset CID fonts,
//! an sRGB OutputIntent, XMP metadata, and the stamp as a vector QR code.
//!
//! The font comes from the `dejavu` crate (the DejaVu fonts, a free licence derived from Bitstream Vera), so
//! the build needs no system package and nothing is fetched at run time. Glyphs are subset per document
//! with `subsetter`, and written as Type0/CIDFontType2 fonts with an Identity CIDToGIDMap and a ToUnicode
//! map, so text extraction (`pdftotext`) returns the Italian wording exactly.
//!
//! Layout is a simple flow: blocks go down the page and start a new page when they do not fit; the stamp
//! block sits at the end; every page carries "pagina N di M" and the document id.

use std::collections::BTreeMap;

use pdf_writer::types::{CidFontType, FontFlags, OutputIntentSubtype, SystemInfo, UnicodeCmap};
use pdf_writer::{Content, Date as PdfDate, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::CertError;

/// A4 in points.
const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN_X: f32 = 56.7;
const TOP: f32 = 800.0;
const BOTTOM: f32 = 60.0;
/// The stamp is printed 45 mm wide, including its quiet zone.
const QR_SIZE: f32 = 45.0 * 72.0 / 25.4;

/// Which of the two embedded faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Face {
    Regular,
    Bold,
}

/// One drawing operation, laid out in page coordinates.
#[derive(Debug, Clone)]
enum Op {
    Text {
        face: Face,
        size: f32,
        x: f32,
        y: f32,
        text: String,
        white: bool,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Option<(f32, f32, f32)>,
        stroke: bool,
    },
    Shield {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
    },
    Qr {
        x: f32,
        y: f32,
        size: f32,
        width: usize,
        dark: Vec<bool>,
    },
}

/// An embedded font: parsed face, the glyphs used so far (remapped to consecutive ids) and their text.
struct Font {
    data: &'static [u8],
    face: ttf_parser::Face<'static>,
    remapper: subsetter::GlyphRemapper,
    unicode: BTreeMap<u16, char>,
    base_name: &'static str,
}

impl Font {
    fn new(data: &'static [u8], base_name: &'static str) -> Result<Self, CertError> {
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
    fn width(&self, text: &str, size: f32) -> f32 {
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

/// What goes on the printed certificate besides the body.
#[derive(Debug, Clone)]
pub struct PageText {
    /// Comune name, e.g. "Parma".
    pub comune: String,
    /// Province abbreviation.
    pub province: String,
    /// ISTAT code.
    pub istat_code: String,
    /// The issuing office, printed in the header and the signature block.
    pub office: String,
    /// Title of the kind.
    pub title: String,
    /// Legal basis under the title.
    pub legal_basis: String,
    /// "L'UFFICIALE D'ANAGRAFE" or "L'UFFICIALE DELLO STATO CIVILE".
    pub officer: String,
    /// Subject lines (name, birth, fiscal code).
    pub subject_lines: Vec<String>,
    /// The body.
    pub body: Vec<crate::kinds::Block>,
    /// The bollo: `None` prints the box for the marca da bollo; `Some(text)` prints the exemption.
    pub exemption_text: Option<String>,
    /// The validity sentence.
    pub validity: String,
    /// The fees sentence.
    pub fees: String,
    /// Issue place and date line, e.g. "Parma, 27/11/2026".
    pub place_date: String,
    /// Document id.
    pub document_id: String,
    /// The stamp text to encode in the QR code.
    pub stamp: String,
    /// The public verification URL printed beside the stamp.
    pub verify_url: String,
    /// Signed with a development key: print the warning.
    pub development: bool,
    /// Issue instant (metadata).
    pub issued_at: OffsetDateTime,
}

/// The mandatory sentence of L. 183/2011 art. 15 (DPR 445/2000 art. 40, comma 02).
pub const MANDATORY_WORDING: &str = "Il presente certificato non può essere prodotto agli organi della pubblica amministrazione o ai privati gestori di pubblici servizi.";

/// The rendered document.
#[derive(Debug, Clone)]
pub struct RenderedPdf {
    /// The PDF bytes.
    pub bytes: Vec<u8>,
    /// Number of pages.
    pub pages: u32,
    /// QR code version used for the stamp (1–40).
    pub qr_version: i16,
}

/// Lays text out down the pages.
struct Layout<'f> {
    regular: &'f Font,
    bold: &'f Font,
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl Layout<'_> {
    fn font(&self, face: Face) -> &Font {
        match face {
            Face::Regular => self.regular,
            Face::Bold => self.bold,
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(vec![]);
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn ensure(&mut self, height: f32) {
        if self.y - height < BOTTOM {
            self.pages.push(vec![]);
            self.y = TOP;
        }
    }

    fn wrap(&self, text: &str, face: Face, size: f32, width: f32) -> Vec<String> {
        let font = self.font(face);
        let mut lines = Vec::new();
        let mut line = String::new();
        for word in text.split(' ') {
            let candidate = if line.is_empty() {
                word.to_owned()
            } else {
                format!("{line} {word}")
            };
            if font.width(&candidate, size) <= width || line.is_empty() {
                line = candidate;
            } else {
                lines.push(std::mem::take(&mut line));
                line = word.to_owned();
            }
        }
        if !line.is_empty() {
            lines.push(line);
        }
        // A single word wider than the column is cut by characters, so nothing overflows the page.
        lines
            .into_iter()
            .flat_map(|l| {
                if font.width(&l, size) <= width {
                    return vec![l];
                }
                let mut parts = vec![];
                let mut cur = String::new();
                for c in l.chars() {
                    cur.push(c);
                    if font.width(&cur, size) > width {
                        let last = cur.pop();
                        parts.push(std::mem::take(&mut cur));
                        cur.extend(last);
                    }
                }
                parts.push(cur);
                parts
            })
            .collect()
    }

    fn paragraph(&mut self, text: &str, face: Face, size: f32, align_center: bool) {
        let width = PAGE_W - 2.0 * MARGIN_X;
        let leading = size * 1.35;
        for line in self.wrap(text, face, size, width) {
            self.ensure(leading);
            self.y -= leading;
            let x = if align_center {
                (PAGE_W - self.font(face).width(&line, size)) / 2.0
            } else {
                MARGIN_X
            };
            let y = self.y;
            self.ops().push(Op::Text {
                face,
                size,
                x,
                y,
                text: line,
                white: false,
            });
        }
    }

    fn gap(&mut self, h: f32) {
        self.y -= h;
    }

    fn family_table(&mut self, members: &[crate::kinds::MemberLine]) {
        let cols = [
            (MARGIN_X, 170.0, "Cognome e nome"),
            (MARGIN_X + 175.0, 95.0, "Rapporto"),
            (MARGIN_X + 275.0, 60.0, "Nato/a il"),
            (
                MARGIN_X + 340.0,
                PAGE_W - 2.0 * MARGIN_X - 340.0,
                "Luogo di nascita",
            ),
        ];
        let size = 9.0;
        let leading = 11.5;
        let header = |l: &mut Self| {
            l.ensure(leading * 2.0);
            l.y -= leading;
            let y = l.y;
            for (x, _, title) in cols {
                l.ops().push(Op::Text {
                    face: Face::Bold,
                    size,
                    x,
                    y,
                    text: title.into(),
                    white: false,
                });
            }
            l.y -= 3.0;
            let y = l.y;
            l.ops().push(Op::Rect {
                x: MARGIN_X,
                y,
                w: PAGE_W - 2.0 * MARGIN_X,
                h: 0.5,
                fill: Some((0.0, 0.0, 0.0)),
                stroke: false,
            });
        };
        header(self);
        for m in members {
            let birth = crate::dates::parse_date(&m.birth_date)
                .map(crate::dates::italian)
                .unwrap_or_else(|_| m.birth_date.clone());
            let cells = [
                format!("{} {}", m.surname.to_uppercase(), m.given_names),
                m.relationship.clone(),
                birth,
                m.birth_place.clone(),
            ];
            let wrapped: Vec<Vec<String>> = cells
                .iter()
                .zip(cols)
                .map(|(text, (_, w, _))| self.wrap(text, Face::Regular, size, w))
                .collect();
            let rows = wrapped.iter().map(Vec::len).max().unwrap_or(1);
            let before = self.pages.len();
            self.ensure(leading * rows as f32 + 2.0);
            if self.pages.len() != before {
                header(self);
            }
            for (cell, (x, _, _)) in wrapped.iter().zip(cols) {
                for (i, line) in cell.iter().enumerate() {
                    let y = self.y - leading * (i as f32 + 1.0);
                    self.ops().push(Op::Text {
                        face: Face::Regular,
                        size,
                        x,
                        y,
                        text: line.clone(),
                        white: false,
                    });
                }
            }
            self.y -= leading * rows as f32 + 2.0;
        }
    }
}

fn header(l: &mut Layout<'_>, t: &PageText) {
    l.ops().push(Op::Shield {
        x: MARGIN_X,
        y: 752.0,
        w: 38.0,
        h: 48.0,
    });
    l.ops().push(Op::Text {
        face: Face::Regular,
        size: 5.0,
        x: MARGIN_X + 5.5,
        y: 778.0,
        text: "STEMMA".into(),
        white: false,
    });
    l.ops().push(Op::Text {
        face: Face::Bold,
        size: 16.0,
        x: MARGIN_X + 50.0,
        y: 786.0,
        text: format!("COMUNE DI {}", t.comune.to_uppercase()),
        white: false,
    });
    l.ops().push(Op::Text {
        face: Face::Regular,
        size: 9.0,
        x: MARGIN_X + 50.0,
        y: 773.0,
        text: format!(
            "Provincia di {} ({}) - Codice ISTAT {}",
            t.comune, t.province, t.istat_code
        ),
        white: false,
    });
    l.ops().push(Op::Text {
        face: Face::Regular,
        size: 9.0,
        x: MARGIN_X + 50.0,
        y: 762.0,
        text: t.office.clone(),
        white: false,
    });
    l.ops().push(Op::Rect {
        x: MARGIN_X,
        y: 745.0,
        w: PAGE_W - 2.0 * MARGIN_X,
        h: 0.8,
        fill: Some((0.0, 0.0, 0.0)),
        stroke: false,
    });
    l.y = 738.0;
    if t.development {
        l.ops().push(Op::Rect {
            x: MARGIN_X,
            y: 716.0,
            w: PAGE_W - 2.0 * MARGIN_X,
            h: 18.0,
            fill: Some((0.75, 0.0, 0.0)),
            stroke: false,
        });
        l.ops().push(Op::Text {
            face: Face::Bold,
            size: 9.5,
            x: MARGIN_X + 6.0,
            y: 721.5,
            text: "DOCUMENTO DI PROVA - FIRMATO CON CHIAVE DI SVILUPPO - NON VALIDO".into(),
            white: true,
        });
        l.y = 710.0;
    }
}

/// Renders the certificate.
pub fn render(t: &PageText) -> Result<RenderedPdf, CertError> {
    let mut regular = Font::new(dejavu::sans_condensed::regular(), "DejaVuSansCondensed")?;
    let mut bold = Font::new(dejavu::sans_condensed::bold(), "DejaVuSansCondensed-Bold")?;
    let qr = qrcode::QrCode::with_error_correction_level(t.stamp.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| CertError::Pdf(format!("QR: {e}")))?;
    let qr_version = match qr.version() {
        qrcode::Version::Normal(v) | qrcode::Version::Micro(v) => v,
    };

    let mut l = Layout {
        regular: &regular,
        bold: &bold,
        pages: vec![vec![]],
        y: TOP,
    };
    header(&mut l, t);
    l.gap(10.0);
    l.paragraph(&t.title.to_uppercase(), Face::Bold, 14.0, true);
    l.paragraph(&t.legal_basis, Face::Regular, 8.5, true);
    l.gap(10.0);
    l.paragraph(&t.officer, Face::Bold, 11.0, true);
    l.paragraph("visti gli atti d'ufficio,", Face::Regular, 10.5, true);
    l.paragraph("CERTIFICA CHE", Face::Bold, 11.0, true);
    l.gap(6.0);
    for (i, line) in t.subject_lines.iter().enumerate() {
        l.paragraph(
            line,
            if i == 0 { Face::Bold } else { Face::Regular },
            if i == 0 { 12.0 } else { 10.5 },
            false,
        );
    }
    l.gap(6.0);
    for block in &t.body {
        match block {
            crate::kinds::Block::Text(text) => l.paragraph(text, Face::Regular, 10.5, false),
            crate::kinds::Block::Family(members) => {
                l.gap(4.0);
                l.family_table(members);
            }
        }
        l.gap(3.0);
    }
    l.gap(6.0);
    match &t.exemption_text {
        None => {
            // The box for the marca da bollo, on the right, with the explanation beside it.
            let box_h = 80.0;
            l.ensure(box_h + 6.0);
            let x = PAGE_W - MARGIN_X - 68.0;
            let top = l.y;
            l.ops().push(Op::Rect {
                x,
                y: top - box_h,
                w: 68.0,
                h: box_h,
                fill: None,
                stroke: true,
            });
            for (i, s) in ["Spazio per la", "marca da bollo", "€ 16,00"]
                .iter()
                .enumerate()
            {
                let w = l.regular.width(s, 8.0);
                l.ops().push(Op::Text {
                    face: Face::Regular,
                    size: 8.0,
                    x: x + (68.0 - w) / 2.0,
                    y: top - 30.0 - 11.0 * i as f32,
                    text: (*s).into(),
                    white: false,
                });
            }
            let text = "Il presente certificato è soggetto all'imposta di bollo (DPR 642/1972, Tariffa all. A, art. 4): € 16,00 per foglio, da applicare nello spazio a fianco.";
            let lines = l.wrap(text, Face::Regular, 9.5, PAGE_W - 2.0 * MARGIN_X - 80.0);
            for (i, line) in lines.into_iter().enumerate() {
                l.ops().push(Op::Text {
                    face: Face::Regular,
                    size: 9.5,
                    x: MARGIN_X,
                    y: top - 12.0 - 12.5 * i as f32,
                    text: line,
                    white: false,
                });
            }
            l.y = top - box_h - 4.0;
        }
        Some(text) => l.paragraph(text, Face::Regular, 9.5, false),
    }
    l.gap(4.0);
    l.paragraph(MANDATORY_WORDING, Face::Bold, 10.0, false);
    l.gap(2.0);
    l.paragraph(&t.validity, Face::Regular, 9.0, false);
    l.paragraph(&t.fees, Face::Regular, 9.0, false);
    l.gap(8.0);
    l.paragraph(&t.place_date, Face::Regular, 10.5, false);
    l.paragraph(
        &format!("{} delegato - {}", sentence_case(&t.officer), t.office),
        Face::Regular,
        9.5,
        false,
    );
    l.paragraph("Firma autografa sostituita dal contrassegno elettronico (art. 3 D.Lgs. 39/1993 e art. 23-ter, c. 5, CAD).", Face::Regular, 8.0, false);

    // The stamp: the QR code and its explanation, kept together on one page.
    l.ensure(QR_SIZE + 12.0);
    l.gap(8.0);
    let top = l.y;
    let width = qr.width();
    let dark: Vec<bool> = qr
        .to_colors()
        .iter()
        .map(|c| *c == qrcode::Color::Dark)
        .collect();
    l.ops().push(Op::Qr {
        x: MARGIN_X,
        y: top - QR_SIZE,
        size: QR_SIZE,
        width,
        dark,
    });
    let note = format!(
        "Contrassegno elettronico ai sensi dell'art. 23-ter, comma 5, del CAD (D.Lgs. 82/2005). Il codice contiene i dati essenziali del certificato, firmati digitalmente dal Comune di {}. Per verificarne l'autenticità, inquadrare il codice con la fotocamera o incollarne il testo nella pagina {} ; la verifica funziona anche senza connessione. Documento n. {}.",
        t.comune, t.verify_url, t.document_id
    );
    let text_x = MARGIN_X + QR_SIZE + 10.0;
    let lines = l.wrap(&note, Face::Regular, 8.0, PAGE_W - MARGIN_X - text_x);
    for (i, line) in lines.into_iter().enumerate() {
        l.ops().push(Op::Text {
            face: Face::Regular,
            size: 8.0,
            x: text_x,
            y: top - 12.0 - 10.0 * i as f32,
            text: line,
            white: false,
        });
    }
    if t.development {
        l.ops().push(Op::Text {
            face: Face::Bold,
            size: 8.0,
            x: text_x,
            y: top - QR_SIZE + 6.0,
            text: "Chiave di sviluppo: contrassegno NON VALIDO.".into(),
            white: false,
        });
    }
    l.y = top - QR_SIZE;

    let mut pages = std::mem::take(&mut l.pages);
    let total = pages.len();
    for (i, page) in pages.iter_mut().enumerate() {
        let footer = format!(
            "Comune di {} - Documento n. {} - Pagina {} di {}",
            t.comune,
            t.document_id,
            i + 1,
            total
        );
        let w = regular.width(&footer, 7.5);
        page.push(Op::Text {
            face: Face::Regular,
            size: 7.5,
            x: (PAGE_W - w) / 2.0,
            y: 30.0,
            text: footer,
            white: false,
        });
    }

    let bytes = write_pdf(&pages, &mut regular, &mut bold, t)?;
    Ok(RenderedPdf {
        bytes,
        pages: total as u32,
        qr_version,
    })
}

fn sentence_case(s: &str) -> String {
    let lower = s.to_lowercase();
    let mut c = lower.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
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

fn write_pdf(
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
