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
use tokio::net::TcpListener;

use crate::topology::ShutdownSignal;

/// The response type of every handler.
pub type HttpResponse = Response<Full<Bytes>>;

/// Bind `address`, with an error message that says what to change.
pub async fn bind(address: &str) -> Result<TcpListener, String> {
    let addr: SocketAddr = address.parse().map_err(|_| {
        format!("`address` {address:?} is not an IP:port address such as 0.0.0.0:8080")
    })?;
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e} (is another process using the port?)"))
}

/// Serve connections until `shutdown`, then stop accepting and wait for every
/// request already received to be answered.
pub async fn serve<H, F>(listener: TcpListener, mut shutdown: ShutdownSignal, handler: H)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    let handler = Arc::new(handler);
    let builder = auto::Builder::new(TokioExecutor::new());
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
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
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
