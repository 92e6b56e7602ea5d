//! Backup: the snapshot streamed from the maintenance API, with the revision and key count
//! facts (see the kind's doc).

use std::io::{self, Read};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::Client;
use tokio::sync::{mpsc, oneshot};

use super::EtcdSpec;
use super::client::count;
use super::snapshot::TrailerCheck;
use crate::kinds::{Dump, Facts, Source, SourceError};

/// Snapshot chunks (etcd sends 32 KiB each) waiting between the gRPC task and the reader.
const QUEUE: usize = 32;

pub struct Etcd {
    name: String,
    pub(super) spec: EtcdSpec,
}

impl Etcd {
    pub fn new(name: &str, spec: &EtcdSpec) -> Self {
        Etcd {
            name: name.to_string(),
            spec: spec.clone(),
        }
    }

    pub(super) fn unreachable(&self, reason: String) -> SourceError {
        SourceError::Unreachable {
            source_name: self.name.clone(),
            reason,
        }
    }

    pub(super) fn endpoint_list(&self) -> String {
        self.spec.endpoints.join(", ")
    }
}

#[async_trait]
impl Source for Etcd {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    async fn preflight(&self) -> Result<Facts, SourceError> {
        let (mut client, conn) = self.connect().await?;
        let status = tokio::time::timeout(conn.timeout, client.status())
            .await
            .map_err(|_| self.timed_out(&conn, "asking its status"))?
            .map_err(|e| self.request_failed(&conn, "asking its status", &e.to_string()))?;
        let mut facts = Facts::new();
        facts.insert("etcd_version".into(), status.version().into());
        facts.insert("db_size".into(), status.db_size().into());
        Ok(facts)
    }

    async fn dump(&self) -> Result<Dump, SourceError> {
        let (mut client, conn) = self.connect().await?;
        let (rev_before, keys_before) = count(&mut client, conn.timeout)
            .await
            .map_err(|e| self.request_failed(&conn, "counting keys", &e))?;
        let stream = tokio::time::timeout(conn.timeout, client.snapshot())
            .await
            .map_err(|_| self.timed_out(&conn, "starting the snapshot"))?
            .map_err(|e| self.request_failed(&conn, "starting the snapshot", &e.to_string()))?;

        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(QUEUE);
        let (facts_tx, facts_rx) = oneshot::channel::<Result<Facts, String>>();
        let pump = Pump {
            client,
            stream,
            tx,
            timeout: conn.timeout,
            secrets: conn.secrets.clone(),
            rev_before,
            keys_before,
        };
        tokio::spawn(async move {
            let _ = facts_tx.send(pump.run().await);
        });
        let name = self.name.clone();
        Ok(Dump {
            reader: Box::new(TrailerCheck::new(ChunkReader { rx, current: None })),
            finish: Box::new(move || {
                let fail = |reason: String| SourceError::Unreachable {
                    source_name: name.clone(),
                    reason,
                };
                match facts_rx.blocking_recv() {
                    Ok(Ok(facts)) => Ok(facts),
                    Ok(Err(reason)) => Err(fail(reason)),
                    Err(_) => Err(fail("the snapshot stream task ended unexpectedly".into())),
                }
            }),
            stop: None,
        })
    }
}

/// Moves snapshot chunks from the gRPC stream into the bounded channel the reader drains,
/// and works out the revision facts (see the module doc).
struct Pump {
    client: Client,
    stream: etcd_client::SnapshotStreaming,
    tx: mpsc::Sender<io::Result<Bytes>>,
    timeout: Duration,
    secrets: Vec<String>,
    rev_before: i64,
    keys_before: i64,
}

impl Pump {
    async fn run(mut self) -> Result<Facts, String> {
        let mut after: Option<(i64, i64)> = None;
        let mut sent = 0u64;
        let result = loop {
            let next = tokio::select! {
                // The reader was dropped (the backup failed or was cancelled): stop; dropping
                // the stream cancels the RPC.
                _ = self.tx.closed() => break Err("the backup stopped reading the snapshot".to_string()),
                next = tokio::time::timeout(self.timeout, self.stream.message()) => next,
            };
            let message = match next {
                Err(_) => {
                    break Err(format!(
                        "etcd sent no snapshot data for {} after {sent} bytes; check the member's health, or raise `timeout`",
                        humantime::format_duration(self.timeout)
                    ));
                }
                Ok(Err(e)) => {
                    let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
                    break Err(format!(
                        "the snapshot stream broke after {sent} bytes: {}",
                        crate::model::redact::scrub(&e.to_string(), &secrets)
                    ));
                }
                Ok(Ok(None)) => break Ok(()),
                Ok(Ok(Some(m))) => m,
            };
            if after.is_none() {
                // The server took its point-in-time copy before sending the first chunk.
                match count(&mut self.client, self.timeout).await {
                    Ok(c) => after = Some(c),
                    Err(e) => break Err(format!("counting keys after the snapshot started: {e}")),
                }
            }
            let blob = Bytes::copy_from_slice(message.blob());
            sent += blob.len() as u64;
            if self.tx.send(Ok(blob)).await.is_err() {
                break Err("the backup stopped reading the snapshot".to_string());
            }
        };
        if let Err(reason) = &result {
            // Make the reader fail too (if it is still there), rather than see a clean end.
            let _ = self.tx.send(Err(io::Error::other(reason.clone()))).await;
        }
        drop(self.tx);
        result?;
        let (rev_after, _) = after.ok_or("etcd sent an empty snapshot")?;
        let mut facts = Facts::new();
        facts.insert("revision".into(), self.rev_before.into());
        facts.insert("keys".into(), self.keys_before.into());
        let exact = rev_after == self.rev_before;
        facts.insert("revision_exact".into(), exact.into());
        if !exact {
            tracing::warn!(
                revision_before = self.rev_before,
                revision_after = rev_after,
                "etcd was written while the snapshot started; its revision lies between the two"
            );
            facts.insert("revision_max".into(), rev_after.into());
        }
        Ok(facts)
    }
}

/// The chunks from [`Pump`], as a blocking `Read` (call it from a blocking thread).
struct ChunkReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Option<Bytes>,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(cur) = &mut self.current
                && !cur.is_empty()
            {
                let n = out.len().min(cur.len());
                out[..n].copy_from_slice(&cur.split_to(n));
                return Ok(n);
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = Some(b),
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
    }
}
