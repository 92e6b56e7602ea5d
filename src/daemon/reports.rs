//! `/reports/posture` and `/reports/verifications/{id}` on the daemon: the DR reports of
//! `lifeboat report`, made on request from the catalog, behind the same bearer token as
//! `/api` (`daemon.api_token`). `?format=html|json|md` (default html), `?since=30d`.
//!
//! # Guarantees
//! - HTML is served with the same Content-Security-Policy as its meta tag, as a header too.
//! - A bad query is a 400, an unknown verification a 404; nothing is written anywhere.

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
        ReportError::NoVerification(_) => StatusCode::NOT_FOUND,
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
