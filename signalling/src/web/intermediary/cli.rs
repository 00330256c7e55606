//! `sportello intermediary add|list|revoke|requests`: the accounts in the data directory and an
//! intermediary's audit trail, on the same configuration as `sportello serve`.

use std::io::Write;

use anyhow::Context;
use time::OffsetDateTime;

use super::{accounts, requests};
use crate::config::Config;

/// `sportello intermediary add`: prints the new API key once.
pub fn add(
    config: &Config,
    name: &str,
    scopes: &[String],
    quota_per_day: Option<u32>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let scopes: Vec<String> = scopes
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let key = accounts::add(
        &config.data_dir,
        name,
        &scopes,
        quota_per_day,
        OffsetDateTime::now_utc(),
    )?;
    writeln!(out, "{key}")?;
    writeln!(
        out,
        "# La chiave è mostrata solo ora: consegnarla all'intermediario in modo sicuro. / The key is shown only now: hand it over securely."
    )?;
    Ok(())
}

/// `sportello intermediary list`: name, scopes, quota, created, state; one a line, tab-separated.
pub fn list(config: &Config, out: &mut dyn Write) -> anyhow::Result<()> {
    for i in accounts::list(&config.data_dir)? {
        writeln!(
            out,
            "{}\t{}\t{}/day\t{}\t{}",
            i.name,
            i.scopes.join(","),
            i.quota_per_day,
            i.created_at,
            match &i.revoked_at {
                Some(t) => format!("revoked {t}"),
                None => "active".into(),
            }
        )?;
    }
    Ok(())
}

/// `sportello intermediary revoke NAME`.
pub fn revoke(config: &Config, name: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    accounts::revoke(&config.data_dir, name, OffsetDateTime::now_utc())?;
    writeln!(out, "{name} revoked")?;
    Ok(())
}

/// `sportello intermediary requests NAME [--from DAY] [--to DAY]`: the audited requests, one JSON
/// object a line.
pub fn requests(
    config: &Config,
    name: &str,
    from: Option<&str>,
    to: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let day = |d: Option<&str>| {
        d.map(|d| certificates::dates::parse_date(d).context("dates are YYYY-MM-DD"))
            .transpose()
    };
    let log = config
        .certificates
        .audit_log
        .clone()
        .unwrap_or_else(|| config.data_dir.join("audit.log"));
    for r in requests::requests(&log, name, day(from)?, day(to)?)? {
        writeln!(out, "{}", serde_json::to_string(&r)?)?;
    }
    Ok(())
}
