//! Value types of the config file; each one validates itself while it is deserialized, so a
//! bad value is reported with its key path.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de::Error};

/// A string that may hold a secret (a password inside a URL, an access key). `Debug` and
/// `Display` never show it; call [`SecretString::expose`] where the real value is needed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl SecretString {
    /// A URL without its credentials; anything else (a token, a key) as `***`.
    fn shown(&self) -> String {
        if self.0.contains("://") {
            crate::model::redact::url(&self.0)
        } else {
            "***".to_string()
        }
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

#[cfg(test)]
mod secret_tests {
    use super::SecretString;

    /// A token or key is never shown by `Debug`/`Display` (a derived `Debug` of the config
    /// printed `daemon.api_token` verbatim); a URL shows without its password.
    #[test]
    fn tokens_and_url_passwords_never_show() {
        let token = SecretString::new("tok-3f9a-secret");
        assert_eq!(format!("{token:?} {token}"), "*** ***");
        let url = SecretString::new("postgres://app:pa55@db:5432/app");
        let shown = format!("{url:?} {url}");
        assert!(
            !shown.contains("pa55") && shown.contains("db:5432"),
            "{shown}"
        );
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretString)
    }
}

/// A cron expression, 5 fields (as in a Kubernetes CronJob) or 6 with seconds first.
#[derive(Clone)]
pub struct Schedule {
    pub expr: String,
    pub cron: croner::Cron,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.expr)
    }
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Self, String> {
        use croner::parser::{CronParser, Seconds};
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "`{expr}` has {fields} fields; write 5 (minute hour day-of-month month day-of-week, e.g. \"0 */6 * * *\") or 6 with seconds first (e.g. \"0 0 */6 * * *\")"
            ));
        }
        CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr)
            .map(|cron| Schedule {
                expr: expr.to_string(),
                cron,
            })
            .map_err(|e| {
                format!(
                    "`{expr}` is not a valid cron expression ({e}); write e.g. \"0 */6 * * *\" (every 6 hours) or \"30 2 * * *\" (daily at 02:30)"
                )
            })
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Schedule::parse(&s).map_err(D::Error::custom)
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| {
        format!("`{s}` is not a duration ({e}); write e.g. \"30s\", \"30m\", \"6h\" or \"7d\"")
    })
}

/// A span of time written as `30s`, `6h`, `1d 12h`: an RPO, an RTO, a timeout, a jitter, a
/// backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Span).map_err(D::Error::custom)
    }
}

/// Recovery objectives: how much data may be lost (RPO) and how long recovery may take (RTO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objectives {
    pub rpo: Span,
    pub rto: Span,
}

/// A size written as a number of bytes or with a unit: `8MiB`, `64MB`, `1GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: usize = num
            .parse()
            .map_err(|_| format!("`{s}` is not a size; write e.g. \"8MiB\" or \"16MB\""))?;
        let mult = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` in `{s}`; use B, KiB, MiB, GiB, KB, MB or GB"
                ));
            }
        };
        Ok(ByteSize(n * mult))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(usize),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(D::Error::custom),
        }
    }
}

/// S3 Object Lock retention modes. `compliance`: nobody, not even the root account, can
/// delete the object or shorten its retention. `governance`: principals with
/// `s3:BypassGovernanceRetention` can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    Compliance,
    Governance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Compliance => "compliance",
            LockMode::Governance => "governance",
        }
    }
}

impl std::fmt::Display for LockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
