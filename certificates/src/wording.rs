//! The fixed Italian wording printed on the certificates, in one place, with the source of each sentence.
//!
//! The certificate is Italian only. Kind-specific sentences (the body) are built in `kinds.rs` from the
//! registry; everything that does not depend on the person is here, so that a lawyer can review it in one
//! file. `docs/certificates.md` lists the same texts with their sources.

/// The mandatory sentence of L. 183/2011 art. 15 (DPR 445/2000 art. 40, comma 02).
pub const MANDATORY_WORDING: &str = "Il presente certificato non può essere prodotto agli organi della pubblica amministrazione o ai privati gestori di pubblici servizi.";

/// ANPR's destinazione d'uso 3, printed instead of [`MANDATORY_WORDING`] for a certificate issued for
/// court proceedings (ANPR, specifiche di interfaccia, "destinazione d'uso"; italia/anpr issue 834).
pub const ART40_JUDICIAL: &str =
    "AI SENSI DELL'ART. 40, D.P.R. 445/2000 IL PRESENTE CERTIFICATO È RILASCIATO PER CAUSE GIUDIZIARIE";

/// ANPR's destinazione d'uso 2, printed instead of [`MANDATORY_WORDING`] for a certificate issued for
/// immigration procedures (same source).
pub const ART40_IMMIGRATION: &str =
    "CERTIFICATO RILASCIATO PER PROCEDIMENTI DISCIPLINATI DALLE NORME SULL'IMMIGRAZIONE";

/// Legal basis under the title of a registry certificate of the current situation.
pub const BASIS_REGISTRY: &str = "(artt. 33 e 35 DPR 30 maggio 1989, n. 223)";
/// Legal basis under the title of a past-situation registry certificate.
pub const BASIS_PAST: &str = "(art. 33 e art. 35, comma 4, DPR 30 maggio 1989, n. 223)";
/// Legal basis under the title of the AIRE certificate.
pub const BASIS_AIRE: &str = "(L. 27 ottobre 1988, n. 470 - DPR 6 settembre 1989, n. 323)";
/// Legal basis under the title of the AIRE family certificate: the ufficiale d'anagrafe issues the
/// stato di famiglia from the AIRE's family sheets (L. 470/1988 art. 7, comma 1, lett. a); art. 1, comma 2).
pub const BASIS_AIRE_FAMILY: &str =
    "(art. 7, comma 1, lett. a), L. 27 ottobre 1988, n. 470 - DPR 6 settembre 1989, n. 323)";
/// Legal basis under the title of the residence in a convivenza anagrafica (art. 5 DPR 223/1989
/// defines the convivenza; artt. 33 e 35 the certificate).
pub const BASIS_CONVIVENZA: &str = "(artt. 5, 33 e 35 DPR 30 maggio 1989, n. 223)";
/// Legal basis under the title of the contract of cohabitation: L. 76/2016 art. 1, commi 50-52 (the
/// contract and its registration in the anagrafe "ai sensi degli articoli 5 e 7" DPR 223/1989).
pub const BASIS_CONTRACT: &str =
    "(L. 20 maggio 2016, n. 76, art. 1, commi 50-52 - artt. 5, 7 e 33 DPR 30 maggio 1989, n. 223)";
/// Legal basis under the title of the "anagrafico" birth and marriage certificates: the data of the
/// individual sheet (art. 20, comma 1, DPR 223/1989: birth data, marital status and the acts' details).
pub const BASIS_REGISTRY_RECORDS: &str = "(artt. 20, 33 e 35 DPR 30 maggio 1989, n. 223)";
/// Legal basis under the title of the civil union certificate.
pub const BASIS_CIVIL_UNION: &str =
    "(DPR 3 novembre 2000, n. 396 - L. 20 maggio 2016, n. 76, art. 1, comma 3)";
/// Legal basis under the title of a civil-status certificate.
pub const BASIS_CIVIL_STATUS: &str = "(DPR 3 novembre 2000, n. 396 - art. 450 c.c.)";

/// The sentence every past-situation certificate carries (art. 35, comma 4, DPR 223/1989: certificates of
/// past situations are issued on a reasoned request). The reason itself is recorded in the audit log.
pub const PAST_SITUATION: &str = "Certificato relativo a una situazione pregressa, rilasciato su motivata richiesta ai sensi dell'art. 35, comma 4, DPR 223/1989.";

/// The office's certifying formula before the subject.
pub const SEEN_THE_RECORDS: &str = "visti gli atti d'ufficio,";
/// The formula introducing the subject.
pub const CERTIFIES: &str = "CERTIFICA CHE";

/// The officer heading a registry certificate.
pub const OFFICER_REGISTRY: &str = "L'UFFICIALE D'ANAGRAFE";
/// The officer heading a civil-status certificate.
pub const OFFICER_CIVIL_STATUS: &str = "L'UFFICIALE DELLO STATO CIVILE";
/// Signature line of a registry certificate, before the responsible person's name.
pub const SIGNATORY_REGISTRY: &str = "L'ufficiale d'anagrafe delegato";
/// Signature line of a civil-status certificate, before the responsible person's name.
pub const SIGNATORY_CIVIL_STATUS: &str = "L'ufficiale dello stato civile delegato";

/// Printed under the responsible person's name (art. 3, comma 2, D.Lgs. 39/1993: on a document produced by
/// an automated system the autograph signature is replaced by the printed name of the person responsible).
pub const PRINTED_NAME: &str = "Firma autografa sostituita a mezzo stampa dall'indicazione del nominativo del responsabile, ai sensi dell'art. 3, comma 2, del D.Lgs. 39/1993.";

/// The stamp's explanation, first part: what the code is. It is a contrassegno elettronico (timbro
/// digitale) under art. 23-ter, comma 5, CAD and AgID Circolare 62/2013: the paper is a copy of the
/// digital original, which carries the comune's electronic seal (PAdES, `crate::seal`). Whether that
/// seal is *qualified* depends on the comune's certificate, so the text does not claim it.
pub const STAMP_NOTE_HEAD: &str = "Contrassegno elettronico ai sensi dell'art. 23-ter, comma 5, del CAD (D.Lgs. 82/2005) e della Circolare AgID n. 62/2013 (timbro digitale).";

/// The stamp's explanation for the comune `comune`, to verify at `verify_url`, for document `document_id`.
pub fn stamp_note(comune: &str, verify_url: &str, document_id: &str) -> String {
    format!(
        "{STAMP_NOTE_HEAD} Il codice contiene i dati essenziali del certificato con un sigillo crittografico del Comune di {comune}. L'originale informatico (PDF) reca il sigillo elettronico del Comune (PAdES); su carta ne è copia, verificabile con il contrassegno. Per verificarne l'autenticità, inquadrare il codice con la fotocamera o incollarne il testo nella pagina {verify_url} ; la verifica funziona anche senza connessione. Documento n. {document_id}."
    )
}

/// The banner and footer of a preview (`Issuer::preview`).
pub const PREVIEW_BANNER: &str = "ANTEPRIMA / PREVIEW - NON È UN CERTIFICATO, NON HA VALORE LEGALE";
/// Where a preview's stamp would be.
pub const PREVIEW_STAMP: &str = "ANTEPRIMA: il contrassegno elettronico, il numero del documento e il sigillo del Comune sono apposti solo all'emissione. / PREVIEW: the stamp, the document number and the seal are added only when the certificate is issued.";

/// The development key's warning beside the stamp.
pub const DEVELOPMENT_STAMP: &str = "Chiave di sviluppo: contrassegno NON VALIDO.";
/// The development key's banner under the header.
pub const DEVELOPMENT_BANNER: &str =
    "DOCUMENTO DI PROVA - CONTRASSEGNO CON CHIAVE DI SVILUPPO - NON VALIDO";

/// Lines in the empty box for the marca da bollo.
pub const BOLLO_BOX: [&str; 3] = ["Spazio per la", "marca da bollo", "€ 16,00"];
/// Beside the box: the bollo is due and the marca is applied on the paper.
pub const BOLLO_DUE: &str = "Il presente certificato è soggetto all'imposta di bollo (DPR 642/1972, Tariffa all. A, art. 4): € 16,00 per foglio, da applicare nello spazio a fianco.";
/// The bollo line of the canonical text when the marca is applied on the paper.
pub const BOLLO_DUE_SHORT: &str = "Imposta di bollo: € 16,00 per foglio";

/// The bollo paid before issuing with the marca `id` (14 digits) dated `date` (dd/mm/yyyy).
pub fn bollo_paid(id: &str, date: &str) -> String {
    format!(
        "Imposta di bollo assolta mediante contrassegno telematico n. {id} del {date} (DPR 642/1972, Tariffa all. A, art. 4)."
    )
}

/// Six months' validity, until `until` (dd/mm/yyyy).
pub fn validity_six_months(until: &str) -> String {
    format!(
        "Il presente certificato ha validità di sei mesi dalla data di rilascio, fino al {until} (art. 41 DPR 445/2000)."
    )
}

/// Unlimited validity (facts that cannot change).
pub const VALIDITY_UNLIMITED: &str = "Il presente certificato ha validità illimitata, attestando fatti non soggetti a modificazioni (art. 41, comma 1, DPR 445/2000).";
