//! The electronic seal of an issued PDF: a PAdES baseline B-B signature (ETSI EN 319 142-1) added
//! to the finished PDF/A as an incremental update, and the project's own check of it.
//!
//! **Sealing.** The PDF this crate writes is read back just enough to extend it (the trailer, the
//! catalog and the first page, which the writer emits as plain dictionaries): an update appends an
//! invisible signature field on the first page, the form that holds it, the signature dictionary
//! (`/SubFilter /ETSI.CAdES.detached`, `/M`, `/Reason`) with a fixed-size `/Contents` placeholder,
//! a new cross-reference section and a trailer pointing back to the original one. The two byte
//! ranges around the placeholder are hashed (SHA-256) and a CMS `SignedData` (RFC 5652) is built
//! with the signed attributes PAdES B-B requires: `content-type`, `message-digest` and
//! `signing-certificate-v2` (RFC 5035, the certificate's SHA-256), and no `signing-time` (the time
//! is the dictionary's `/M`). The key signs the DER `SET OF` those attributes through a
//! [`SealKey`]: the stamp's own key ([`crate::signer::Signer`]) or a key in a PKCS#11 token
//! ([`crate::pkcs11::Pkcs11Key`]: the HSMs and remote-seal services comuni use).
//!
//! **B-T.** Given a [`Timestamper`] (a timestamp authority, [`crate::tsa::TsaClient`]), the
//! SignerInfo also carries, as the unsigned attribute `id-aa-signatureTimeStampToken`, an RFC 3161
//! time-stamp token over the SHA-256 of its signature value (PAdES baseline B-T), and the
//! placeholder is larger ([`CONTENTS_BYTES_TIMESTAMPED`]) for the token and the TSA's chain.
//!
//! **Checking** ([`verify_seal`]): the last signature's byte ranges must cover the whole file but
//! the `/Contents` value; the `message-digest` must be their SHA-256; the signing certificate's
//! hash must match `signing-certificate-v2`; and the signature over the signed attributes must
//! verify with the certificate's public key (ECDSA P-256 or RSA PKCS#1 v1.5, with `ring`). Trusting
//! the certificate is the caller's business (the trust list, or `pdfsig`'s NSS database). A
//! time-stamp token, when present, is checked over the signature value and reported with its time
//! and whether it verifies ([`SealTimestamp`]); [`verify_seal_with`] also requires its TSA
//! certificate to chain to given anchors.

use ring::signature::{self as rsig, UnparsedPublicKey};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_cert::der::asn1::{OctetString, SetOfVec};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Any, Decode, Encode};
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use x509_cert::attr::Attribute;

use crate::error::CertError;

/// Bytes reserved for the CMS signature (written as twice as many hex digits): a P-256 or RSA-4096
/// signature with a chain of a few certificates fits with room to spare.
pub const CONTENTS_BYTES: usize = 12 * 1024;
/// Bytes reserved when the signature carries a time-stamp token: a TSA's token with its RSA chain
/// takes several more kilobytes.
pub const CONTENTS_BYTES_TIMESTAMPED: usize = 32 * 1024;

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The signature algorithm of a seal key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealAlgorithm {
    /// ECDSA on P-256 with SHA-256; [`SealKey::sign`] returns the DER `Ecdsa-Sig-Value`.
    EcdsaP256Sha256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RsaPkcs1Sha256,
}

/// A key that seals PDFs.
pub trait SealKey: Send + Sync {
    /// The key's X.509 certificate (DER), then any issuer certificates to embed.
    fn certificates(&self) -> Vec<Vec<u8>>;
    /// The algorithm [`SealKey::sign`] uses.
    fn algorithm(&self) -> SealAlgorithm;
    /// Signs `message` (hashing it with SHA-256 first).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CertError>;
}

/// A timestamp authority: stamps the SHA-256 of a signature value, returning the checked RFC 3161
/// token (a DER `ContentInfo`).
pub trait Timestamper: Send + Sync {
    /// The token over `imprint`, or [`CertError::Timestamp`].
    fn timestamp(&self, imprint: &[u8]) -> Result<Vec<u8>, CertError>;
}

/// The signature time stamp of a seal (PAdES B-T), as [`verify_seal`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealTimestamp {
    /// The TSA's `genTime`, when the token could be read.
    pub time: Option<OffsetDateTime>,
    /// The TSA certificate's subject, when the token could be read.
    pub tsa: Option<String>,
    /// `None` when the token verifies over the signature value; else why not.
    pub problem: Option<String>,
}

impl SealTimestamp {
    /// Whether the token verifies.
    pub fn is_valid(&self) -> bool {
        self.problem.is_none()
    }
}

/// What a checked seal says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealInfo {
    /// The signing certificate's subject (RFC 4514 text).
    pub subject: String,
    /// The signing certificate, DER.
    pub certificate: Vec<u8>,
    /// `/M` of the signature dictionary, as written (`D:YYYYMMDDHHmmSSZ`).
    pub signed_at: String,
    /// `/SubFilter`.
    pub sub_filter: String,
    /// The signature time stamp (PAdES B-T), if the signature carries one.
    pub timestamp: Option<SealTimestamp>,
}

impl SealInfo {
    /// The PAdES baseline level: `B-T` with a valid time stamp, else `B-B`.
    pub fn level(&self) -> &'static str {
        match &self.timestamp {
            Some(t) if t.is_valid() => "B-T",
            _ => "B-B",
        }
    }
}

fn pdf_err(what: impl std::fmt::Display) -> CertError {
    CertError::Pdf(format!("sigillo: {what}"))
}

fn der_err(e: x509_cert::der::Error) -> CertError {
    pdf_err(format!("DER: {e}"))
}

/// The PDF date of `t` (UTC).
fn pdf_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "D:{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A PDF literal string's content, escaped.
fn pdf_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            // Non-ASCII text in a literal string is PDFDocEncoding; keep the seal's strings ASCII.
            _ => out.push('?'),
        }
    }
    out
}

/// The parts of our own PDF an update needs.
struct Parsed {
    size: u32,
    root: u32,
    info: Option<u32>,
    id: Option<String>,
    startxref: usize,
    catalog: String,
    first_page: u32,
    page: String,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// The number after `key` in `text` (`/Size 18` → 18).
fn number_after(text: &str, key: &str) -> Option<u32> {
    let at = text.find(key)? + key.len();
    text[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The body of the dictionary of object `num` (between its outer `<<` and `>>`), as the writer
/// emits it: `N 0 obj\n<<…\n>>\nendobj` (or `stream`). The last definition wins, as after an
/// incremental update.
fn object_dict(pdf: &[u8], num: u32) -> Result<String, CertError> {
    let head = format!("\n{num} 0 obj\n<<");
    let start = rfind(pdf, head.as_bytes())
        .ok_or_else(|| pdf_err(format!("oggetto {num} non trovato")))?
        + head.len();
    let end = find(&pdf[start..], b"\n>>\n")
        .ok_or_else(|| pdf_err(format!("oggetto {num} non chiuso")))?;
    String::from_utf8(pdf[start..start + end].to_vec())
        .map_err(|_| pdf_err(format!("oggetto {num} non testuale")))
}

fn parse(pdf: &[u8]) -> Result<Parsed, CertError> {
    let t_at = rfind(pdf, b"\ntrailer\n").ok_or_else(|| pdf_err("trailer mancante"))?;
    let tail = std::str::from_utf8(&pdf[t_at..]).map_err(|_| pdf_err("trailer non testuale"))?;
    let size = number_after(tail, "/Size").ok_or_else(|| pdf_err("/Size mancante"))?;
    let root = number_after(tail, "/Root").ok_or_else(|| pdf_err("/Root mancante"))?;
    let info = number_after(tail, "/Info");
    let id = tail.find("/ID [").and_then(|i| {
        let end = tail[i..].find(']')?;
        Some(tail[i + 4..i + end + 1].to_owned())
    });
    let startxref = tail
        .find("startxref")
        .and_then(|i| {
            tail[i + 9..]
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
        })
        .ok_or_else(|| pdf_err("startxref mancante"))?;
    let catalog = object_dict(pdf, root)?;
    if catalog.contains("/AcroForm") {
        return Err(pdf_err("il PDF ha già un modulo (già sigillato?)"));
    }
    let pages = number_after(&catalog, "/Pages").ok_or_else(|| pdf_err("/Pages mancante"))?;
    let pages_dict = object_dict(pdf, pages)?;
    let first_page =
        number_after(&pages_dict, "/Kids [").ok_or_else(|| pdf_err("nessuna pagina"))?;
    let page = object_dict(pdf, first_page)?;
    if page.contains("/Annots") {
        return Err(pdf_err("la prima pagina ha già annotazioni"));
    }
    Ok(Parsed {
        size,
        root,
        info,
        id,
        startxref,
        catalog,
        first_page,
        page,
    })
}

/// The signed attributes of a PAdES B-B signature over a document whose byte ranges hash to
/// `digest`, signed by `certificate` (DER).
fn signed_attributes(digest: &[u8], certificate: &[u8]) -> Result<SetOfVec<Attribute>, CertError> {
    let attr = |oid, value: Any| -> Result<Attribute, CertError> {
        let mut values = SetOfVec::new();
        values.insert(value).map_err(der_err)?;
        Ok(Attribute { oid, values })
    };
    // SigningCertificateV2 ::= SEQUENCE { certs SEQUENCE OF ESSCertIDv2 }, with one ESSCertIDv2 ::=
    // SEQUENCE { certHash OCTET STRING } (hashAlgorithm defaults to SHA-256).
    let cert_hash = Sha256::digest(certificate);
    let mut ess = vec![0x30, 0x26, 0x30, 0x24, 0x30, 0x22, 0x04, 0x20];
    ess.extend_from_slice(&cert_hash);
    let mut attrs = SetOfVec::new();
    attrs
        .insert(attr(
            ID_CONTENT_TYPE,
            Any::encode_from(&ID_DATA).map_err(der_err)?,
        )?)
        .map_err(der_err)?;
    attrs
        .insert(attr(
            ID_MESSAGE_DIGEST,
            Any::encode_from(&OctetString::new(digest.to_vec()).map_err(der_err)?)
                .map_err(der_err)?,
        )?)
        .map_err(der_err)?;
    attrs
        .insert(attr(
            ID_SIGNING_CERTIFICATE_V2,
            Any::from_der(&ess).map_err(der_err)?,
        )?)
        .map_err(der_err)?;
    Ok(attrs)
}

fn algorithm_id(oid: ObjectIdentifier, null_params: bool) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid,
        parameters: null_params.then(|| Any::from(x509_cert::der::asn1::Null)),
    }
}

/// The DER CMS `ContentInfo` (SignedData, detached) sealing `digest`, with a signature time stamp
/// from `tsa` when given.
fn cms_signature(
    digest: &[u8],
    key: &dyn SealKey,
    tsa: Option<&dyn Timestamper>,
) -> Result<Vec<u8>, CertError> {
    let chain = key.certificates();
    let first = chain.first().ok_or_else(|| pdf_err("nessun certificato"))?;
    let cert = Certificate::from_der(first).map_err(der_err)?;
    let attrs = signed_attributes(digest, first)?;
    let to_sign = attrs.to_der().map_err(der_err)?;
    let signature = key.sign(&to_sign)?;
    let (sig_alg, null) = match key.algorithm() {
        SealAlgorithm::EcdsaP256Sha256 => (ECDSA_WITH_SHA256, false),
        SealAlgorithm::RsaPkcs1Sha256 => (SHA256_WITH_RSA, true),
    };
    let unsigned_attrs = match tsa {
        None => None,
        Some(tsa) => {
            let token = tsa.timestamp(&Sha256::digest(&signature))?;
            let mut values = SetOfVec::new();
            values
                .insert(Any::from_der(&token).map_err(der_err)?)
                .map_err(der_err)?;
            let mut attrs = SetOfVec::new();
            attrs
                .insert(Attribute {
                    oid: crate::timestamp::ID_AA_SIGNATURE_TIME_STAMP_TOKEN,
                    values,
                })
                .map_err(der_err)?;
            Some(attrs)
        }
    };
    let signer = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: cert.tbs_certificate.issuer.clone(),
            serial_number: cert.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: algorithm_id(ID_SHA256, false),
        signed_attrs: Some(attrs),
        signature_algorithm: algorithm_id(sig_alg, null),
        signature: OctetString::new(signature).map_err(der_err)?,
        unsigned_attrs,
    };
    let mut certs = SetOfVec::new();
    for der in &chain {
        certs
            .insert(CertificateChoices::Certificate(
                Certificate::from_der(der).map_err(der_err)?,
            ))
            .map_err(der_err)?;
    }
    let mut digests = SetOfVec::new();
    digests
        .insert(algorithm_id(ID_SHA256, false))
        .map_err(der_err)?;
    let mut signers = SetOfVec::new();
    signers.insert(signer).map_err(der_err)?;
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: digests,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(certs)),
        crls: None,
        signer_infos: SignerInfos(signers),
    };
    ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed).map_err(der_err)?,
    }
    .to_der()
    .map_err(der_err)
}

/// Seals `pdf` (a PDF this crate wrote) with `key` at `now`; `reason` goes in `/Reason` and
/// `name` in `/Name` (both ASCII). Returns the sealed PDF: the original bytes, unchanged, then
/// the update. PAdES B-B; see [`seal_pdf_with`] for B-T.
pub fn seal_pdf(
    pdf: &[u8],
    key: &dyn SealKey,
    now: OffsetDateTime,
    name: &str,
    reason: &str,
) -> Result<Vec<u8>, CertError> {
    seal_pdf_with(pdf, key, None, now, name, reason)
}

/// [`seal_pdf`], with a signature time stamp from `tsa` when given (PAdES B-T). A TSA that fails
/// fails the seal ([`CertError::Timestamp`]).
pub fn seal_pdf_with(
    pdf: &[u8],
    key: &dyn SealKey,
    tsa: Option<&dyn Timestamper>,
    now: OffsetDateTime,
    name: &str,
    reason: &str,
) -> Result<Vec<u8>, CertError> {
    let reserved = if tsa.is_some() {
        CONTENTS_BYTES_TIMESTAMPED
    } else {
        CONTENTS_BYTES
    };
    let p = parse(pdf)?;
    let (sig, field, form) = (p.size, p.size + 1, p.size + 2);
    let mut out = pdf.to_vec();
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    let mut offsets: Vec<(u32, usize)> = Vec::new();
    let mut object = |out: &mut Vec<u8>, num: u32, body: &str| {
        offsets.push((num, out.len()));
        out.extend_from_slice(format!("{num} 0 obj\n{body}\nendobj\n").as_bytes());
    };
    // The signature dictionary: fixed-width placeholders, filled in below.
    const BYTE_RANGE: &str = "/ByteRange [0 0000000000 0000000000 0000000000]";
    let contents_placeholder = "0".repeat(reserved * 2);
    let sig_body = format!(
        "<<\n  /Type /Sig\n  /Filter /Adobe.PPKLite\n  /SubFilter /ETSI.CAdES.detached\n  {BYTE_RANGE}\n  /Contents <{contents_placeholder}>\n  /M ({})\n  /Name ({})\n  /Reason ({})\n>>",
        pdf_date(now),
        pdf_text(name),
        pdf_text(reason)
    );
    let sig_at = out.len();
    object(&mut out, sig, &sig_body);
    object(
        &mut out,
        field,
        &format!(
            "<<\n  /Type /Annot\n  /Subtype /Widget\n  /FT /Sig\n  /T (Sigillo)\n  /V {sig} 0 R\n  /Rect [0 0 0 0]\n  /F 132\n  /P {} 0 R\n>>",
            p.first_page
        ),
    );
    object(
        &mut out,
        form,
        &format!("<<\n  /Fields [{field} 0 R]\n  /SigFlags 3\n>>"),
    );
    object(
        &mut out,
        p.root,
        &format!("<<{}\n  /AcroForm {form} 0 R\n>>", p.catalog),
    );
    object(
        &mut out,
        p.first_page,
        &format!("<<{}\n  /Annots [{field} 0 R]\n>>", p.page),
    );
    // The cross-reference section of the update: one subsection per object.
    let xref_at = out.len();
    offsets.sort();
    let mut xref = String::from("xref\n0 1\n0000000000 65535 f\r\n");
    for (num, off) in &offsets {
        xref.push_str(&format!("{num} 1\n{off:010} 00000 n\r\n"));
    }
    out.extend_from_slice(xref.as_bytes());
    let mut trailer = format!(
        "trailer\n<<\n  /Size {}\n  /Root {} 0 R\n",
        form + 1,
        p.root
    );
    if let Some(info) = p.info {
        trailer.push_str(&format!("  /Info {info} 0 R\n"));
    }
    if let Some(id) = &p.id {
        trailer.push_str(&format!("  /ID {id}\n"));
    }
    trailer.push_str(&format!(
        "  /Prev {}\n>>\nstartxref\n{xref_at}\n%%EOF\n",
        p.startxref
    ));
    out.extend_from_slice(trailer.as_bytes());

    // The byte ranges: everything but the `<…>` of /Contents.
    let rel = find(&out[sig_at..], b"/Contents <").ok_or_else(|| pdf_err("segnaposto"))?;
    let gap_start = sig_at + rel + "/Contents ".len();
    let gap_end = gap_start + 2 + reserved * 2;
    let ranges = [0, gap_start, gap_end, out.len() - gap_end];
    let br = format!("/ByteRange [0 {} {} {}]", ranges[1], ranges[2], ranges[3]);
    let br = format!("{br:<width$}", width = BYTE_RANGE.len());
    let br_at = sig_at
        + find(&out[sig_at..], BYTE_RANGE.as_bytes()).ok_or_else(|| pdf_err("/ByteRange"))?;
    out[br_at..br_at + br.len()].copy_from_slice(br.as_bytes());

    let mut h = Sha256::new();
    h.update(&out[..gap_start]);
    h.update(&out[gap_end..]);
    let cms = cms_signature(&h.finalize(), key, tsa)?;
    if cms.len() > reserved {
        return Err(pdf_err(format!(
            "firma di {} byte, oltre i {reserved} riservati",
            cms.len()
        )));
    }
    let hexed = hex::encode_upper(&cms);
    out[gap_start + 1..gap_start + 1 + hexed.len()].copy_from_slice(hexed.as_bytes());
    Ok(out)
}

/// Checks the last seal of `pdf` (see the module docs); `Err` says what is wrong. A time stamp is
/// checked on its own (it is reported in [`SealInfo::timestamp`], and does not fail the seal).
pub fn verify_seal(pdf: &[u8]) -> Result<SealInfo, CertError> {
    verify_seal_with(pdf, None)
}

/// [`verify_seal`], with the time stamp's TSA certificate required to chain to `tsa_trust` when
/// given.
pub fn verify_seal_with(
    pdf: &[u8],
    tsa_trust: Option<&[Certificate]>,
) -> Result<SealInfo, CertError> {
    let bad = |what: &str| CertError::SealInvalid(what.to_owned());
    let at = rfind(pdf, b"/ByteRange [").ok_or_else(|| bad("il PDF non è sigillato"))?;
    let text = String::from_utf8_lossy(&pdf[at..pdf.len().min(at + 200)]).into_owned();
    let nums: Vec<usize> = text["/ByteRange [".len()..]
        .split(']')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let [a, b, c, d] = nums[..] else {
        return Err(bad("/ByteRange illeggibile"));
    };
    if a != 0 || b >= c || c + d != pdf.len() || pdf.get(b) != Some(&b'<') || pdf[c - 1] != b'>' {
        return Err(bad("i byte firmati non coprono tutto il documento"));
    }
    let hexed = std::str::from_utf8(&pdf[b + 1..c - 1]).map_err(|_| bad("/Contents"))?;
    let raw = hex::decode(hexed).map_err(|_| bad("/Contents non esadecimale"))?;
    // The CMS value is followed by the placeholder's padding zeros.
    let mut reader = x509_cert::der::SliceReader::new(&raw).map_err(der_err)?;
    let info: ContentInfo = x509_cert::der::Decode::decode(&mut reader).map_err(der_err)?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(bad("non è una SignedData CMS"));
    }
    let signed: SignedData = info.content.decode_as().map_err(der_err)?;
    let signer = signed
        .signer_infos
        .0
        .iter()
        .next()
        .ok_or_else(|| bad("nessun firmatario"))?;
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| bad("attributi firmati mancanti"))?;
    let value_of = |oid: ObjectIdentifier| {
        attrs
            .iter()
            .find(|a| a.oid == oid)
            .and_then(|a| a.values.iter().next())
    };
    let mut h = Sha256::new();
    h.update(&pdf[..b]);
    h.update(&pdf[c..]);
    let digest = h.finalize();
    let claimed: OctetString = value_of(ID_MESSAGE_DIGEST)
        .ok_or_else(|| bad("message-digest mancante"))?
        .decode_as()
        .map_err(der_err)?;
    if claimed.as_bytes() != digest.as_slice() {
        return Err(bad("il documento è stato modificato dopo il sigillo"));
    }
    let ess = value_of(ID_SIGNING_CERTIFICATE_V2)
        .ok_or_else(|| bad("signing-certificate-v2 mancante (non PAdES)"))?
        .to_der()
        .map_err(der_err)?;
    // The certificate whose SHA-256 the attribute names, among those embedded.
    let certs = signed
        .certificates
        .as_ref()
        .ok_or_else(|| bad("certificato mancante"))?;
    let cert = certs
        .0
        .iter()
        .filter_map(|c| match c {
            CertificateChoices::Certificate(c) => Some(c),
            _ => None,
        })
        .find(|c| {
            c.to_der()
                .map(|d| {
                    let h = Sha256::digest(&d);
                    ess.windows(h.len()).any(|w| w == h.as_slice())
                })
                .unwrap_or(false)
        })
        .ok_or_else(|| bad("il certificato del firmatario non corrisponde"))?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let public = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| bad("chiave pubblica"))?;
    let message = attrs.to_der().map_err(der_err)?;
    let sig = signer.signature.as_bytes();
    let ok = match (spki.algorithm.oid, signer.signature_algorithm.oid) {
        (ID_EC_PUBLIC_KEY, ECDSA_WITH_SHA256) => {
            UnparsedPublicKey::new(&rsig::ECDSA_P256_SHA256_ASN1, public)
                .verify(&message, sig)
                .is_ok()
        }
        (RSA_ENCRYPTION, SHA256_WITH_RSA) => {
            UnparsedPublicKey::new(&rsig::RSA_PKCS1_2048_8192_SHA256, public)
                .verify(&message, sig)
                .is_ok()
        }
        _ => return Err(bad("algoritmo di firma non supportato")),
    };
    if !ok {
        return Err(bad("la firma non corrisponde al certificato"));
    }
    // `/M` and `/SubFilter` of the signature dictionary (one entry a line, as written).
    let start = rfind(&pdf[..at], b" 0 obj\n").unwrap_or(0);
    let end = c + find(&pdf[c..], b"\n>>").unwrap_or(0);
    let dict = format!(
        "{}{}",
        String::from_utf8_lossy(&pdf[start..b]),
        String::from_utf8_lossy(&pdf[c..end])
    );
    let field = |key: &str| {
        dict.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|v| v.trim().trim_matches(['(', ')', '/']).to_owned())
            .unwrap_or_default()
    };
    let timestamp = signer.unsigned_attrs.as_ref().and_then(|attrs| {
        let attr = attrs
            .iter()
            .find(|a| a.oid == crate::timestamp::ID_AA_SIGNATURE_TIME_STAMP_TOKEN)?;
        let imprint = Sha256::digest(sig);
        Some(
            match attr.values.iter().next().map(|token| {
                token
                    .to_der()
                    .map_err(der_err)
                    .and_then(|der| crate::timestamp::verify_token(&der, &imprint, tsa_trust))
            }) {
                Some(Ok(t)) => SealTimestamp {
                    time: Some(t.time),
                    tsa: Some(t.tsa),
                    problem: None,
                },
                Some(Err(e)) => SealTimestamp {
                    time: None,
                    tsa: None,
                    problem: Some(e.to_string()),
                },
                None => SealTimestamp {
                    time: None,
                    tsa: None,
                    problem: Some("attributo vuoto".into()),
                },
            },
        )
    });
    Ok(SealInfo {
        subject: cert.tbs_certificate.subject.to_string(),
        certificate: cert.to_der().map_err(der_err)?,
        signed_at: field("/M "),
        sub_filter: field("/SubFilter "),
        timestamp,
    })
}

impl SealKey for crate::signer::Signer {
    fn certificates(&self) -> Vec<Vec<u8>> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&self.trust_entry().certificate)
            .map(|c| vec![c])
            .unwrap_or_default()
    }

    fn algorithm(&self) -> SealAlgorithm {
        SealAlgorithm::EcdsaP256Sha256
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CertError> {
        let raw = self.try_sign(message)?;
        let sig = p256::ecdsa::Signature::from_slice(&raw)
            .map_err(|e| CertError::SignerKey(format!("firma P-256: {e}")))?;
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> crate::signer::Signer {
        let now = OffsetDateTime::now_utc();
        let (k, c) = crate::signer::generate_signer_pem(
            "Comune di Prova - sigillo",
            now - time::Duration::days(1),
            now + time::Duration::days(30),
        )
        .unwrap();
        crate::signer::Signer::from_pem(&k, &c).unwrap()
    }

    /// A minimal PDF shaped like the writer's.
    fn pdf() -> Vec<u8> {
        let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
        let mut offs = vec![];
        for (n, body) in [
            (1, "<<\n  /Type /Catalog\n  /Pages 2 0 R\n>>"),
            (2, "<<\n  /Type /Pages\n  /Kids [3 0 R]\n  /Count 1\n>>"),
            (
                3,
                "<<\n  /Type /Page\n  /MediaBox [0 0 595 842]\n  /Parent 2 0 R\n>>",
            ),
            (4, "<<\n  /Title (x)\n  /SportelloStamp (IT1:ABC)\n>>"),
        ] {
            offs.push(out.len());
            out.extend_from_slice(format!("{n} 0 obj\n{body}\nendobj\n").as_bytes());
        }
        let xref = out.len();
        out.extend_from_slice(b"xref\n0 5\n0000000000 65535 f\r\n");
        for o in offs {
            out.extend_from_slice(format!("{o:010} 00000 n\r\n").as_bytes());
        }
        out.extend_from_slice(
            format!("trailer\n<<\n  /Size 5\n  /Root 1 0 R\n  /Info 4 0 R\n>>\nstartxref\n{xref}\n%%EOF").as_bytes(),
        );
        out
    }

    #[test]
    fn a_sealed_pdf_verifies_and_any_change_breaks_it() {
        let key = signer();
        let original = pdf();
        let now = OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap();
        let sealed = seal_pdf(&original, &key, now, "Comune di Prova", "Sigillo (prova)").unwrap();
        assert!(sealed.starts_with(&original), "an incremental update");
        let info = verify_seal(&sealed).unwrap();
        assert!(
            info.subject.contains("Comune di Prova - sigillo"),
            "{info:?}"
        );
        assert_eq!(info.sub_filter, "ETSI.CAdES.detached");
        assert_eq!(info.signed_at, "D:20260528202640Z");
        // A changed byte in the signed ranges, and one in the update.
        for at in [20, sealed.len() - 10] {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert!(verify_seal(&bad).is_err(), "byte {at}");
        }
        // Appended bytes are outside the ranges: refused.
        let mut longer = sealed.clone();
        longer.extend_from_slice(b"\n% more\n");
        assert!(verify_seal(&longer).is_err());
        // Not sealed, and sealed twice.
        assert!(verify_seal(&original).is_err());
        assert!(seal_pdf(&sealed, &key, now, "x", "y").is_err());
    }
}
