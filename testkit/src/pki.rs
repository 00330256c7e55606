//! A throw-away PKI for tests: a self-signed P-256 certificate authority, intermediates, and
//! certificates shaped like those on Italian identity cards (CIE and CNS), made with `rcgen`.
//!
//! ```no_run
//! use testkit::pki::{CardStyle, CardSubject, TestCa};
//! let root = TestCa::new("Test root CA");
//! let ca = root.intermediate("Test card CA");
//! let now = time::OffsetDateTime::now_utc();
//! let card = ca.issue_card(
//!     &CardSubject::new("RSSMRA80A01G337X", "MARIO", "ROSSI", CardStyle::Cie),
//!     now - time::Duration::days(1),
//!     now + time::Duration::days(365),
//! );
//! // card.cert_der / card.key_pkcs8_der go onto a `testkit::softhsm::Card`.
//! ```

use base64::Engine as _;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PrintableString,
    PKCS_ECDSA_P256_SHA256,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// OID arcs of the X.520 attributes rcgen has no name for.
const OID_SERIAL_NUMBER: [u64; 4] = [2, 5, 4, 5];
const OID_SURNAME: [u64; 4] = [2, 5, 4, 4];
const OID_GIVEN_NAME: [u64; 4] = [2, 5, 4, 42];

/// A certificate authority (root or intermediate) with its P-256 key, able to issue certificates.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
}

/// Which Italian identity card a [`CardSubject`] imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardStyle {
    /// Carta d'Identità Elettronica: subject `serialNumber=TINIT-<CF>, GN, SN, CN=<GIVEN> <FAMILY>, C=IT`.
    Cie,
    /// Carta Nazionale dei Servizi: subject `CN=<CF>/<card serial>.<hash>, GN, SN, C=IT`.
    Cns,
}

/// The holder of a test identity card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSubject {
    /// The Italian fiscal code (codice fiscale), e.g. `RSSMRA80A01G337X`.
    pub fiscal_code: String,
    /// Given name, e.g. `MARIO`.
    pub given_name: String,
    /// Family name, e.g. `ROSSI`.
    pub family_name: String,
    /// CIE or CNS subject layout.
    pub style: CardStyle,
}

impl CardSubject {
    /// A subject from its parts.
    pub fn new(fiscal_code: &str, given_name: &str, family_name: &str, style: CardStyle) -> Self {
        CardSubject {
            fiscal_code: fiscal_code.to_owned(),
            given_name: given_name.to_owned(),
            family_name: family_name.to_owned(),
            style,
        }
    }

    /// The CNS common name `<CF>/<card serial>.<hash>`, derived deterministically from the fiscal
    /// code: a 16-digit card serial and a base64 hash (28 characters, ending in `=`).
    pub fn cns_common_name(&self) -> String {
        let digest = Sha256::digest(self.fiscal_code.as_bytes());
        let serial: String = digest
            .iter()
            .take(16)
            .map(|b| char::from(b'0' + b % 10))
            .collect();
        let card_serial = format!("74{}", &serial[2..]);
        let hash = Sha256::digest(format!("{}/{}", self.fiscal_code, card_serial).as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(&hash[..20]);
        format!("{}/{}.{}", self.fiscal_code, card_serial, hash)
    }
}

/// A card certificate and its private key.
#[derive(Debug, Clone)]
pub struct CardCert {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 DER.
    pub key_pkcs8_der: Vec<u8>,
    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), what `softhsm2-util --import` reads.
    pub key_pkcs8_pem: String,
}

impl CardCert {
    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert_der)
    }
}

impl TestCa {
    /// A self-signed root CA (P-256, valid from yesterday for 20 years) with subject
    /// `CN=<common_name>, O=Sportello test PKI, C=IT`.
    pub fn new(common_name: &str) -> TestCa {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let params = ca_params(common_name, BasicConstraints::Unconstrained);
        let cert = params
            .self_signed(&key)
            .expect("self-signed CA certificate");
        TestCa { cert, key }
    }

    /// An intermediate CA signed by this one (path length 0: it issues end-entity certificates
    /// only), for chains of length 2.
    pub fn intermediate(&self, common_name: &str) -> TestCa {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let mut params = ca_params(common_name, BasicConstraints::Constrained(0));
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("intermediate CA certificate");
        TestCa { cert, key }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// The CA private key, PKCS#8 DER (e.g. to sign CRLs or OCSP answers in a test).
    pub fn key_pkcs8_der(&self) -> Vec<u8> {
        self.key.serialize_der()
    }

    /// Issues a card authentication certificate for `subject` (P-256 key, key usage
    /// digitalSignature, extended key usage clientAuth, `CA:FALSE`), valid from `not_before` to
    /// `not_after` (either may lie in the past or future, to test expired or not yet valid cards).
    pub fn issue_card(
        &self,
        subject: &CardSubject,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> CardCert {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        match subject.style {
            CardStyle::Cie => {
                dn.push(
                    DnType::CustomDnType(OID_SERIAL_NUMBER.to_vec()),
                    printable(&format!("TINIT-{}", subject.fiscal_code)),
                );
                dn.push(
                    DnType::CustomDnType(OID_GIVEN_NAME.to_vec()),
                    subject.given_name.as_str(),
                );
                dn.push(
                    DnType::CustomDnType(OID_SURNAME.to_vec()),
                    subject.family_name.as_str(),
                );
                dn.push(
                    DnType::CommonName,
                    format!("{} {}", subject.given_name, subject.family_name),
                );
            }
            CardStyle::Cns => {
                dn.push(DnType::CommonName, subject.cns_common_name());
                dn.push(
                    DnType::CustomDnType(OID_SURNAME.to_vec()),
                    subject.family_name.as_str(),
                );
                dn.push(
                    DnType::CustomDnType(OID_GIVEN_NAME.to_vec()),
                    subject.given_name.as_str(),
                );
            }
        }
        dn.push(DnType::CountryName, printable("IT"));
        params.distinguished_name = dn;
        params.not_before = not_before;
        params.not_after = not_after;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("card certificate");
        CardCert {
            cert_der: cert.der().to_vec(),
            key_pkcs8_der: key.serialize_der(),
            key_pkcs8_pem: key.serialize_pem(),
        }
    }
}

fn ca_params(common_name: &str, constraints: BasicConstraints) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Sportello test PKI");
    dn.push(DnType::CountryName, printable("IT"));
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(20 * 365);
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn printable(s: &str) -> DnValue {
    DnValue::PrintableString(
        PrintableString::try_from(s).unwrap_or_else(|_| panic!("not a PrintableString: {s:?}")),
    )
}

/// PEM armour with 64-column base64 lines.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};
    use x509_cert::der::{Decode, Encode};
    use x509_cert::Certificate as X509;

    /// The string value of the first subject attribute with `oid`.
    fn attr(cert: &X509, oid: &str) -> Option<String> {
        let oid = x509_cert::der::oid::ObjectIdentifier::new_unwrap(oid);
        for rdn in cert.tbs_certificate.subject.0.iter() {
            for atv in rdn.0.iter() {
                if atv.oid == oid {
                    if let Ok(s) = atv.value.decode_as::<PrintableStringRef<'_>>() {
                        return Some(s.as_str().to_owned());
                    }
                    if let Ok(s) = atv.value.decode_as::<Utf8StringRef<'_>>() {
                        return Some(s.as_str().to_owned());
                    }
                    panic!("attribute {oid} has an unexpected string type");
                }
            }
        }
        None
    }

    /// Checks that `issuer` signed `cert` (ECDSA P-256 with SHA-256).
    fn verify_signed_by(cert: &X509, issuer: &X509) {
        assert_eq!(cert.tbs_certificate.issuer, issuer.tbs_certificate.subject);
        let spki = &issuer.tbs_certificate.subject_public_key_info;
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
            .expect("issuer P-256 key");
        let sig = p256::ecdsa::Signature::from_der(cert.signature.raw_bytes()).expect("signature");
        let tbs = cert.tbs_certificate.to_der().expect("tbs");
        key.verify(&tbs, &sig).expect("valid signature");
    }

    fn window() -> (OffsetDateTime, OffsetDateTime) {
        let now = OffsetDateTime::now_utc();
        (now - Duration::days(1), now + Duration::days(30))
    }

    #[test]
    fn cie_certificate_parses_with_serial_number_attribute() {
        let root = TestCa::new("Test root");
        let (nb, na) = window();
        let card = root.issue_card(
            &CardSubject::new("RSSMRA80A01G337X", "MARIO", "ROSSI", CardStyle::Cie),
            nb,
            na,
        );
        let cert = X509::from_der(&card.cert_der).expect("parses");
        assert_eq!(
            attr(&cert, "2.5.4.5").as_deref(),
            Some("TINIT-RSSMRA80A01G337X")
        );
        assert_eq!(attr(&cert, "2.5.4.42").as_deref(), Some("MARIO"));
        assert_eq!(attr(&cert, "2.5.4.4").as_deref(), Some("ROSSI"));
        assert_eq!(attr(&cert, "2.5.4.3").as_deref(), Some("MARIO ROSSI"));
        assert_eq!(attr(&cert, "2.5.4.6").as_deref(), Some("IT"));
        let root_cert = X509::from_der(&root.cert_der()).unwrap();
        verify_signed_by(&cert, &root_cert);
        verify_signed_by(&root_cert, &root_cert);
        // Validity as asked.
        let v = &cert.tbs_certificate.validity;
        assert_eq!(
            v.not_before.to_unix_duration().as_secs() as i64,
            nb.unix_timestamp()
        );
        assert_eq!(
            v.not_after.to_unix_duration().as_secs() as i64,
            na.unix_timestamp()
        );
        // The key is PKCS#8 and matches the certificate.
        use p256::pkcs8::DecodePrivateKey;
        let sk = p256::SecretKey::from_pkcs8_der(&card.key_pkcs8_der).expect("PKCS#8 DER");
        let sk_pem = p256::SecretKey::from_pkcs8_pem(&card.key_pkcs8_pem).expect("PKCS#8 PEM");
        assert_eq!(sk.to_bytes(), sk_pem.to_bytes());
        assert_eq!(
            sk.public_key().to_sec1_bytes().as_ref(),
            cert.tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .raw_bytes()
        );
        assert!(card.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
    }

    #[test]
    fn card_extensions_client_auth_not_ca() {
        let root = TestCa::new("Test root");
        let (nb, na) = window();
        let card = root.issue_card(
            &CardSubject::new("RSSMRA80A01G337X", "MARIO", "ROSSI", CardStyle::Cie),
            nb,
            na,
        );
        let cert = X509::from_der(&card.cert_der).unwrap();
        let exts = cert.tbs_certificate.extensions.expect("extensions");
        let find = |oid: &str| {
            let oid = x509_cert::der::oid::ObjectIdentifier::new_unwrap(oid);
            exts.iter().find(|e| e.extn_id == oid).cloned()
        };
        let bc = find("2.5.29.19").expect("basicConstraints");
        let bc =
            x509_cert::ext::pkix::BasicConstraints::from_der(bc.extn_value.as_bytes()).unwrap();
        assert!(!bc.ca);
        let ku = find("2.5.29.15").expect("keyUsage");
        let ku = x509_cert::ext::pkix::KeyUsage::from_der(ku.extn_value.as_bytes()).unwrap();
        assert!(ku.digital_signature());
        assert!(!ku.key_cert_sign());
        let eku = find("2.5.29.37").expect("extKeyUsage");
        let eku =
            x509_cert::ext::pkix::ExtendedKeyUsage::from_der(eku.extn_value.as_bytes()).unwrap();
        assert_eq!(
            eku.0,
            vec![x509_cert::der::oid::ObjectIdentifier::new_unwrap(
                "1.3.6.1.5.5.7.3.2"
            )]
        );
    }

    #[test]
    fn cns_certificate_and_chain_of_two() {
        let root = TestCa::new("Test root");
        let ca = root.intermediate("Test CNS CA");
        let (nb, na) = window();
        let subject = CardSubject::new("RSSMRA80A01G337X", "MARIO", "ROSSI", CardStyle::Cns);
        let card = ca.issue_card(&subject, nb, na);
        let cert = X509::from_der(&card.cert_der).unwrap();
        let cn = attr(&cert, "2.5.4.3").unwrap();
        assert_eq!(cn, subject.cns_common_name());
        let (cf, rest) = cn.split_once('/').unwrap();
        assert_eq!(cf, "RSSMRA80A01G337X");
        let (serial, hash) = rest.split_once('.').unwrap();
        assert_eq!(serial.len(), 16);
        assert!(serial.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(hash.len(), 28);
        assert!(hash.ends_with('='));
        assert_eq!(attr(&cert, "2.5.4.5"), None);
        assert_eq!(attr(&cert, "2.5.4.4").as_deref(), Some("ROSSI"));

        let root_cert = X509::from_der(&root.cert_der()).unwrap();
        let ca_cert = X509::from_der(&ca.cert_der()).unwrap();
        verify_signed_by(&cert, &ca_cert);
        verify_signed_by(&ca_cert, &root_cert);
        assert_ne!(
            ca_cert.tbs_certificate.subject,
            root_cert.tbs_certificate.subject
        );
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn expired_card_is_possible() {
        let root = TestCa::new("Test root");
        let now = OffsetDateTime::now_utc();
        let card = root.issue_card(
            &CardSubject::new("VRDLGU70B02F205Z", "LUIGI", "VERDI", CardStyle::Cie),
            now - Duration::days(400),
            now - Duration::days(35),
        );
        let cert = X509::from_der(&card.cert_der).unwrap();
        let na = cert.tbs_certificate.validity.not_after.to_unix_duration();
        assert!((na.as_secs() as i64) < now.unix_timestamp());
    }
}
