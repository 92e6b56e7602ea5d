//! Route53 through `aws-sdk-route53`: simple record sets behind the [`Provider`] trait, and
//! whole routing-policy changes (failover, weighted, geolocation) of one name and type with
//! [`Route53::apply_routed`]. Every change is one transactional change batch, then `GetChange`
//! is polled until INSYNC with lifeboat's own short backoff (200 ms growing to 2 s; the SDK
//! waiter's 30–120 s delays are too coarse for an RTO).
//!
//! # Guarantees
//! - Compare-and-swap: the batch DELETEs the record sets exactly as they were read (values and
//!   TTL) and CREATEs the new ones; Route53 rejects the whole batch if what it deletes no longer
//!   matches, so a racer that changed the record first makes this change fail, as a
//!   [`DnsError::Conflict`] naming what the record holds. A create where nothing was expected
//!   is a CREATE, which fails if the record exists meanwhile.
//! - Routing rules are checked before anything is sent ([`super::routing::validate`]).
//! - `Throttling` and `PriorRequestNotComplete` are retried by the SDK's standard retry (a few
//!   attempts, short backoff); what is left is [`DnsError::Throttled`].
//!
//! # Caveats
//! - INSYNC is Route53's word, not proof: lifeboat still asks the nameservers (aws-cli#6640:
//!   INSYNC while a server still served the old value). Route53 does not raise the SOA serial
//!   on changes, so no serial is awaited.
//! - moto (the test double) checks neither DELETE values nor routing rules, answers INSYNC at
//!   once and never throttles: the tests put a fault proxy in front of it.

use std::time::Duration;

use aws_sdk_route53::Client;
use aws_sdk_route53::config::Region;
use aws_sdk_route53::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_route53::types::{
    Change as R53Change, ChangeAction, ChangeBatch, ChangeStatus, GeoLocation, ResourceRecord,
    ResourceRecordSet, ResourceRecordSetFailover, RrType,
};
use tokio::sync::OnceCell;

use super::routing::{Role, RoutedSet, Routing};
use super::{Applied, Change, Desired, DnsError, Provider, RRset, RecordType, Target};

/// A Route53 hosted zone.
pub struct Route53 {
    name: String,
    hosted_zone_id: String,
    region: Option<String>,
    endpoint: Option<String>,
    client: OnceCell<Client>,
    /// Static credentials instead of the AWS default chain (environment, profile, role).
    credentials: Option<(String, crate::model::SecretString)>,
    /// How long a change may stay PENDING.
    pub insync_timeout: Duration,
    /// SDK attempts per request (throttling included).
    pub max_attempts: u32,
}

impl std::fmt::Debug for Route53 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route53")
            .field("name", &self.name)
            .field("hosted_zone_id", &self.hosted_zone_id)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// Error code and message of an SDK error, or what failed on the way.
fn describe<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> (String, String) {
    match e {
        SdkError::ServiceError(s) => (
            s.err().code().unwrap_or("Unknown").to_string(),
            s.err().message().unwrap_or("").to_string(),
        ),
        SdkError::DispatchFailure(d) => ("Dispatch".into(), format!("{d:?}")),
        SdkError::TimeoutError(_) => ("Timeout".into(), "the request timed out".into()),
        other => ("Other".into(), other.to_string()),
    }
}

fn rr_type(t: RecordType) -> Result<RrType, DnsError> {
    match t {
        RecordType::A => Ok(RrType::A),
        RecordType::Aaaa => Ok(RrType::Aaaa),
        RecordType::Cname => Ok(RrType::Cname),
        RecordType::Lua => Err(DnsError::Config(
            "Route53 cannot hold LUA records; use a powerdns provider for them".into(),
        )),
    }
}

fn internal(context: &str, e: impl std::fmt::Display) -> DnsError {
    DnsError::Internal {
        context: context.into(),
        detail: e.to_string(),
    }
}

impl Route53 {
    pub fn new(
        name: &str,
        hosted_zone_id: &str,
        region: Option<String>,
        endpoint: Option<String>,
    ) -> Route53 {
        Route53 {
            name: name.to_string(),
            hosted_zone_id: hosted_zone_id
                .trim_start_matches("/hostedzone/")
                .to_string(),
            region,
            endpoint,
            client: OnceCell::new(),
            credentials: None,
            insync_timeout: Duration::from_secs(120),
            max_attempts: 4,
        }
    }

    /// Uses these credentials instead of the AWS default chain.
    pub fn with_credentials(mut self, key_id: &str, secret: crate::model::SecretString) -> Route53 {
        self.credentials = Some((key_id.to_string(), secret));
        self
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(region) = &self.region {
                    loader = loader.region(Region::new(region.clone()));
                }
                if let Some(endpoint) = &self.endpoint {
                    loader = loader.endpoint_url(endpoint);
                }
                if let Some((id, secret)) = &self.credentials {
                    loader =
                        loader.credentials_provider(aws_sdk_route53::config::Credentials::new(
                            id,
                            secret.expose(),
                            None,
                            None,
                            "lifeboat dns config",
                        ));
                }
                let sdk = loader.load().await;
                let mut b = aws_sdk_route53::config::Builder::from(&sdk).retry_config(
                    aws_sdk_route53::config::retry::RetryConfig::standard()
                        .with_max_attempts(self.max_attempts)
                        .with_initial_backoff(Duration::from_millis(100))
                        .with_max_backoff(Duration::from_secs(2)),
                );
                if sdk.region().is_none() {
                    b = b.region(Region::new("us-east-1"));
                }
                Client::from_conf(b.build())
            })
            .await
    }

    /// The error that says what to do for a failed call (`zone` for unknown zones).
    fn error(&self, zone: &str, code: &str, message: &str) -> DnsError {
        match code {
            "NoSuchHostedZone" => DnsError::UnknownZone {
                provider: self.describe(),
                zone: zone.to_string(),
            },
            "Throttling" | "ThrottlingException" | "PriorRequestNotComplete" => {
                DnsError::Throttled {
                    provider: self.describe(),
                    retry_after: None,
                }
            }
            "AccessDenied"
            | "AccessDeniedException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "UnrecognizedClientException"
            | "ExpiredToken" => DnsError::Forbidden {
                provider: self.describe(),
                api: "Route53".into(),
                status: 403,
                detail: format!("{code}: {message}"),
            },
            "Dispatch" | "Timeout" => DnsError::Unreachable {
                server: format!(
                    "Route53{}",
                    self.endpoint
                        .as_deref()
                        .map(|e| format!(" at {e}"))
                        .unwrap_or_default()
                ),
                detail: message.to_string(),
            },
            _ => DnsError::Rejected {
                provider: self.describe(),
                detail: format!("{code}: {message}"),
            },
        }
    }

    /// Every record set of `name`/`rtype` (all routing policies).
    pub async fn read_sets(&self, target: &Target) -> Result<Vec<ResourceRecordSet>, DnsError> {
        let rtype = rr_type(target.rtype)?;
        let mut out = Vec::new();
        let mut start_id: Option<String> = None;
        loop {
            let mut req = self
                .client()
                .await
                .list_resource_record_sets()
                .hosted_zone_id(&self.hosted_zone_id)
                .start_record_name(&target.name)
                .start_record_type(rtype.clone())
                .max_items(100);
            if let Some(id) = &start_id {
                req = req.start_record_identifier(id);
            }
            let page = req.send().await.map_err(|e| {
                let (code, msg) = describe(&e);
                self.error(&target.zone, &code, &msg)
            })?;
            let mut past = false;
            for s in page.resource_record_sets() {
                if super::fqdn(&s.name().replace("\\052", "*")) == target.name
                    && *s.r#type() == rtype
                {
                    out.push(s.clone());
                } else {
                    past = true;
                }
            }
            match page.next_record_identifier() {
                Some(id) if page.is_truncated() && !past => start_id = Some(id.to_string()),
                _ => return Ok(out),
            }
        }
    }

    fn record_set(target: &Target, rrset: &RRset) -> Result<ResourceRecordSet, DnsError> {
        let records = rrset
            .values
            .iter()
            .map(|v| ResourceRecord::builder().value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| internal("building a Route53 record", e))?;
        ResourceRecordSet::builder()
            .name(&target.name)
            .r#type(rr_type(target.rtype)?)
            .ttl(i64::from(rrset.ttl))
            .set_resource_records(Some(records))
            .build()
            .map_err(|e| internal("building a Route53 record set", e))
    }

    /// A routed set as Route53 takes it.
    pub fn routed_record_set(set: &RoutedSet) -> Result<ResourceRecordSet, DnsError> {
        let target = Target::new(&set.name, ".", set.rtype)?;
        let mut b = Self::record_set(
            &target,
            &RRset {
                ttl: set.ttl,
                values: set.values.clone(),
            },
        )?
        .into_builder_parts();
        b = b.set_set_identifier(set.set_identifier.clone());
        b = b.set_health_check_id(set.health_check_id.clone());
        b = match &set.routing {
            Routing::Simple => b,
            Routing::Failover { role } => b.failover(match role {
                Role::Primary => ResourceRecordSetFailover::Primary,
                Role::Secondary => ResourceRecordSetFailover::Secondary,
            }),
            Routing::Weighted { weight } => b.weight(i64::from(*weight)),
            Routing::Geo {
                continent,
                country,
                subdivision,
            } => b.geo_location(
                GeoLocation::builder()
                    .set_continent_code(continent.clone())
                    .set_country_code(country.clone())
                    .set_subdivision_code(subdivision.clone())
                    .build(),
            ),
        };
        b.build()
            .map_err(|e| internal("building a Route53 record set", e))
    }

    /// A Route53 record set as a [`RoutedSet`].
    pub fn routed_of(set: &ResourceRecordSet, rtype: RecordType) -> RoutedSet {
        let routing = if let Some(f) = set.failover() {
            Routing::Failover {
                role: if *f == ResourceRecordSetFailover::Primary {
                    Role::Primary
                } else {
                    Role::Secondary
                },
            }
        } else if let Some(w) = set.weight() {
            Routing::Weighted {
                weight: u32::try_from(w).unwrap_or(u32::MAX),
            }
        } else if let Some(g) = set.geo_location() {
            Routing::Geo {
                continent: g.continent_code().map(str::to_string),
                country: g.country_code().map(str::to_string),
                subdivision: g.subdivision_code().map(str::to_string),
            }
        } else {
            Routing::Simple
        };
        let mut values: Vec<String> = set
            .resource_records()
            .iter()
            .map(|r| r.value().to_string())
            .collect();
        values.sort();
        RoutedSet {
            name: super::fqdn(set.name()),
            rtype,
            set_identifier: set.set_identifier().map(str::to_string),
            routing,
            health_check_id: set.health_check_id().map(str::to_string),
            alias: set.alias_target().is_some(),
            ttl: set.ttl().and_then(|t| u32::try_from(t).ok()).unwrap_or(0),
            values,
        }
    }

    /// Sends one change batch, then polls until INSYNC; returns the change id.
    async fn send(&self, zone: &str, changes: Vec<R53Change>) -> Result<String, DnsError> {
        let batch = ChangeBatch::builder()
            .comment("lifeboat")
            .set_changes(Some(changes))
            .build()
            .map_err(|e| internal("building a Route53 change batch", e))?;
        let out = self
            .client()
            .await
            .change_resource_record_sets()
            .hosted_zone_id(&self.hosted_zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| {
                let (code, msg) = describe(&e);
                if code == "InvalidChangeBatch" {
                    // Resolved into a conflict by the caller when what it read has changed.
                    DnsError::Rejected {
                        provider: self.describe(),
                        detail: format!("InvalidChangeBatch: {msg}"),
                    }
                } else {
                    self.error(zone, &code, &msg)
                }
            })?;
        let id = out
            .change_info()
            .map(|c| c.id().to_string())
            .ok_or_else(|| internal("reading Route53's answer", "no ChangeInfo in the reply"))?;
        self.wait_insync(zone, &id).await?;
        Ok(id)
    }

    /// Polls `GetChange` until INSYNC: 200 ms, growing by half up to 2 s, for `insync_timeout`.
    #[tracing::instrument(skip(self, zone))]
    pub async fn wait_insync(&self, zone: &str, id: &str) -> Result<(), DnsError> {
        let start = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            let out = self
                .client()
                .await
                .get_change()
                .id(id)
                .send()
                .await
                .map_err(|e| {
                    let (code, msg) = describe(&e);
                    self.error(zone, &code, &msg)
                })?;
            let status = out.change_info().map(|c| c.status().clone());
            if status == Some(ChangeStatus::Insync) {
                tracing::debug!(elapsed_ms = start.elapsed().as_millis() as u64, "INSYNC");
                return Ok(());
            }
            if start.elapsed() + delay > self.insync_timeout {
                return Err(DnsError::Unreachable {
                    server: "Route53".into(),
                    detail: format!(
                        "change {id} is still {:?} after {:?}; it may yet apply: look with `lifeboat dns show` before retrying",
                        status, self.insync_timeout
                    ),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(2));
        }
    }

    /// Replaces every record set of `name`/`rtype` by `desired` (failover, weighted,
    /// geolocation), in one batch, if Route53 holds exactly `expected` (any order);
    /// `healthy` says whether a health check passes (see
    /// [`super::routing::check_failover_health`]). Returns the change id, once INSYNC.
    #[tracing::instrument(skip_all, fields(provider = %self.name, name = %target.name))]
    pub async fn apply_routed(
        &self,
        target: &Target,
        expected: &[RoutedSet],
        desired: &[RoutedSet],
        healthy: &dyn Fn(&str) -> bool,
    ) -> Result<String, DnsError> {
        super::routing::validate(desired).map_err(|e| DnsError::Config(e.to_string()))?;
        super::routing::check_failover_health(desired, healthy)
            .map_err(|e| DnsError::Config(e.to_string()))?;
        if let Some(other) = desired
            .iter()
            .find(|s| super::fqdn(&s.name) != target.name || s.rtype != target.rtype)
        {
            return Err(DnsError::Config(format!(
                "{} {} is not {} {}: apply_routed changes one name and type",
                other.name, other.rtype, target.name, target.rtype
            )));
        }
        let current = self.read_sets(target).await?;
        let as_routed: Vec<RoutedSet> = current
            .iter()
            .map(|s| Self::routed_of(s, target.rtype))
            .collect();
        let key = |s: &RoutedSet| {
            format!(
                "{:?}",
                (
                    s.set_identifier.clone(),
                    &s.routing,
                    s.ttl,
                    &s.values,
                    &s.health_check_id
                )
            )
        };
        let mut have: Vec<String> = as_routed.iter().map(key).collect();
        let mut want: Vec<String> = expected.iter().map(key).collect();
        have.sort();
        want.sort();
        if have != want {
            return Err(DnsError::Conflict {
                provider: self.describe(),
                name: target.name.clone(),
                rtype: target.rtype.to_string(),
                expected: describe_sets(expected),
                held: describe_sets(&as_routed),
            });
        }
        let mut changes = Vec::new();
        for s in current {
            changes.push(change(ChangeAction::Delete, s)?);
        }
        for s in desired {
            changes.push(change(ChangeAction::Create, Self::routed_record_set(s)?)?);
        }
        match self.send(&target.zone, changes).await {
            Err(DnsError::Rejected { detail, .. }) if detail.starts_with("InvalidChangeBatch") => {
                let now: Vec<RoutedSet> = self
                    .read_sets(target)
                    .await?
                    .iter()
                    .map(|s| Self::routed_of(s, target.rtype))
                    .collect();
                Err(DnsError::Conflict {
                    provider: self.describe(),
                    name: target.name.clone(),
                    rtype: target.rtype.to_string(),
                    expected: describe_sets(expected),
                    held: describe_sets(&now),
                })
            }
            other => other,
        }
    }
}

fn describe_sets(sets: &[RoutedSet]) -> String {
    if sets.is_empty() {
        return "nothing (no such record)".into();
    }
    sets.iter()
        .map(|s| {
            format!(
                "{}{} {}",
                s.set_identifier
                    .as_deref()
                    .map(|i| format!("[{i}] "))
                    .unwrap_or_default(),
                s.routing.policy_label(),
                s.values.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn change(action: ChangeAction, set: ResourceRecordSet) -> Result<R53Change, DnsError> {
    R53Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .map_err(|e| internal("building a Route53 change", e))
}

/// Rebuilding a record set with more fields.
trait IntoBuilder {
    fn into_builder_parts(self) -> aws_sdk_route53::types::builders::ResourceRecordSetBuilder;
}

impl IntoBuilder for ResourceRecordSet {
    fn into_builder_parts(self) -> aws_sdk_route53::types::builders::ResourceRecordSetBuilder {
        ResourceRecordSet::builder()
            .name(self.name())
            .r#type(self.r#type().clone())
            .set_ttl(self.ttl())
            .set_resource_records(Some(self.resource_records().to_vec()))
    }
}

#[async_trait::async_trait]
impl Provider for Route53 {
    fn describe(&self) -> String {
        format!("{} (route53 zone {})", self.name, self.hosted_zone_id)
    }

    async fn read(&self, target: &Target) -> Result<Option<RRset>, DnsError> {
        let sets = self.read_sets(target).await?;
        if sets.iter().any(|s| s.set_identifier().is_some()) {
            return Err(DnsError::Config(format!(
                "{} {} has routed record sets (failover, weighted or geolocation) at Route53; change them with the routing-policy API, not as a simple record",
                target.name, target.rtype
            )));
        }
        let Some(set) = sets.first() else {
            return Ok(None);
        };
        let values: Vec<String> = set
            .resource_records()
            .iter()
            .map(|r| r.value().to_string())
            .collect();
        let ttl = set.ttl().and_then(|t| u32::try_from(t).ok()).unwrap_or(0);
        RRset::new(target.rtype, ttl, &values).map(Some)
    }

    #[tracing::instrument(skip_all, fields(provider = %self.name, name = %ch.target.name, rtype = %ch.target.rtype))]
    async fn apply(&self, ch: &Change) -> Result<Applied, DnsError> {
        let target = &ch.target;
        let current = self.read(target).await?;
        if !ch.expect.holds(current.as_ref()) {
            return Err(super::conflict(self, ch, current.as_ref()));
        }
        let mut changes = Vec::new();
        // Deleting exactly what was read makes the batch fail if it changed meanwhile.
        if let Some(c) = &current {
            changes.push(change(ChangeAction::Delete, Self::record_set(target, c)?)?);
        }
        if let Desired::Present(r) = &ch.desired {
            changes.push(change(ChangeAction::Create, Self::record_set(target, r)?)?);
        }
        if changes.is_empty() {
            return Ok(Applied::default());
        }
        match self.send(&target.zone, changes).await {
            Ok(id) => {
                tracing::info!(change = %id, "change INSYNC");
                Ok(Applied { serial: None })
            }
            Err(DnsError::Rejected { detail, .. }) if detail.starts_with("InvalidChangeBatch") => {
                let held = self.read(target).await?;
                if held == current {
                    Err(DnsError::Rejected {
                        provider: self.describe(),
                        detail,
                    })
                } else {
                    Err(super::conflict(self, ch, held.as_ref()))
                }
            }
            Err(e) => Err(e),
        }
    }
}
