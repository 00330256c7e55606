//! `sportello report calls|certificates [--from D] [--to D] [--by G] [--format json|csv]`: the
//! reports of `GET /api/v1/reports/…`, read from the database the configuration names.

use history::{CallsBy, CertificatesBy};

use super::api::{self, ReportQuery};
use crate::config::Config;

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `report calls`.
    Calls,
    /// `report certificates`.
    Certificates,
}

/// The report's text (JSON or CSV), for the command line.
pub fn run(config: &Config, which: Which, query: &ReportQuery) -> anyhow::Result<String> {
    let tz = jiff::tz::TimeZone::get(&config.queue.time_zone)?;
    let today = super::today_in(&tz);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let db = super::open_db(config).await?;
        let out = match which {
            Which::Calls => {
                let req = query
                    .parse(today, CallsBy::Day, CallsBy::parse)
                    .map_err(|e| anyhow::anyhow!(e.message))?;
                api::calls(&db, &req).await
            }
            Which::Certificates => {
                let req = query
                    .parse(today, CertificatesBy::Kind, CertificatesBy::parse)
                    .map_err(|e| anyhow::anyhow!(e.message))?;
                api::certificates(&db, &req, config.history.yearly_certificate_target).await
            }
        };
        db.close().await;
        out.map(|(body, _)| body)
            .map_err(|e| anyhow::anyhow!(e.message))
    })
}
