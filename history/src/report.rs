//! Reports on the history, without I/O: the query ([`Period`], [`CallsBy`], [`CertificatesBy`]),
//! the rows the database sums up per group ([`CallSums`] and the counts), and how they become a
//! report ([`calls_report`], [`certificates_report`]) and CSV ([`calls_csv`],
//! [`certificates_csv`]).
//!
//! The figures use the queue's own definitions (`docs/queue.md`), from what the queue counted
//! for each call (`queue::CallRecord`):
//!
//! - `answered`: calls accepted by an operator (in their last service, after any transfer);
//! - `abandoned`: calls that ended unanswered, waiting or offered, not counting short abandons,
//!   which are `abandoned_short`;
//! - `service_level`: answered within the service's threshold ÷ (answered + abandoned after the
//!   threshold), 1.0 when there is neither;
//! - `asa_s`: mean wait of the answered calls; `aht_s`: mean connected + hold + wrap-up time of
//!   the calls whose wrap-up ended;
//! - `ratings`, `rating_avg`: the citizens' ratings; `dispositions` and `certificates`: counts by
//!   code and by kind.
//!
//! Calls are counted on the tenant-local day they were asked on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::Date;

use crate::Error;

/// The longest period a report may cover, in days.
pub const MAX_PERIOD_DAYS: i64 = 3 * 366;

/// Days from `from` to `to`, both included, tenant-local.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// The first day.
    pub from: Date,
    /// The last day.
    pub to: Date,
}

impl Period {
    /// A period, or `invalid` when `to` is before `from` or it is longer than
    /// [`MAX_PERIOD_DAYS`].
    pub fn new(from: Date, to: Date) -> Result<Period, Error> {
        if to < from {
            return Err(Error::Invalid("`to` is before `from`".into()));
        }
        if (to - from).whole_days() >= MAX_PERIOD_DAYS {
            return Err(Error::Invalid(format!(
                "a report covers at most {MAX_PERIOD_DAYS} days"
            )));
        }
        Ok(Period { from, to })
    }

    /// `from` as `YYYY-MM-DD`.
    pub fn from_text(&self) -> String {
        iso(self.from)
    }

    /// `to` as `YYYY-MM-DD`.
    pub fn to_text(&self) -> String {
        iso(self.to)
    }

    /// Every day of the period, as `YYYY-MM-DD`.
    pub fn days(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut d = self.from;
        loop {
            out.push(iso(d));
            match d.next_day() {
                Some(n) if n <= self.to => d = n,
                _ => return out,
            }
        }
    }

    /// Every month the period touches, as `YYYY-MM`.
    pub fn months(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for day in self.days() {
            let month = day[..7].to_owned();
            if out.last() != Some(&month) {
                out.push(month);
            }
        }
        out
    }
}

/// A date as `YYYY-MM-DD`.
pub fn iso(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Parses `YYYY-MM-DD`.
pub fn parse_day(field: &str, text: &str) -> Result<Date, Error> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, format).map_err(|_| Error::Invalid(format!("{field} is not YYYY-MM-DD")))
}

/// How the calls report groups its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallsBy {
    /// By the day the call was asked on.
    Day,
    /// By month (`YYYY-MM`).
    Month,
    /// By service.
    Service,
    /// By kiosk.
    Kiosk,
    /// By the operator who ended it (empty: never answered).
    Operator,
    /// By disposition (empty: never answered, or not yet wrapped up).
    Disposition,
}

impl CallsBy {
    /// Parses the `by` parameter.
    pub fn parse(text: &str) -> Result<CallsBy, Error> {
        Ok(match text {
            "day" => CallsBy::Day,
            "month" => CallsBy::Month,
            "service" => CallsBy::Service,
            "kiosk" => CallsBy::Kiosk,
            "operator" => CallsBy::Operator,
            "disposition" => CallsBy::Disposition,
            other => {
                return Err(Error::Invalid(format!(
                    "by {other:?}: one of day, month, service, kiosk, operator, disposition"
                )))
            }
        })
    }
}

/// How the certificates report groups its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificatesBy {
    /// By kind.
    Kind,
    /// By channel: kiosk, web, intermediary, cli.
    Channel,
    /// By fee: `bollo` or `esente`.
    Fee,
    /// By day of issue.
    Day,
    /// By month of issue.
    Month,
    /// By kiosk (empty: not issued at a kiosk).
    Kiosk,
}

impl CertificatesBy {
    /// Parses the `by` parameter.
    pub fn parse(text: &str) -> Result<CertificatesBy, Error> {
        Ok(match text {
            "kind" => CertificatesBy::Kind,
            "channel" => CertificatesBy::Channel,
            "fee" => CertificatesBy::Fee,
            "day" => CertificatesBy::Day,
            "month" => CertificatesBy::Month,
            "kiosk" => CertificatesBy::Kiosk,
            other => {
                return Err(Error::Invalid(format!(
                    "by {other:?}: one of kind, channel, fee, day, month, kiosk"
                )))
            }
        })
    }
}

/// What the database sums up for one group of calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallSums {
    /// The group's key.
    pub key: String,
    /// Calls.
    pub calls: i64,
    /// Answered.
    pub answered: i64,
    /// Abandoned, not short.
    pub abandoned: i64,
    /// Short abandons.
    pub abandoned_short: i64,
    /// Answered within the threshold.
    pub answered_in_sl: i64,
    /// Abandoned after the threshold.
    pub abandoned_after_sl: i64,
    /// The answered calls' waits, ms.
    pub wait_ms_sum: i64,
    /// Calls whose wrap-up ended.
    pub handled: i64,
    /// Their handle times, ms.
    pub handle_ms_sum: i64,
    /// Ratings.
    pub ratings: i64,
    /// Their sum.
    pub rating_sum: i64,
    /// Transfers.
    pub transfers: i64,
}

impl CallSums {
    fn add(&mut self, o: &CallSums) {
        self.calls += o.calls;
        self.answered += o.answered;
        self.abandoned += o.abandoned;
        self.abandoned_short += o.abandoned_short;
        self.answered_in_sl += o.answered_in_sl;
        self.abandoned_after_sl += o.abandoned_after_sl;
        self.wait_ms_sum += o.wait_ms_sum;
        self.handled += o.handled;
        self.handle_ms_sum += o.handle_ms_sum;
        self.ratings += o.ratings;
        self.rating_sum += o.rating_sum;
        self.transfers += o.transfers;
    }
}

/// A count of one code (disposition or kind) in one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedCount {
    /// The group's key.
    pub key: String,
    /// The code.
    pub code: String,
    /// How many.
    pub count: i64,
}

/// One row of the calls report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallsRow {
    /// The group: a day, a month, a service, a kiosk, an operator or a disposition (empty: none).
    pub key: String,
    /// Calls asked.
    pub calls: u64,
    /// Answered.
    pub answered: u64,
    /// Abandoned (short abandons apart).
    pub abandoned: u64,
    /// Abandoned within the short-abandon limit.
    pub abandoned_short: u64,
    /// Transfers.
    pub transfers: u64,
    /// Answered within the threshold ÷ (answered + abandoned after it); 1 with neither.
    pub service_level: f64,
    /// Mean wait of the answered calls, s.
    pub asa_s: f64,
    /// Mean handle time (connected + hold + wrap-up), s.
    pub aht_s: f64,
    /// Wrap-ups by disposition code.
    pub dispositions: BTreeMap<String, u64>,
    /// Ratings given.
    pub ratings: u64,
    /// Their mean (none without ratings).
    pub rating_avg: Option<f64>,
    /// Certificates issued in these calls, by kind.
    pub certificates: BTreeMap<String, u64>,
}

/// The calls report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallsReport {
    /// The first day.
    pub from: String,
    /// The last day.
    pub to: String,
    /// The grouping.
    pub by: CallsBy,
    /// One row per group; every day or month of the period when grouped by time.
    pub rows: Vec<CallsRow>,
    /// The whole period.
    pub total: CallsRow,
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn count(x: i64) -> u64 {
    u64::try_from(x).unwrap_or(0)
}

fn ratio(num: i64, den: i64) -> f64 {
    if den <= 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn row(
    sums: &CallSums,
    dispositions: BTreeMap<String, u64>,
    certificates: BTreeMap<String, u64>,
) -> CallsRow {
    let sl_den = sums.answered + sums.abandoned_after_sl;
    CallsRow {
        key: sums.key.clone(),
        calls: count(sums.calls),
        answered: count(sums.answered),
        abandoned: count(sums.abandoned),
        abandoned_short: count(sums.abandoned_short),
        transfers: count(sums.transfers),
        service_level: if sl_den == 0 {
            1.0
        } else {
            round(ratio(sums.answered_in_sl, sl_den), 4)
        },
        asa_s: round(ratio(sums.wait_ms_sum, sums.answered) / 1000.0, 3),
        aht_s: round(ratio(sums.handle_ms_sum, sums.handled) / 1000.0, 3),
        dispositions,
        ratings: count(sums.ratings),
        rating_avg: (sums.ratings > 0).then(|| round(ratio(sums.rating_sum, sums.ratings), 3)),
        certificates,
    }
}

fn by_key(counts: &[KeyedCount]) -> BTreeMap<&str, BTreeMap<String, u64>> {
    let mut out: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for c in counts {
        *out.entry(c.key.as_str())
            .or_default()
            .entry(c.code.clone())
            .or_default() += count(c.count);
    }
    out
}

fn merged(maps: impl Iterator<Item = BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for m in maps {
        for (k, v) in m {
            *out.entry(k).or_default() += v;
        }
    }
    out
}

/// The calls report from the database's sums: a row per group (with the empty days or months of
/// the period when grouped by time), and the total.
pub fn calls_report(
    period: &Period,
    by: CallsBy,
    sums: &[CallSums],
    dispositions: &[KeyedCount],
    certificates: &[KeyedCount],
) -> CallsReport {
    let mut groups: BTreeMap<String, CallSums> = BTreeMap::new();
    let fill = match by {
        CallsBy::Day => period.days(),
        CallsBy::Month => period.months(),
        _ => Vec::new(),
    };
    for key in fill {
        groups.insert(
            key.clone(),
            CallSums {
                key,
                ..CallSums::default()
            },
        );
    }
    let mut total = CallSums::default();
    for s in sums {
        groups
            .entry(s.key.clone())
            .or_insert_with(|| CallSums {
                key: s.key.clone(),
                ..CallSums::default()
            })
            .add(s);
        total.add(s);
    }
    let disp = by_key(dispositions);
    let certs = by_key(certificates);
    let rows: Vec<CallsRow> = groups
        .values()
        .map(|g| {
            row(
                g,
                disp.get(g.key.as_str()).cloned().unwrap_or_default(),
                certs.get(g.key.as_str()).cloned().unwrap_or_default(),
            )
        })
        .collect();
    total.key = "total".into();
    let total = row(
        &total,
        merged(rows.iter().map(|r| r.dispositions.clone())),
        merged(rows.iter().map(|r| r.certificates.clone())),
    );
    CallsReport {
        from: period.from_text(),
        to: period.to_text(),
        by,
        rows,
        total,
    }
}

/// A count of certificates of one kind, channel, fee and exemption in one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateCount {
    /// The group's key.
    pub key: String,
    /// The kind.
    pub kind: String,
    /// The channel.
    pub channel: String,
    /// `bollo` or `esente`.
    pub fee: String,
    /// The exemption's code (empty: none).
    pub exemption: String,
    /// How many.
    pub count: i64,
}

/// One row of the certificates report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CertificatesRow {
    /// The group: a kind, a channel, a fee, a day, a month or a kiosk.
    pub key: String,
    /// Certificates issued.
    pub issued: u64,
    /// By kind.
    pub kinds: BTreeMap<String, u64>,
    /// By channel (`kiosk`, `web`, `intermediary`, `cli`).
    pub channels: BTreeMap<String, u64>,
    /// Paid with a marca da bollo.
    pub bollo: u64,
    /// Exempt from the bollo.
    pub esente: u64,
    /// Exempt ones by exemption code.
    pub exemptions: BTreeMap<String, u64>,
}

impl CertificatesRow {
    fn add(&mut self, c: &CertificateCount) {
        let n = count(c.count);
        self.issued += n;
        *self.kinds.entry(c.kind.clone()).or_default() += n;
        *self.channels.entry(c.channel.clone()).or_default() += n;
        if c.fee == "bollo" {
            self.bollo += n;
        } else {
            self.esente += n;
            if !c.exemption.is_empty() {
                *self.exemptions.entry(c.exemption.clone()).or_default() += n;
            }
        }
    }
}

/// The certificates report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificatesReport {
    /// The first day.
    pub from: String,
    /// The last day.
    pub to: String,
    /// The grouping.
    pub by: CertificatesBy,
    /// One row per group; every day or month of the period when grouped by time.
    pub rows: Vec<CertificatesRow>,
    /// The whole period.
    pub total: CertificatesRow,
    /// The kiosks' yearly target (the brief's minimum: 10,000), for the pro-rata chart.
    pub yearly_target: u64,
}

/// The certificates report from the database's counts.
pub fn certificates_report(
    period: &Period,
    by: CertificatesBy,
    counts: &[CertificateCount],
    yearly_target: u64,
) -> CertificatesReport {
    let mut groups: BTreeMap<String, CertificatesRow> = BTreeMap::new();
    let fill = match by {
        CertificatesBy::Day => period.days(),
        CertificatesBy::Month => period.months(),
        _ => Vec::new(),
    };
    for key in fill {
        groups.insert(
            key.clone(),
            CertificatesRow {
                key,
                ..CertificatesRow::default()
            },
        );
    }
    let mut total = CertificatesRow {
        key: "total".into(),
        ..CertificatesRow::default()
    };
    for c in counts {
        groups
            .entry(c.key.clone())
            .or_insert_with(|| CertificatesRow {
                key: c.key.clone(),
                ..CertificatesRow::default()
            })
            .add(c);
        total.add(c);
    }
    CertificatesReport {
        from: period.from_text(),
        to: period.to_text(),
        by,
        rows: groups.into_values().collect(),
        total,
        yearly_target,
    }
}

fn csv_text(write: impl FnOnce(&mut csv::Writer<Vec<u8>>) -> csv::Result<()>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing to memory fails only on a bug; an empty text is then the visible symptom.
    if write(&mut w).is_err() {
        return String::new();
    }
    w.into_inner()
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

fn all_codes<'a>(maps: impl Iterator<Item = &'a BTreeMap<String, u64>>) -> Vec<String> {
    let mut codes: Vec<String> = maps.flat_map(|m| m.keys().cloned()).collect();
    codes.sort();
    codes.dedup();
    codes
}

fn num(x: f64) -> String {
    format!("{x}")
}

/// The calls report as CSV: a header, a row per group, then `total`. Dispositions and kinds are
/// columns `disposition:CODE` and `certificates:KIND`.
pub fn calls_csv(report: &CallsReport) -> String {
    let all = || report.rows.iter().chain(std::iter::once(&report.total));
    let disp = all_codes(all().map(|r| &r.dispositions));
    let kinds = all_codes(all().map(|r| &r.certificates));
    csv_text(|w| {
        let mut header: Vec<String> = [
            "key",
            "calls",
            "answered",
            "abandoned",
            "abandoned_short",
            "transfers",
            "service_level",
            "asa_s",
            "aht_s",
            "ratings",
            "rating_avg",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        header.extend(disp.iter().map(|d| format!("disposition:{d}")));
        header.extend(kinds.iter().map(|k| format!("certificates:{k}")));
        w.write_record(&header)?;
        for r in all() {
            let mut rec = vec![
                r.key.clone(),
                r.calls.to_string(),
                r.answered.to_string(),
                r.abandoned.to_string(),
                r.abandoned_short.to_string(),
                r.transfers.to_string(),
                num(r.service_level),
                num(r.asa_s),
                num(r.aht_s),
                r.ratings.to_string(),
                r.rating_avg.map(num).unwrap_or_default(),
            ];
            rec.extend(
                disp.iter()
                    .map(|d| r.dispositions.get(d).copied().unwrap_or(0).to_string()),
            );
            rec.extend(
                kinds
                    .iter()
                    .map(|k| r.certificates.get(k).copied().unwrap_or(0).to_string()),
            );
            w.write_record(&rec)?;
        }
        Ok(())
    })
}

/// The certificates report as CSV: a header, a row per group, then `total`; kinds, channels and
/// exemptions are columns `kind:K`, `channel:C` and `exemption:E`.
pub fn certificates_csv(report: &CertificatesReport) -> String {
    let all = || report.rows.iter().chain(std::iter::once(&report.total));
    let kinds = all_codes(all().map(|r| &r.kinds));
    let channels = all_codes(all().map(|r| &r.channels));
    let exemptions = all_codes(all().map(|r| &r.exemptions));
    csv_text(|w| {
        let mut header: Vec<String> = ["key", "issued", "bollo", "esente"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        header.extend(kinds.iter().map(|k| format!("kind:{k}")));
        header.extend(channels.iter().map(|c| format!("channel:{c}")));
        header.extend(exemptions.iter().map(|e| format!("exemption:{e}")));
        w.write_record(&header)?;
        for r in all() {
            let mut rec = vec![
                r.key.clone(),
                r.issued.to_string(),
                r.bollo.to_string(),
                r.esente.to_string(),
            ];
            for (codes, map) in [
                (&kinds, &r.kinds),
                (&channels, &r.channels),
                (&exemptions, &r.exemptions),
            ] {
                rec.extend(
                    codes
                        .iter()
                        .map(|c| map.get(c).copied().unwrap_or(0).to_string()),
                );
            }
            w.write_record(&rec)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn sums(key: &str, answered: i64, in_sl: i64, abandoned: i64, after_sl: i64) -> CallSums {
        CallSums {
            key: key.into(),
            calls: answered + abandoned,
            answered,
            abandoned,
            answered_in_sl: in_sl,
            abandoned_after_sl: after_sl,
            wait_ms_sum: answered * 10_000,
            handled: answered,
            handle_ms_sum: answered * 120_000,
            ratings: answered,
            rating_sum: answered * 4,
            ..CallSums::default()
        }
    }

    #[test]
    fn periods_are_checked_and_filled() {
        let p = Period::new(date!(2026 - 02 - 27), date!(2026 - 03 - 02)).unwrap();
        assert_eq!(
            p.days(),
            ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02"]
        );
        assert_eq!(p.months(), ["2026-02", "2026-03"]);
        assert!(Period::new(date!(2026 - 03 - 02), date!(2026 - 03 - 01)).is_err());
        assert!(Period::new(date!(2020 - 01 - 01), date!(2026 - 01 - 01)).is_err());
        assert!(parse_day("from", "2026-13-01").is_err());
        assert_eq!(
            parse_day("from", "2026-03-01").unwrap(),
            date!(2026 - 03 - 01)
        );
        assert!(CallsBy::parse("week").is_err());
        assert_eq!(CertificatesBy::parse("fee").unwrap(), CertificatesBy::Fee);
    }

    #[test]
    fn rows_follow_the_queue_definitions() {
        let p = Period::new(date!(2026 - 03 - 01), date!(2026 - 03 - 03)).unwrap();
        let disp = vec![
            KeyedCount {
                key: "2026-03-01".into(),
                code: "informazioni".into(),
                count: 2,
            },
            KeyedCount {
                key: "2026-03-03".into(),
                code: "informazioni".into(),
                count: 1,
            },
        ];
        let certs = vec![KeyedCount {
            key: "2026-03-01".into(),
            code: "residenza".into(),
            count: 3,
        }];
        let r = calls_report(
            &p,
            CallsBy::Day,
            &[
                sums("2026-03-01", 3, 2, 1, 1),
                sums("2026-03-03", 1, 1, 0, 0),
            ],
            &disp,
            &certs,
        );
        assert_eq!(r.rows.len(), 3);
        let first = &r.rows[0];
        assert_eq!((first.answered, first.abandoned, first.calls), (3, 1, 4));
        // 2 within ÷ (3 answered + 1 abandoned after T).
        assert_eq!(first.service_level, 0.5);
        assert_eq!(first.asa_s, 10.0);
        assert_eq!(first.aht_s, 120.0);
        assert_eq!(first.rating_avg, Some(4.0));
        assert_eq!(first.certificates["residenza"], 3);
        // An empty day: nothing offered, service level 1, no rating.
        let empty = &r.rows[1];
        assert_eq!(empty.key, "2026-03-02");
        assert_eq!((empty.calls, empty.service_level), (0, 1.0));
        assert_eq!(empty.rating_avg, None);
        assert_eq!(r.total.answered, 4);
        assert_eq!(r.total.dispositions["informazioni"], 3);
        assert_eq!(r.total.service_level, 0.6);
        let csv = calls_csv(&r);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "key,calls,answered,abandoned,abandoned_short,transfers,service_level,asa_s,aht_s,ratings,rating_avg,disposition:informazioni,certificates:residenza"
        );
        assert_eq!(lines[1], "2026-03-01,4,3,1,0,0,0.5,10,120,3,4,2,3");
        assert_eq!(lines[2], "2026-03-02,0,0,0,0,0,1,0,0,0,,0,0");
        assert_eq!(lines[4], "total,5,4,1,0,0,0.6,10,120,4,4,3,3");
    }

    #[test]
    fn certificates_add_up_by_channel_and_fee() {
        let p = Period::new(date!(2026 - 03 - 01), date!(2026 - 03 - 31)).unwrap();
        let c = |kind: &str, channel: &str, fee: &str, ex: &str, n| CertificateCount {
            key: kind.into(),
            kind: kind.into(),
            channel: channel.into(),
            fee: fee.into(),
            exemption: ex.into(),
            count: n,
        };
        let r = certificates_report(
            &p,
            CertificatesBy::Kind,
            &[
                c("residenza", "kiosk", "bollo", "", 2),
                c("residenza", "web", "esente", "pensione", 1),
                c("nascita", "intermediary", "esente", "", 4),
            ],
            10_000,
        );
        assert_eq!(r.rows.len(), 2);
        let res = r.rows.iter().find(|r| r.key == "residenza").unwrap();
        assert_eq!((res.issued, res.bollo, res.esente), (3, 2, 1));
        assert_eq!(res.exemptions["pensione"], 1);
        assert_eq!(r.total.issued, 7);
        assert_eq!(r.total.channels["intermediary"], 4);
        let csv = certificates_csv(&r);
        assert_eq!(
            csv.lines().next().unwrap(),
            "key,issued,bollo,esente,kind:nascita,kind:residenza,channel:intermediary,channel:kiosk,channel:web,exemption:pensione"
        );
        assert_eq!(csv.lines().last().unwrap(), "total,7,2,5,4,3,4,2,1,1");
    }
}
