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

mod output;

use time::OffsetDateTime;

use output::{write_pdf, Font};

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

/// What goes on the printed certificate besides the body.
#[derive(Debug, Clone)]
pub struct PageText {
    /// Comune name, e.g. "Parma".
    pub comune: String,
    /// Province abbreviation.
    pub province: String,
    /// The header's province line, e.g. "Provincia di Parma (PR)" ([`crate::registry::Comune::province_line`]).
    pub province_line: String,
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
    /// The bollo: `None` prints the box for the marca da bollo (or [`PageText::bollo_paid`]);
    /// `Some(text)` prints the exemption.
    pub exemption_text: Option<String>,
    /// The bollo paid with a marca before issuing ("Imposta di bollo assolta mediante contrassegno
    /// telematico n. …"), printed instead of the empty box.
    pub bollo_paid: Option<String>,
    /// A declared use with the bollo due ("Uso: …").
    pub use_text: Option<String>,
    /// The art. 40, comma 02 sentence, or the dedicated wording of the use.
    pub art40_text: String,
    /// The responsible person's line ("L'ufficiale d'anagrafe delegato: Mario Rossi"); `None` prints
    /// the office only.
    pub signatory: Option<String>,
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
    /// A preview before issuing: watermarked ANTEPRIMA / PREVIEW on every page, no stamp.
    pub preview: bool,
    /// Issue instant (metadata).
    pub issued_at: OffsetDateTime,
    /// The seal will carry a signature time stamp (PAdES B-T): the stamp's note says so.
    pub timestamped: bool,
}

use crate::wording;
pub use crate::wording::MANDATORY_WORDING;

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

    /// The family table; the "Rapporto" column only with `kinship` (stato di famiglia con rapporti di
    /// parentela).
    fn family_table(&mut self, members: &[crate::kinds::MemberLine], kinship: bool) {
        let cols: Vec<(f32, f32, &str)> = if kinship {
            vec![
                (MARGIN_X, 170.0, "Cognome e nome"),
                (MARGIN_X + 175.0, 95.0, "Rapporto"),
                (MARGIN_X + 275.0, 60.0, "Nato/a il"),
                (
                    MARGIN_X + 340.0,
                    PAGE_W - 2.0 * MARGIN_X - 340.0,
                    "Luogo di nascita",
                ),
            ]
        } else {
            vec![
                (MARGIN_X, 220.0, "Cognome e nome"),
                (MARGIN_X + 230.0, 70.0, "Nato/a il"),
                (
                    MARGIN_X + 305.0,
                    PAGE_W - 2.0 * MARGIN_X - 305.0,
                    "Luogo di nascita",
                ),
            ]
        };
        let size = 9.0;
        let leading = 11.5;
        let header = |l: &mut Self| {
            l.ensure(leading * 2.0);
            l.y -= leading;
            let y = l.y;
            for &(x, _, title) in &cols {
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
            let mut cells = vec![format!("{} {}", m.surname.to_uppercase(), m.given_names)];
            if kinship {
                cells.push(m.relationship.clone());
            }
            cells.push(birth);
            cells.push(m.birth_place.clone());
            let wrapped: Vec<Vec<String>> = cells
                .iter()
                .zip(cols.iter().copied())
                .map(|(text, (_, w, _))| self.wrap(text, Face::Regular, size, w))
                .collect();
            let rows = wrapped.iter().map(Vec::len).max().unwrap_or(1);
            let before = self.pages.len();
            self.ensure(leading * rows as f32 + 2.0);
            if self.pages.len() != before {
                header(self);
            }
            for (cell, &(x, _, _)) in wrapped.iter().zip(&cols) {
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
        text: format!("{} - Codice ISTAT {}", t.province_line, t.istat_code),
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
    // A banner across the page under the header: a preview, or a development key's warning.
    let banner = if t.preview {
        Some(((0.1, 0.1, 0.1), wording::PREVIEW_BANNER))
    } else if t.development {
        Some(((0.75, 0.0, 0.0), wording::DEVELOPMENT_BANNER))
    } else {
        None
    };
    if let Some((colour, text)) = banner {
        l.ops().push(Op::Rect {
            x: MARGIN_X,
            y: 716.0,
            w: PAGE_W - 2.0 * MARGIN_X,
            h: 18.0,
            fill: Some(colour),
            stroke: false,
        });
        l.ops().push(Op::Text {
            face: Face::Bold,
            size: 9.5,
            x: MARGIN_X + 6.0,
            y: 721.5,
            text: text.into(),
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
    l.paragraph(wording::SEEN_THE_RECORDS, Face::Regular, 10.5, true);
    l.paragraph(wording::CERTIFIES, Face::Bold, 11.0, true);
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
                l.family_table(members, false);
            }
            crate::kinds::Block::FamilyKinship(members) => {
                l.gap(4.0);
                l.family_table(members, true);
            }
        }
        l.gap(3.0);
    }
    l.gap(6.0);
    if let Some(u) = &t.use_text {
        l.paragraph(u, Face::Regular, 9.5, false);
    }
    match (&t.exemption_text, &t.bollo_paid) {
        (Some(text), _) => l.paragraph(text, Face::Regular, 9.5, false),
        (None, Some(paid)) => l.paragraph(paid, Face::Regular, 9.5, false),
        (None, None) => {
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
            for (i, s) in wording::BOLLO_BOX.iter().enumerate() {
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
            let lines = l.wrap(
                wording::BOLLO_DUE,
                Face::Regular,
                9.5,
                PAGE_W - 2.0 * MARGIN_X - 80.0,
            );
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
    }
    l.gap(4.0);
    l.paragraph(&t.art40_text, Face::Bold, 10.0, false);
    l.gap(2.0);
    l.paragraph(&t.validity, Face::Regular, 9.0, false);
    l.paragraph(&t.fees, Face::Regular, 9.0, false);
    l.gap(8.0);
    l.paragraph(&t.place_date, Face::Regular, 10.5, false);
    // The responsible person's printed name (art. 3, comma 2, D.Lgs. 39/1993), or the office alone.
    if let Some(signatory) = &t.signatory {
        l.paragraph(signatory, Face::Regular, 9.5, false);
    }
    l.paragraph(&t.office, Face::Regular, 9.5, false);
    if t.signatory.is_some() {
        l.paragraph(wording::PRINTED_NAME, Face::Regular, 8.0, false);
    }

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
    if t.preview {
        // No stamp on a preview: an empty frame says where it goes.
        l.ops().push(Op::Rect {
            x: MARGIN_X,
            y: top - QR_SIZE,
            w: QR_SIZE,
            h: QR_SIZE,
            fill: None,
            stroke: true,
        });
    } else {
        l.ops().push(Op::Qr {
            x: MARGIN_X,
            y: top - QR_SIZE,
            size: QR_SIZE,
            width,
            dark,
        });
    }
    let note = if t.preview {
        wording::PREVIEW_STAMP.to_owned()
    } else {
        wording::stamp_note(&t.comune, &t.verify_url, &t.document_id, t.timestamped)
    };
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
            text: wording::DEVELOPMENT_STAMP.into(),
            white: false,
        });
    }
    l.y = top - QR_SIZE;

    let mut pages = std::mem::take(&mut l.pages);
    let total = pages.len();
    for (i, page) in pages.iter_mut().enumerate() {
        let footer = if t.preview {
            format!(
                "{} - Pagina {} di {}",
                wording::PREVIEW_BANNER,
                i + 1,
                total
            )
        } else {
            format!(
                "Comune di {} - Documento n. {} - Pagina {} di {}",
                t.comune,
                t.document_id,
                i + 1,
                total
            )
        };
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
