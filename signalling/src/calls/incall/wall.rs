//! The times of the in-call records: written as `queue::Time` (milliseconds, a JSON integer);
//! read as that or as the seconds (a JSON float) of the records and job files written before the
//! core took `queue::Time`.

use std::fmt;

use queue::Time;
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A time as read: milliseconds, or the older seconds.
pub(crate) struct Read(Time);

impl<'de> Deserialize<'de> for Read {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ReadVisitor)
    }
}

struct ReadVisitor;

impl Visitor<'_> for ReadVisitor {
    type Value = Read;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("milliseconds (an integer) or seconds (a float) since the Unix epoch")
    }

    fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Read, E> {
        Ok(Read(Time(ms)))
    }

    fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Read, E> {
        u64::try_from(ms)
            .map(|ms| Read(Time(ms)))
            .map_err(|_| E::invalid_value(Unexpected::Signed(ms), &self))
    }

    fn visit_f64<E: de::Error>(self, secs: f64) -> Result<Read, E> {
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(E::invalid_value(Unexpected::Float(secs), &self));
        }
        Ok(Read(Time((secs * 1000.0).round() as u64)))
    }
}

pub(crate) fn serialize<S: Serializer>(t: &Time, s: S) -> Result<S::Ok, S::Error> {
    t.serialize(s)
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
    Read::deserialize(d).map(|r| r.0)
}

/// An optional time.
pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(t: &Option<Time>, s: S) -> Result<S::Ok, S::Error> {
        t.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Time>, D::Error> {
        Option::<Read>::deserialize(d).map(|r| r.map(|r| r.0))
    }
}

/// A list of times.
pub(crate) mod list {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(t: &[Time], s: S) -> Result<S::Ok, S::Error> {
        t.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Time>, D::Error> {
        Vec::<Read>::deserialize(d).map(|v| v.into_iter().map(|r| r.0).collect())
    }
}
