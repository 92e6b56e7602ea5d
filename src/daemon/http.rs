//! The daemon's HTTP endpoints: `/healthz` (alive), `/readyz` (the catalog and the sources'
//! primary stores answer, each within [`READY_CHECK_TIMEOUT`], all at once; says leader or
//! standby), `/metrics` (Prometheus), and behind the optional bearer token
//! `daemon.api_token`: `/api/v1/status` and `/api/v1/snapshots` (JSON), `/reports/...` (the
//! DR reports, [`super::reports`]); behind `failover.peer_token`: the failover controller's
//! peer endpoints (`/api/v1/failover/...`, [`super::failover`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::metrics::Metrics;
use super::status::StatusProvider;
use crate::ops::Ctx;

#[derive(Clone)]
pub struct HttpState {
    pub app: Arc<Ctx>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<dyn StatusProvider>,
    pub token: Option<String>,
    /// The failover controller's peer endpoints (`failover.mode: automatic | observe`).
    pub failover: Option<Arc<super::failover::Shared>>,
}

pub fn router(state: HttpState) -> Router {
    let api = Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/snapshots", get(snapshots))
        .route("/reports", get(super::reports::published))
        .route(
            "/reports/published/{id}",
            get(super::reports::published_one),
        )
        .route("/reports/posture", get(super::reports::posture))
        .route(
            "/reports/verifications/{id}",
            get(super::reports::verification),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), bearer));
    let mut r = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api);
    if let Some(failover) = &state.failover {
        r = r.merge(super::failover::router(failover.clone()));
    }
    r.with_state(state)
}

/// A request's head (request line and headers) must arrive within this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request, body and handler included, must be done within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection (keep-alive included) is closed after this, whatever it does.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// Largest request head, and largest declared request body (no endpoint takes a body).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

/// Serves until `shutdown` resolves. Every connection is bounded: its request heads by
/// [`HEADER_READ_TIMEOUT`] and [`MAX_HEADER_BYTES`], each request by [`REQUEST_TIMEOUT`] and
/// [`MAX_BODY_BYTES`], and the connection itself by [`CONNECTION_LIFETIME`], so a client that
/// sends half a request holds nothing for long.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let app = router(state)
        .layer(axum::extract::DefaultBodyLimit::max(
            MAX_BODY_BYTES as usize,
        ))
        .layer(middleware::from_fn(limits));
    let service = hyper_util::service::TowerToHyperService::new(app);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // A transient accept error (out of file descriptors): wait, go on.
                Err(e) => {
                    tracing::warn!(cause = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let service = service.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                Ok(Err(e)) => tracing::debug!(cause = %e, "HTTP connection ended with an error"),
                Err(_) => tracing::debug!("HTTP connection closed: lifetime reached"),
                Ok(Ok(())) => {}
            }
        });
    }
}

/// Refuses declared bodies over [`MAX_BODY_BYTES`] and bounds each request by
/// [`REQUEST_TIMEOUT`].
async fn limits(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "request timed out\n").into_response(),
    }
}

/// Compares without an early exit, so the time taken says nothing about the token.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn bearer(State(s): State<HttpState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong bearer token (daemon.api_token)\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

fn internal(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({ "error": e.to_string() })),
    )
        .into_response()
}

/// How long each `/readyz` check (the catalog, each primary store) may take. They run at
/// once, so `/readyz` answers within about this: keep the readiness probe's
/// `timeoutSeconds` above it (deploy/ does; a test checks).
pub const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

async fn bounded<E: std::fmt::Display>(
    check: impl Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(READY_CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}s",
            READY_CHECK_TIMEOUT.as_secs()
        )),
    }
}

/// Ready when the catalog and the stores the leader writes first (each source's `store:`)
/// answer. Copy stores (`copies:`, typically another region) are not probed: a DR region
/// being down must not take every replica out of service; failed copies show in
/// `/metrics` and the alerts instead.
async fn readyz(State(s): State<HttpState>) -> Response {
    let primaries: std::collections::BTreeSet<&str> = s
        .app
        .config
        .sources
        .iter()
        .map(|source| source.store.as_str())
        .collect();
    let stores = futures::future::join_all(
        primaries
            .into_iter()
            .filter_map(|name| s.app.stores.get(name).map(|store| (name, store)))
            .map(|(name, store)| async move { (name, bounded(store.check()).await) }),
    );
    let (catalog, stores) = tokio::join!(bounded(s.app.catalog.ping()), stores);
    let mut failing = Vec::new();
    if let Err(e) = &catalog {
        failing.push(format!("catalog: {e}"));
    }
    let mut by_store = serde_json::Map::new();
    for (name, r) in stores {
        if let Err(e) = &r {
            failing.push(format!("store {name}: {e}"));
        }
        by_store.insert(
            name.to_string(),
            json!(r.err().unwrap_or_else(|| "ok".into())),
        );
    }
    let ok = failing.is_empty();
    let role = if s.metrics.is_leader() {
        "leader"
    } else {
        "standby"
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "ready": ok,
        "role": role,
        "catalog": catalog.err().unwrap_or_else(|| "ok".into()),
        "stores": by_store,
    });
    if !ok {
        body["error"] = json!(format!(
            "{}; check that these answer from this pod (network policy, credentials, endpoint)",
            failing.join("; ")
        ));
    }
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(s): State<HttpState>) -> Response {
    let mut text = s.metrics.render();
    match s.status.prometheus(&s.app, s.app.now()).await {
        Ok(t) => text.push_str(&t),
        Err(e) => tracing::warn!(cause = %e, "status metrics unavailable"),
    }
    if let Some(failover) = &s.failover {
        text.push_str(&failover.metrics_text().await);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn status(State(s): State<HttpState>) -> Response {
    match s.status.json(&s.app, s.app.now()).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => internal(e),
    }
}

#[derive(serde::Deserialize)]
struct SnapshotsQuery {
    source: Option<String>,
}

async fn snapshots(State(s): State<HttpState>, Query(q): Query<SnapshotsQuery>) -> Response {
    match s.app.catalog.snapshots(q.source.as_deref()).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(e) => internal(e),
    }
}
