//! The HTTP server shared by the HTTP sources and the `[api]` endpoint:
//! HTTP/1.1 and HTTP/2 on one port, graceful shutdown, small response helpers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Deserialize;
use std::path::PathBuf;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::component::ShutdownSignal;

/// How long a client may take to send a request's head, its body, or a TLS handshake.
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The response type of every handler.
pub type HttpResponse = Response<Full<Bytes>>;

/// `address` as a socket address, with an error message that says what to change.
pub fn parse_address(address: &str) -> Result<SocketAddr, String> {
    address.parse().map_err(|_| {
        format!("`address` {address:?} is not an IP:port address such as 0.0.0.0:8080")
    })
}

/// Bind `address`, with an error message that says what to change.
pub async fn bind(address: &str) -> Result<TcpListener, String> {
    let addr = parse_address(address)?;
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e} (is another process using the port?)"))
}

/// `tls`: serve HTTPS with a PEM certificate chain and private key, as Vector's sources do.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub crt_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl TlsConfig {
    /// Load the files into an acceptor (HTTP/2 and HTTP/1.1 offered by ALPN).
    pub fn acceptor(&self) -> Result<TlsAcceptor, String> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.crt_file)
            .and_then(|certs| certs.collect())
            .map_err(|e| {
                format!(
                    "tls.crt_file: cannot read certificates from {}: {e}",
                    self.crt_file.display()
                )
            })?;
        if certs.is_empty() {
            return Err(format!(
                "tls.crt_file: {} holds no PEM certificate",
                self.crt_file.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key_file).map_err(|e| {
            format!(
                "tls.key_file: cannot read a private key from {}: {e}",
                self.key_file.display()
            )
        })?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("tls: the certificate and key do not make a usable pair: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// A bound address, with the TLS settings to serve it with.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl Listener {
    /// Load the TLS files (when given) and bind `address`.
    pub async fn bind(address: &str, tls: Option<&TlsConfig>) -> Result<Self, String> {
        let tls = tls.map(TlsConfig::acceptor).transpose()?;
        Ok(Self {
            tcp: bind(address).await?,
            tls,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr().ok()
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// Serve connections until `shutdown`, then stop accepting and wait for every
/// request already received to be answered.
pub async fn serve<H, F>(listener: Listener, mut shutdown: ShutdownSignal, handler: H)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    let Listener { tcp: listener, tls } = listener;
    let handler = Arc::new(handler);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that opens a connection and stalls must not hold shutdown up.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(req, peer).await) }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        match &tls {
            None => {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                tokio::spawn(watcher.watch(conn));
            }
            Some(acceptor) => {
                // The handshake runs in the connection's task, so a slow
                // client cannot stall the accept loop.
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream));
                    match handshake.await.unwrap_or_else(|_| {
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no handshake within 30 s",
                        ))
                    }) {
                        Ok(stream) => {
                            let conn = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .into_owned();
                            let _ = watcher.watch(conn).await;
                        }
                        Err(e) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A response with a plain-text body.
pub fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    let mut body: String = body.into();
    if !body.is_empty() && !body.ends_with('\n') {
        body.push('\n');
    }
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// Compare secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
