//! The certificate kinds and how each one's content is read from the registry's history.
//!
//! [`build_content`] turns a person's record into a [`CertificateContent`]: the body the PDF prints, the
//! fields the stamp carries and the canonical text whose SHA-256 the stamp signs. Registry certificates
//! follow DPR 223/1989 art. 33 and 35; civil-status certificates (nascita, matrimonio, morte) read the acts
//! kept in this comune's registers.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::Date;

use crate::dates::{iso, italian};
use crate::error::CertError;
use crate::registry::{
    family_on, FamilyMember, MaritalEventKind, Person, Registry, ResidencePeriod,
};
use crate::wording;

mod anpr;
mod catalogue;

pub use catalogue::CertificateKind;

/// The facts a contestuale certificate can combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContestualePart {
    /// Birth data.
    Nascita,
    /// Current residence.
    Residenza,
    /// Citizenship.
    Cittadinanza,
    /// Marital status (stato libero or current status).
    StatoCivile,
    /// Being alive.
    EsistenzaInVita,
}

impl ContestualePart {
    /// Every part, in printing order.
    pub const ALL: [ContestualePart; 5] = [
        Self::Nascita,
        Self::Residenza,
        Self::Cittadinanza,
        Self::StatoCivile,
        Self::EsistenzaInVita,
    ];

    /// The code used in requests.
    pub fn code(self) -> &'static str {
        match self {
            Self::Nascita => "nascita",
            Self::Residenza => "residenza",
            Self::Cittadinanza => "cittadinanza",
            Self::StatoCivile => "stato_civile",
            Self::EsistenzaInVita => "esistenza_in_vita",
        }
    }
}

impl FromStr for ContestualePart {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|k| k.code() == wanted)
            .ok_or_else(|| {
                CertError::MissingInput(format!("parte del contestuale sconosciuta: {s}"))
            })
    }
}

/// The person the certificate is about, as printed and signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Fiscal code.
    pub fiscal_code: String,
    /// Surname(s).
    pub surname: String,
    /// Given name(s).
    pub given_names: String,
    /// "M" or "F".
    pub sex: String,
    /// `YYYY-MM-DD`.
    pub birth_date: String,
    /// "Parma (PR)".
    pub birth_place: String,
}

/// A family member as printed and signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberLine {
    /// Surname(s).
    pub surname: String,
    /// Given name(s).
    pub given_names: String,
    /// `YYYY-MM-DD`.
    pub birth_date: String,
    /// Relationship to the head of the sheet; empty on the certificates that must not print it (every
    /// family kind except `stato_famiglia_parentela`).
    pub relationship: String,
    /// Place of birth (printed, covered by the text digest, not carried in the stamp to keep it small).
    #[serde(skip)]
    pub birth_place: String,
}

/// A block of the certificate's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// A paragraph of running text.
    Text(String),
    /// A table of family members without their relationships (Circolari Min. Interno 11/1996 e
    /// 3/1997: the plain stato di famiglia does not certify kinship).
    Family(Vec<MemberLine>),
    /// A table of family members with their relationship to the intestatario della scheda.
    FamilyKinship(Vec<MemberLine>),
}

/// What a certificate says: built from the registry, printed in the PDF, summarised in the stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateContent {
    /// The kind.
    pub kind: CertificateKind,
    /// The person.
    pub subject: Subject,
    /// The as-of date for history kinds (also the date of death for `stato_famiglia_decesso`).
    pub as_of: Option<Date>,
    /// The body, after the common subject block.
    pub body: Vec<Block>,
    /// Kind-specific fields for the stamp: short key and text value.
    pub fields: Vec<(String, String)>,
    /// Family members for the stamp, for the family kinds.
    pub members: Vec<MemberLine>,
}

/// What the requester chose beyond kind and person.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentOptions {
    /// The as-of date for "alla data" kinds.
    pub as_of: Option<Date>,
    /// The parts of a contestuale certificate; empty means every part that applies.
    pub parts: Vec<ContestualePart>,
}

fn born(p: &Person) -> String {
    format!(
        "{} a {} il {}",
        p.sex.pick("nato", "nata"),
        p.birth.place.display(),
        italian(p.birth.date)
    )
}

fn member_line(m: &FamilyMember, kinship: bool) -> MemberLine {
    MemberLine {
        surname: m.person.surname.clone(),
        given_names: m.person.given_names.clone(),
        birth_date: iso(m.person.birth.date),
        relationship: if kinship {
            m.relationship.clone()
        } else {
            String::new()
        },
        birth_place: m.person.birth.place.display(),
    }
}

fn not_issuable(p: &Person, why: &str) -> CertError {
    CertError::NotIssuable(format!("{} {}", p.full_name(), why))
}

/// The members of a *convivenza anagrafica* are no family (art. 5 DPR 223/1989): the family kinds are
/// refused, and the residence in convivenza is the certificate to ask for (ANPR).
fn refuse_convivenza(p: &Person, r: &ResidencePeriod) -> Result<(), CertError> {
    match &r.convivenza {
        Some(c) => Err(not_issuable(
            p,
            &format!(
                "risiede nella convivenza anagrafica «{}»: lo stato di famiglia non si rilascia, si rilascia il certificato di residenza in convivenza",
                c.name
            ),
        )),
        None => Ok(()),
    }
}

/// Builds the content of a certificate of `kind` about `person` on `today`.
pub fn build_content(
    kind: CertificateKind,
    person: &Person,
    registry: &dyn Registry,
    options: &ContentOptions,
    today: Date,
) -> Result<CertificateContent, CertError> {
    use CertificateKind as K;
    let sex = person.sex;
    let a = sex.pick("o", "a");
    let mut body = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut members = Vec::new();
    let mut as_of = None;

    let resident_today = || {
        if !person.alive_on(today) {
            return Err(not_issuable(person, "risulta deceduto/a"));
        }
        person
            .residence_on(today)
            .ok_or_else(|| not_issuable(person, "non risulta residente in questo Comune"))
    };
    let needs_as_of = || {
        let d = options.as_of.ok_or_else(|| {
            CertError::MissingInput(format!("il tipo {kind} richiede la data (as_of)"))
        })?;
        if d > today {
            return Err(CertError::MissingInput(
                "la data richiesta è nel futuro".into(),
            ));
        }
        Ok(d)
    };

    match kind {
        K::Residenza => {
            let r = resident_today()?;
            body.push(Block::Text(format!(
                "risulta iscritt{a} nell'Anagrafe della popolazione residente di questo Comune con residenza in {}.",
                r.address
            )));
            fields.push(("ind".into(), r.address.clone()));
        }
        K::ResidenzaAllaData => {
            let d = needs_as_of()?;
            as_of = Some(d);
            let r = person
                .residence_on(d)
                .filter(|_| person.alive_on(d))
                .ok_or_else(|| {
                    not_issuable(
                        person,
                        &format!("non risultava residente alla data del {}", italian(d)),
                    )
                })?;
            body.push(Block::Text(format!(
                "alla data del {} risultava iscritt{a} nell'Anagrafe della popolazione residente di questo Comune con residenza in {}.",
                italian(d),
                r.address
            )));
            fields.push(("ind".into(), r.address.clone()));
        }
        K::StatoFamiglia
        | K::StatoFamigliaAllaData
        | K::CumulativoFamiglia
        | K::StatoFamigliaParentela => {
            let (d, r) = if kind == K::StatoFamigliaAllaData {
                let d = needs_as_of()?;
                as_of = Some(d);
                let r = person
                    .residence_on(d)
                    .filter(|_| person.alive_on(d))
                    .ok_or_else(|| {
                        not_issuable(
                            person,
                            &format!("non risultava residente alla data del {}", italian(d)),
                        )
                    })?;
                (d, r)
            } else {
                (today, resident_today()?)
            };
            refuse_convivenza(person, r)?;
            let family = family_on(
                &registry.family_members(&r.family_id)?,
                &r.family_id,
                d,
                false,
            );
            let kinship = kind == K::StatoFamigliaParentela;
            if kinship {
                if !family
                    .iter()
                    .any(|m| m.relationship == "intestatario scheda")
                {
                    return Err(not_issuable(
                        person,
                        "appartiene a una famiglia anagrafica senza intestatario: i rapporti di parentela non sono certificabili",
                    ));
                }
                if family.len() < 2 {
                    return Err(not_issuable(
                        person,
                        "è l'unico componente della famiglia anagrafica: non vi sono rapporti di parentela da certificare",
                    ));
                }
            }
            members = family.iter().map(|m| member_line(m, kinship)).collect();
            let intro = if kind == K::StatoFamigliaAllaData {
                format!(
                    "alla data del {} risultava iscritt{a} nell'Anagrafe della popolazione residente di questo Comune in {} e che la famiglia anagrafica era così composta:",
                    italian(d),
                    r.address
                )
            } else {
                format!(
                    "risulta iscritt{a} nell'Anagrafe della popolazione residente di questo Comune con residenza in {} e che la famiglia anagrafica è così composta:",
                    r.address
                )
            };
            body.push(Block::Text(intro));
            body.push(if kinship {
                Block::FamilyKinship(members.clone())
            } else {
                Block::Family(members.clone())
            });
            fields.push(("ind".into(), r.address.clone()));
            if kind == K::CumulativoFamiglia {
                let cits = person.citizenships_on(today).join(", ");
                body.push(Block::Text(format!("È di cittadinanza {cits}.")));
                fields.push(("cit".into(), cits));
                let status = person.marital_status_on(today).italian(sex);
                body.push(Block::Text(format!("Stato civile: {status}.")));
                fields.push(("sc".into(), status.into()));
            }
        }
        K::StatoFamigliaDecesso => {
            let death = person
                .death
                .as_ref()
                .ok_or_else(|| not_issuable(person, "non risulta deceduto/a"))?;
            let d = death.date;
            as_of = Some(d);
            let r = person
                .residences
                .iter()
                .find(|r| r.from <= d && r.to == Some(d))
                .ok_or_else(|| {
                    not_issuable(person, "non risultava residente alla data del decesso")
                })?;
            refuse_convivenza(person, r)?;
            let family = family_on(
                &registry.family_members(&r.family_id)?,
                &r.family_id,
                d,
                true,
            );
            members = family.iter().map(|m| member_line(m, false)).collect();
            body.push(Block::Text(format!(
                "{} il {} e che alla data del decesso risultava iscritt{a} nell'Anagrafe della popolazione residente di questo Comune in {}, nella famiglia anagrafica così composta:",
                sex.pick("è deceduto", "è deceduta"),
                italian(d),
                r.address
            )));
            body.push(Block::Family(members.clone()));
            fields.push(("dd".into(), iso(d)));
            fields.push(("ind".into(), r.address.clone()));
        }
        K::Cittadinanza => {
            // Only the Italian citizenship is certified: for an Italian citizen who holds others it
            // prevails (art. 19, comma 2, L. 218/1995), and ANPR's certificate prints it alone.
            resident_today()?;
            if !person.italian_on(today) {
                return Err(not_issuable(person, "non risulta cittadino/a italiano/a"));
            }
            body.push(Block::Text(format!(
                "è cittadin{a} italian{a}, come risulta dagli atti dell'Anagrafe di questo Comune."
            )));
            fields.push(("cit".into(), "italiana".into()));
        }
        K::StatoLibero => {
            resident_today()?;
            let status = person.marital_status_on(today);
            if !status.is_free() {
                return Err(not_issuable(
                    person,
                    &format!("risulta {}", status.italian(sex)),
                ));
            }
            body.push(Block::Text(format!(
                "è di stato civile {} e non risulta unit{a} civilmente, come risulta dagli atti dell'Anagrafe di questo Comune.",
                status.italian(sex)
            )));
            fields.push(("sc".into(), status.italian(sex).into()));
        }
        K::EsistenzaInVita => {
            resident_today()?;
            body.push(Block::Text(
                "è in vita, come risulta dagli atti dell'Anagrafe di questo Comune alla data odierna.".into(),
            ));
            fields.push(("viv".into(), "si".into()));
        }
        K::Contestuale => {
            let r = resident_today()?;
            let parts: Vec<ContestualePart> = if options.parts.is_empty() {
                ContestualePart::ALL.to_vec()
            } else {
                let mut p = options.parts.clone();
                p.dedup();
                p
            };
            let mut codes = Vec::new();
            for part in parts {
                codes.push(part.code());
                match part {
                    // The birth data are already in the subject lines above: not printed twice.
                    ContestualePart::Nascita => {}
                    ContestualePart::Residenza => {
                        body.push(Block::Text(format!(
                            "- è residente in questo Comune in {}.",
                            r.address
                        )));
                        fields.push(("ind".into(), r.address.clone()));
                    }
                    ContestualePart::Cittadinanza => {
                        let cits = person.citizenships_on(today).join(", ");
                        body.push(Block::Text(format!("- è di cittadinanza {cits}.")));
                        fields.push(("cit".into(), cits));
                    }
                    ContestualePart::StatoCivile => {
                        let status = person.marital_status_on(today).italian(sex);
                        body.push(Block::Text(format!("- è di stato civile {status}.")));
                        fields.push(("sc".into(), status.into()));
                    }
                    ContestualePart::EsistenzaInVita => {
                        body.push(Block::Text("- è in vita.".into()));
                        fields.push(("viv".into(), "si".into()));
                    }
                }
            }
            fields.insert(0, ("parti".into(), codes.join(",")));
        }
        K::ResidenzaProvenienza => {
            let r = resident_today()?;
            let first = person.registration_of(r);
            let origin = first.origin.as_str();
            let provenance = origin
                .strip_prefix("immigrazione dall'estero (")
                .and_then(|s| s.strip_suffix(')'))
                .map(str::to_owned)
                .or_else(|| origin.strip_prefix("immigrazione da ").map(str::to_owned));
            let text = match &provenance {
                Some(from) => format!(
                    "è residente in questo Comune in {}, iscritt{a} nell'Anagrafe della popolazione residente dal {} per immigrazione, con provenienza da {}.",
                    r.address,
                    italian(first.from),
                    from
                ),
                None => format!(
                    "è residente in questo Comune in {}, iscritt{a} nell'Anagrafe della popolazione residente dal {} ({}).",
                    r.address,
                    italian(first.from),
                    origin
                ),
            };
            body.push(Block::Text(text));
            fields.push(("ind".into(), r.address.clone()));
            fields.push(("dal".into(), iso(first.from)));
            fields.push((
                "prov".into(),
                provenance.unwrap_or_else(|| origin.to_owned()),
            ));
        }
        K::EstremiCartaIdentita => {
            resident_today()?;
            let card = person.id_card.as_ref().ok_or_else(|| {
                not_issuable(
                    person,
                    "non risulta titolare di carta d'identità rilasciata da questo Comune",
                )
            })?;
            let expired = if card.expires < today {
                " (scaduta)"
            } else {
                ""
            };
            body.push(Block::Text(format!(
                "è titolare della carta d'identità n. {} rilasciata il {} da {}, con scadenza il {}{}.",
                card.number,
                italian(card.issued),
                card.issuer,
                italian(card.expires),
                expired
            )));
            fields.push(("ci".into(), card.number.clone()));
            fields.push(("ril".into(), iso(card.issued)));
            fields.push(("scad".into(), iso(card.expires)));
            fields.push(("da".into(), card.issuer.clone()));
        }
        K::ResidenzaAire => {
            if !person.alive_on(today) {
                return Err(not_issuable(person, "risulta deceduto/a"));
            }
            let reg = person.aire_on(today).ok_or_else(|| {
                not_issuable(person, "non risulta iscritto/a nell'AIRE di questo Comune")
            })?;
            if !person.italian_on(today) {
                return Err(not_issuable(person, "non risulta cittadino/a italiano/a"));
            }
            body.push(Block::Text(format!(
                "risulta iscritt{a} nell'Anagrafe degli italiani residenti all'estero (AIRE) di questo Comune dal {}, con residenza in {} ({}).",
                italian(reg.from),
                reg.address,
                reg.country
            )));
            fields.push(("ind".into(), reg.address.clone()));
            fields.push(("stato".into(), reg.country.clone()));
            fields.push(("dal".into(), iso(reg.from)));
        }
        K::StatoCivile => {
            resident_today()?;
            let status = person.marital_status_on(today).italian(sex);
            body.push(Block::Text(format!(
                "è di stato civile {status}, come risulta dagli atti dell'Anagrafe di questo Comune."
            )));
            fields.push(("sc".into(), status.into()));
        }
        K::UnioneCivile => {
            let (i, union) = person
                .marital
                .iter()
                .enumerate()
                .rfind(|(_, e)| e.kind == MaritalEventKind::CivilUnion && e.act.is_some())
                .ok_or_else(|| {
                    not_issuable(
                        person,
                        "non ha atti di unione civile nei registri di questo Comune",
                    )
                })?;
            let act = union.act.as_ref().map(|a| a.display()).unwrap_or_default();
            let place = union
                .place
                .as_ref()
                .map(|p| p.display())
                .unwrap_or_default();
            let partner = union.spouse.clone().unwrap_or_default();
            body.push(Block::Text(format!(
                "ha costituito unione civile con {} in {} il {}, come risulta dal registro delle unioni civili ({}).",
                partner,
                place,
                italian(union.date),
                act
            )));
            if let Some(after) = person.marital[i + 1..].iter().find(|e| {
                matches!(
                    e.kind,
                    MaritalEventKind::CivilUnionDissolved | MaritalEventKind::Widowhood
                )
            }) {
                let note = match after.kind {
                    MaritalEventKind::CivilUnionDissolved => "scioglimento dell'unione civile",
                    _ => "decesso dell'altra parte dell'unione civile",
                };
                body.push(Block::Text(format!(
                    "Annotazioni: {} in data {}.",
                    note,
                    italian(after.date)
                )));
                fields.push(("ann".into(), format!("{note} {}", iso(after.date))));
            }
            fields.push(("con".into(), partner));
            fields.push(("du".into(), iso(union.date)));
            fields.push(("atto".into(), act));
        }
        K::StatoFamigliaAire
        | K::ResidenzaConvivenza
        | K::ContrattoConvivenza
        | K::AnagraficoNascita
        | K::AnagraficoMatrimonio => {
            let parts = anpr::build(kind, person, registry, today)?;
            body = parts.body;
            fields = parts.fields;
            members = parts.members;
        }
        K::Nascita => {
            let act = person.birth.act.as_ref().ok_or_else(|| {
                not_issuable(
                    person,
                    "non ha l'atto di nascita nei registri di questo Comune",
                )
            })?;
            body.push(Block::Text(format!(
                "è {}, come risulta dal registro degli atti di nascita ({}).",
                born(person),
                act.display()
            )));
            fields.push(("atto".into(), act.display()));
        }
        K::Matrimonio => {
            let (i, marriage) = person
                .marital
                .iter()
                .enumerate()
                .rfind(|(_, e)| e.kind == MaritalEventKind::Marriage && e.act.is_some())
                .ok_or_else(|| {
                    not_issuable(
                        person,
                        "non ha atti di matrimonio nei registri di questo Comune",
                    )
                })?;
            let act = marriage
                .act
                .as_ref()
                .map(|a| a.display())
                .unwrap_or_default();
            let place = marriage
                .place
                .as_ref()
                .map(|p| p.display())
                .unwrap_or_default();
            let spouse = marriage.spouse.clone().unwrap_or_default();
            body.push(Block::Text(format!(
                "ha contratto matrimonio con {} in {} il {}, come risulta dal registro degli atti di matrimonio ({}).",
                spouse,
                place,
                italian(marriage.date),
                act
            )));
            // L. 898/1970: a religious marriage's civil effects cease (art. 2), a civil one is
            // dissolved (art. 1).
            if let Some((note, date)) = anpr::marriage_end_note(&person.marital, i) {
                body.push(Block::Text(format!(
                    "Annotazioni: {} in data {}.",
                    note,
                    italian(date)
                )));
                fields.push(("ann".into(), format!("{note} {}", iso(date))));
            }
            fields.push(("con".into(), spouse));
            fields.push(("dm".into(), iso(marriage.date)));
            fields.push(("atto".into(), act));
        }
        K::Morte => {
            let death = person
                .death
                .as_ref()
                .ok_or_else(|| not_issuable(person, "non risulta deceduto/a"))?;
            let act = death.act.as_ref().ok_or_else(|| {
                not_issuable(
                    person,
                    "non ha l'atto di morte nei registri di questo Comune",
                )
            })?;
            body.push(Block::Text(format!(
                "{} in {} il {}, come risulta dal registro degli atti di morte ({}).",
                sex.pick("è deceduto", "è deceduta"),
                death.place.display(),
                italian(death.date),
                act.display()
            )));
            fields.push(("dd".into(), iso(death.date)));
            fields.push(("atto".into(), act.display()));
            if let Some(r) = person
                .residences
                .iter()
                .rfind(|r| r.from <= death.date && r.to == Some(death.date))
            {
                body.push(Block::Text(format!(
                    "Alla data del decesso risultava residente in questo Comune in {}.",
                    r.address
                )));
                fields.push(("ind".into(), r.address.clone()));
            }
            let status = person.marital_status_on(death.date).italian(sex);
            body.push(Block::Text(format!(
                "Stato civile alla data del decesso: {status}."
            )));
            fields.push(("sc".into(), status.into()));
        }
    }
    if kind.is_past_situation() {
        body.push(Block::Text(wording::PAST_SITUATION.into()));
    }

    Ok(CertificateContent {
        kind,
        subject: Subject {
            fiscal_code: person.fiscal_code.to_string(),
            surname: person.surname.clone(),
            given_names: person.given_names.clone(),
            sex: match sex {
                crate::registry::Sex::M => "M".into(),
                crate::registry::Sex::F => "F".into(),
            },
            birth_date: iso(person.birth.date),
            birth_place: person.birth.place.display(),
        },
        as_of,
        body,
        fields,
        members,
    })
}

impl CertificateContent {
    /// The subject lines printed before the body.
    pub fn subject_lines(&self) -> Vec<String> {
        let female = self.subject.sex == "F";
        let birth = crate::dates::parse_date(&self.subject.birth_date)
            .map(italian)
            .unwrap_or_else(|_| self.subject.birth_date.clone());
        vec![
            format!(
                "{} {}",
                self.subject.surname.to_uppercase(),
                self.subject.given_names.to_uppercase()
            ),
            format!(
                "{} a {} il {}",
                if female { "nata" } else { "nato" },
                self.subject.birth_place,
                birth
            ),
            format!(
                "sesso {} - codice fiscale {}",
                self.subject.sex, self.subject.fiscal_code
            ),
        ]
    }

    /// A family table row as text (used in the canonical text).
    pub fn member_text(m: &MemberLine) -> String {
        let birth = crate::dates::parse_date(&m.birth_date)
            .map(italian)
            .unwrap_or_else(|_| m.birth_date.clone());
        if m.relationship.is_empty() {
            format!(
                "{} {} | {} | {}",
                m.surname.to_uppercase(),
                m.given_names,
                birth,
                m.birth_place
            )
        } else {
            format!(
                "{} {} | {} | {} | {}",
                m.surname.to_uppercase(),
                m.given_names,
                m.relationship,
                birth,
                m.birth_place
            )
        }
    }

    /// The body as plain text lines, the basis of the canonical text.
    pub fn body_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for b in &self.body {
            match b {
                Block::Text(t) => out.push(t.clone()),
                Block::Family(ms) | Block::FamilyKinship(ms) => {
                    out.extend(ms.iter().map(Self::member_text))
                }
            }
        }
        out
    }
}
