//! The content of the rest of ANPR's catalogue: stato di famiglia AIRE, residenza in convivenza,
//! contratto di convivenza, and the "anagrafico" birth and marriage certificates.
//!
//! Each kind refuses, with [`CertError::NotIssuable`], the cases ANPR's own checks refuse
//! (italia/anpr, `src/controllo-certificati/CERTIFICATO_*.rst`): a deceased person, a person no longer
//! registered in this comune (neither resident nor in the AIRE), and the kind-specific ones below.

use time::Date;

use super::{member_line, not_issuable, Block, CertificateKind, MemberLine};
use crate::dates::{iso, italian};
use crate::error::CertError;
use crate::registry::{
    aire_family_on, AireRegistration, MaritalEvent, MaritalEventKind, MaritalStatus, Person,
    Registry, ResidencePeriod,
};

/// What a kind adds after the subject lines: the body, the stamp's fields and the family members.
#[derive(Default)]
pub(super) struct Parts {
    pub body: Vec<Block>,
    pub fields: Vec<(String, String)>,
    pub members: Vec<MemberLine>,
}

impl Parts {
    fn text(&mut self, t: String) {
        self.body.push(Block::Text(t));
    }
    fn field(&mut self, k: &str, v: String) {
        self.fields.push((k.into(), v));
    }
}

/// Where the person is registered in this comune today.
enum Registered<'a> {
    /// In the anagrafe della popolazione residente.
    Resident(&'a ResidencePeriod),
    /// In the AIRE.
    Aire(&'a AireRegistration),
}

impl Registered<'_> {
    /// "dagli atti dell'Anagrafe … di questo Comune".
    fn source(&self) -> &'static str {
        match self {
            Registered::Resident(_) => {
                "dagli atti dell'Anagrafe della popolazione residente di questo Comune"
            }
            Registered::Aire(_) => {
                "dagli atti dell'Anagrafe degli italiani residenti all'estero (AIRE) di questo Comune"
            }
        }
    }
    fn code(&self) -> &'static str {
        match self {
            Registered::Resident(_) => "APR",
            Registered::Aire(_) => "AIRE",
        }
    }
}

/// ANPR refuses these kinds for the deceased and for anyone "cancellato anagraficamente".
fn registered(person: &Person, today: Date) -> Result<Registered<'_>, CertError> {
    if !person.alive_on(today) {
        return Err(not_issuable(person, "risulta deceduto/a"));
    }
    if let Some(r) = person.residence_on(today) {
        return Ok(Registered::Resident(r));
    }
    person.aire_on(today).map(Registered::Aire).ok_or_else(|| {
        not_issuable(
            person,
            "non risulta iscritto/a nell'Anagrafe della popolazione residente né nell'AIRE di questo Comune",
        )
    })
}

/// The annotation of a marriage's end (L. 898/1970: a religious marriage's civil effects cease, art. 2;
/// a civil one is dissolved, art. 1), or of the spouse's death: the first such event after `index` in
/// the person's marital history.
pub(super) fn marriage_end_note(
    marital: &[MaritalEvent],
    index: usize,
) -> Option<(&'static str, Date)> {
    let marriage = &marital[index];
    marital[index + 1..]
        .iter()
        .find(|e| {
            matches!(
                e.kind,
                MaritalEventKind::Divorce | MaritalEventKind::Widowhood
            )
        })
        .map(|after| {
            let note = match after.kind {
                MaritalEventKind::Divorce if marriage.religious => {
                    "cessazione degli effetti civili del matrimonio"
                }
                MaritalEventKind::Divorce => "scioglimento del matrimonio",
                _ => "decesso del coniuge",
            };
            (note, after.date)
        })
}

/// Builds the body and fields of one of this module's kinds.
pub(super) fn build(
    kind: CertificateKind,
    person: &Person,
    registry: &dyn Registry,
    today: Date,
) -> Result<Parts, CertError> {
    use CertificateKind as K;
    let a = person.sex.pick("o", "a");
    let mut out = Parts::default();
    match kind {
        K::StatoFamigliaAire => {
            // ANPR: refused for residents, for a family that is not an AIRE family, and for a person
            // on no family sheet.
            if !person.alive_on(today) {
                return Err(not_issuable(person, "risulta deceduto/a"));
            }
            let reg = person.aire_on(today).ok_or_else(|| {
                not_issuable(person, "non risulta iscritto/a nell'AIRE di questo Comune")
            })?;
            let family_id = reg.family_id.as_deref().ok_or_else(|| {
                not_issuable(
                    person,
                    "non risulta iscritto/a in una famiglia dell'AIRE di questo Comune",
                )
            })?;
            let family = aire_family_on(&registry.family_members(family_id)?, family_id, today);
            out.members = family.iter().map(|m| member_line(m, false)).collect();
            out.text(format!(
                "risulta iscritt{a} nell'Anagrafe degli italiani residenti all'estero (AIRE) di questo Comune con residenza in {} ({}) e che la famiglia iscritta nell'AIRE è così composta:",
                reg.address, reg.country
            ));
            out.body.push(Block::Family(out.members.clone()));
            out.field("ind", reg.address.clone());
            out.field("stato", reg.country.clone());
        }
        K::ResidenzaConvivenza => {
            // ANPR: refused for AIRE registrations; only the subject is printed, never the other
            // members nor the convivenza's responsible person.
            let r = match registered(person, today)? {
                Registered::Resident(r) => r,
                Registered::Aire(_) => {
                    return Err(not_issuable(
                        person,
                        "è iscritto/a nell'AIRE: non risiede in una convivenza anagrafica di questo Comune",
                    ))
                }
            };
            let c = r.convivenza.as_ref().ok_or_else(|| {
                not_issuable(
                    person,
                    "non risulta iscritto/a in una convivenza anagrafica di questo Comune",
                )
            })?;
            out.text(format!(
                "risulta iscritt{a} nell'Anagrafe della popolazione residente di questo Comune con residenza in {}, nella convivenza anagrafica «{}» ({}, art. 5 DPR 223/1989).",
                r.address,
                c.name,
                c.specie.italian()
            ));
            out.field("ind", r.address.clone());
            out.field("conv", c.name.clone());
        }
        K::ContrattoConvivenza => {
            let reg = registered(person, today)?;
            let c = person.cohabitation_contracts.last().ok_or_else(|| {
                not_issuable(
                    person,
                    "non risulta avere registrato nell'anagrafe di questo Comune un contratto di convivenza",
                )
            })?;
            // ANPR: refused for an AIRE registration when the contract was registered after the
            // person left the country.
            if let Registered::Aire(abroad) = reg {
                if c.registered >= abroad.from {
                    return Err(not_issuable(
                        person,
                        "è iscritto/a nell'AIRE e il contratto di convivenza risulta registrato dopo l'espatrio",
                    ));
                }
            }
            out.text(format!(
                "risulta convivente di fatto con {} dal {} (art. 1, comma 36, L. 76/2016) e che i conviventi hanno stipulato un contratto di convivenza in data {} ({}), registrato nell'anagrafe di questo Comune il {} (art. 1, commi 50-52, L. 76/2016).",
                c.partner,
                italian(c.cohabitation_from),
                italian(c.signed),
                c.professional,
                italian(c.registered)
            ));
            if let Some(regime) = &c.property_regime {
                out.text(format!(
                    "Regime patrimoniale scelto nel contratto: {regime} (art. 1, comma 53, lett. c), L. 76/2016)."
                ));
            }
            out.field("con", c.partner.clone());
            out.field("stip", iso(c.signed));
            out.field("reg", iso(c.registered));
            if let Some(regime) = &c.property_regime {
                out.field("rp", regime.clone());
            }
            if let Some(end) = &c.resolution {
                out.text(format!(
                    "Annotazioni: risoluzione del contratto per {} in data {} (art. 1, comma 59, L. 76/2016).",
                    end.cause.italian(),
                    italian(end.date)
                ));
                out.field("ann", format!("{} {}", end.cause.italian(), iso(end.date)));
            }
        }
        K::AnagraficoNascita => {
            let reg = registered(person, today)?;
            // ANPR: an AIRE registration born abroad has no Italian birth record to certify.
            if matches!(reg, Registered::Aire(_)) && person.birth.place.country != "Italia" {
                return Err(not_issuable(
                    person,
                    "è iscritto/a nell'AIRE ed è nato/a all'estero: i dati di nascita non sono certificabili dall'anagrafe",
                ));
            }
            out.text(format!(
                "è {} a {} il {}, come risulta {}.",
                person.sex.pick("nato", "nata"),
                person.birth.place.display(),
                italian(person.birth.date),
                reg.source()
            ));
            out.field("reg", reg.code().into());
            if let Some(act) = &person.birth.act {
                let comune = registry.comune()?.name;
                out.text(format!(
                    "Estremi dell'atto di nascita: {}, Comune di {comune}.",
                    act.display()
                ));
                out.field("atto", act.display());
            }
        }
        K::AnagraficoMatrimonio => {
            let reg = registered(person, today)?;
            let status = person.marital_status_on(today);
            // ANPR: refused for a person of free status or in a civil union.
            if matches!(
                status,
                MaritalStatus::Single
                    | MaritalStatus::CivilUnion
                    | MaritalStatus::CivilUnionDissolved
            ) {
                return Err(not_issuable(
                    person,
                    &format!(
                        "risulta di stato civile {}: non vi è un matrimonio da certificare",
                        status.italian(person.sex)
                    ),
                ));
            }
            let (i, marriage) = person
                .marital
                .iter()
                .enumerate()
                .rfind(|(_, e)| e.kind == MaritalEventKind::Marriage)
                .ok_or_else(|| {
                    not_issuable(
                        person,
                        "non ha dati di matrimonio negli atti dell'Anagrafe di questo Comune",
                    )
                })?;
            // ANPR: refused when the person was already in the AIRE on the wedding day.
            if person.aire_on(marriage.date).is_some() {
                return Err(not_issuable(
                    person,
                    "era iscritto/a nell'AIRE alla data del matrimonio",
                ));
            }
            let spouse = marriage.spouse.clone().unwrap_or_default();
            let place = marriage
                .place
                .as_ref()
                .map(|p| format!(" in {}", p.display()))
                .unwrap_or_default();
            out.text(format!(
                "ha contratto matrimonio con {spouse}{place} il {}, come risulta {}.",
                italian(marriage.date),
                reg.source()
            ));
            if let Some(act) = &marriage.act {
                let comune = registry.comune()?.name;
                out.text(format!(
                    "Estremi dell'atto di matrimonio: {}, Comune di {comune}.",
                    act.display()
                ));
            }
            if let Some((note, date)) = marriage_end_note(&person.marital, i) {
                out.text(format!("Annotazioni: {note} in data {}.", italian(date)));
                out.field("ann", format!("{note} {}", iso(date)));
            }
            let status = status.italian(person.sex);
            out.text(format!("Stato civile: {status}."));
            out.field("con", spouse);
            out.field("dm", iso(marriage.date));
            if let Some(act) = &marriage.act {
                out.field("atto", act.display());
            }
            out.field("sc", status.into());
        }
        other => {
            return Err(CertError::UnknownKind(format!(
                "{other} non è un tipo di questo modulo"
            )))
        }
    }
    Ok(out)
}
