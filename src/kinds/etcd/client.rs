//! Reaching etcd: endpoint URLs (`http://HOST:PORT`, `https://HOST:PORT` or `HOST:PORT`),
//! connect options (TLS, user and password) built from the source's config, and the one
//! request both the backup and the checks make (a count over the whole keyspace).

use std::path::Path;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};

use super::backup::Etcd;
use super::check_spec;
use crate::kinds::SourceError;

/// etcd's client port, used when an endpoint names none.
const DEFAULT_PORT: u16 = 2379;
/// Default for `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// One etcd client URL, normalised to `scheme://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    pub(super) url: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) tls: bool,
}

impl Endpoint {
    /// `tls_default`: the scheme of an endpoint written without one.
    pub(super) fn parse(s: &str, tls_default: bool) -> Result<Endpoint, String> {
        let with_scheme = if s.contains("://") {
            s.to_string()
        } else if tls_default {
            format!("https://{s}")
        } else {
            format!("http://{s}")
        };
        let bad = |why: String| {
            format!(
                "`{s}` is not an etcd endpoint ({why}); write http://HOST:PORT, https://HOST:PORT or HOST:PORT"
            )
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| bad(e.to_string()))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(bad(format!("scheme `{other}`"))),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials in the URL; use the `user` and `password` keys".into(),
            ));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(bad("it has a path".into()));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host".into()))?
            .to_string();
        // `Url` drops a port equal to the scheme's default (80/443); keep what was written.
        let port = url
            .port()
            .or_else(|| explicit_port(&with_scheme))
            .unwrap_or(DEFAULT_PORT);
        let scheme = if tls { "https" } else { "http" };
        Ok(Endpoint {
            url: format!("{scheme}://{host}:{port}"),
            // Without the brackets of an IPv6 literal, for the TCP probe.
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            tls,
        })
    }
}

/// The port written after the host of `scheme://host:port[/]`, if any (80 and 443 included).
fn explicit_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1.trim_end_matches('/');
    let (_, port) = rest.rsplit_once(':')?;
    port.parse().ok()
}

/// How to reach etcd: endpoints and connect options, built once per source.
pub(super) struct Conn {
    pub(super) endpoints: Vec<Endpoint>,
    pub(super) options: ConnectOptions,
    pub(super) timeout: Duration,
    /// Scrubbed from anything shown.
    pub(super) secrets: Vec<String>,
}

impl Etcd {
    fn conn(&self) -> Result<Conn, SourceError> {
        check_spec(&self.spec).map_err(|(key, m)| self.unreachable(format!("{key}: {m}")))?;
        let tls_default = self.spec.tls.is_some();
        let endpoints = self
            .spec
            .endpoints
            .iter()
            .map(|e| Endpoint::parse(e, tls_default))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| self.unreachable(m))?;
        let timeout = self.spec.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
        let mut options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), timeout);
        let mut secrets = Vec::new();
        if let Some(user) = &self.spec.user {
            let password = self
                .spec
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default();
            if !password.is_empty() {
                secrets.push(password.clone());
            }
            options = options.with_user(user.clone(), password);
        }
        if let Some(tls) = &self.spec.tls {
            let read = |what: &str, path: &Path| {
                std::fs::read(path).map_err(|e| {
                    self.unreachable(format!(
                        "cannot read tls.{what} {}: {e}; check the path and its permissions",
                        path.display()
                    ))
                })
            };
            let mut config = etcd_client::TlsOptions::new().ca_certificate(
                etcd_client::Certificate::from_pem(read("ca_file", &tls.ca_file)?),
            );
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                config = config.identity(etcd_client::Identity::from_pem(
                    read("cert_file", cert)?,
                    read("key_file", key)?,
                ));
            }
            options = options.with_tls(config);
        }
        Ok(Conn {
            endpoints,
            options,
            timeout,
            secrets,
        })
    }

    /// Connects and proves etcd answers. A TCP probe first: with no member listening, the
    /// gRPC client would wait for the timeout and then only say "timed out".
    pub(super) async fn connect(&self) -> Result<(Client, Conn), SourceError> {
        let conn = self.conn()?;
        let mut refused = Vec::new();
        for e in &conn.endpoints {
            let probe = tokio::time::timeout(
                conn.timeout,
                tokio::net::TcpStream::connect((e.host.as_str(), e.port)),
            )
            .await;
            match probe {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => refused.push(format!("{}: {err}", e.url)),
                Err(_) => refused.push(format!(
                    "{}: no answer within {}",
                    e.url,
                    humantime::format_duration(conn.timeout)
                )),
            }
        }
        if refused.len() == conn.endpoints.len() {
            return Err(self.unreachable(format!(
                "no etcd endpoint accepts connections ({})",
                refused.join("; ")
            )));
        }
        let urls: Vec<&str> = conn.endpoints.iter().map(|e| e.url.as_str()).collect();
        let connected = tokio::time::timeout(
            conn.timeout,
            Client::connect(&urls, Some(conn.options.clone())),
        )
        .await;
        let client = match connected {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(self.request_failed(&conn, "connecting", &e.to_string())),
            Err(_) => return Err(self.timed_out(&conn, "connecting")),
        };
        Ok((client, conn))
    }

    pub(super) fn request_failed(&self, conn: &Conn, what: &str, err: &str) -> SourceError {
        let secrets: Vec<&str> = conn.secrets.iter().map(String::as_str).collect();
        let err = crate::model::redact::scrub(err, &secrets);
        let hint = if err.contains("authenticat") || err.contains("permission denied") {
            "check `user` and `password` (snapshots need the root role)"
        } else if err.to_ascii_lowercase().contains("tls")
            || err.contains("certificate")
            || err.contains("transport error")
        {
            "check the endpoints' scheme and the `tls` files"
        } else {
            "check `endpoints` and that etcd is healthy"
        };
        self.unreachable(format!(
            "etcd at {} failed while {what}: {err}; {hint}",
            self.endpoint_list()
        ))
    }

    pub(super) fn timed_out(&self, conn: &Conn, what: &str) -> SourceError {
        self.unreachable(format!(
            "etcd at {} did not answer within {} while {what}; check that the endpoints are etcd client URLs (with the right http/https scheme) and that etcd has a leader, or raise `timeout`",
            self.endpoint_list(),
            humantime::format_duration(conn.timeout)
        ))
    }
}

/// Revision and live key count at one moment (one range request over the whole keyspace).
pub(super) async fn count(client: &mut Client, timeout: Duration) -> Result<(i64, i64), String> {
    let resp = tokio::time::timeout(
        timeout,
        client.get(
            "",
            Some(GetOptions::new().with_all_keys().with_count_only()),
        ),
    )
    .await
    .map_err(|_| "no answer to a key count".to_string())?
    .map_err(|e| e.to_string())?;
    let revision = resp.header().map_or(0, |h| h.revision());
    Ok((revision, resp.count()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised() {
        let e = Endpoint::parse("etcd-0:2379", false).unwrap();
        assert_eq!(e.url, "http://etcd-0:2379");
        let e = Endpoint::parse("10.0.0.1", true).unwrap();
        assert_eq!(e.url, "https://10.0.0.1:2379");
        let e = Endpoint::parse("http://localhost:80/", false).unwrap();
        assert_eq!(e.url, "http://localhost:80");
        assert!(Endpoint::parse("unix:///run/etcd.sock", false).is_err());
        assert!(Endpoint::parse("http://h:2379/v3", false).is_err());
        assert!(Endpoint::parse("http://u:pw@h:2379", false).is_err());
    }
}
