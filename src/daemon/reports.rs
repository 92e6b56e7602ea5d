//! `/reports/posture` and `/reports/verifications/{id}` on the daemon: the DR reports of
//! `lifeboat report`, made on request from the catalog, behind the same bearer token as
//! `/api` (`daemon.api_token`). `?format=html|json|md` (default html), `?since=30d`.
//! `/reports` lists the reports published into the store (the scheduled posture reports,
//! one after each failover and drill) and `/reports/published/{id}?format=html|json` serves
//! one from the store; the scheduled publishing itself is [`schedule`].
//!
//! # Guarantees
//! - HTML is served with the same Content-Security-Policy as its meta tag, as a header too.
//! - A bad query is a 400, an unknown verification or report a 404; the on-request reports
//!   write nothing anywhere.
//! - A published report whose bytes in the store no longer match the SHA-256 the catalog
//!   recorded is refused (409), never served.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::http::HttpState;
use crate::ops::reports::ReportError;
use crate::report::{ReportFormat, dr, html};

#[derive(serde::Deserialize)]
pub struct ReportQuery {
    format: Option<String>,
    since: Option<String>,
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": msg }))).into_response()
}

/// The format asked for; the error message when it is not one.
fn format_of(q: &ReportQuery) -> Result<ReportFormat, String> {
    match q.format.as_deref() {
        None => Ok(ReportFormat::Html),
        Some(f) => <ReportFormat as clap::ValueEnum>::from_str(f, true)
            .map_err(|_| format!("format `{f}`: use html, json or md")),
    }
}

fn failed(e: ReportError) -> Response {
    let code = match e {
        ReportError::NoVerification(_) | ReportError::NoFailover(_) => StatusCode::NOT_FOUND,
        ReportError::EmptyPeriod => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (code, axum::Json(json!({ "error": e.to_string() }))).into_response()
}

fn body(format: ReportFormat, text: Result<String, serde_json::Error>) -> Response {
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({ "error": e.to_string() })),
            )
                .into_response();
        }
    };
    let kind = match format {
        ReportFormat::Html => "text/html; charset=utf-8",
        ReportFormat::Json => "application/json",
        ReportFormat::Md => "text/markdown; charset=utf-8",
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, html::CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        text,
    )
        .into_response()
}

pub async fn posture(State(s): State<HttpState>, Query(q): Query<ReportQuery>) -> Response {
    let format = match format_of(&q) {
        Ok(f) => f,
        Err(msg) => return bad_request(msg),
    };
    let since = match q.since.as_deref().map(humantime::parse_duration) {
        None => std::time::Duration::from_secs(30 * 86_400),
        Some(Ok(d)) => d,
        Some(Err(e)) => return bad_request(format!("since: {e} (e.g. 30d)")),
    };
    match crate::ops::reports::posture(&s.app, since).await {
        Ok(p) => body(format, dr::posture(&p, format)),
        Err(e) => failed(e),
    }
}

pub async fn verification(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let format = match format_of(&q) {
        Ok(f) => f,
        Err(msg) => return bad_request(msg),
    };
    match crate::ops::reports::verification(&s.app, &id).await {
        Ok(r) => body(format, dr::verification(&r, format)),
        Err(e) => failed(e),
    }
}

/// `GET /reports`: the published reports (newest first) as JSON, each with where to fetch it.
pub async fn published(State(s): State<HttpState>) -> Response {
    match s.app.catalog.published_reports(1000).await {
        Ok(rows) => {
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id,
                        "format": r.format,
                        "kind": r.kind,
                        "subject": r.subject,
                        "store": r.store,
                        "object_key": r.object_key,
                        "sha256": r.sha256,
                        "bytes": r.bytes,
                        "locked_until": r.locked_until,
                        "created_at": r.created_at,
                        "href": format!("/reports/published/{}?format={}", r.id, r.format),
                    })
                })
                .collect();
            axum::Json(json!({ "reports": list })).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

/// `GET /reports/published/{id}?format=html|json`: one published report, from the store,
/// refused (409) when its bytes no longer match the catalog's SHA-256.
pub async fn published_one(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let format = match q.format.as_deref().unwrap_or("html") {
        f @ ("html" | "json") => f,
        f => return bad_request(format!("format `{f}`: published reports are html or json")),
    };
    use crate::report::publish::{PublishError, read_verified};
    match read_verified(&s.app, &id, format).await {
        Ok((row, bytes)) => {
            let kind = if format == "html" {
                "text/html; charset=utf-8"
            } else {
                "application/json"
            };
            (
                [
                    (header::CONTENT_TYPE, kind.to_string()),
                    (header::CONTENT_SECURITY_POLICY, html::CSP.to_string()),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
                    (header::ETAG, format!("\"{}\"", row.sha256)),
                ],
                bytes,
            )
                .into_response()
        }
        Err(e) => {
            let code = match &e {
                PublishError::Unknown { .. } => StatusCode::NOT_FOUND,
                PublishError::Mismatch { .. } => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::warn!(id, format, cause = %e, "a published report was not served");
            (code, axum::Json(json!({ "error": e.to_string() }))).into_response()
        }
    }
}

/// Publishes the report of every finished failover that has none (`failover execute` killed
/// between finishing and publishing): the report is safe to publish again.
async fn catch_up_failovers(app: &crate::ops::Ctx) {
    use crate::report::publish::{ReportKind, publish_after};
    let Ok(rows) = app.catalog.failovers(1000).await else {
        return;
    };
    for f in rows.iter().filter(|f| f.status == "done") {
        let id = format!("failover-term-{}", f.term);
        let missing = matches!(app.catalog.published_report(&id, "json").await, Ok(None))
            || matches!(app.catalog.published_report(&id, "html").await, Ok(None));
        if missing {
            tracing::info!(
                term = f.term,
                "publishing the report of a failover that has none"
            );
            publish_after(app, ReportKind::Failover { term: f.term }).await;
        }
    }
}

/// Publishes the posture report on `reports.schedule` while this replica leads, until
/// `stop`: at start when an occurrence passed since the newest one published (a daemon down
/// on Monday publishes when it comes back), then at every occurrence. A failed publish is
/// retried a minute later. Each time, finished failovers without a published report get
/// one. Nothing without a `reports:` section.
pub async fn schedule(
    app: std::sync::Arc<crate::ops::Ctx>,
    stop: tokio_util::sync::CancellationToken,
) {
    use crate::report::publish::{ReportKind, posture_due, publish};
    let Some(cfg) = app.config.reports.clone() else {
        return;
    };
    let sched = cfg.schedule();
    tracing::info!(schedule = %sched.expr, "publishing the posture report on schedule");
    loop {
        catch_up_failovers(&app).await;
        let now = app.now();
        let last = match app.catalog.published_reports(1000).await {
            Ok(rows) => rows
                .iter()
                .filter(|r| r.kind == "posture")
                .filter_map(|r| chrono::DateTime::parse_from_rfc3339(&r.created_at).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
                .max(),
            Err(e) => {
                tracing::warn!(cause = %e, "cannot read the published reports; retrying in a minute");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => continue,
                }
            }
        };
        let mut wake = sched.cron.find_next_occurrence(&now, false).ok();
        if posture_due(&sched.cron, last, now) {
            let period = cfg.period();
            match publish(&app, ReportKind::Posture { period }).await {
                Ok(p) => tracing::info!(id = %p.id, "scheduled posture report published"),
                Err(e) => {
                    tracing::error!(cause = %e, "the scheduled posture report was not published; retrying in a minute");
                    wake = Some(now + chrono::TimeDelta::minutes(1));
                }
            }
        }
        let Some(wake) = wake else {
            tracing::warn!(schedule = %sched.expr, "the reports schedule has no next occurrence: no more scheduled reports");
            return;
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = app.clock.sleep_until(wake) => {}
        }
    }
}
