//! `GET /api/v1/reports/calls` and `GET /api/v1/reports/certificates` (supervisors only), and
//! `sportello report calls|certificates` with the same parameters:
//!
//! - `from`, `to`: tenant-local days `YYYY-MM-DD`, both included (default: the month so far);
//! - `by`: `day|month|service|kiosk|operator|disposition` for calls (default `day`),
//!   `kind|channel|fee|day|month|kiosk` for certificates (default `kind`);
//! - `format`: `json` (default) or `csv` (a download: `Content-Disposition: attachment`).
//!
//! A report first waits briefly ([`super::FLUSH_BEFORE_REPORT`]) for this node's writer, so calls
//! that just ended here are in it. Bad parameters are `invalid` (400); a database that does not
//! answer is `unavailable` (503).

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use history::report::{self, parse_day};
use history::{CallsBy, CertificatesBy, Db, Period};
use protocol::{ErrorCode, Role};
use serde::Deserialize;

use crate::error::AppError;
use crate::http::Authenticated;
use crate::state::AppState;

/// This module's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reports/calls", get(get_calls))
        .route("/api/v1/reports/certificates", get(get_certificates))
}

/// The query of both reports.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReportQuery {
    /// The first day, `YYYY-MM-DD`.
    pub from: Option<String>,
    /// The last day, `YYYY-MM-DD`.
    pub to: Option<String>,
    /// The grouping.
    pub by: Option<String>,
    /// `json` or `csv`.
    pub format: Option<String>,
}

/// A report's output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// CSV.
    Csv,
}

/// A parsed report request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<B> {
    /// The days.
    pub period: Period,
    /// The grouping.
    pub by: B,
    /// The format.
    pub format: Format,
}

fn invalid(e: history::Error) -> AppError {
    match e {
        history::Error::Invalid(m) => AppError::invalid(m),
        history::Error::Database(m) => {
            tracing::warn!(error = %m, "history database unavailable");
            AppError::new(
                ErrorCode::Unavailable,
                "the history database does not answer; retry later",
            )
        }
    }
}

fn text(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl ReportQuery {
    /// The request, with `today` for the defaults (the month so far), or `invalid`.
    pub fn parse<B>(
        &self,
        today: time::Date,
        default_by: B,
        parse_by: fn(&str) -> Result<B, history::Error>,
    ) -> Result<Request<B>, AppError> {
        let to = match text(&self.to) {
            Some(t) => parse_day("to", t).map_err(invalid)?,
            None => today,
        };
        let from = match text(&self.from) {
            Some(f) => parse_day("from", f).map_err(invalid)?,
            None => to.replace_day(1).unwrap_or(to),
        };
        let period = Period::new(from, to).map_err(invalid)?;
        let by = match text(&self.by) {
            Some(b) => parse_by(b).map_err(invalid)?,
            None => default_by,
        };
        let format = match text(&self.format) {
            None | Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            Some(other) => return Err(AppError::invalid(format!("format {other:?}: json or csv"))),
        };
        Ok(Request { period, by, format })
    }
}

/// The calls report as JSON or CSV text.
pub async fn calls(db: &Db, req: &Request<CallsBy>) -> Result<(String, Format), AppError> {
    let r = db
        .calls_report(&req.period, req.by)
        .await
        .map_err(invalid)?;
    Ok(match req.format {
        Format::Json => (
            serde_json::to_string(&r).map_err(AppError::internal)?,
            Format::Json,
        ),
        Format::Csv => (report::calls_csv(&r), Format::Csv),
    })
}

/// The certificates report as JSON or CSV text.
pub async fn certificates(
    db: &Db,
    req: &Request<CertificatesBy>,
    yearly_target: u64,
) -> Result<(String, Format), AppError> {
    let r = db
        .certificates_report(&req.period, req.by, yearly_target)
        .await
        .map_err(invalid)?;
    Ok(match req.format {
        Format::Json => (
            serde_json::to_string(&r).map_err(AppError::internal)?,
            Format::Json,
        ),
        Format::Csv => (report::certificates_csv(&r), Format::Csv),
    })
}

fn supervisor(who: &crate::accounts::Principal) -> Result<(), AppError> {
    if who.role == Role::Supervisor {
        Ok(())
    } else {
        Err(AppError::new(ErrorCode::Forbidden, "supervisors only"))
    }
}

fn sink(state: &AppState) -> Result<&super::Sink, AppError> {
    state
        .routing
        .outcomes
        .sink()
        .ok_or_else(|| AppError::new(ErrorCode::Unavailable, "this node keeps no call history"))
}

fn respond(body: String, format: Format, name: &str, period: &Period) -> Response {
    match format {
        Format::Json => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Format::Csv => {
            let disposition = format!(
                "attachment; filename=\"sportello-{name}-{}-{}.csv\"",
                period.from_text(),
                period.to_text()
            );
            let mut response = (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                )],
                body,
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
    }
}

async fn get_calls(
    State(state): State<AppState>,
    Authenticated(who): Authenticated,
    Query(q): Query<ReportQuery>,
) -> Result<Response, AppError> {
    supervisor(&who)?;
    let sink = sink(&state)?;
    let req = q.parse(sink.today(), CallsBy::Day, CallsBy::parse)?;
    sink.history().flush(super::FLUSH_BEFORE_REPORT).await;
    let (body, format) = calls(sink.history().db(), &req).await?;
    Ok(respond(body, format, "calls", &req.period))
}

async fn get_certificates(
    State(state): State<AppState>,
    Authenticated(who): Authenticated,
    Query(q): Query<ReportQuery>,
) -> Result<Response, AppError> {
    supervisor(&who)?;
    let sink = sink(&state)?;
    let req = q.parse(sink.today(), CertificatesBy::Kind, CertificatesBy::parse)?;
    sink.history().flush(super::FLUSH_BEFORE_REPORT).await;
    let target = state.config.history.yearly_certificate_target;
    let (body, format) = certificates(sink.history().db(), &req, target).await?;
    Ok(respond(body, format, "certificates", &req.period))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn q(
        from: Option<&str>,
        to: Option<&str>,
        by: Option<&str>,
        format: Option<&str>,
    ) -> ReportQuery {
        ReportQuery {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            by: by.map(str::to_owned),
            format: format.map(str::to_owned),
        }
    }

    #[test]
    fn the_default_is_the_month_so_far_by_day_in_json() {
        let r = q(None, None, None, None)
            .parse(date!(2026 - 03 - 17), CallsBy::Day, CallsBy::parse)
            .unwrap();
        assert_eq!(r.period.from, date!(2026 - 03 - 01));
        assert_eq!(r.period.to, date!(2026 - 03 - 17));
        assert_eq!((r.by, r.format), (CallsBy::Day, Format::Json));
        let r = q(
            Some("2026-01-01"),
            Some("2026-01-31"),
            Some("kiosk"),
            Some("csv"),
        )
        .parse(date!(2026 - 03 - 17), CallsBy::Day, CallsBy::parse)
        .unwrap();
        assert_eq!((r.by, r.format), (CallsBy::Kiosk, Format::Csv));
    }

    #[test]
    fn bad_parameters_are_invalid() {
        let today = date!(2026 - 03 - 17);
        for bad in [
            q(Some("2026-3-1"), None, None, None),
            q(Some("2026-03-10"), Some("2026-03-01"), None, None),
            q(None, None, Some("week"), None),
            q(None, None, None, Some("xml")),
            q(Some("2020-01-01"), Some("2026-01-01"), None, None),
        ] {
            let e = bad.parse(today, CallsBy::Day, CallsBy::parse).unwrap_err();
            assert_eq!(e.code, ErrorCode::Invalid, "{bad:?}");
        }
        assert!(q(None, None, Some("channel"), None)
            .parse(today, CertificatesBy::Kind, CertificatesBy::parse)
            .is_ok());
    }
}
