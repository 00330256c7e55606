//! The demo registry's cases for the rest of ANPR's catalogue (issue 20): an AIRE family, a couple
//! with a registered contract of cohabitation, and residents of a *convivenza anagrafica*. Generated
//! after every other case, so adding them changed none of the earlier data.

use time::macros::date;
use time::Date;

use super::generator::Gen;
use crate::registry::{
    AireRegistration, CohabitationContract, Convivenza, ConvivenzaSpecie, MaritalEvent,
    MaritalEventKind, Sex,
};

/// Index of Buenos Aires in the generator's places.
const BUENOS_AIRES: usize = 17;

fn register_aire(g: &mut Gen, who: usize, from: Date, family: &str, rel: &str, origin: &str) {
    g.people[who].aire.push(AireRegistration {
        from,
        to: None,
        address: "Avenida Santa Fe 1234, Buenos Aires".into(),
        country: "Argentina".into(),
        origin: origin.into(),
        family_id: Some(family.into()),
        relationship: Some(rel.into()),
    });
}

pub(super) fn anpr_catalogue_cases(g: &mut Gen) {
    let parma = 0;
    // M. Ferraro: married in Parma, emigrated to Argentina, registered in the AIRE as a family; their
    // daughter was born in Buenos Aires and registered on the transcription of her birth act.
    let antonio = g.person(
        "Ferraro",
        "Antonio",
        Sex::M,
        date!(1960 - 03 - 21),
        parma,
        "italiana",
    );
    let carla = g.person(
        "Bassi",
        "Carla",
        Sex::F,
        date!(1962 - 08 - 09),
        parma,
        "italiana",
    );
    let wed = date!(1988 - 06 - 25);
    g.union(antonio, carla, wed, parma, MaritalEventKind::Marriage);
    let f_parma = g.family();
    for (who, rel) in [(antonio, "intestatario scheda"), (carla, "coniuge")] {
        g.reside(
            who,
            wed,
            "Via Nino Bixio n. 50",
            &f_parma,
            rel,
            "costituzione nuova famiglia",
        );
    }
    let abroad = date!(1990 - 05 - 02);
    let f_aire = g.family();
    for (who, rel) in [(antonio, "intestatario scheda"), (carla, "coniuge")] {
        g.end(who, abroad, "emigrazione all'estero (Argentina)");
        register_aire(g, who, abroad, &f_aire, rel, "emigrazione all'estero");
    }
    let martina = g.person(
        "Ferraro",
        "Martina",
        Sex::F,
        date!(1993 - 11 - 05),
        BUENOS_AIRES,
        "italiana",
    );
    register_aire(
        g,
        martina,
        date!(1994 - 02 - 10),
        &f_aire,
        "figlia",
        "nascita all'estero (trascrizione dell'atto di nascita)",
    );

    // N. Bertoli and Zanetti: conviventi di fatto with a contract of cohabitation (L. 76/2016).
    let sergio = g.person(
        "Bertoli",
        "Sergio",
        Sex::M,
        date!(1986 - 09 - 12),
        parma,
        "italiana",
    );
    let elisa = g.person(
        "Zanetti",
        "Elisa",
        Sex::F,
        date!(1989 - 01 - 27),
        1,
        "italiana",
    );
    let f_bertoli = g.family();
    let home = "Via Antonio Gramsci n. 18";
    g.reside(
        sergio,
        date!(2019 - 04 - 01),
        home,
        &f_bertoli,
        "intestatario scheda",
        "costituzione nuova famiglia",
    );
    g.reside(
        elisa,
        date!(2019 - 04 - 01),
        home,
        &f_bertoli,
        "convivente",
        "immigrazione da Fidenza (PR)",
    );
    for (who, other) in [(sergio, elisa), (elisa, sergio)] {
        let contract = CohabitationContract {
            partner: g.people[other].full_name(),
            partner_fiscal_code: Some(g.people[other].fiscal_code.clone()),
            cohabitation_from: date!(2019 - 05 - 10),
            signed: date!(2020 - 02 - 14),
            professional: "notaio Carlo Verdi di Parma".into(),
            registered: date!(2020 - 02 - 20),
            property_regime: Some("comunione dei beni".into()),
            resolution: None,
        };
        g.people[who].cohabitation_contracts.push(contract);
    }

    // O. A convivenza anagrafica: a widow who moved from her own sheet into a care home, and another
    // guest of the same home.
    let villa_serena = Convivenza {
        name: "Casa di riposo Villa Serena".into(),
        specie: ConvivenzaSpecie::Assistenza,
    };
    let ada = g.person(
        "Sartori",
        "Ada",
        Sex::F,
        date!(1931 - 04 - 18),
        parma,
        "italiana",
    );
    g.people[ada].marital.push(MaritalEvent {
        date: date!(2009 - 12 - 01),
        kind: MaritalEventKind::Widowhood,
        spouse: Some("Ghirardi Bruno".into()),
        place: None,
        act: None,
        religious: false,
    });
    let f_ada = g.family();
    g.reside(
        ada,
        date!(1956 - 05 - 01),
        "Via Trento n. 22",
        &f_ada,
        "intestatario scheda",
        "costituzione nuova famiglia",
    );
    let c_villa = g.family();
    let moved = date!(2022 - 02 - 01);
    g.end(ada, moved, "iscrizione in convivenza");
    g.reside(
        ada,
        moved,
        "Via Po n. 30",
        &c_villa,
        "membro della convivenza",
        "cambio di abitazione",
    );
    let ernesto = g.person(
        "Guidi",
        "Ernesto",
        Sex::M,
        date!(1934 - 07 - 02),
        6,
        "italiana",
    );
    g.reside(
        ernesto,
        date!(2020 - 10 - 15),
        "Via Po n. 30",
        &c_villa,
        "membro della convivenza",
        "immigrazione da Piacenza (PC)",
    );
    for who in [ada, ernesto] {
        if let Some(r) = g.people[who].residences.last_mut() {
            r.convivenza = Some(villa_serena.clone());
        }
    }
}
