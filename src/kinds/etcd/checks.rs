//! What a verification observes of a restored etcd.

use std::time::Duration;

use etcd_client::Client;

use super::client::count;

/// Revision and live key count of the etcd at `endpoint` (a verification sandbox).
pub async fn observe(endpoint: &str, timeout: Duration) -> Result<(i64, i64), String> {
    let mut client = tokio::time::timeout(timeout, Client::connect([endpoint], None))
        .await
        .map_err(|_| format!("etcd at {endpoint} did not answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    count(&mut client, timeout).await
}
