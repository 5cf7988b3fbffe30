//! A TCP proxy in front of CouchDB that the bench can cut (P9): while cut, every open
//! connection is closed and every new one is closed at once, so the service finds
//! CouchDB unreachable; restored, it passes bytes again.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The proxy; dropping it stops it.
#[derive(Debug)]
pub struct CutProxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Listens on 127.0.0.1 and forwards to the host and port of `upstream_url`.
    pub async fn start(upstream_url: &str) -> Result<Self> {
        let url = reqwest::Url::parse(upstream_url).context("CouchDB URL")?;
        let host = url.host_str().context("CouchDB host")?.to_string();
        let port = url.port_or_known_default().context("CouchDB port")?;
        let upstream = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .next()
            .context("CouchDB address")?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, cut_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, upstream, cut_rx));
        Ok(Self { addr, cut, task })
    }

    /// `upstream_url` with the proxy's address.
    pub fn url(&self, upstream_url: &str) -> String {
        let mut u = reqwest::Url::parse(upstream_url).expect("parsed in start");
        let _ = u.set_ip_host(self.addr.ip());
        let _ = u.set_port(Some(self.addr.port()));
        u.to_string()
    }

    /// Cuts (`true`) or restores (`false`) CouchDB.
    pub fn set_cut(&self, cut: bool) {
        let _ = self.cut.send(cut);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, cut: watch::Receiver<bool>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *cut.borrow() {
            drop(client);
            continue;
        }
        let mut cut = cut.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let (mut client_rd, mut client_wr) = client.into_split();
            let (mut server_rd, mut server_wr) = server.into_split();
            tokio::select! {
                _ = tokio::io::copy(&mut client_rd, &mut server_wr) => {}
                _ = tokio::io::copy(&mut server_rd, &mut client_wr) => {}
                _ = cut.wait_for(|c| *c) => {}
            }
        });
    }
}
