//! The demo registry's deterministic generator: a fixed-seed SplitMix64, the generator's vocabulary, and
//! about 80 random families around the hand-written ones of [`super::families`].

use std::collections::{BTreeMap, HashSet};

use time::macros::date;
use time::Date;

use crate::fiscal_code;
use crate::registry::{
    ActRef, Birth, Citizenship, Comune, Death, IdCard, MaritalEvent, MaritalEventKind, Person,
    Place, RegistryData, ResidencePeriod, Sex,
};

/// SplitMix64: tiny, fixed, and ours, so the demo data never changes under a dependency upgrade.
pub(super) struct SplitMix(pub(super) u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn date_between(&mut self, from: Date, to: Date) -> Date {
        let span = (to - from).whole_days().max(1) as u64;
        from + time::Duration::days(self.below(span) as i64)
    }
}

/// Places used by the generator: name, province, country, Belfiore code.
const PLACES: &[(&str, Option<&str>, &str, &str)] = &[
    ("Parma", Some("PR"), "Italia", "G337"),
    ("Fidenza", Some("PR"), "Italia", "B034"),
    ("Milano", Some("MI"), "Italia", "F205"),
    ("Roma", Some("RM"), "Italia", "H501"),
    ("Napoli", Some("NA"), "Italia", "F839"),
    ("Reggio nell'Emilia", Some("RE"), "Italia", "H223"),
    ("Piacenza", Some("PC"), "Italia", "G535"),
    ("Bologna", Some("BO"), "Italia", "A944"),
    ("Palermo", Some("PA"), "Italia", "G273"),
    ("Bucarest", None, "Romania", "Z129"),
    ("Casablanca", None, "Marocco", "Z330"),
    ("Tirana", None, "Albania", "Z100"),
    ("Lione", None, "Francia", "Z110"),
    ("Leopoli", None, "Ucraina", "Z138"),
    ("Wenzhou", None, "Cina", "Z210"),
    ("Ludhiana", None, "India", "Z222"),
    ("Chișinău", None, "Moldavia", "Z140"),
    // Added after the random families' indices, which it leaves unchanged.
    ("Buenos Aires", None, "Argentina", "Z600"),
];

const STREETS: &[&str] = &[
    "Strada della Repubblica",
    "Via Emilia Est",
    "Borgo Felino",
    "Via Farini",
    "Viale Piacenza",
    "Strada Cavour",
    "Strada Garibaldi",
    "Borgo Giacomo Tommasini",
    "Via Mazzini",
    "Viale Mentana",
    "Via Massimo D'Azeglio",
    "Via Montebello",
    "Via Langhirano",
    "Via Università",
    "Borgo delle Colonne",
    "Viale Tanara",
    "Via La Spezia",
    "Strada Nuova",
    "Via Zarotto",
    "Piazzale Santa Croce",
];

const SURNAMES: &[&str] = &[
    "Ferrari",
    "Esposito",
    "Romano",
    "Colombo",
    "Ricci",
    "Marino",
    "Greco",
    "Bruno",
    "Gallo",
    "Conti",
    "De Luca",
    "Mancini",
    "Costa",
    "Giordano",
    "Rizzo",
    "Lombardi",
    "Barbieri",
    "Fontana",
    "Santoro",
    "Mariani",
    "Rinaldi",
    "Caruso",
    "Ferrara",
    "Galli",
    "Martini",
    "Leone",
    "Longo",
    "Gentile",
    "Martinelli",
    "Vitale",
    "Lombardo",
    "Serra",
    "Coppola",
    "De Santis",
    "D'Angelo",
    "Marchetti",
    "Parisi",
    "Villa",
    "Conte",
    "Ferri",
    "Fabbri",
    "Bianco",
    "Marini",
    "Grasso",
    "Valentini",
    "Messina",
    "Sala",
    "De Angelis",
    "Gatti",
    "Pellegrini",
    "Palumbo",
    "Sanna",
    "Farina",
    "Rizzi",
    "Monti",
    "Cattaneo",
    "Morelli",
    "Amato",
    "Silvestri",
    "Mazza",
    "Testa",
    "Dell'Aquila",
    "Pagliarini",
    "Bocchi",
];
const MALE: &[&str] = &[
    "Giuseppe",
    "Giovanni",
    "Antonio",
    "Mario",
    "Luigi",
    "Francesco",
    "Angelo",
    "Vincenzo",
    "Pietro",
    "Salvatore",
    "Carlo",
    "Franco",
    "Domenico",
    "Bruno",
    "Paolo",
    "Michele",
    "Giorgio",
    "Andrea",
    "Luca",
    "Marco",
    "Alessandro",
    "Matteo",
    "Lorenzo",
    "Davide",
    "Simone",
    "Federico",
    "Riccardo",
    "Gabriele",
    "Tommaso",
    "Edoardo",
    "Niccolò",
    "Gian Luca",
    "Pier Paolo",
];
const FEMALE: &[&str] = &[
    "Maria",
    "Anna",
    "Giuseppina",
    "Rosa",
    "Angela",
    "Giovanna",
    "Teresa",
    "Lucia",
    "Carmela",
    "Caterina",
    "Francesca",
    "Paola",
    "Laura",
    "Giulia",
    "Chiara",
    "Sara",
    "Martina",
    "Alessia",
    "Elena",
    "Valentina",
    "Federica",
    "Silvia",
    "Sofia",
    "Aurora",
    "Ginevra",
    "Beatrice",
    "Noemi",
    "Maria Grazia",
    "Anna Rita",
];
/// Foreign families: surnames and names by origin place index in `PLACES`.
/// Origin place index, surname, male names, female names, citizenship.
type ForeignFamily = (
    usize,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static str,
);
const FOREIGN: &[ForeignFamily] = &[
    (
        11,
        "Hoxha",
        &["Arben", "Ilir"],
        &["Elira", "Drita"],
        "albanese",
    ),
    (
        13,
        "Kovalenko",
        &["Oleksandr", "Andriy"],
        &["Olena", "Iryna"],
        "ucraina",
    ),
    (14, "Hu", &["Wei", "Jun"], &["Mei", "Li"], "cinese"),
    (
        15,
        "Singh",
        &["Harpreet", "Gurpreet"],
        &["Manpreet", "Simran"],
        "indiana",
    ),
    (16, "Rusu", &["Ion", "Vasile"], &["Ana", "Elena"], "moldava"),
    (
        9,
        "Ionescu",
        &["Andrei", "Mihai"],
        &["Ioana", "Ana Maria"],
        "rumena",
    ),
];

pub(super) fn place(index: usize) -> (Place, &'static str) {
    let (name, province, country, belfiore) = PLACES[index];
    (
        Place {
            name: name.into(),
            province: province.map(Into::into),
            country: country.into(),
        },
        belfiore,
    )
}

/// The generator's state: people so far and counters for act and card numbers.
pub(super) struct Gen {
    pub(super) rng: SplitMix,
    pub(super) people: Vec<Person>,
    codes: HashSet<String>,
    acts: BTreeMap<(i32, &'static str), u32>,
    cards: u32,
    families: u32,
}

impl Gen {
    pub(super) fn act(&mut self, date: Date, part: &'static str) -> ActRef {
        let n = self.acts.entry((date.year(), part)).or_insert(0);
        *n += 1;
        ActRef {
            year: date.year(),
            part: part.into(),
            series: (part == "II").then(|| "A".into()),
            number: *n,
        }
    }

    pub(super) fn family(&mut self) -> String {
        self.families += 1;
        format!("F{:05}", self.families)
    }

    pub(super) fn address(&mut self) -> String {
        let street = self.rng.pick(STREETS);
        let n = 1 + self.rng.below(120);
        if self.rng.chance(30) {
            format!("{street} n. {n} int. {}", 1 + self.rng.below(12))
        } else {
            format!("{street} n. {n}")
        }
    }

    /// Adds a person; the fiscal code gets omocodia substitutions when it collides with an earlier one.
    pub(super) fn person(
        &mut self,
        surname: &str,
        names: &str,
        sex: Sex,
        born: Date,
        place_index: usize,
        citizenship: &str,
    ) -> usize {
        let (birth_place, belfiore) = place(place_index);
        let mut omocodia = 0;
        let fiscal_code = loop {
            let cf = fiscal_code::compute(surname, names, sex == Sex::F, born, belfiore, omocodia)
                .expect("generator inputs are valid");
            if self.codes.insert(cf.as_str().to_owned()) {
                break cf;
            }
            omocodia += 1;
        };
        let act = (place_index == 0).then(|| self.act(born, "I"));
        self.people.push(Person {
            fiscal_code,
            surname: surname.into(),
            given_names: names.into(),
            sex,
            birth: Birth {
                date: born,
                place: birth_place,
                act,
            },
            citizenships: vec![Citizenship {
                citizenship: citizenship.into(),
                from: None,
                to: None,
            }],
            marital: vec![],
            residences: vec![],
            death: None,
            id_card: None,
            pec: None,
            aire: vec![],
            cohabitation_contracts: vec![],
        });
        self.people.len() - 1
    }

    pub(super) fn reside(
        &mut self,
        who: usize,
        from: Date,
        address: &str,
        family: &str,
        rel: &str,
        origin: &str,
    ) {
        self.people[who].residences.push(ResidencePeriod {
            from,
            to: None,
            address: address.into(),
            family_id: family.into(),
            relationship: rel.into(),
            origin: origin.into(),
            end_reason: None,
            convivenza: None,
        });
    }

    pub(super) fn end(&mut self, who: usize, on: Date, reason: &str) {
        if let Some(last) = self.people[who].residences.last_mut() {
            if last.to.is_none() {
                last.to = Some(on);
                last.end_reason = Some(reason.into());
            }
        }
    }

    /// Moves everyone in `who` to a new address on the same sheet.
    pub(super) fn move_to(&mut self, who: &[usize], on: Date, address: &str) {
        for &w in who {
            let Some(last) = self.people[w].residences.last().cloned() else {
                continue;
            };
            if last.to.is_some() {
                continue;
            }
            self.end(w, on, "cambio di abitazione");
            self.reside(
                w,
                on,
                address,
                &last.family_id,
                &last.relationship,
                "cambio di abitazione",
            );
        }
    }

    pub(super) fn union(
        &mut self,
        a: usize,
        b: usize,
        on: Date,
        place_index: usize,
        kind: MaritalEventKind,
    ) {
        let act = (place_index == 0).then(|| self.act(on, "II"));
        let (p, _) = place(place_index);
        for (x, y) in [(a, b), (b, a)] {
            let spouse = self.people[y].full_name();
            self.people[x].marital.push(MaritalEvent {
                date: on,
                kind,
                spouse: Some(spouse),
                place: Some(p.clone()),
                act: act.clone(),
                religious: false,
            });
        }
    }

    pub(super) fn die(&mut self, who: usize, on: Date, spouse: Option<usize>) {
        let act = self.act(on, "I");
        let (p, _) = place(0);
        self.people[who].death = Some(Death {
            date: on,
            place: p,
            act: Some(act),
        });
        self.end(who, on, "decesso");
        if let Some(s) = spouse {
            let name = self.people[who].full_name();
            self.people[s].marital.push(MaritalEvent {
                date: on,
                kind: MaritalEventKind::Widowhood,
                spouse: Some(name),
                place: None,
                act: None,
                religious: false,
            });
        }
    }

    pub(super) fn card(&mut self, who: usize, issued: Date) {
        self.cards += 1;
        let letters = b"ABCDEFGHJKLMNPRSTUVZ";
        let a = letters[(self.cards % 20) as usize] as char;
        let b = letters[((self.cards / 20) % 20) as usize] as char;
        let expires = issued.replace_year(issued.year() + 10).unwrap_or(issued);
        self.people[who].id_card = Some(IdCard {
            number: format!("CA{:05}{a}{b}", 10_000 + self.cards * 37 % 89_999),
            issued,
            expires,
            issuer: "Comune di Parma".into(),
        });
    }

    pub(super) fn pec(&mut self, who: usize) {
        let p = &self.people[who];
        let ascii: String = format!("{}.{}", p.given_names, p.surname)
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                'à' => Some('a'),
                'è' | 'é' => Some('e'),
                'ì' => Some('i'),
                'ò' => Some('o'),
                'ù' => Some('u'),
                ' ' | '\'' => None,
                c if c.is_ascii_alphanumeric() || c == '.' => Some(c),
                _ => None,
            })
            .collect();
        self.people[who].pec = Some(format!("{ascii}@pec.demo.it"));
    }
}

/// Generates the demo registry. Deterministic: the same output on every run and platform.
pub fn generate() -> RegistryData {
    let mut g = Gen {
        rng: SplitMix(0x5350_4f52_5445_4c4c),
        people: vec![],
        codes: HashSet::new(),
        acts: BTreeMap::new(),
        cards: 0,
        families: 0,
    };
    super::families::hand_written(&mut g);
    random_families(&mut g, 80);
    super::families::later_cases(&mut g);
    super::anpr_cases::anpr_catalogue_cases(&mut g);
    let mut people = g.people;
    people.sort_by(|a, b| a.fiscal_code.cmp(&b.fiscal_code));
    RegistryData {
        comune: Comune {
            name: "Parma".into(),
            istat_code: "034027".into(),
            province: "PR".into(),
            belfiore: "G337".into(),
            province_name: Some("Parma".into()),
        },
        people,
    }
}

fn random_families(g: &mut Gen, count: usize) {
    use MaritalEventKind::*;
    for _ in 0..count {
        let family = g.family();
        let address = g.address();
        let foreign = g
            .rng
            .chance(12)
            .then(|| FOREIGN[g.rng.below(FOREIGN.len() as u64) as usize]);
        let (surname, head_sex) = match foreign {
            Some((_, s, ..)) => (
                s.to_string(),
                if g.rng.chance(60) { Sex::M } else { Sex::F },
            ),
            None => (
                g.rng.pick(SURNAMES).to_string(),
                if g.rng.chance(60) { Sex::M } else { Sex::F },
            ),
        };
        let name_for = |g: &mut Gen, sex: Sex| -> String {
            match foreign {
                Some((_, _, m, f, _)) => g.rng.pick(if sex == Sex::M { m } else { f }).to_string(),
                None => g
                    .rng
                    .pick(if sex == Sex::M { MALE } else { FEMALE })
                    .to_string(),
            }
        };
        let (birth_place, citizenship) = match foreign {
            Some((p, .., c)) => (p, c),
            None => (
                [0, 0, 0, 1, 2, 4, 5, 6, 8][g.rng.below(9) as usize],
                "italiana",
            ),
        };
        let head_born = g
            .rng
            .date_between(date!(1938 - 01 - 01), date!(2000 - 12 - 31));
        let head_names = name_for(g, head_sex);
        let head = g.person(
            &surname,
            &head_names,
            head_sex,
            head_born,
            birth_place,
            citizenship,
        );
        let arrival = if birth_place == 0 {
            None
        } else {
            Some(
                g.rng.date_between(
                    head_born
                        .replace_year(head_born.year() + 19)
                        .unwrap_or(head_born),
                    date!(2024 - 12 - 31).min(
                        head_born
                            .replace_year(head_born.year() + 40)
                            .unwrap_or(head_born),
                    ),
                ),
            )
        };
        let start = arrival.unwrap_or_else(|| {
            head_born
                .replace_year(head_born.year() + 22)
                .unwrap_or(head_born)
        });
        let origin = match (arrival, foreign) {
            (None, _) => "costituzione nuova famiglia".to_string(),
            (Some(_), Some(_)) => format!("immigrazione dall'estero ({})", PLACES[birth_place].2),
            (Some(_), None) => format!("immigrazione da {}", place(birth_place).0.display()),
        };
        g.reside(
            head,
            start,
            &address,
            &family,
            "intestatario scheda",
            &origin,
        );
        let mut members = vec![head];
        let mut spouse = None;
        if g.rng.chance(60) {
            let sex = if head_sex == Sex::M { Sex::F } else { Sex::M };
            let born = g.rng.date_between(
                head_born - time::Duration::days(365 * 5),
                head_born + time::Duration::days(365 * 5),
            );
            let spouse_surname = match foreign {
                Some((_, s, ..)) => s.to_string(),
                None => g.rng.pick(SURNAMES).to_string(),
            };
            let names = name_for(g, sex);
            let s = g.person(&spouse_surname, &names, sex, born, birth_place, citizenship);
            let wed = g
                .rng
                .date_between(start, start + time::Duration::days(365 * 6))
                .min(date!(2024 - 06 - 30));
            let wed_place = if arrival.is_none() || g.rng.chance(50) {
                0
            } else {
                birth_place
            };
            g.union(head, s, wed, wed_place, Marriage);
            let spouse_from = wed.max(start);
            g.reside(
                s,
                spouse_from,
                &address,
                &family,
                "coniuge",
                "costituzione nuova famiglia",
            );
            members.push(s);
            spouse = Some(s);
            let children = g.rng.below(4);
            for k in 0..children {
                let born = g.rng.date_between(
                    wed + time::Duration::days(300 + 700 * k as i64),
                    wed + time::Duration::days(1000 + 700 * k as i64),
                );
                if born > date!(2025 - 05 - 31) {
                    break;
                }
                let sex = if g.rng.chance(50) { Sex::M } else { Sex::F };
                let names = name_for(g, sex);
                let child = g.person(&surname, &names, sex, born, 0, citizenship);
                g.reside(
                    child,
                    born,
                    &address,
                    &family,
                    sex.pick("figlio", "figlia"),
                    "nascita",
                );
                members.push(child);
            }
        }
        if g.rng.chance(30) {
            let latest = members
                .iter()
                .map(|&m| g.people[m].residences[0].from)
                .max()
                .unwrap_or(start);
            if latest < date!(2024 - 01 - 01) {
                let on = g
                    .rng
                    .date_between(latest + time::Duration::days(1), date!(2025 - 01 - 01));
                let new_address = g.address();
                g.move_to(&members, on, &new_address);
            }
        }
        if head_born < date!(1950 - 01 - 01) && g.rng.chance(35) {
            let from = g.people[head]
                .residences
                .last()
                .map(|r| r.from)
                .unwrap_or(start);
            let on = g
                .rng
                .date_between(from.max(date!(2005 - 01 - 01)), date!(2025 - 03 - 31));
            g.die(head, on, spouse);
            if let Some(s) = spouse {
                g.end(s, on, "variazione dell'intestatario");
                let address = g.people[s]
                    .residences
                    .last()
                    .map(|r| r.address.clone())
                    .unwrap_or_default();
                g.reside(
                    s,
                    on,
                    &address,
                    &family,
                    "intestatario scheda",
                    "variazione dell'intestatario",
                );
            }
        }
        for &m in &members {
            let p = &g.people[m];
            if p.death.is_none() && p.birth.date < date!(2007 - 01 - 01) && g.rng.chance(70) {
                let issued = g
                    .rng
                    .date_between(date!(2016 - 01 - 01), date!(2025 - 06 - 01));
                g.card(m, issued);
            }
            if g.rng.chance(15) {
                g.pec(m);
            }
        }
    }
}
