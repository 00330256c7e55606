//! Date helpers: ISO `YYYY-MM-DD` serde for [`time::Date`] and Italian formatting.
//!
//! The crate keeps its own serde format for dates instead of enabling `time`'s human-readable serde
//! feature, because that feature would change how every other crate in the workspace serializes dates.

use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::error::CertError;

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<Date, CertError> {
    Date::parse(s.trim(), format_description!("[year]-[month]-[day]")).map_err(|e| {
        CertError::MissingInput(format!("data non valida '{s}' (atteso AAAA-MM-GG): {e}"))
    })
}

/// Formats as `YYYY-MM-DD`.
pub fn iso(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Formats as the Italian `GG/MM/AAAA`.
pub fn italian(d: Date) -> String {
    format!("{:02}/{:02}/{:04}", d.day(), u8::from(d.month()), d.year())
}

/// Formats a UTC instant as an RFC 3339 timestamp.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Adds calendar months, clamping the day to the end of the target month.
pub fn add_months(d: Date, months: u32) -> Date {
    let total = d.year() * 12 + i32::from(u8::from(d.month())) - 1 + months as i32;
    let (year, month0) = (total.div_euclid(12), total.rem_euclid(12));
    let month = time::Month::try_from(month0 as u8 + 1).unwrap_or(time::Month::December);
    let last = month.length(year);
    Date::from_calendar_date(year, month, d.day().min(last)).unwrap_or(d)
}

/// Serde for `Date` as `YYYY-MM-DD`.
pub mod iso_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    /// Serializes a date as `YYYY-MM-DD`.
    pub fn serialize<S: Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::iso(*d))
    }

    /// Deserializes a `YYYY-MM-DD` date.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_date(&s).map_err(serde::de::Error::custom)
    }
}

/// Serde for `Option<Date>` as `YYYY-MM-DD` or null.
pub mod opt_iso_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    /// Serializes an optional date.
    pub fn serialize<S: Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&super::iso(*d)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes an optional date.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| super::parse_date(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
