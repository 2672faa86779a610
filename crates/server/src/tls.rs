//! HTTPS: TLS 1.2 and 1.3 (rustls, with the `ring` provider) over the server's TCP
//! listener, for axum's `serve`.
//!
//! Handshakes run on tasks of their own, at most [`HANDSHAKES`] at once and each for at
//! most [`HANDSHAKE_TIMEOUT`], so a client that stalls its handshake holds up no one;
//! finished connections are handed to the server in order.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Handshakes in progress at once; more connections wait to be accepted.
const HANDSHAKES: usize = 256;
/// The longest a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished connections waiting for the server to take them.
const READY: usize = 64;

/// Reads a PEM certificate chain (the server's certificate first) and its PEM private
/// key (PKCS#8, PKCS#1 or SEC1), and checks that they belong together.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|error| {
            format!(
                "cannot read the TLS certificate chain {}: {error}",
                cert_path.display()
            )
        })?
        .collect::<Result<_, _>>()
        .map_err(|error| {
            format!(
                "the TLS certificate chain {} is not valid PEM: {error}",
                cert_path.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "the TLS certificate file {} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| {
        format!(
            "cannot read a private key (PEM: PKCS#8, PKCS#1 or SEC1) from {}: {error}",
            key_path.display()
        )
    })?;
    // rustls marks its `ring` provider deprecated because `ring` has no post-quantum
    // key exchange; the provider that has one (aws-lc-rs) needs a C and CMake build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS set-up failed: {error}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| {
            format!(
                "the TLS certificate {} and key {} cannot be used together: {error}",
                cert_path.display(),
                key_path.display()
            )
        })?;
    // The server speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener that hands out TLS connections whose handshake has finished.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Starts accepting on `listener` (on the current runtime); the accepting stops when
    /// the `TlsListener` is dropped.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(READY);
        tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), sender));
        Ok(TlsListener { local, ready })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            () = sender.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, sender) = (acceptor.clone(), sender.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    drop(permit);
                    let _ = sender.send((stream, peer)).await;
                }
                // A client's failed handshake is its own affair; no address is logged.
                Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accepting task ended only if the runtime is shutting down.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
