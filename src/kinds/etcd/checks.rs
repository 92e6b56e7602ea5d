//! What a verification observes of a restored etcd.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use super::client::count;
use crate::model::SecretString;

/// Revision and live key count of the etcd at `endpoint` (a verification sandbox).
pub async fn observe(endpoint: &str, timeout: Duration) -> Result<(i64, i64), String> {
    observe_as(endpoint, None, timeout).await
}

/// [`observe`] as user `login` (name, password) when given.
pub async fn observe_as(
    endpoint: &str,
    login: Option<(&str, &SecretString)>,
    timeout: Duration,
) -> Result<(i64, i64), String> {
    let options =
        login.map(|(user, password)| ConnectOptions::new().with_user(user, password.expose()));
    let mut client = tokio::time::timeout(timeout, Client::connect([endpoint], options))
        .await
        .map_err(|_| format!("etcd at {endpoint} did not answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    count(&mut client, timeout).await
}

/// Turns authentication on in the etcd at `endpoint`: user `root` (role `root`) with
/// `password`; from then on every request needs it.
pub async fn enable_auth(
    endpoint: &str,
    password: &SecretString,
    timeout: Duration,
) -> Result<(), String> {
    let work = async {
        let mut client = Client::connect([endpoint], None)
            .await
            .map_err(|e| e.to_string())?;
        // The `root` role may already exist (etcd creates it on demand in some versions).
        let _ = client.role_add("root").await;
        client
            .user_add("root", password.expose(), None)
            .await
            .map_err(|e| format!("cannot add the root user: {e}"))?;
        client
            .user_grant_role("root", "root")
            .await
            .map_err(|e| format!("cannot grant the root role: {e}"))?;
        client
            .auth_enable()
            .await
            .map_err(|e| format!("cannot enable authentication: {e}"))?;
        Ok::<(), String>(())
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("etcd at {endpoint} did not answer within {timeout:?}"))?
}
