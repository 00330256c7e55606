//! The population registry: its data model with history, the adapter trait and the `as_of` queries.
//!
//! A person's record keeps every fact with the date it took effect, so that any "alla data" certificate
//! can be answered from the same record: residence periods (each with its address, family sheet and
//! relationship to the head of the sheet), citizenship periods, marital events and death. A residence
//! period covers `from <= day < to`; the day someone moves, they are at the new address.
//!
//! **Architecture invariant:** the adapters only fetch records; every history query lives here, so the
//! demo registry and the HTTP adapter answer identically for the same data.

pub mod demo;
pub mod http;

use serde::{Deserialize, Serialize};
use time::Date;

use crate::dates::{iso_date, opt_iso_date};
use crate::error::CertError;
use crate::fiscal_code::FiscalCode;

/// A registry backend. Implementations must be cheap to share between threads.
pub trait Registry: Send + Sync {
    /// The comune that keeps this registry.
    fn comune(&self) -> Result<Comune, CertError>;
    /// Every person in the registry, one summary each, ordered by surname, names and birth date.
    fn list(&self) -> Result<Vec<PersonSummary>, CertError>;
    /// One person's full record with history.
    fn person(&self, fiscal_code: &FiscalCode) -> Result<Person, CertError>;
    /// Everyone who has ever been on the given family sheet, with full records.
    fn family_members(&self, family_id: &str) -> Result<Vec<Person>, CertError>;
}

/// The comune keeping the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comune {
    /// Name, e.g. "Parma".
    pub name: String,
    /// ISTAT code, six digits, e.g. "034027".
    pub istat_code: String,
    /// Province abbreviation, e.g. "PR".
    pub province: String,
    /// Cadastral (Belfiore) code, e.g. "G337".
    pub belfiore: String,
    /// The province's (or metropolitan city's) full name, e.g. "Parma" for Fidenza: printed in the
    /// header as "Provincia di …". Absent in older data: the header then prints the abbreviation only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub province_name: Option<String>,
}

impl Comune {
    /// The header line naming the province: "Provincia di Parma (PR)", or "(PR)" when the full name is
    /// not known (never the comune's own name in its place).
    pub fn province_line(&self) -> String {
        match &self.province_name {
            Some(name) if !name.trim().is_empty() => {
                format!("Provincia di {} ({})", name.trim(), self.province)
            }
            _ => format!("({})", self.province),
        }
    }
}

/// Sex as registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sex {
    /// Maschio.
    M,
    /// Femmina.
    F,
}

impl Sex {
    /// Picks the Italian masculine or feminine form of a word.
    pub fn pick<'a>(self, male: &'a str, female: &'a str) -> &'a str {
        match self {
            Sex::M => male,
            Sex::F => female,
        }
    }
}

/// A place of birth, death or origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    /// Comune (for Italy) or city.
    pub name: String,
    /// Province abbreviation for an Italian comune.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub province: Option<String>,
    /// Country, "Italia" for Italian places.
    pub country: String,
}

impl Place {
    /// "Parma (PR)" or "Bucarest (Romania)".
    pub fn display(&self) -> String {
        match &self.province {
            Some(p) if self.country == "Italia" => format!("{} ({})", self.name, p),
            _ => format!("{} ({})", self.name, self.country),
        }
    }
}

/// Where an act sits in the civil-status registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActRef {
    /// Year of the register.
    pub year: i32,
    /// Part of the register ("I", "II"…).
    pub part: String,
    /// Series, if any ("A", "B"…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    /// Act number.
    pub number: u32,
}

impl ActRef {
    /// "atto n. 123, parte I, serie A, anno 1980".
    pub fn display(&self) -> String {
        let series = self
            .series
            .as_ref()
            .map(|s| format!(", serie {s}"))
            .unwrap_or_default();
        format!(
            "atto n. {}, parte {}{}, anno {}",
            self.number, self.part, series, self.year
        )
    }
}

/// Birth data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Birth {
    /// Date of birth.
    #[serde(with = "iso_date")]
    pub date: Date,
    /// Place of birth.
    pub place: Place,
    /// The birth act in this comune's registers, when it is kept here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<ActRef>,
}

/// A period of holding a citizenship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Citizenship {
    /// The citizenship as the Italian feminine adjective, e.g. "italiana", "rumena".
    pub citizenship: String,
    /// When it was acquired; `None` means from birth.
    #[serde(
        default,
        with = "opt_iso_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub from: Option<Date>,
    /// When it was lost, if it was.
    #[serde(
        default,
        with = "opt_iso_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub to: Option<Date>,
}

/// Kinds of event that change marital status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaritalEventKind {
    /// Matrimonio.
    Marriage,
    /// Divorzio (cessazione degli effetti civili o scioglimento).
    Divorce,
    /// Death of the spouse.
    Widowhood,
    /// Unione civile (L. 76/2016).
    CivilUnion,
    /// Scioglimento dell'unione civile.
    CivilUnionDissolved,
}

/// An event that changed marital status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaritalEvent {
    /// When it took effect.
    #[serde(with = "iso_date")]
    pub date: Date,
    /// What happened.
    pub kind: MaritalEventKind,
    /// The spouse or partner, as "Surname Names".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spouse: Option<String>,
    /// Where a marriage or union was celebrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<Place>,
    /// The act in this comune's registers, when it is kept here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<ActRef>,
    /// A marriage celebrated with a religious rite and transcribed (concordatario or under an
    /// agreement with another confession): its divorce is a *cessazione degli effetti civili*; a civil
    /// marriage's is a *scioglimento* (L. 898/1970, artt. 1 e 2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub religious: bool,
}

/// A period of registered residence on one family sheet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidencePeriod {
    /// First day at this address on this sheet.
    #[serde(with = "iso_date")]
    pub from: Date,
    /// First day no longer here (exclusive); `None` means still here.
    #[serde(
        default,
        with = "opt_iso_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub to: Option<Date>,
    /// Address in the comune.
    pub address: String,
    /// Family sheet identifier.
    pub family_id: String,
    /// Relationship to the head of the sheet, as registered ("intestatario scheda", "coniuge", "figlio"…).
    pub relationship: String,
    /// How the period began: "nascita", "immigrazione da Fidenza (PR)", "cambio di abitazione"…
    pub origin: String,
    /// How it ended, when it did: "emigrazione a Milano (MI)", "decesso", "cambio di abitazione"…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// Set when the sheet is that of a *convivenza anagrafica* (art. 5 DPR 223/1989) rather than of a
    /// family: `family_id` is then the convivenza's sheet. Absent in older data (a family sheet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convivenza: Option<Convivenza>,
}

/// A *convivenza anagrafica* (art. 5 DPR 223/1989): people normally living together for religious
/// reasons, care, assistance, military service, detention and the like. Its sheet (art. 22) names it;
/// its responsible person (art. 6) is kept by the registry but printed on no certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Convivenza {
    /// The convivenza's name as registered, e.g. "Casa di riposo Villa Serena".
    pub name: String,
    /// Its kind (ANPR's "specie della convivenza").
    pub specie: ConvivenzaSpecie,
}

/// ANPR's "specie della convivenza" (its table of codes 1-6), the reasons of art. 5 DPR 223/1989.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvivenzaSpecie {
    /// Motivi religiosi (istituti religiosi, conventi).
    Religiosa,
    /// Di cura (ospedali, case di cura).
    Cura,
    /// Di assistenza (case di riposo, istituti assistenziali).
    Assistenza,
    /// Militare (caserme).
    Militare,
    /// Di pena (istituti penitenziari).
    Pena,
    /// Altri motivi.
    Altra,
}

impl ConvivenzaSpecie {
    /// The Italian wording printed on the certificate.
    pub fn italian(self) -> &'static str {
        match self {
            Self::Religiosa => "convivenza per motivi religiosi",
            Self::Cura => "convivenza per motivi di cura",
            Self::Assistenza => "convivenza per motivi di assistenza",
            Self::Militare => "convivenza per motivi militari",
            Self::Pena => "convivenza per motivi di pena",
            Self::Altra => "convivenza per altri motivi",
        }
    }
}

impl ResidencePeriod {
    /// Whether the period covers `day` (`from <= day < to`).
    pub fn covers(&self, day: Date) -> bool {
        self.from <= day && self.to.is_none_or(|to| day < to)
    }
}

/// Death data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Death {
    /// Date of death.
    #[serde(with = "iso_date")]
    pub date: Date,
    /// Place of death.
    pub place: Place,
    /// The death act in this comune's registers, when it is kept here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<ActRef>,
}

/// The citizen's identity card as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdCard {
    /// Card number, e.g. "CA12345AB".
    pub number: String,
    /// Issue date.
    #[serde(with = "iso_date")]
    pub issued: Date,
    /// Expiry date.
    #[serde(with = "iso_date")]
    pub expires: Date,
    /// Issuing authority, e.g. "Comune di Parma".
    pub issuer: String,
}

/// A period of registration in this comune's AIRE (Anagrafe degli italiani residenti all'estero,
/// L. 470/1988): an Italian citizen living abroad.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AireRegistration {
    /// First day of the registration.
    #[serde(with = "iso_date")]
    pub from: Date,
    /// First day no longer registered (exclusive); `None` means still registered.
    #[serde(
        default,
        with = "opt_iso_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub to: Option<Date>,
    /// The address abroad, e.g. "Calle de Alcalá 120, Madrid".
    pub address: String,
    /// The country, e.g. "Spagna".
    pub country: String,
    /// How the registration began: "emigrazione all'estero", "nascita all'estero"…
    pub origin: String,
    /// The AIRE family sheet (L. 470/1988 art. 1 c. 2: the AIRE holds individual and family sheets).
    /// Absent in older data: the person is then on no AIRE family sheet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_id: Option<String>,
    /// Relationship to the head of the AIRE family sheet, as registered ("intestatario scheda",
    /// "coniuge", "figlio"…), with `family_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationship: Option<String>,
}

/// A contract of cohabitation (*contratto di convivenza*, L. 76/2016 art. 1 cc. 50-64) between two
/// *conviventi di fatto*, registered in the anagrafe on the professional's notice (c. 52).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohabitationContract {
    /// The other party, as "Surname Names".
    pub partner: String,
    /// The other party's fiscal code, when known (ANPR issues the certificate only to the two parties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_fiscal_code: Option<FiscalCode>,
    /// The day the *convivenza di fatto* was registered as begun (c. 37).
    #[serde(with = "iso_date")]
    pub cohabitation_from: Date,
    /// The day the contract was signed (ANPR's "data di stipula").
    #[serde(with = "iso_date")]
    pub signed: Date,
    /// The notary or lawyer who drew it up or authenticated the signatures (c. 51), e.g.
    /// "notaio Carlo Verdi di Parma".
    pub professional: String,
    /// The day the comune registered it on the professional's notice (ANPR's "data di notifica", c. 52).
    #[serde(with = "iso_date")]
    pub registered: Date,
    /// The property regime, when the contract chose one (c. 53 lett. c): "comunione dei beni".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_regime: Option<String>,
    /// Its resolution, when registered (c. 59).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<ContractResolution>,
}

/// The resolution of a contract of cohabitation (L. 76/2016 art. 1 c. 59).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractResolution {
    /// When it took effect.
    #[serde(with = "iso_date")]
    pub date: Date,
    /// Why (ANPR's codes 31, 32, 34 and 98).
    pub cause: ResolutionCause,
}

/// Causes of resolution of a contract of cohabitation (L. 76/2016 art. 1 c. 59).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionCause {
    /// Accordo delle parti (lett. a).
    Agreement,
    /// Recesso unilaterale (lett. b).
    Withdrawal,
    /// Matrimonio o unione civile tra i conviventi o con altra persona (lett. c).
    MarriageOrUnion,
    /// Morte di uno dei contraenti (lett. d).
    Death,
}

impl ResolutionCause {
    /// The Italian wording printed in the annotation.
    pub fn italian(self) -> &'static str {
        match self {
            Self::Agreement => "accordo delle parti",
            Self::Withdrawal => "recesso unilaterale",
            Self::MarriageOrUnion => "matrimonio o unione civile",
            Self::Death => "morte di uno dei contraenti",
        }
    }
}

/// One person's full record with history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Fiscal code (validated).
    pub fiscal_code: FiscalCode,
    /// Surname(s) as registered, with accents and apostrophes.
    pub surname: String,
    /// Given name(s) as registered.
    pub given_names: String,
    /// Sex.
    pub sex: Sex,
    /// Birth.
    pub birth: Birth,
    /// Citizenship periods.
    pub citizenships: Vec<Citizenship>,
    /// Marital events in date order.
    #[serde(default)]
    pub marital: Vec<MaritalEvent>,
    /// Residence periods in date order.
    #[serde(default)]
    pub residences: Vec<ResidencePeriod>,
    /// Death, if the person has died.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub death: Option<Death>,
    /// Identity card, if one was issued here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_card: Option<IdCard>,
    /// Registered PEC address (digital domicile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pec: Option<String>,
    /// Registrations in this comune's AIRE, in date order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aire: Vec<AireRegistration>,
    /// Contracts of cohabitation registered in this comune's anagrafe, in date order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cohabitation_contracts: Vec<CohabitationContract>,
}

/// Marital status on a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaritalStatus {
    /// Celibe / nubile.
    Single,
    /// Coniugato/a.
    Married,
    /// Vedovo/a.
    Widowed,
    /// Già coniugato/a (divorced).
    Divorced,
    /// Unito/a civilmente.
    CivilUnion,
    /// Already in a dissolved civil union.
    CivilUnionDissolved,
}

impl MaritalStatus {
    /// The Italian wording for this status and sex.
    pub fn italian(self, sex: Sex) -> &'static str {
        match (self, sex) {
            (MaritalStatus::Single, Sex::M) => "celibe",
            (MaritalStatus::Single, Sex::F) => "nubile",
            (MaritalStatus::Married, Sex::M) => "coniugato",
            (MaritalStatus::Married, Sex::F) => "coniugata",
            (MaritalStatus::Widowed, Sex::M) => "vedovo",
            (MaritalStatus::Widowed, Sex::F) => "vedova",
            (MaritalStatus::Divorced, Sex::M) => "divorziato",
            (MaritalStatus::Divorced, Sex::F) => "divorziata",
            (MaritalStatus::CivilUnion, Sex::M) => "unito civilmente",
            (MaritalStatus::CivilUnion, Sex::F) => "unita civilmente",
            (MaritalStatus::CivilUnionDissolved, Sex::M) => "già unito civilmente",
            (MaritalStatus::CivilUnionDissolved, Sex::F) => "già unita civilmente",
        }
    }

    /// Whether the person is free of marriage and civil union (for stato libero).
    pub fn is_free(self) -> bool {
        !matches!(self, MaritalStatus::Married | MaritalStatus::CivilUnion)
    }
}

/// One line of `sportello registry list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonSummary {
    /// Fiscal code.
    pub fiscal_code: FiscalCode,
    /// Surname(s).
    pub surname: String,
    /// Given name(s).
    pub given_names: String,
    /// Date of birth.
    #[serde(with = "iso_date")]
    pub birth_date: Date,
    /// Whether the person has a current residence period.
    pub resident: bool,
    /// Whether the person has died.
    pub deceased: bool,
}

impl PersonSummary {
    /// The line printed by `sportello registry list`: fiscal code, surname, names, birth date, tab-separated.
    pub fn line(&self) -> String {
        let mut flags = String::new();
        if self.deceased {
            flags.push_str("\tdeceduto");
        } else if !self.resident {
            flags.push_str("\tnon residente");
        }
        format!(
            "{}\t{}\t{}\t{}{}",
            self.fiscal_code,
            self.surname,
            self.given_names,
            crate::dates::iso(self.birth_date),
            flags
        )
    }
}

/// A whole registry as data: what the demo file holds and what the HTTP adapter's wire types are built on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryData {
    /// The comune.
    pub comune: Comune,
    /// Everyone, ordered by fiscal code.
    pub people: Vec<Person>,
}

impl Person {
    /// "ROSSI MARIO" style full name: surname then names.
    pub fn full_name(&self) -> String {
        format!("{} {}", self.surname, self.given_names)
    }

    /// The summary line for listings.
    pub fn summary(&self) -> PersonSummary {
        PersonSummary {
            fiscal_code: self.fiscal_code.clone(),
            surname: self.surname.clone(),
            given_names: self.given_names.clone(),
            birth_date: self.birth.date,
            resident: self.residences.iter().any(|r| r.to.is_none()),
            deceased: self.death.is_some(),
        }
    }

    /// Whether the person was born and not yet dead on `day`.
    pub fn alive_on(&self, day: Date) -> bool {
        self.birth.date <= day && self.death.as_ref().is_none_or(|d| day < d.date)
    }

    /// The AIRE registration covering `day`, if the person was registered abroad then.
    pub fn aire_on(&self, day: Date) -> Option<&AireRegistration> {
        self.aire
            .iter()
            .find(|a| a.from <= day && a.to.is_none_or(|to| day < to))
    }

    /// The residence period covering `day`, if the person was resident then.
    pub fn residence_on(&self, day: Date) -> Option<&ResidencePeriod> {
        self.residences.iter().find(|r| r.covers(day))
    }

    /// The latest residence period that started on or before `day` (current or ended).
    pub fn last_residence_before(&self, day: Date) -> Option<&ResidencePeriod> {
        self.residences.iter().rfind(|r| r.from <= day)
    }

    /// The first period of an uninterrupted stay that includes `period`: where a move within the comune
    /// continues a residence, the registration date is that of the first period.
    pub fn registration_of<'a>(&'a self, period: &'a ResidencePeriod) -> &'a ResidencePeriod {
        let mut first = period;
        while let Some(prev) = self.residences.iter().find(|r| r.to == Some(first.from)) {
            first = prev;
        }
        first
    }

    /// Citizenships held on `day`, the Italian one first (for an Italian citizen it prevails: art. 19,
    /// comma 2, L. 218/1995), the others in registry order.
    pub fn citizenships_on(&self, day: Date) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .citizenships
            .iter()
            .filter(|c| c.from.is_none_or(|f| f <= day) && c.to.is_none_or(|t| day < t))
            .map(|c| c.citizenship.as_str())
            .collect();
        out.sort_by_key(|c| *c != "italiana");
        out
    }

    /// Whether the person was an Italian citizen on `day`.
    pub fn italian_on(&self, day: Date) -> bool {
        self.citizenships_on(day).contains(&"italiana")
    }

    /// Marital status on `day`, from the last event on or before it.
    pub fn marital_status_on(&self, day: Date) -> MaritalStatus {
        match self.marital.iter().rfind(|e| e.date <= day) {
            None => MaritalStatus::Single,
            Some(e) => match e.kind {
                MaritalEventKind::Marriage => MaritalStatus::Married,
                MaritalEventKind::Divorce => MaritalStatus::Divorced,
                MaritalEventKind::Widowhood => MaritalStatus::Widowed,
                MaritalEventKind::CivilUnion => MaritalStatus::CivilUnion,
                MaritalEventKind::CivilUnionDissolved => MaritalStatus::CivilUnionDissolved,
            },
        }
    }
}

/// A member of a family sheet on a given day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyMember {
    /// The person.
    pub person: Person,
    /// Their relationship to the head of the sheet on that day.
    pub relationship: String,
}

/// The composition of the AIRE family sheet `family_id` on `day` (L. 470/1988 art. 1 c. 2), ordered as
/// [`family_on`]: everyone whose AIRE registration covering `day` is on that sheet.
pub fn aire_family_on(members: &[Person], family_id: &str, day: Date) -> Vec<FamilyMember> {
    let mut out: Vec<FamilyMember> = members
        .iter()
        .filter(|p| p.alive_on(day))
        .filter_map(|p| {
            p.aire_on(day)
                .filter(|a| a.family_id.as_deref() == Some(family_id))
                .map(|a| FamilyMember {
                    person: p.clone(),
                    relationship: a.relationship.clone().unwrap_or_default(),
                })
        })
        .collect();
    sort_sheet(&mut out);
    out
}

fn sort_sheet(out: &mut [FamilyMember]) {
    out.sort_by_key(|m| {
        (
            m.relationship != "intestatario scheda",
            m.person.birth.date,
            m.person.fiscal_code.clone(),
        )
    });
}

/// The composition of family sheet `family_id` on `day`: head first, then by birth date.
///
/// `members` is everyone who has ever been on the sheet ([`Registry::family_members`]). With
/// `include_ending_on_day`, people whose period ends exactly on `day` are included too; the death
/// certificate kind uses it so the deceased appears on the sheet of the day they died.
pub fn family_on(
    members: &[Person],
    family_id: &str,
    day: Date,
    include_ending_on_day: bool,
) -> Vec<FamilyMember> {
    let mut out: Vec<FamilyMember> = members
        .iter()
        .filter_map(|p| {
            p.residences
                .iter()
                .find(|r| {
                    r.family_id == family_id
                        && (r.covers(day)
                            || (include_ending_on_day && r.from <= day && r.to == Some(day)))
                })
                .map(|r| FamilyMember {
                    person: p.clone(),
                    relationship: r.relationship.clone(),
                })
        })
        .collect();
    sort_sheet(&mut out);
    out
}
