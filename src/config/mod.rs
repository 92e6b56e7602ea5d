//! The configuration file: its serde shape, `${ENV}` interpolation ([`interpolate`]) and the
//! checks that run at load time, so that a bad file is rejected before anything is touched.
//!
//! Every error names the file, the key path and what to write instead.

pub mod drills;
pub mod failover;
mod interpolate;
pub mod job;
pub mod reports;
mod verify;

pub use verify::{KubernetesConfig, Probe, SandboxConfig, UserCheck, VerifyConfig, VerifySandbox};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::dns::config::DnsConfig;
pub use crate::kinds::SourceSpec;
pub use crate::kinds::command::CommandSpec;
pub use crate::kinds::etcd::{EtcdSpec, EtcdTls};
pub use crate::kinds::files::FilesSpec;
pub use crate::kinds::postgres::PostgresSpec;
pub use crate::kinds::redis::{RedisMode, RedisSpec};
pub use crate::leader::{LeaderConfig, LeaderKind};
pub use crate::model::values::LockMode;
pub use crate::store::{ObjectLockConfig, RetryConfig, StoreConfig};

use crate::policy::schedule::{Job, JobKind, Trigger};

pub use crate::model::{ByteSize, Objectives, Schedule, SecretString, Span};

/// Where the config is read from when `-c` is not given.
pub const DEFAULT_PATH: &str = "./lifeboat.yaml";
pub const DEFAULT_CATALOG: &str = "sqlite://./lifeboat-data/catalog.db";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {source}; pass the right file with -c/--config")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {path}: {message}")]
    Invalid {
        file: PathBuf,
        path: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_catalog")]
    pub catalog: SecretString,
    pub stores: BTreeMap<String, StoreConfig>,
    pub encryption: EncryptionConfig,
    #[serde(default)]
    pub compression: CompressionConfig,
    /// What a source that does not set its own objectives settings gets.
    #[serde(default)]
    pub defaults: Defaults,
    pub sources: Vec<SourceConfig>,
    /// Where `lifeboat verify` restores snapshots to check them.
    pub sandbox: Option<SandboxConfig>,
    /// `lifeboat run`: the orchestrator's settings.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// `dns:`: providers and the records lifeboat may move (see [`crate::dns`]).
    #[serde(default)]
    pub dns: DnsConfig,
    /// `sites:` and `failover:` (see [`failover`]).
    #[serde(default)]
    pub sites: Vec<failover::SiteConfig>,
    pub failover: Option<failover::FailoverConfig>,
    /// `reports:`: the reports the daemon writes into a store (see [`reports`]).
    pub reports: Option<reports::ReportsConfig>,
    /// `drills:`: drill schedules the daemon runs (see [`drills`]).
    #[serde(default)]
    pub drills: drills::DrillsConfig,
    /// The text this config was parsed from and the `${VAR}` values it used: what a
    /// `lifeboat` elsewhere (a Kubernetes verification Job) needs to load the same config.
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Clone, Default)]
pub struct Origin {
    pub text: String,
    /// Every `${VAR}` the text references that is set, with its value (secrets included).
    pub vars: BTreeMap<String, String>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin")
            .field("text_bytes", &self.text.len())
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `defaults: { objectives, rto_overhead, verify_max_age }`: applied to every source that
/// does not set the key itself.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub objectives: Option<Objectives>,
    /// Added to the measured restore time to make the RTO evidence (provisioning, switching
    /// traffic); 0s when unset.
    pub rto_overhead: Option<Span>,
    /// How recent a passed verification must be for a source not to be at risk; 7d when unset.
    pub verify_max_age: Option<Span>,
}

fn default_catalog() -> SecretString {
    SecretString::new(DEFAULT_CATALOG)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// age X25519 public keys (`age1...`); every snapshot is encrypted to all of them.
    pub recipients: Vec<String>,
    /// The age identity (private key) file; only needed to restore or verify.
    pub identity_file: Option<PathBuf>,
    /// The ed25519 key that signs every manifest (`lifeboat keys generate --signing`);
    /// backup side only. Its public key is trusted too.
    pub signing_key_file: Option<PathBuf>,
    /// Public keys (`lifeboat-ed25519:...`) whose signatures restore, verify, copy, prune and
    /// `catalog rebuild` accept. Once this or `signing_key_file` is set, unsigned snapshots
    /// are refused (unless `--allow-unsigned`).
    #[serde(default)]
    pub trusted_signers: Vec<String>,
}

impl EncryptionConfig {
    /// Whether manifests must carry a trusted signature.
    pub fn signing_configured(&self) -> bool {
        self.signing_key_file.is_some() || !self.trusted_signers.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    #[serde(default = "default_level")]
    pub level: i32,
    /// zstd worker threads; 0 means one per available core.
    #[serde(default)]
    pub threads: u32,
}

fn default_level() -> i32 {
    3
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            level: default_level(),
            threads: 0,
        }
    }
}

/// `daemon:`: how `lifeboat run` schedules, retries, elects a leader and serves HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Jobs running at once, all sources together.
    #[serde(default = "default_max_concurrent_jobs")]
    pub max_concurrent_jobs: usize,
    /// Each job's slots are delayed by a fixed offset in [0, jitter) (a hash of its name).
    #[serde(default = "zero_span")]
    pub jitter: Span,
    /// On SIGTERM/SIGINT, how long running jobs may take to finish before they are aborted.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: Span,
    /// HTTP address for /healthz, /readyz, /metrics and /api/v1 (none: no HTTP server).
    pub listen: Option<String>,
    /// Bearer token required on /api/v1/* (the probes and /metrics stay open). Required
    /// when `listen` is not a loopback address; `none` leaves /api/v1 open on purpose.
    pub api_token: Option<SecretString>,
    #[serde(default)]
    pub retry: JobRetryConfig,
    #[serde(default)]
    pub leader: LeaderConfig,
    /// Where scheduled verifications (`verify.schedule`) restore: `local` (servers on this
    /// machine) or `kubernetes` (needs the top-level `sandbox.kubernetes`).
    #[serde(default)]
    pub verify_sandbox: VerifySandbox,
}

/// `api_token: none`: /api/v1 deliberately open.
const NO_API_TOKEN: &str = "none";

impl DaemonConfig {
    /// The bearer token /api/v1/* requires, if any (`api_token: none` is none).
    pub fn api_token(&self) -> Option<&str> {
        self.api_token
            .as_ref()
            .map(|t| t.expose())
            .filter(|t| *t != NO_API_TOKEN)
    }
}

/// Whether `listen` (`host:port`) only accepts connections from this machine.
fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    listen
        .rsplit_once(':')
        .is_some_and(|(host, _)| host == "localhost")
}

fn default_max_concurrent_jobs() -> usize {
    2
}
fn zero_span() -> Span {
    Span(std::time::Duration::ZERO)
}
fn default_shutdown_grace() -> Span {
    Span(std::time::Duration::from_secs(60))
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            max_concurrent_jobs: default_max_concurrent_jobs(),
            jitter: zero_span(),
            shutdown_grace: default_shutdown_grace(),
            listen: None,
            api_token: None,
            retry: JobRetryConfig::default(),
            leader: LeaderConfig::default(),
            verify_sandbox: VerifySandbox::default(),
        }
    }
}

/// `daemon.retry`: a failed job is retried after `backoff`, doubled each time (at most
/// `max_backoff`), `max_attempts` attempts in all; then it is reported and waits for its next slot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRetryConfig {
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_backoff")]
    pub backoff: Span,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Span,
}

fn default_max_attempts() -> u32 {
    3
}
fn default_backoff() -> Span {
    Span(std::time::Duration::from_secs(60))
}
fn default_max_backoff() -> Span {
    Span(std::time::Duration::from_secs(3600))
}

impl Default for JobRetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

/// What every source has, whatever its kind.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub store: String,
    /// Stores each snapshot is copied to after it commits (other regions, DR sites).
    pub copies: Vec<String>,
    pub schedule: Option<Schedule>,
    pub objectives: Option<Objectives>,
    /// Overrides `defaults.rto_overhead`.
    pub rto_overhead: Option<Span>,
    /// Overrides `defaults.verify_max_age`.
    pub verify_max_age: Option<Span>,
    /// GFS retention for `lifeboat prune`; `None` keeps every snapshot.
    pub retention: Option<crate::policy::retention::Policy>,
    /// `retention.schedule`: when `lifeboat run` prunes this source (`None`: never).
    pub prune_schedule: Option<Schedule>,
    /// `lifeboat verify` settings of this source: timeout, user checks, schedule.
    pub verify: Option<VerifyConfig>,
    pub spec: SourceSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonSource {
    name: String,
    store: String,
    #[serde(default)]
    copies: Vec<String>,
    schedule: Option<Schedule>,
    objectives: Option<Objectives>,
    rto_overhead: Option<Span>,
    verify_max_age: Option<Span>,
    retention: Option<crate::policy::retention::Policy>,
    verify: Option<VerifyConfig>,
}

const COMMON_SOURCE_KEYS: &[&str] = &[
    "name",
    "store",
    "copies",
    "schedule",
    "objectives",
    "rto_overhead",
    "verify_max_age",
    "retention",
    "verify",
];

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let map = serde_yaml::Mapping::deserialize(d)?;
        let (mut common, mut spec) = (serde_yaml::Mapping::new(), serde_yaml::Mapping::new());
        for (k, v) in map {
            let is_common = k.as_str().is_some_and(|k| COMMON_SOURCE_KEYS.contains(&k));
            if is_common { &mut common } else { &mut spec }.insert(k, v);
        }
        if !spec.contains_key("kind") {
            return Err(D::Error::custom(
                "missing `kind`; write e.g. `kind: postgres` (the kinds lifeboat knows: postgres, redis, etcd, files, command)",
            ));
        }
        // `retention.schedule` is the daemon's, not the policy's: taken out before the
        // policy (which denies unknown keys) is read.
        let prune_schedule = match common.get_mut("retention") {
            Some(serde_yaml::Value::Mapping(r)) => r.remove("schedule"),
            _ => None,
        };
        let prune_schedule: Option<Schedule> = prune_schedule
            .map(|v| {
                from_value(v).map_err(|(_, e)| D::Error::custom(format!("retention.schedule: {e}")))
            })
            .transpose()?;
        let common: CommonSource = from_value(serde_yaml::Value::Mapping(common))
            .map_err(|(path, e)| D::Error::custom(join_path(&path, &e)))?;
        let spec: SourceSpec = from_value(serde_yaml::Value::Mapping(spec))
            .map_err(|(path, e)| D::Error::custom(join_path(&path, &e)))?;
        Ok(SourceConfig {
            name: common.name,
            store: common.store,
            copies: common.copies,
            schedule: common.schedule,
            objectives: common.objectives,
            rto_overhead: common.rto_overhead,
            verify_max_age: common.verify_max_age,
            retention: common.retention,
            prune_schedule,
            verify: common.verify,
            spec,
        })
    }
}

fn join_path(path: &str, message: &str) -> String {
    if path.is_empty() || path == "." {
        message.to_string()
    } else {
        format!("{path}: {message}")
    }
}

fn from_value<T: serde::de::DeserializeOwned>(v: serde_yaml::Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(v).map_err(|e| (e.path().to_string(), e.inner().to_string()))
}

impl Config {
    /// The jobs of a config and their triggers, in config order.
    pub fn jobs(&self) -> Vec<(Job, Trigger)> {
        let mut out = Vec::new();
        for s in &self.sources {
            if let Some(cron) = &s.schedule {
                out.push((
                    Job::new(&s.name, JobKind::Backup),
                    Trigger::Cron(Box::new(cron.clone())),
                ));
            }
            if !s.copies.is_empty() {
                out.push((Job::new(&s.name, JobKind::Copy), Trigger::AfterBackup));
            }
            if let (Some(cron), Some(_)) = (&s.prune_schedule, &s.retention) {
                out.push((
                    Job::new(&s.name, JobKind::Prune),
                    Trigger::Cron(Box::new(cron.clone())),
                ));
            }
            if let Some(cron) = s.verify.as_ref().and_then(|v| v.schedule.as_ref()) {
                out.push((
                    Job::new(&s.name, JobKind::Verify),
                    Trigger::Cron(Box::new(cron.clone())),
                ));
            }
        }
        out
    }

    /// The cron-triggered jobs of this config.
    pub fn cron_jobs(&self) -> impl Iterator<Item = (Job, Schedule)> {
        self.jobs()
            .into_iter()
            .filter_map(|(job, trigger)| match trigger {
                Trigger::Cron(s) => Some((job, *s)),
                Trigger::AfterBackup => None,
            })
    }

    /// Reads, interpolates and validates `file`.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Self::parse(&text, file)
    }

    /// Parses config text; `file` is only used to name the file in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        Self::parse_with_env(text, file, &|name| std::env::var(name).ok())
    }

    /// [`Config::parse`] with `${VAR}` references resolved by `env`.
    pub fn parse_with_env(
        text: &str,
        file: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let invalid = |path: String, message: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            path,
            message,
        };
        let mut value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
            invalid(
                e.location()
                    .map(|l| format!("line {}, column {}", l.line(), l.column()))
                    .unwrap_or_else(|| "(document)".into()),
                format!("not valid YAML: {e}"),
            )
        })?;
        let used = std::cell::RefCell::new(BTreeMap::new());
        let recording = |name: &str| {
            let value = env(name);
            if let Some(v) = &value {
                used.borrow_mut().insert(name.to_string(), v.clone());
            }
            value
        };
        interpolate::interpolate(&mut value, &mut String::new(), &recording)
            .map_err(|(path, message)| invalid(path, message))?;
        // Every secret value of the config is scrubbed from what lifeboat prints or stores.
        if let Ok(json) = serde_json::to_value(&value) {
            crate::model::redact::register(crate::model::redact::secrets_in(&json));
        }
        let mut config: Config =
            from_value(value).map_err(|(path, message)| invalid(path, message))?;
        config
            .validate()
            .map_err(|(path, message)| invalid(path, message))?;
        config.origin = Origin {
            text: text.to_string(),
            vars: used.into_inner(),
        };
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if self.stores.is_empty() {
            return Err((
                "stores".into(),
                "no stores are configured; add one, e.g. `local: { url: \"file://./lifeboat-data/store\" }`"
                    .into(),
            ));
        }
        for (name, store) in &self.stores {
            check_name(name).map_err(|m| (format!("stores.{name}"), m))?;
            crate::store::check_url(&store.url).map_err(|m| (format!("stores.{name}.url"), m))?;
            if store.upload_concurrency == 0 {
                return Err((
                    format!("stores.{name}.upload_concurrency"),
                    "must be at least 1".into(),
                ));
            }
            if store.part_size.0 < 5 * 1024 * 1024 {
                return Err((
                    format!("stores.{name}.part_size"),
                    "must be at least 5MiB (the S3 minimum part size)".into(),
                ));
            }
            if let Some(lock) = &store.object_lock {
                if !store.url.starts_with("s3://") {
                    return Err((
                        format!("stores.{name}.object_lock"),
                        "object lock is an S3 feature; use it with an s3:// store (whose bucket was created with Object Lock enabled) or remove it".into(),
                    ));
                }
                if !(1..=36_500).contains(&lock.days) {
                    return Err((
                        format!("stores.{name}.object_lock.days"),
                        format!(
                            "{} is not a retention period; write a number of days from 1 to 36500",
                            lock.days
                        ),
                    ));
                }
            }
        }
        if self.encryption.recipients.is_empty() {
            return Err((
                "encryption.recipients".into(),
                "no recipients; add at least one age public key (`lifeboat keys generate` prints one)"
                    .into(),
            ));
        }
        for (i, r) in self.encryption.recipients.iter().enumerate() {
            crate::pipeline::crypto::parse_recipient(r)
                .map_err(|e| (format!("encryption.recipients[{i}]"), e.to_string()))?;
        }
        for (i, k) in self.encryption.trusted_signers.iter().enumerate() {
            crate::pipeline::signing::parse_public(k)
                .map_err(|e| (format!("encryption.trusted_signers[{i}]"), e.to_string()))?;
        }
        if !(1..=22).contains(&self.compression.level) {
            return Err((
                "compression.level".into(),
                format!(
                    "{} is not a zstd level; write a number from 1 (fastest) to 22 (smallest), 3 is the default",
                    self.compression.level
                ),
            ));
        }
        check_targets(
            "defaults",
            self.defaults.objectives,
            self.defaults.verify_max_age,
        )?;
        if self.daemon.max_concurrent_jobs == 0 {
            return Err((
                "daemon.max_concurrent_jobs".into(),
                "must be at least 1".into(),
            ));
        }
        if let Some(listen) = &self.daemon.listen
            && !is_loopback(listen)
            && self
                .daemon
                .api_token
                .as_ref()
                .is_none_or(|t| t.expose().trim().is_empty())
        {
            return Err((
                "daemon.api_token".into(),
                format!(
                    "daemon.listen `{listen}` is reachable from other hosts, and without a token anyone who reaches it reads /api/v1 (snapshots, status); set `api_token: \"${{LIFEBOAT_API_TOKEN}}\"`, listen on 127.0.0.1, or write `api_token: none` to leave /api/v1 open on purpose"
                ),
            ));
        }
        if self.daemon.retry.max_attempts == 0 {
            return Err((
                "daemon.retry.max_attempts".into(),
                "must be at least 1 (1: never retry)".into(),
            ));
        }
        if self.daemon.verify_sandbox == VerifySandbox::Kubernetes
            && self
                .sandbox
                .as_ref()
                .and_then(|s| s.kubernetes.as_ref())
                .is_none()
        {
            return Err((
                "daemon.verify_sandbox".into(),
                "`kubernetes` needs the top-level `sandbox.kubernetes` section; add it with at least `image:` (built with `docker build --target sandbox .`), or write `verify_sandbox: local` where initdb, redis-server and etcd are installed".into(),
            ));
        }
        self.dns.validate()?;
        reports::validate(self.reports.as_ref(), &self.stores)?;
        self.drills.validate()?;
        failover::validate(
            &self.sites,
            self.failover.as_ref(),
            &self.sources.iter().map(|s| s.name.as_str()).collect(),
            &self
                .dns
                .records
                .iter()
                .map(|r| crate::dns::fqdn(&r.name))
                .collect(),
        )?;
        let mut seen = BTreeSet::new();
        for (i, source) in self.sources.iter().enumerate() {
            check_targets(
                &format!("sources[{i}]"),
                source.objectives,
                source.verify_max_age,
            )?;
            let at = |key: &str| format!("sources[{i}].{key}");
            check_name(&source.name).map_err(|m| (at("name"), m))?;
            if !seen.insert(source.name.as_str()) {
                return Err((
                    at("name"),
                    format!(
                        "duplicate source name `{}`; every source needs its own name",
                        source.name
                    ),
                ));
            }
            if !self.stores.contains_key(&source.store) {
                return Err((
                    at("store"),
                    format!(
                        "no store named `{}`; use one of: {}",
                        source.store,
                        self.stores.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            for (j, copy) in source.copies.iter().enumerate() {
                if !self.stores.contains_key(copy) {
                    return Err((
                        format!("sources[{i}].copies[{j}]"),
                        format!(
                            "no store named `{copy}`; use one of: {}",
                            self.stores.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                if copy == &source.store || source.copies[..j].contains(copy) {
                    return Err((
                        format!("sources[{i}].copies[{j}]"),
                        format!(
                            "`{copy}` is already where this source's snapshots are; list each other store once"
                        ),
                    ));
                }
            }
            if source.retention.is_some_and(|p| p.is_empty()) {
                return Err((
                    at("retention"),
                    "no rule keeps anything; set at least one of keep_last, hourly, daily, weekly, monthly, yearly to 1 or more, or remove `retention` to keep every snapshot".into(),
                ));
            }
            source
                .spec
                .spec()
                .validate()
                .map_err(|e| (at(&e.key), e.message))?;
        }
        Ok(())
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// `source`'s recovery targets: its own settings, else `defaults:`, else the built-in
    /// defaults ([`crate::policy::objectives::DEFAULT_RTO_OVERHEAD`], `DEFAULT_VERIFY_MAX_AGE`).
    pub fn targets(&self, source: &SourceConfig) -> crate::policy::objectives::Targets {
        let d = &self.defaults;
        crate::policy::objectives::Targets {
            objectives: source.objectives.or(d.objectives),
            rto_overhead: source
                .rto_overhead
                .or(d.rto_overhead)
                .map_or(crate::policy::objectives::DEFAULT_RTO_OVERHEAD, |t| t.0),
            verify_max_age: source
                .verify_max_age
                .or(d.verify_max_age)
                .map_or(crate::policy::objectives::DEFAULT_VERIFY_MAX_AGE, |t| t.0),
        }
    }
}

/// Zero objectives would make every source breached forever; a zero `verify_max_age` would
/// make every source at risk.
fn check_targets(
    at: &str,
    objectives: Option<Objectives>,
    verify_max_age: Option<Span>,
) -> Result<(), (String, String)> {
    let zero = |key: &str, what: &str| {
        Err((
            format!("{at}.{key}"),
            format!("must be more than 0s; write {what}"),
        ))
    };
    if let Some(o) = objectives {
        if o.rpo.0.is_zero() {
            return zero("objectives.rpo", "how much data may be lost, e.g. 6h");
        }
        if o.rto.0.is_zero() {
            return zero("objectives.rto", "how long a recovery may take, e.g. 30m");
        }
    }
    if verify_max_age.is_some_and(|t| t.0.is_zero()) {
        return zero(
            "verify_max_age",
            "how recent a verification must be, e.g. 7d",
        );
    }
    Ok(())
}

/// Source and store names become object-key path segments, so they are kept simple.
fn check_name(name: &str) -> Result<(), String> {
    if crate::model::snapshot::valid_name(name) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name; use 1-63 letters, digits, `-`, `_` or `.` (not starting with `.`)"
        ))
    }
}

#[cfg(test)]
mod tests;
