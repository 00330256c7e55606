//! The HTTP registry adapter's responses (`certificates::registry::http`): the JSON a front office
//! answers, parsed as the adapter does (`serde_json` into `Comune`, `Vec<PersonSummary>`, `Person`
//! and `Vec<Person>`), then read through the history queries issuing relies on.
#![no_main]

use certificates::registry::{family_on, Comune, Person, PersonSummary};
use time::{Date, Month};

fn read_person(person: &Person, days: &[Date]) {
    let _ = person.full_name();
    let _ = person.summary();
    for &day in days {
        let _ = person.alive_on(day);
        if let Some(period) = person.residence_on(day) {
            let _ = person.registration_of(period);
        }
        if let Some(period) = person.last_residence_before(day) {
            let _ = person.registration_of(period);
        }
        let _ = person.citizenships_on(day);
        let _ = person.italian_on(day);
        let _ = person.marital_status_on(day);
    }
}

/// Fixed days plus every day the record names.
fn days(people: &[Person]) -> Vec<Date> {
    let mut days = vec![
        Date::from_calendar_date(2025, Month::July, 1).expect("date"),
        Date::MIN,
        Date::MAX,
    ];
    for p in people {
        days.push(p.birth.date);
        days.extend(
            p.residences
                .iter()
                .flat_map(|r| [Some(r.from), r.to])
                .flatten(),
        );
        days.extend(p.marital.iter().map(|m| m.date));
    }
    days.truncate(64);
    days
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Comune>(data);
    let _ = serde_json::from_slice::<Vec<PersonSummary>>(data);
    if let Ok(person) = serde_json::from_slice::<Person>(data) {
        let people = [person];
        let days = days(&people);
        read_person(&people[0], &days);
        for r in &people[0].residences {
            let _ = family_on(&people, &r.family_id, days[0], true);
        }
    }
    if let Ok(members) = serde_json::from_slice::<Vec<Person>>(data) {
        let days = days(&members);
        for p in &members {
            read_person(p, &days);
        }
        if let Some(r) = members.first().and_then(|p| p.residences.first()) {
            for &day in &days {
                let _ = family_on(&members, &r.family_id, day, false);
            }
        }
    }
});
