//! The Kubernetes leader: a `coordination.k8s.io/v1` Lease, as client-go's leader election
//! uses it. The holder writes `holderIdentity` and `renewTime`; a replica may take the lease
//! when it is free or its `renewTime + leaseDurationSeconds` has passed. Every write is a
//! replace carrying the `resourceVersion` read just before, so of two replicas racing for an
//! expired lease the API server lets exactly one win (the other gets 409 Conflict).
//!
//! The decision ([`decide`]) is pure and takes the clock; [`KubeLease`] does the I/O.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};

use super::{Leader, LeaderError};
use crate::kube::{KubeApi, KubeError, LEASE};

/// How long a lease outlives its last renew. Renewals come every [`super::RENEW_EVERY`], so
/// a leader that cannot renew stands down long before another replica may take over.
pub const LEASE_SECONDS: i64 = 15;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No Lease yet: create it, held by us.
    Create,
    /// Ours, or free, or expired: write ourselves in (a replace).
    Take { transitions: i64, ours: bool },
    /// Someone else holds it and it has not expired.
    Standby { holder: String },
}

fn micro(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// What to do with the Lease `current` (as read), as replica `me`, at `now`.
pub fn decide(current: Option<&Value>, me: &str, now: DateTime<Utc>) -> LeaseDecision {
    let Some(obj) = current else {
        return LeaseDecision::Create;
    };
    let spec = &obj["spec"];
    let holder = spec["holderIdentity"].as_str().unwrap_or("");
    let transitions = spec["leaseTransitions"].as_i64().unwrap_or(0);
    if holder == me {
        return LeaseDecision::Take {
            transitions,
            ours: true,
        };
    }
    let duration = spec["leaseDurationSeconds"]
        .as_i64()
        .unwrap_or(LEASE_SECONDS);
    let renewed = spec["renewTime"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    let expired = match renewed {
        Some(t) => t + TimeDelta::seconds(duration) < now,
        None => true,
    };
    if holder.is_empty() || expired {
        LeaseDecision::Take {
            transitions,
            ours: false,
        }
    } else {
        LeaseDecision::Standby {
            holder: holder.to_string(),
        }
    }
}

pub struct KubeLease {
    kube: Arc<dyn KubeApi>,
    namespace: String,
    name: String,
    identity: String,
    /// Tells the time (a manual clock in tests).
    pub clock: Arc<dyn crate::model::Clock>,
}

impl KubeLease {
    pub fn new(kube: Arc<dyn KubeApi>, namespace: String, name: String, identity: String) -> Self {
        KubeLease {
            kube,
            namespace,
            name,
            identity,
            clock: crate::model::clock::system(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn spec(&self, now: DateTime<Utc>, acquire: Option<DateTime<Utc>>, transitions: i64) -> Value {
        let mut spec = json!({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro(now),
            "leaseTransitions": transitions,
        });
        if let Some(a) = acquire {
            spec["acquireTime"] = json!(micro(a));
        }
        spec
    }

    async fn attempt(&mut self) -> Result<bool, LeaderError> {
        let now = self.now();
        let current = self.kube.get(&LEASE, &self.namespace, &self.name).await?;
        match decide(current.as_ref(), &self.identity, now) {
            LeaseDecision::Standby { holder } => {
                tracing::debug!(%holder, "lease held by another replica");
                Ok(false)
            }
            LeaseDecision::Create => {
                let obj = json!({
                    "apiVersion": LEASE.api_version(),
                    "kind": LEASE.kind,
                    "metadata": { "name": self.name, "namespace": self.namespace },
                    "spec": self.spec(now, Some(now), 0),
                });
                match self.kube.create(&LEASE, &self.namespace, obj).await {
                    Ok(_) => Ok(true),
                    Err(e) if is_conflict(&e) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            LeaseDecision::Take { transitions, ours } => {
                let Some(mut obj) = current else {
                    return Ok(false);
                };
                let acquire = if ours {
                    obj["spec"]["acquireTime"]
                        .as_str()
                        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                        .map(|t| t.with_timezone(&Utc))
                        .or(Some(now))
                } else {
                    Some(now)
                };
                let transitions = if ours { transitions } else { transitions + 1 };
                obj["spec"] = self.spec(now, acquire, transitions);
                match self.kube.replace(&LEASE, &self.namespace, obj).await {
                    Ok(_) => Ok(true),
                    Err(e) if is_conflict(&e) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

fn is_conflict(e: &KubeError) -> bool {
    e.is_conflict()
}

#[async_trait]
impl Leader for KubeLease {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    async fn try_acquire(&mut self) -> Result<bool, LeaderError> {
        self.attempt().await
    }

    async fn renew(&mut self) -> Result<bool, LeaderError> {
        self.attempt().await
    }

    async fn release(&mut self) {
        // Expire it now (renewTime far in the past) so a standby need not wait.
        let Ok(Some(mut obj)) = self.kube.get(&LEASE, &self.namespace, &self.name).await else {
            return;
        };
        if obj["spec"]["holderIdentity"].as_str() != Some(self.identity.as_str()) {
            return;
        }
        obj["spec"]["holderIdentity"] = json!("");
        obj["spec"]["renewTime"] = json!(micro(DateTime::<Utc>::UNIX_EPOCH));
        let _ = self.kube.replace(&LEASE, &self.namespace, obj).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::fake::Fake;

    fn lease(fake: &Arc<Fake>, me: &str, clock: Arc<crate::model::ManualClock>) -> KubeLease {
        let mut l = KubeLease::new(fake.clone(), "backup".into(), "lifeboat".into(), me.into());
        l.clock = clock;
        l
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_takeover_after_expiry() {
        let fake = Arc::new(Fake::default());
        let now = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("time");
        let clock = Arc::new(crate::model::ManualClock::new(now));
        let mut a = lease(&fake, "pod-a", clock.clone());
        let mut b = lease(&fake, "pod-b", clock.clone());
        assert!(a.try_acquire().await.expect("a"));
        assert!(!b.try_acquire().await.expect("b"));
        let set = |d: i64| clock.set(now + TimeDelta::seconds(d));
        set(10);
        assert!(a.renew().await.expect("renew"));
        set(20);
        assert!(!b.try_acquire().await.expect("b: renewed 10s ago"));
        // a stops renewing (crashed): after leaseDurationSeconds b takes over, a learns it lost.
        set(10 + LEASE_SECONDS + 1);
        assert!(b.try_acquire().await.expect("b takes over"));
        assert!(!a.renew().await.expect("a lost it"));
        let obj = fake.object(&LEASE, "backup", "lifeboat").expect("lease");
        assert_eq!(obj["spec"]["holderIdentity"], "pod-b");
        assert_eq!(obj["spec"]["leaseTransitions"], 1);
        // Release hands over at once.
        b.release().await;
        assert!(a.try_acquire().await.expect("a after release"));
        // Only the verbs in kube::USED were used (the fake refuses others).
        let verbs: std::collections::BTreeSet<_> = fake.calls().iter().map(|c| c.verb).collect();
        assert_eq!(verbs, ["create", "get", "update"].into_iter().collect());
    }

    #[tokio::test]
    async fn a_stale_resource_version_loses_the_race() {
        let fake = Arc::new(Fake::default());
        let mut a = KubeLease::new(fake.clone(), "ns".into(), "l".into(), "a".into());
        assert!(a.try_acquire().await.expect("a"));
        let mut stale = fake.object(&LEASE, "ns", "l").expect("lease");
        assert!(a.renew().await.expect("renew"));
        stale["spec"]["holderIdentity"] = json!("b");
        let err = fake
            .replace(&LEASE, "ns", stale)
            .await
            .expect_err("conflict");
        assert!(is_conflict(&err), "{err}");
    }

    #[test]
    fn decide_rules() {
        let now = DateTime::UNIX_EPOCH + TimeDelta::days(20_000);
        assert_eq!(decide(None, "a", now), LeaseDecision::Create);
        let held = json!({"spec": {"holderIdentity": "b", "leaseDurationSeconds": 15, "renewTime": micro(now)}});
        assert_eq!(
            decide(Some(&held), "a", now),
            LeaseDecision::Standby { holder: "b".into() }
        );
        assert!(matches!(
            decide(Some(&held), "b", now),
            LeaseDecision::Take { ours: true, .. }
        ));
        assert!(matches!(
            decide(Some(&held), "a", now + TimeDelta::seconds(16)),
            LeaseDecision::Take { ours: false, .. }
        ));
        let free = json!({"spec": {"holderIdentity": ""}});
        assert!(matches!(
            decide(Some(&free), "a", now),
            LeaseDecision::Take { .. }
        ));
    }
}
