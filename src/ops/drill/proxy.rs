//! The in-process TCP proxy a drill puts between a client and a service, to inject network
//! faults without touching the host's network: pass, blackhole (bytes and new connections
//! are held, nothing is lost or refused: the peer sees silence), reset (every connection is
//! closed, new ones are closed on accept) and delay (each chunk waits).
//!
//! # Guarantees
//! - Switching back to [`Mode::Pass`] releases every held connection and chunk at once: the
//!   revert is the mode change, confirmed by [`Proxy::mode`].
//! - Dropping the [`Proxy`] stops it and closes every connection it holds.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Blackhole,
    Reset,
    Delay(Duration),
}

pub struct Proxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        // Closing the channel ends every connection's pumps.
        self.mode.send_replace(Mode::Reset);
    }
}

impl Proxy {
    /// Listens on `listen` (e.g. `127.0.0.1:0`) and forwards to `upstream`.
    pub async fn start(listen: &str, upstream: String) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(Mode::Pass);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let rx = rx.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(client, &upstream, rx).await {
                        tracing::debug!(cause = %e, "proxied connection ended");
                    }
                });
            }
        });
        Ok(Proxy {
            addr,
            mode: tx,
            task,
        })
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }
}

/// Waits while the proxy blackholes; false when the connection must be reset.
async fn gate(rx: &mut watch::Receiver<Mode>) -> bool {
    loop {
        let mode = *rx.borrow_and_update();
        match mode {
            Mode::Pass => return true,
            Mode::Reset => return false,
            Mode::Delay(d) => {
                tokio::time::sleep(d).await;
                return true;
            }
            Mode::Blackhole => {
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}

async fn serve(
    client: TcpStream,
    upstream: &str,
    mut rx: watch::Receiver<Mode>,
) -> std::io::Result<()> {
    if !gate(&mut rx).await {
        return Ok(());
    }
    let server = TcpStream::connect(upstream).await?;
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, rx.clone());
    let down = pump(sr, cw, rx.clone());
    let reset = async {
        loop {
            if *rx.borrow_and_update() == Mode::Reset || rx.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = async { let _ = tokio::join!(up, down); } => {}
        _ = reset => {}
    }
    Ok(())
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<Mode>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        if !gate(&mut rx).await {
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
    }
}
