//! The demo registry's hand-written families: the edge cases the tests and the training use (see
//! [`super::cases`] for their fiscal codes).

use time::macros::date;

use super::generator::Gen;
use crate::registry::{AireRegistration, Citizenship, MaritalEvent, MaritalEventKind, Sex};

pub(super) fn hand_written(g: &mut Gen) {
    use MaritalEventKind::*;
    let parma = 0;
    // A. Rossi: marriage, a move, two births.
    let f_parents = g.family();
    let farini = "Via Farini n. 10";
    let giorgio = g.person(
        "Rossi",
        "Giorgio",
        Sex::M,
        date!(1955 - 02 - 03),
        parma,
        "italiana",
    );
    let anna = g.person(
        "Ferrari",
        "Anna Maria",
        Sex::F,
        date!(1957 - 07 - 21),
        1,
        "italiana",
    );
    g.union(giorgio, anna, date!(1983 - 09 - 10), parma, Marriage);
    g.reside(
        giorgio,
        date!(1983 - 09 - 10),
        farini,
        &f_parents,
        "intestatario scheda",
        "costituzione nuova famiglia",
    );
    g.reside(
        anna,
        date!(1983 - 09 - 10),
        farini,
        &f_parents,
        "coniuge",
        "immigrazione da Fidenza (PR)",
    );
    let luca = g.person(
        "Rossi",
        "Luca",
        Sex::M,
        date!(1985 - 04 - 12),
        parma,
        "italiana",
    );
    g.reside(
        luca,
        date!(1985 - 04 - 12),
        farini,
        &f_parents,
        "figlio",
        "nascita",
    );
    let giulia = g.person(
        "Conti",
        "Giulia",
        Sex::F,
        date!(1987 - 10 - 05),
        5,
        "italiana",
    );
    let wed = date!(2012 - 06 - 16);
    g.union(luca, giulia, wed, parma, Marriage);
    g.end(luca, wed, "costituzione nuova famiglia");
    let f_rossi = g.family();
    g.reside(
        luca,
        wed,
        "Strada della Repubblica n. 45",
        &f_rossi,
        "intestatario scheda",
        "costituzione nuova famiglia",
    );
    g.reside(
        giulia,
        wed,
        "Strada della Repubblica n. 45",
        &f_rossi,
        "coniuge",
        "immigrazione da Reggio nell'Emilia (RE)",
    );
    let new_home = "Via Emilia Est n. 112 int. 4";
    g.move_to(&[luca, giulia], date!(2015 - 03 - 10), new_home);
    let sofia = g.person(
        "Rossi",
        "Sofia",
        Sex::F,
        date!(2016 - 01 - 20),
        parma,
        "italiana",
    );
    g.reside(
        sofia,
        date!(2016 - 01 - 20),
        new_home,
        &f_rossi,
        "figlia",
        "nascita",
    );
    let matteo = g.person(
        "Rossi",
        "Matteo",
        Sex::M,
        date!(2019 - 05 - 14),
        parma,
        "italiana",
    );
    g.reside(
        matteo,
        date!(2019 - 05 - 14),
        new_home,
        &f_rossi,
        "figlio",
        "nascita",
    );
    g.card(luca, date!(2021 - 03 - 01));
    g.card(giulia, date!(2016 - 09 - 12));
    g.pec(luca);

    // B. Bianchi: the head dies; his son had left the sheet before.
    let f_bianchi = g.family();
    let felino = "Borgo Felino n. 3";
    let giuseppe = g.person(
        "Bianchi",
        "Giuseppe",
        Sex::M,
        date!(1940 - 08 - 15),
        parma,
        "italiana",
    );
    let maria = g.person(
        "Greco",
        "Maria",
        Sex::F,
        date!(1945 - 03 - 02),
        4,
        "italiana",
    );
    g.union(giuseppe, maria, date!(1968 - 05 - 25), 4, Marriage);
    g.reside(
        giuseppe,
        date!(1968 - 06 - 01),
        felino,
        &f_bianchi,
        "intestatario scheda",
        "costituzione nuova famiglia",
    );
    g.reside(
        maria,
        date!(1968 - 06 - 01),
        felino,
        &f_bianchi,
        "coniuge",
        "immigrazione da Napoli (NA)",
    );
    let paolo = g.person(
        "Bianchi",
        "Paolo",
        Sex::M,
        date!(1970 - 11 - 30),
        parma,
        "italiana",
    );
    g.reside(
        paolo,
        date!(1970 - 11 - 30),
        felino,
        &f_bianchi,
        "figlio",
        "nascita",
    );
    let elena = g.person(
        "Bianchi",
        "Elena",
        Sex::F,
        date!(1975 - 02 - 14),
        parma,
        "italiana",
    );
    g.reside(
        elena,
        date!(1975 - 02 - 14),
        felino,
        &f_bianchi,
        "figlia",
        "nascita",
    );
    g.end(paolo, date!(2018 - 04 - 01), "costituzione nuova famiglia");
    let f_paolo = g.family();
    g.reside(
        paolo,
        date!(2018 - 04 - 01),
        "Via Mazzini n. 7",
        &f_paolo,
        "intestatario scheda",
        "costituzione nuova famiglia",
    );
    let death = date!(2021 - 11 - 03);
    g.die(giuseppe, death, Some(maria));
    g.end(maria, death, "variazione dell'intestatario");
    g.reside(
        maria,
        death,
        felino,
        &f_bianchi,
        "intestatario scheda",
        "variazione dell'intestatario",
    );
    g.card(maria, date!(2019 - 02 - 11));

    // C. D'Alò: a family of 8 with accented names and a grandmother on the sheet.
    let f_dalo = g.family();
    let tommasini = "Borgo Giacomo Tommasini n. 21";
    let nicolo = g.person(
        "D'Alò",
        "Nicolò",
        Sex::M,
        date!(1968 - 03 - 09),
        parma,
        "italiana",
    );
    let therese = g.person(
        "Bélanger",
        "Thérèse",
        Sex::F,
        date!(1970 - 06 - 30),
        12,
        "francese",
    );
    g.people[therese].citizenships.push(Citizenship {
        citizenship: "italiana".into(),
        from: Some(date!(1997 - 09 - 17)),
        to: None,
    });
    g.union(nicolo, therese, date!(1994 - 09 - 17), parma, Marriage);
    g.reside(
        nicolo,
        date!(1994 - 09 - 17),
        tommasini,
        &f_dalo,
        "intestatario scheda",
        "costituzione nuova famiglia",
    );
    g.reside(
        therese,
        date!(1994 - 09 - 17),
        tommasini,
        &f_dalo,
        "coniuge",
        "immigrazione dall'estero (Francia)",
    );
    for (name, sex, born) in [
        ("Mosè", Sex::M, date!(1995 - 07 - 04)),
        ("Zoè", Sex::F, date!(1997 - 12 - 25)),
        ("Niccolò", Sex::M, date!(2000 - 02 - 29)),
        ("Liù", Sex::F, date!(2003 - 08 - 15)),
        ("Noè", Sex::M, date!(2006 - 01 - 06)),
    ] {
        let child = g.person("D'Alò", name, sex, born, parma, "italiana");
        g.reside(
            child,
            born,
            tommasini,
            &f_dalo,
            sex.pick("figlio", "figlia"),
            "nascita",
        );
    }
    let nonna = g.person(
        "Dell'Orto",
        "Assunta Filomena",
        Sex::F,
        date!(1942 - 11 - 11),
        6,
        "italiana",
    );
    g.reside(
        nonna,
        date!(2010 - 01 - 15),
        tommasini,
        &f_dalo,
        "madre",
        "immigrazione da Piacenza (PC)",
    );
    g.people[nonna].marital.push(MaritalEvent {
        date: date!(2008 - 04 - 02),
        kind: Widowhood,
        spouse: Some("D'Alò Ermenegildo".into()),
        place: None,
        act: None,
        religious: false,
    });
    g.card(nicolo, date!(2020 - 10 - 01));

    // D. Galli and Rinaldi: marriage, separation of sheets, divorce.
    let f_galli = g.family();
    let marco = g.person(
        "Galli",
        "Marco",
        Sex::M,
        date!(1972 - 01 - 18),
        7,
        "italiana",
    );
    let chiara = g.person(
        "Rinaldi",
        "Chiara",
        Sex::F,
        date!(1974 - 09 - 09),
        parma,
        "italiana",
    );
    g.union(marco, chiara, date!(2001 - 05 - 12), parma, Marriage);
    // A religious (concordatario) marriage: its divorce is a cessazione degli effetti civili.
    for who in [marco, chiara] {
        if let Some(m) = g.people[who].marital.last_mut() {
            m.religious = true;
        }
    }
    g.reside(
        marco,
        date!(2001 - 05 - 12),
        "Viale Mentana n. 88",
        &f_galli,
        "intestatario scheda",
        "immigrazione da Bologna (BO)",
    );
    g.reside(
        chiara,
        date!(2001 - 05 - 12),
        "Viale Mentana n. 88",
        &f_galli,
        "coniuge",
        "costituzione nuova famiglia",
    );
    g.end(chiara, date!(2015 - 02 - 01), "costituzione nuova famiglia");
    let f_chiara = g.family();
    g.reside(
        chiara,
        date!(2015 - 02 - 01),
        "Via Zarotto n. 15",
        &f_chiara,
        "intestatario scheda",
        "costituzione nuova famiglia",
    );
    for who in [marco, chiara] {
        let spouse = if who == marco { chiara } else { marco };
        let name = g.people[spouse].full_name();
        g.people[who].marital.push(MaritalEvent {
            date: date!(2016 - 10 - 20),
            kind: Divorce,
            spouse: Some(name),
            place: None,
            act: None,
            religious: false,
        });
    }

    // E. Moretti: emigrated to Milano.
    let f_moretti = g.family();
    let francesca = g.person(
        "Moretti",
        "Francesca",
        Sex::F,
        date!(1990 - 06 - 06),
        parma,
        "italiana",
    );
    g.reside(
        francesca,
        date!(2010 - 09 - 01),
        "Via Università n. 4",
        &f_moretti,
        "intestatario scheda",
        "costituzione nuova famiglia",
    );
    g.end(
        francesca,
        date!(2020 - 09 - 01),
        "emigrazione a Milano (MI)",
    );

    // F. Foreign citizens: a Romanian citizen, and a Moroccan-born man who became Italian.
    let f_popescu = g.family();
    let ioana = g.person(
        "Popescu",
        "Ioana",
        Sex::F,
        date!(1988 - 02 - 27),
        9,
        "rumena",
    );
    g.reside(
        ioana,
        date!(2014 - 02 - 03),
        "Via La Spezia n. 90",
        &f_popescu,
        "intestatario scheda",
        "immigrazione dall'estero (Romania)",
    );
    let f_amrani = g.family();
    let youssef = g.person(
        "El Amrani",
        "Youssef",
        Sex::M,
        date!(1979 - 10 - 10),
        10,
        "marocchina",
    );
    g.people[youssef].citizenships.push(Citizenship {
        citizenship: "italiana".into(),
        from: Some(date!(2018 - 06 - 15)),
        to: None,
    });
    g.reside(
        youssef,
        date!(2005 - 03 - 01),
        "Strada Nuova n. 12",
        &f_amrani,
        "intestatario scheda",
        "immigrazione dall'estero (Marocco)",
    );
    g.card(youssef, date!(2018 - 07 - 02));

    // G. Homonyms with the same birth data: the second one gets an omocodic fiscal code.
    for address in ["Viale Tanara n. 3", "Via Montebello n. 61"] {
        let f = g.family();
        let mario = g.person(
            "Rossi",
            "Mario",
            Sex::M,
            date!(1970 - 01 - 01),
            parma,
            "italiana",
        );
        g.reside(
            mario,
            date!(1970 - 01 - 01),
            address,
            &f,
            "intestatario scheda",
            "nascita",
        );
    }

    // H. Very long names.
    let f_long = g.family();
    let long = g.person(
        "Della Rovere Castelbarco Visconti Simonetta",
        "Maria Antonietta Giuseppina Filomena Immacolata",
        Sex::F,
        date!(1950 - 05 - 05),
        parma,
        "italiana",
    );
    g.reside(
        long,
        date!(1950 - 05 - 05),
        "Piazzale Santa Croce n. 1",
        &f_long,
        "intestatario scheda",
        "nascita",
    );

    // I. A civil union.
    let f_fontana = g.family();
    let alessandro = g.person(
        "Fontana",
        "Alessandro",
        Sex::M,
        date!(1983 - 03 - 03),
        parma,
        "italiana",
    );
    let davide = g.person(
        "Marchetti",
        "Davide",
        Sex::M,
        date!(1981 - 11 - 21),
        6,
        "italiana",
    );
    g.union(alessandro, davide, date!(2017 - 09 - 30), parma, CivilUnion);
    g.reside(
        alessandro,
        date!(2009 - 01 - 10),
        "Borgo delle Colonne n. 28",
        &f_fontana,
        "intestatario scheda",
        "costituzione nuova famiglia",
    );
    g.reside(
        davide,
        date!(2017 - 09 - 30),
        "Borgo delle Colonne n. 28",
        &f_fontana,
        "unito civilmente",
        "immigrazione da Piacenza (PC)",
    );

    // J. Immigrated from another comune.
    let f_colombo = g.family();
    let roberto = g.person(
        "Colombo",
        "Roberto",
        Sex::M,
        date!(1965 - 12 - 12),
        2,
        "italiana",
    );
    g.reside(
        roberto,
        date!(2008 - 07 - 01),
        "Via Langhirano n. 140",
        &f_colombo,
        "intestatario scheda",
        "immigrazione da Milano (MI)",
    );
    g.card(roberto, date!(2017 - 05 - 05));
}

/// Cases added after the random families, so that adding them changed none of the earlier data.
pub(super) fn later_cases(g: &mut Gen) {
    use MaritalEventKind::*;
    let parma = 0;
    // K. Ferri and Lombardi: a civil marriage in Parma, dissolved by divorce (scioglimento).
    let f_ferri = g.family();
    let stefano = g.person(
        "Ferri",
        "Stefano",
        Sex::M,
        date!(1980 - 03 - 14),
        parma,
        "italiana",
    );
    let paola = g.person(
        "Lombardi",
        "Paola",
        Sex::F,
        date!(1982 - 07 - 02),
        parma,
        "italiana",
    );
    let wed = date!(2006 - 09 - 09);
    g.union(stefano, paola, wed, parma, Marriage);
    let home = "Via Bixio n. 33";
    g.reside(
        stefano,
        wed,
        home,
        &f_ferri,
        "intestatario scheda",
        "costituzione nuova famiglia",
    );
    g.reside(
        paola,
        wed,
        home,
        &f_ferri,
        "coniuge",
        "costituzione nuova famiglia",
    );
    g.end(paola, date!(2017 - 05 - 01), "costituzione nuova famiglia");
    let f_paola = g.family();
    g.reside(
        paola,
        date!(2017 - 05 - 01),
        "Via Cavour n. 5",
        &f_paola,
        "intestatario scheda",
        "costituzione nuova famiglia",
    );
    for (who, other) in [(stefano, paola), (paola, stefano)] {
        let spouse = g.people[other].full_name();
        g.people[who].marital.push(MaritalEvent {
            date: date!(2019 - 02 - 15),
            kind: Divorce,
            spouse: Some(spouse),
            place: None,
            act: None,
            religious: false,
        });
    }

    // L. Marini: lived in Parma, emigrated to Spain and registered in the AIRE.
    let f_marini = g.family();
    let giorgia = g.person(
        "Marini",
        "Giorgia",
        Sex::F,
        date!(1992 - 11 - 20),
        parma,
        "italiana",
    );
    g.reside(
        giorgia,
        date!(2012 - 09 - 01),
        "Via Aurelio Saffi n. 9",
        &f_marini,
        "intestatario scheda",
        "costituzione nuova famiglia",
    );
    let abroad = date!(2021 - 03 - 15);
    g.end(giorgia, abroad, "emigrazione all'estero (Spagna)");
    g.people[giorgia].aire.push(AireRegistration {
        from: abroad,
        to: None,
        address: "Calle de Alcalá 120, Madrid".into(),
        country: "Spagna".into(),
        origin: "emigrazione all'estero".into(),
        family_id: None,
        relationship: None,
    });
}
