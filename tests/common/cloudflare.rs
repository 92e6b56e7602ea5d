// A contract fake of Cloudflare's DNS records API (v4), good enough to hold lifeboat's
// Cloudflare provider to the real API's contract, and writing every change into a real
// PowerDNS zone so that the answers are still checked with real DNS queries:
//   * the envelope `{success, errors: [{code, message}], messages, result, result_info}`;
//   * `GET .../dns_records?type=&name=` (exact name match), `POST`, `PUT` (replace), `PATCH`
//     (merge), `DELETE` by id (81044 when gone), `POST .../dns_records/batch` applied all or
//     nothing in Cloudflare's order (deletes, patches, puts, posts);
//   * `Authorization: Bearer TOKEN` (403, code 10000, otherwise), an unknown zone id (404,
//     code 7003), invalid content (400, code 9005), an identical record (400, code 81058);
//   * 429 with `retry-after` for the next N requests when told to.
#![allow(dead_code)]
// The handlers answer an early `Err(Response)` as axum does; boxing it buys nothing in a test fake.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub id: String,
    pub rtype: String,
    pub name: String,
    pub content: String,
    pub ttl: u32,
    pub proxied: bool,
}

impl Rec {
    fn json(&self) -> Value {
        json!({"id": self.id, "type": self.rtype, "name": self.name, "content": self.content,
               "ttl": self.ttl, "proxied": self.proxied, "proxiable": true})
    }
}

#[derive(Default)]
pub struct FakeState {
    pub records: Vec<Rec>,
    next_id: u64,
    pub throttle: u32,
    pub requests: u32,
    pub batches: u32,
}

struct Ctx {
    zone_id: String,
    zone_name: String,
    token: String,
    pdns_api: String,
    pdns_key: String,
    http: reqwest::Client,
    state: Mutex<FakeState>,
}

pub struct CloudflareFake {
    pub addr: SocketAddr,
    pub zone_id: String,
    pub token: String,
    ctx: Arc<Ctx>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CloudflareFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CloudflareFake {
    /// Serves zone `zone_name` (no trailing dot) as zone id `zone_id`, mirroring into the
    /// PowerDNS API at `pdns_api` (key `pdns_key`).
    pub async fn start(zone_name: &str, pdns_api: &str, pdns_key: &str) -> CloudflareFake {
        let ctx = Arc::new(Ctx {
            zone_id: format!("{:032x}", rand::random::<u128>()),
            zone_name: zone_name.trim_end_matches('.').to_string(),
            token: format!("cf-token-{}", rand::random::<u64>()),
            pdns_api: pdns_api.to_string(),
            pdns_key: pdns_key.to_string(),
            http: reqwest::Client::new(),
            state: Mutex::new(FakeState::default()),
        });
        let app = Router::new()
            .route(
                "/client/v4/zones/{zone}/dns_records",
                get(list).post(create),
            )
            .route("/client/v4/zones/{zone}/dns_records/batch", post(batch))
            .route(
                "/client/v4/zones/{zone}/dns_records/{id}",
                put(replace).patch(patch).delete(delete),
            )
            .with_state(ctx.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Cloudflare fake");
        let addr = listener.local_addr().expect("fake address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        CloudflareFake {
            addr,
            zone_id: ctx.zone_id.clone(),
            token: ctx.token.clone(),
            ctx,
            task,
        }
    }

    pub fn api_url(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    pub fn with_state<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.ctx.state.lock().unwrap())
    }
}

fn envelope(status: StatusCode, result: Value, errors: &[(i64, &str)]) -> Response {
    let body = json!({
        "success": errors.is_empty(),
        "errors": errors.iter().map(|(c, m)| json!({"code": c, "message": m})).collect::<Vec<_>>(),
        "messages": [],
        "result": result,
    });
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn fail(status: StatusCode, code: i64, message: &str) -> Response {
    envelope(status, Value::Null, &[(code, message)])
}

/// Auth, zone id and throttling, in that order; `Err` is the response to send.
fn gate(ctx: &Ctx, headers: &HeaderMap, zone: &str) -> Result<(), Response> {
    let mut st = ctx.state.lock().unwrap();
    st.requests += 1;
    if st.throttle > 0 {
        st.throttle -= 1;
        let mut r = fail(
            StatusCode::TOO_MANY_REQUESTS,
            971,
            "Please wait and consider throttling your request speed",
        );
        r.headers_mut()
            .insert("retry-after", "1".parse().expect("header value"));
        return Err(r);
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {}", ctx.token) {
        return Err(fail(StatusCode::FORBIDDEN, 10000, "Authentication error"));
    }
    if zone != ctx.zone_id {
        return Err(fail(
            StatusCode::NOT_FOUND,
            7003,
            "Could not route to /zones/…/dns_records, perhaps your object identifier is invalid?",
        ));
    }
    Ok(())
}

/// A record from a request body, checked as Cloudflare checks it; `base` fills what a PATCH omits.
fn record_of(
    ctx: &Ctx,
    body: &Value,
    base: Option<&Rec>,
    id: String,
) -> Result<Rec, (i64, String)> {
    let field = |k: &str| body.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let rtype = field("type")
        .or(base.map(|b| b.rtype.clone()))
        .ok_or((9000, "DNS record type is required".to_string()))?;
    let name = field("name")
        .or(base.map(|b| b.name.clone()))
        .ok_or((9000, "DNS record name is required".to_string()))?;
    let content = field("content")
        .or(base.map(|b| b.content.clone()))
        .ok_or((9000, "DNS record content is required".to_string()))?;
    let ttl = body
        .get("ttl")
        .and_then(|v| v.as_u64())
        .map(|t| t as u32)
        .or(base.map(|b| b.ttl))
        .unwrap_or(1);
    let proxied = body
        .get("proxied")
        .and_then(|v| v.as_bool())
        .or(base.map(|b| b.proxied))
        .unwrap_or(false);
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if !(name == ctx.zone_name || name.ends_with(&format!(".{}", ctx.zone_name))) {
        return Err((
            1004,
            format!(
                "DNS Validation Error: {name} is not in zone {}",
                ctx.zone_name
            ),
        ));
    }
    let ok = match rtype.as_str() {
        "A" => content.parse::<std::net::Ipv4Addr>().is_ok(),
        "AAAA" => content.parse::<std::net::Ipv6Addr>().is_ok(),
        "CNAME" => !content.is_empty(),
        _ => {
            return Err((
                9004,
                format!("Unsupported record type {rtype} in this fake"),
            ));
        }
    };
    if !ok {
        return Err((9005, format!("Content for {rtype} record is invalid.")));
    }
    if ttl != 1 && !(30..=86400).contains(&ttl) {
        return Err((
            9021,
            "Invalid TTL. Must be between 30 and 86400 seconds, or 1 for Automatic.".into(),
        ));
    }
    Ok(Rec {
        id,
        rtype,
        name,
        content,
        ttl,
        proxied,
    })
}

fn new_id(st: &mut FakeState) -> String {
    st.next_id += 1;
    format!("{:032x}", st.next_id)
}

fn check_duplicate(records: &[Rec], r: &Rec) -> Result<(), (i64, String)> {
    if records
        .iter()
        .any(|o| o.id != r.id && o.rtype == r.rtype && o.name == r.name && o.content == r.content)
    {
        return Err((81058, "An identical record already exists.".into()));
    }
    Ok(())
}

/// Writes the RRsets of `names` from the fake's records into PowerDNS.
async fn mirror(ctx: &Ctx, mut touched: Vec<(String, String)>) -> Result<(), String> {
    touched.sort();
    touched.dedup();
    let rrsets: Vec<Value> = {
        let st = ctx.state.lock().unwrap();
        touched
            .iter()
            .map(|(name, rtype)| {
                let recs: Vec<&Rec> = st.records.iter().filter(|r| &r.name == name && &r.rtype == rtype).collect();
                if recs.is_empty() {
                    json!({"name": format!("{name}."), "type": rtype, "changetype": "DELETE"})
                } else {
                    let ttl = if recs[0].ttl == 1 { 300 } else { recs[0].ttl };
                    json!({"name": format!("{name}."), "type": rtype, "ttl": ttl, "changetype": "REPLACE",
                           "records": recs.iter().map(|r| json!({"content": r.content, "disabled": false})).collect::<Vec<_>>()})
                }
            })
            .collect()
    };
    if rrsets.is_empty() {
        return Ok(());
    }
    let resp = ctx
        .http
        .patch(format!(
            "{}/api/v1/servers/localhost/zones/{}.",
            ctx.pdns_api, ctx.zone_name
        ))
        .header("X-API-Key", &ctx.pdns_key)
        .header("content-type", "application/json")
        .body(json!({"rrsets": rrsets}).to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "PowerDNS: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        ))
    }
}

async fn respond_after_mirror(ctx: &Ctx, touched: Vec<(String, String)>, ok: Response) -> Response {
    match mirror(ctx, touched).await {
        Ok(()) => ok,
        Err(e) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            10001,
            &format!("fake could not write to PowerDNS: {e}"),
        ),
    }
}

async fn list(
    State(ctx): State<Arc<Ctx>>,
    Path(zone): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&ctx, &headers, &zone) {
        return r;
    }
    let st = ctx.state.lock().unwrap();
    let name = q
        .get("name")
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase());
    let found: Vec<Value> = st
        .records
        .iter()
        .filter(|r| {
            q.get("type").is_none_or(|t| &r.rtype == t)
                && name.as_ref().is_none_or(|n| &r.name == n)
        })
        .map(Rec::json)
        .collect();
    let mut r = envelope(StatusCode::OK, Value::Array(found.clone()), &[]);
    let body = json!({"success": true, "errors": [], "messages": [], "result": found,
                      "result_info": {"page": 1, "per_page": 100, "count": found.len(), "total_count": found.len()}});
    *r.body_mut() = axum::body::Body::from(body.to_string());
    r
}

fn parse(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| {
        fail(
            StatusCode::BAD_REQUEST,
            9207,
            &format!("Request body is invalid: {e}"),
        )
    })
}

async fn create(
    State(ctx): State<Arc<Ctx>>,
    Path(zone): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&ctx, &headers, &zone) {
        return r;
    }
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let rec = {
        let mut st = ctx.state.lock().unwrap();
        let id = new_id(&mut st);
        match record_of(&ctx, &body, None, id)
            .and_then(|r| check_duplicate(&st.records, &r).map(|_| r))
        {
            Ok(r) => {
                st.records.push(r.clone());
                r
            }
            Err((c, m)) => return fail(StatusCode::BAD_REQUEST, c, &m),
        }
    };
    let touched = vec![(rec.name.clone(), rec.rtype.clone())];
    respond_after_mirror(&ctx, touched, envelope(StatusCode::OK, rec.json(), &[])).await
}

async fn update(
    ctx: Arc<Ctx>,
    zone: String,
    id: String,
    headers: HeaderMap,
    body: Bytes,
    merge: bool,
) -> Response {
    if let Err(r) = gate(&ctx, &headers, &zone) {
        return r;
    }
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (old, new) = {
        let mut st = ctx.state.lock().unwrap();
        let Some(i) = st.records.iter().position(|r| r.id == id) else {
            return fail(StatusCode::NOT_FOUND, 81044, "Record does not exist.");
        };
        let old = st.records[i].clone();
        match record_of(&ctx, &body, merge.then_some(&old), id.clone())
            .and_then(|r| check_duplicate(&st.records, &r).map(|_| r))
        {
            Ok(r) => {
                st.records[i] = r.clone();
                (old, r)
            }
            Err((c, m)) => return fail(StatusCode::BAD_REQUEST, c, &m),
        }
    };
    let touched = vec![
        (old.name.clone(), old.rtype.clone()),
        (new.name.clone(), new.rtype.clone()),
    ];
    respond_after_mirror(&ctx, touched, envelope(StatusCode::OK, new.json(), &[])).await
}

async fn replace(
    State(ctx): State<Arc<Ctx>>,
    Path((zone, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    update(ctx, zone, id, headers, body, false).await
}

async fn patch(
    State(ctx): State<Arc<Ctx>>,
    Path((zone, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    update(ctx, zone, id, headers, body, true).await
}

async fn delete(
    State(ctx): State<Arc<Ctx>>,
    Path((zone, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&ctx, &headers, &zone) {
        return r;
    }
    let gone = {
        let mut st = ctx.state.lock().unwrap();
        let Some(i) = st.records.iter().position(|r| r.id == id) else {
            return fail(StatusCode::NOT_FOUND, 81044, "Record does not exist.");
        };
        st.records.remove(i)
    };
    let touched = vec![(gone.name.clone(), gone.rtype.clone())];
    respond_after_mirror(
        &ctx,
        touched,
        envelope(StatusCode::OK, json!({"id": gone.id}), &[]),
    )
    .await
}

/// All or nothing, in Cloudflare's order: deletes, patches, puts, posts.
async fn batch(
    State(ctx): State<Arc<Ctx>>,
    Path(zone): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&ctx, &headers, &zone) {
        return r;
    }
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let items = |k: &str| {
        body.get(k)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let (result, touched) = {
        let mut st = ctx.state.lock().unwrap();
        st.batches += 1;
        let mut records = st.records.clone();
        let mut next_id = st.next_id;
        let mut touched = Vec::new();
        let mut out = json!({"deletes": [], "patches": [], "puts": [], "posts": []});
        let outcome: Result<(), (i64, String)> = (|| {
            for d in items("deletes") {
                let id = d.get("id").and_then(|v| v.as_str()).unwrap_or("");
                let i = records
                    .iter()
                    .position(|r| r.id == id)
                    .ok_or((81044, format!("Record {id} does not exist.")))?;
                let gone = records.remove(i);
                touched.push((gone.name.clone(), gone.rtype.clone()));
                out["deletes"]
                    .as_array_mut()
                    .expect("array")
                    .push(gone.json());
            }
            for (key, merge) in [("patches", true), ("puts", false)] {
                for p in items(key) {
                    let id = p
                        .get("id")
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_string();
                    let i = records
                        .iter()
                        .position(|r| r.id == id)
                        .ok_or((81044, format!("Record {id} does not exist.")))?;
                    let old = records[i].clone();
                    let new = record_of(&ctx, &p, merge.then_some(&old), id)?;
                    check_duplicate(&records, &new)?;
                    touched.push((old.name.clone(), old.rtype.clone()));
                    touched.push((new.name.clone(), new.rtype.clone()));
                    out[key].as_array_mut().expect("array").push(new.json());
                    records[i] = new;
                }
            }
            for p in items("posts") {
                next_id += 1;
                let new = record_of(&ctx, &p, None, format!("{next_id:032x}"))?;
                check_duplicate(&records, &new)?;
                touched.push((new.name.clone(), new.rtype.clone()));
                out["posts"].as_array_mut().expect("array").push(new.json());
                records.push(new);
            }
            Ok(())
        })();
        if let Err((c, m)) = outcome {
            return fail(StatusCode::BAD_REQUEST, c, &m);
        }
        st.records = records;
        st.next_id = next_id;
        touched.sort();
        touched.dedup();
        (out, touched)
    };
    respond_after_mirror(&ctx, touched, envelope(StatusCode::OK, result, &[])).await
}
