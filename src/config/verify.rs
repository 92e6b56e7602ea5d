//! `verify:` of a source and the top-level `sandbox:`: how verifications run.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::kinds::checks::Expect;
use crate::model::{Schedule, Span};

/// Top-level `sandbox:` of the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Where `initdb`/`pg_ctl` are (default: PATH, then /usr/lib/postgresql/*/bin).
    pub postgres_bin_dir: Option<PathBuf>,
    pub kubernetes: Option<KubernetesConfig>,
}

/// `daemon.verify_sandbox`: where the daemon's scheduled verifications restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifySandbox {
    /// Throwaway servers on the daemon's own machine: needs `initdb`/`pg_ctl`,
    /// `redis-server` and `etcd` there (the daemon image has none of them).
    #[default]
    Local,
    /// A scratch namespace and a Job running `sandbox.kubernetes.image` (which has them).
    Kubernetes,
}

/// Per-source `verify:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// The whole verification (restore and checks) must finish within this (default 30m).
    pub timeout: Option<Span>,
    /// When the daemon verifies this source's newest snapshot.
    pub schedule: Option<Schedule>,
    #[serde(default)]
    pub checks: Vec<UserCheck>,
}

/// A user check: exactly one of `sql`, `command` or `redis`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawCheck")]
pub struct UserCheck {
    pub name: String,
    pub probe: Probe,
    pub expect: Option<Expect>,
    pub expect_rows: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// A query in the restored PostgreSQL database; `expect` applies to the first column
    /// of the first row, `expect_rows` to the number of rows.
    Sql(String),
    /// A program run with `LIFEBOAT_TARGET` (the sandbox's URL or path) in its environment;
    /// passes on exit 0 (and `expect` on its trimmed stdout, if given).
    Command(Vec<String>),
    /// A Redis command against the restored server; `expect` applies to the reply.
    Redis(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    name: String,
    sql: Option<String>,
    command: Option<Vec<String>>,
    redis: Option<Vec<String>>,
    expect: Option<serde_yaml::Value>,
    expect_rows: Option<u64>,
}

/// `sandbox.kubernetes` of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Image holding lifeboat and the kinds' server binaries.
    pub image: String,
    /// Default `lifeboat-verify-`.
    pub namespace_prefix: Option<String>,
    /// How long a scratch namespace may live before the sweeper deletes it (default 6h).
    pub ttl: Option<Span>,
    /// ResourceQuota limits of the namespace (default 2 CPUs, 4Gi).
    pub cpu: Option<String>,
    pub memory: Option<String>,
    /// The only egress allowed from the namespace (the object store's addresses).
    #[serde(default)]
    pub egress_cidrs: Vec<String>,
    /// lifeboat's own service account, `NAMESPACE/NAME`, which each verification namespace
    /// binds the `lifeboat-sandbox` ClusterRole to (default: `lifeboat` in the pod's own
    /// namespace, else `lifeboat/lifeboat`).
    pub service_account: Option<String>,
}

impl KubernetesConfig {
    pub fn prefix(&self) -> &str {
        self.namespace_prefix
            .as_deref()
            .unwrap_or("lifeboat-verify-")
    }
    pub fn ttl(&self) -> Duration {
        self.ttl.map_or(Duration::from_secs(6 * 3600), |t| t.0)
    }

    /// (namespace, name) of lifeboat's service account.
    pub fn service_account(&self) -> (String, String) {
        if let Some((ns, name)) = self
            .service_account
            .as_deref()
            .and_then(|s| s.split_once('/'))
        {
            return (ns.to_string(), name.to_string());
        }
        let ns = std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "lifeboat".to_string());
        (ns, "lifeboat".to_string())
    }
}

impl TryFrom<RawCheck> for UserCheck {
    type Error = String;
    fn try_from(r: RawCheck) -> Result<Self, String> {
        let probe = match (r.sql, r.command, r.redis) {
            (Some(q), None, None) => Probe::Sql(q),
            (None, Some(c), None) if !c.is_empty() => Probe::Command(c),
            (None, None, Some(c)) if !c.is_empty() => Probe::Redis(c),
            _ => {
                return Err(format!(
                    "check `{}`: give exactly one of `sql: \"SELECT ...\"`, `command: [program, args...]` or `redis: [COMMAND, args...]`",
                    r.name
                ));
            }
        };
        if r.expect_rows.is_some() && !matches!(probe, Probe::Sql(_)) {
            return Err(format!(
                "check `{}`: `expect_rows` only applies to `sql` checks; use `expect`",
                r.name
            ));
        }
        let expect = match r.expect {
            None => None,
            Some(serde_yaml::Value::String(s)) => Some(Expect::parse(&s)),
            Some(serde_yaml::Value::Number(n)) => Some(Expect::parse(&n.to_string())),
            Some(serde_yaml::Value::Bool(b)) => Some(Expect::Text(b.to_string())),
            Some(_) => {
                return Err(format!(
                    "check `{}`: `expect` must be a value (42, \"PONG\") or a comparison (\"> 0\", \">= 10\")",
                    r.name
                ));
            }
        };
        Ok(UserCheck {
            name: r.name,
            probe,
            expect,
            expect_rows: r.expect_rows,
        })
    }
}
