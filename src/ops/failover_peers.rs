//! The HTTP client of the sites' failover controllers (`sites[].peer`, authenticated with
//! `failover.peer_token`): their observations, votes and move announcements. The daemon's
//! controller asks its peers through it every round; `failover plan`/`execute` ask every
//! site's controller, so a manual move takes a term no controller has used or promised,
//! wins their votes for it, and tells them when it is done.
//!
//! # Guarantees
//! - Every request is bounded by the client's timeout: a hung peer is an unreachable peer.
//! - The token goes only in the `Authorization` header, never in a URL, log or error.
//!
//! # Caveats
//! A peer that cannot be reached is reported as such, never retried here: the callers decide
//! (a manual move goes ahead; the controllers learn the term from each other later).

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::failover::SiteConfig;
use crate::policy::failover::{Adopt, Report, VoteAnswer, VoteRequest};

/// The controllers of a set of sites.
#[derive(Clone)]
pub struct Peers {
    client: reqwest::Client,
    token: String,
    /// (site, base URL without the trailing slash)
    peers: Vec<(String, String)>,
}

/// One peer's answer, or why there is none.
pub type Answer<T> = (String, Result<T, String>);

impl Peers {
    /// The controllers of every site with a `peer:` except `skip` (the caller's own site,
    /// for the daemon). None without a `peer_token` or without any peer.
    pub fn new(
        sites: &[SiteConfig],
        skip: Option<&str>,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Option<Peers>, String> {
        let Some(token) = token else {
            return Ok(None);
        };
        let peers: Vec<(String, String)> = sites
            .iter()
            .filter(|s| Some(s.name.as_str()) != skip)
            .filter_map(|s| {
                s.peer
                    .as_ref()
                    .map(|p| (s.name.clone(), p.trim_end_matches('/').to_string()))
            })
            .collect();
        if peers.is_empty() {
            return Ok(None);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the peer HTTP client: {e}"))?;
        Ok(Some(Peers {
            client,
            token: token.to_string(),
            peers,
        }))
    }

    /// Each controller's latest observations (its term, primary and promised term).
    pub async fn reports(&self) -> Vec<Answer<Report>> {
        self.each(|url| {
            self.client
                .get(format!("{url}/api/v1/failover/observations"))
                .bearer_auth(&self.token)
        })
        .await
    }

    /// Asks every controller for its vote.
    pub async fn votes(&self, req: &VoteRequest) -> Vec<Answer<VoteAnswer>> {
        self.post("/api/v1/failover/vote", req).await
    }

    /// Tells every controller that `a.primary` holds `a.term`.
    pub async fn adopt(&self, a: &Adopt) -> Vec<Answer<serde_json::Value>> {
        self.post("/api/v1/failover/adopt", a).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Vec<Answer<T>> {
        let body = serde_json::to_vec(body).unwrap_or_default();
        self.each(|url| {
            self.client
                .post(format!("{url}{path}"))
                .bearer_auth(&self.token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await
    }

    async fn each<T: DeserializeOwned>(
        &self,
        request: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Vec<Answer<T>> {
        futures::future::join_all(self.peers.iter().map(|(name, url)| {
            let req = request(url);
            async move {
                let r = async {
                    let resp = req.send().await.map_err(|e| e.without_url().to_string())?;
                    if !resp.status().is_success() {
                        return Err(format!("answered {}", resp.status()));
                    }
                    let body = resp.bytes().await.map_err(|e| e.to_string())?;
                    serde_json::from_slice::<T>(&body).map_err(|e| e.to_string())
                }
                .await;
                (name.clone(), r)
            }
        }))
        .await
    }
}
