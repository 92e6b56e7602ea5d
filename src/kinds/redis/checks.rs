//! What a verification observes of a restored server (blocking; call from a blocking
//! thread): key counts, a sample of readable keys, and the user's own commands.

use super::client::{Conn, Reply, keyspace};

/// Key count per database (`{"db0": 12}`), from `INFO keyspace`.
pub fn keys(url: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let conn = Conn::parse(url)?;
    let mut client = conn.connect()?;
    let info = client.info("keyspace")?;
    Ok(keyspace(&info)
        .into_iter()
        .map(|(db, k, _)| (format!("db{db}"), k.into()))
        .collect())
}

/// Reads up to `per_db` random keys of every non-empty database with `DUMP`; returns how
/// many were read, or which key could not be.
pub fn sample(url: &str, per_db: usize) -> Result<usize, String> {
    let conn = Conn::parse(url)?;
    let mut client = conn.connect()?;
    let info = client.info("keyspace")?;
    let mut read = 0;
    for (db, keys, _) in keyspace(&info) {
        if keys == 0 {
            continue;
        }
        client.must(&["SELECT", &db.to_string()])?;
        for _ in 0..per_db.min(keys as usize) {
            let key = match client.cmd(&["RANDOMKEY"]).map_err(|e| e.to_string())? {
                Reply::Bulk(Some(k)) => k,
                _ => break,
            };
            match client.cmd_bytes(&[b"DUMP", &key]) {
                Ok(Reply::Bulk(_)) => read += 1,
                Ok(other) => {
                    return Err(format!(
                        "db{db} key {:?}: DUMP answered {}",
                        String::from_utf8_lossy(&key),
                        other.text()
                    ));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(read)
}

/// Runs one command; its reply as text (an error reply is an `Err`).
pub fn command(url: &str, args: &[String]) -> Result<String, String> {
    let conn = Conn::parse(url)?;
    let mut client = conn.connect()?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match client.cmd(&args).map_err(|e| e.to_string())? {
        Reply::Error(e) => Err(e),
        reply => Ok(reply.text()),
    }
}
