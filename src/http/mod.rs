//! The HTTP server shared by the HTTP sources and the `[api]` endpoint:
//! HTTP/1.1 and HTTP/2 on one port, graceful shutdown, a bound on open
//! connections, timeouts for quiet ones and a maximum age for busy ones
//! ([`connections`]), small response helpers.

pub mod connections;

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
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::component::ShutdownSignal;
use crate::telemetry::Throttle;
use connections::{Activity, drive};
pub use connections::{ConnectionLimits, KeepaliveConfig};

/// How long a client may take to send a request's body (the head has its own
/// `header_timeout_secs`, see [`connections`]).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The response type of every handler.
pub type HttpResponse = Response<Full<Bytes>>;

/// `address` as a socket address, with an error message that says what to change.
pub fn parse_address(address: &str) -> Result<SocketAddr, String> {
    address.parse().map_err(|_| {
        format!("`address` {address:?} is not an IP:port address such as 0.0.0.0:8080")
    })
}

/// Bind `addr`, with an error message that says what to change.
async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
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

/// A bound address, with the TLS and connection settings to serve it with.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
}

/// A listener's settings, checked without binding: the address parsed, the TLS files
/// loaded, the connection limits set. What `validate` checks and `build` binds.
pub struct ListenerSettings {
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
}

impl ListenerSettings {
    /// Check `address` and load the TLS files (when given), to serve with `limits`.
    pub fn new(
        address: &str,
        tls: Option<&TlsConfig>,
        limits: ConnectionLimits,
    ) -> Result<Self, String> {
        Ok(Self {
            addr: parse_address(address)?,
            tls: tls.map(TlsConfig::acceptor).transpose()?,
            limits,
        })
    }

    /// The settings of source `id`'s listener (`address`, `tls`, `max_connections`,
    /// `header_timeout_secs`, `keepalive`).
    pub fn source(
        id: &str,
        address: &str,
        tls: Option<&TlsConfig>,
        max_connections: Option<usize>,
        header_timeout_secs: u64,
        keepalive: &KeepaliveConfig,
    ) -> Result<Self, String> {
        let limits = ConnectionLimits::source(id, max_connections, header_timeout_secs, keepalive)?;
        Self::new(address, tls, limits)
    }

    /// Bind the address.
    pub async fn bind(self) -> Result<Listener, String> {
        Ok(Listener {
            tcp: bind(self.addr).await?,
            tls: self.tls,
            limits: self.limits,
        })
    }
}

impl Listener {
    /// The address actually bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr().ok()
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// The first pause after an accept error that is not about one connection (out of file
/// descriptors, out of memory); it doubles up to [`ACCEPT_BACKOFF_MAX`] while they go on.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one "limit reached" or "cannot accept" line per listener per this many seconds.
const LOG_INTERVAL_SECS: u64 = 10;

/// Errors that concern only the connection being accepted (the client gave up before it
/// was accepted): try the next one at once.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Serve connections until `shutdown`, then stop accepting and wait for every
/// request already received to be answered.
///
/// At most `max_connections` are open at once: at the limit the listener stops
/// accepting (further clients wait in the kernel's backlog) until one closes,
/// rather than accepting and closing in a loop. Quiet connections are closed,
/// and old ones retired, as [`connections`] describes.
///
/// A handler's body may be a stream (the `[api]`'s `/tap`): the connection is not idle while its
/// answer is being written; at shutdown, a client that stops reading it is dropped after one
/// header timeout.
pub async fn serve<H, F, B>(listener: Listener, shutdown: ShutdownSignal, handler: H)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Listener {
        tcp: listener,
        tls,
        limits,
    } = listener;
    let header_timeout = limits.header_timeout;
    let handler = Arc::new(handler);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper arms this timer whenever an HTTP/1 connection waits for a request head (after
    // version detection, and again after each answer), so it also ends idle keep-alive
    // connections; `connections::drive` covers what it does not (no bytes at all, HTTP/2).
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    // A permit per open connection; at shutdown, taking them all back waits for every
    // connection to finish.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let full_log = Throttle::new(LOG_INTERVAL_SECS);
    let accept_log = Throttle::new(LOG_INTERVAL_SECS);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut stop = shutdown.clone();
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if full_log.ready() {
                    tracing::warn!(
                        "{}: {} connections are open, its max_connections; new clients wait until one closes (quiet ones are closed after header_timeout_secs = {}). If this is normal load, raise `max_connections` in [{}]",
                        limits.owner,
                        limits.max_connections,
                        header_timeout.as_secs(),
                        limits.table,
                    );
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                    () = stop.wait() => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    accepted
                }
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: retrying at once would spin
                    // on the same error; pause, longer while it lasts.
                    if accept_log.ready() {
                        tracing::warn!(
                            "{}: cannot accept connections: {e}; retrying. If it says too many open files, raise the open-file limit (ulimit -n, LimitNOFILE=) or lower `max_connections` in [{}] (now {})",
                            limits.owner,
                            limits.table,
                            limits.max_connections,
                        );
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.wait() => break,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
            () = stop.wait() => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new(limits.connection_age());
        let service = {
            let handler = handler.clone();
            let activity = activity.clone();
            hyper::service::service_fn(move |req: Request<Incoming>| {
                // Called when the request head has arrived: from here the connection is busy.
                let version = req.version();
                let busy = activity.begin(version);
                let response = handler(req, peer);
                let activity = activity.clone();
                async move {
                    let mut response = response.await;
                    // Past its maximum age, an HTTP/1 connection ends with this answer: the
                    // header tells the client not to send another request on it, and hyper
                    // closes it once the answer is written. (HTTP/2 gets a GOAWAY instead,
                    // from `connections::drive`; the header is not allowed there.)
                    if matches!(version, hyper::Version::HTTP_10 | hyper::Version::HTTP_11)
                        && activity.is_past_max_age()
                    {
                        tracing::debug!(
                            "closing after this answer: past its maximum age (keepalive.max_connection_age_secs)"
                        );
                        response.headers_mut().insert(
                            hyper::header::CONNECTION,
                            hyper::header::HeaderValue::from_static("close"),
                        );
                    }
                    drop(busy);
                    let writing = activity.writing();
                    Ok::<_, Infallible>(response.map(|body| Answer {
                        body,
                        _writing: writing,
                    }))
                }
            })
        };
        let builder = builder.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let served = Served {
                activity,
                header_timeout,
                shutdown,
            };
            match tls {
                None => served.run(&builder, TokioIo::new(stream), service).await,
                Some(acceptor) => {
                    // The handshake runs in the connection's task, so a slow client cannot
                    // stall the accept loop; it counts against the header timeout.
                    let handshake = tokio::time::timeout(header_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            served.run(&builder, TokioIo::new(stream), service).await;
                        }
                        // No peer address: a client's IP is personal data.
                        Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(
                            "TLS handshake not done within {} s (header_timeout_secs)",
                            header_timeout.as_secs()
                        ),
                    }
                }
            }
        });
    }
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}

/// A response body that keeps its connection from counting as idle (see [`Activity`]) until it
/// is dropped, that is until hyper has written it: an answer streamed for minutes is not an
/// idle connection.
struct Answer<B> {
    body: B,
    _writing: connections::Writing,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Answer<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
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

/// One accepted connection, served until it ends or stays quiet too long.
struct Served {
    activity: Arc<Activity>,
    header_timeout: std::time::Duration,
    shutdown: ShutdownSignal,
}

impl Served {
    /// Serve HTTP/1.1 or HTTP/2 over `io` (plain TCP or TLS) with `service`.
    async fn run<I, S, B>(self, builder: &auto::Builder<TokioExecutor>, io: I, service: S)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let conn = builder.serve_connection(io, service);
        drive(
            conn,
            |c| c.graceful_shutdown(),
            self.activity,
            self.header_timeout,
            self.shutdown,
        )
        .await;
    }
}

/// The settings every HTTP source shares (acknowledgements, TLS, connection limits, keep-alive),
/// as `fbpixel generate` prints them: one text for every source's `EXAMPLE`, so the sources
/// cannot drift apart (`concat!` needs a literal, hence a macro).
macro_rules! listener_example {
    () => {
        r#"# Whether to answer a request only once every sink delivered its events (also on when a sink downstream asks for it).
acknowledgements = false
# Serve HTTPS with this PEM certificate chain (leaf first) and private key; unset: plain HTTP.
# tls = { crt_file = "/etc/fbpixel/tls.crt", key_file = "/etc/fbpixel/tls.key" }
# Most connections open at once; unset: 1024, or a quarter of `ulimit -n` when that is lower.
# max_connections = 1024
# Seconds a client has to send a request head, from connecting and again after each answer.
header_timeout_secs = 30
# Seconds after which a busy connection is retired once its current answer is sent.
keepalive.max_connection_age_secs = 300
# Each connection's age is this fraction shorter or longer at random, so clients do not reconnect together.
keepalive.max_connection_age_jitter_factor = 0.1
"#
    };
}
pub(crate) use listener_example;
