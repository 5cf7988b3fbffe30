//! Listening, shared by the mocks: bind 127.0.0.1, accept in one task that owns every
//! connection task (so dropping the [`Listening`] handle stops them all), and the rustls
//! pieces both TLS servers need.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A bound listener and its accept task; aborting the task (on drop) drops its `JoinSet`,
/// which aborts every connection task.
#[derive(Debug)]
pub(crate) struct Listening {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Listening {
    /// Address the mock listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A bound listener not serving yet: its address is known, so a mock can build URLs
/// from its port before the first connection is served.
#[derive(Debug)]
pub(crate) struct Bound {
    what: &'static str,
    listener: TcpListener,
    addr: SocketAddr,
}

/// Bind `127.0.0.1:port` (0 = any). `what` names the mock in errors and logs.
pub(crate) async fn bind(what: &'static str, port: u16) -> Result<Bound> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("Failed to bind the {what} mock to 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    Ok(Bound {
        what,
        listener,
        addr,
    })
}

impl Bound {
    /// Address bound.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Run `serve` on each accepted connection, each in its own task so that one slow
    /// connection never holds up another.
    pub(crate) fn serve<S, F>(self, serve: S) -> Listening
    where
        S: Fn(TcpStream) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let Bound {
            what,
            listener,
            addr,
        } = self;
        let task = tokio::spawn(accept_loop(what, listener, serve));
        tracing::debug!(%addr, "mock {what} listening");
        Listening { addr, task }
    }
}

async fn accept_loop<S, F>(what: &'static str, listener: TcpListener, serve: S)
where
    S: Fn(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // Small request/response exchanges: don't let Nagle delay them.
                    let _ = tcp.set_nodelay(true);
                    tracing::debug!(%peer, "mock {what}: connection accepted");
                    conns.spawn(serve(tcp));
                }
                Err(error) => {
                    tracing::warn!(%error, "mock {what}: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Certificate chain and private key from PEM text.
pub(crate) fn server_identity(
    cert_chain_pem: &str,
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs = CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("Failed to parse the server certificate PEM")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .context("Failed to parse the server key PEM")?;
    Ok((certs, key))
}

/// The process-independent crypto provider both mocks use (ring, like the service).
pub(crate) fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS handshake, logged (not returned) when it fails: a refused client is an
/// expected event for a mock.
pub(crate) async fn tls_handshake(
    what: &'static str,
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
) -> Option<TlsStream<TcpStream>> {
    match acceptor.accept(tcp).await {
        Ok(tls) => Some(tls),
        Err(error) => {
            tracing::debug!(%error, "mock {what}: TLS handshake failed");
            None
        }
    }
}
