//! The `[api]` endpoint: `GET /health`, `GET /metrics` (Prometheus text, what `fbpixel top`
//! reads) and `GET /tap` (a sample of the events leaving components, what `fbpixel tap` reads).

mod mask;
pub mod tap;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::{Method, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::component::{ShutdownSignal, Taps};
use crate::config::ApiConfig;
use crate::http::{self, HttpResponse, text};

/// An answer: whole, or a tap's stream.
type ApiResponse = Response<Either<Full<Bytes>, tap::TapBody>>;

/// Install the global metrics recorder; its handle renders `/metrics`.
/// Without an `[api]`, no recorder is installed and counting costs nothing.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in crate::telemetry::HISTOGRAM_BUCKETS {
        builder = builder
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(name.into()),
                buckets,
            )
            .map_err(|e| format!("invalid histogram buckets for {name}: {e}"))?;
    }
    builder
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))
}

/// Check `[api] address` as [`Api::bind`] parses it, without binding: `validate` runs this
/// so that it refuses what `run` would.
pub fn check_address(address: &str) -> Result<SocketAddr, String> {
    http::parse_address(address).map_err(|_| {
        format!(
            "api.address: {address:?} is not an IP:port address such as 127.0.0.1:8686 (host names such as localhost are not looked up)"
        )
    })
}

/// The bound API listener.
pub struct Api {
    listener: http::Listener,
    handle: PrometheusHandle,
    taps: Taps,
}

impl Api {
    /// Bind `config.address`, with its own connection limit, so that a flood on a
    /// source's port cannot keep `/health` from answering.
    pub async fn bind(config: &ApiConfig, handle: PrometheusHandle) -> Result<Self, String> {
        let limits = http::ConnectionLimits::new(
            "api",
            "api",
            config.max_connections,
            config.header_timeout_secs,
            http::connections::API_MAX_CONNECTIONS,
        )
        .map_err(|e| format!("api: {e}"))?;
        check_address(&config.address)?;
        let listener = http::ListenerSettings::new(&config.address, None, limits)
            .map_err(|e| format!("api: {e}"))?
            .bind()
            .await
            .map_err(|e| format!("api: {e}"))?;
        Ok(Self {
            listener,
            handle,
            taps: Taps::global(),
        })
    }

    /// The address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown`; open taps end then too.
    pub async fn serve(self, shutdown: ShutdownSignal) {
        let Api { handle, taps, .. } = self;
        let stop = shutdown.clone();
        http::serve(self.listener, shutdown, move |req, peer| {
            let answer = answer(req.method(), req.uri(), peer, &handle, &taps, &stop);
            async move { answer }
        })
        .await;
    }
}

fn answer(
    method: &Method,
    uri: &hyper::Uri,
    peer: SocketAddr,
    handle: &PrometheusHandle,
    taps: &Taps,
    shutdown: &ShutdownSignal,
) -> ApiResponse {
    let whole = |r: HttpResponse| r.map(Either::Left);
    if method != Method::GET {
        return whole(text(StatusCode::METHOD_NOT_ALLOWED, "use GET"));
    }
    match uri.path() {
        "/health" => whole(typed(
            text(StatusCode::OK, r#"{"ok":true}"#),
            "application/json",
        )),
        "/metrics" => whole(typed(
            text(StatusCode::OK, handle.render()),
            "text/plain; version=0.0.4",
        )),
        "/tap" => match tap::TapQuery::parse(uri.query()) {
            Err(e) => whole(text(StatusCode::BAD_REQUEST, format!("/tap: {e}"))),
            Ok(query) if query.raw && !tap::is_local(peer) => {
                whole(text(StatusCode::FORBIDDEN, tap::RAW_REFUSED))
            }
            Ok(query) => tap::stream(taps, query, shutdown.clone()).map(Either::Right),
        },
        _ => whole(text(
            StatusCode::NOT_FOUND,
            "not found; try /health, /metrics or /tap",
        )),
    }
}

fn typed(mut r: HttpResponse, content_type: &'static str) -> HttpResponse {
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::component::shutdown_pair;

    async fn get(path: &str, peer: &str) -> (StatusCode, String) {
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let (_stop, signal) = shutdown_pair();
        let uri: hyper::Uri = path.parse().unwrap();
        let r = answer(
            &Method::GET,
            &uri,
            peer.parse().unwrap(),
            &handle,
            &Taps::default(),
            &signal,
        );
        let status = r.status();
        match r.into_body() {
            Either::Left(full) => {
                let bytes = full.collect().await.unwrap().to_bytes();
                (status, String::from_utf8(bytes.to_vec()).unwrap())
            }
            Either::Right(_) => (status, "(a stream)".into()),
        }
    }

    #[tokio::test]
    async fn a_raw_tap_is_refused_to_another_machine_and_served_on_loopback() {
        let (status, body) = get("/tap?raw=true", "192.0.2.7:40000").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.starts_with(tap::RAW_REFUSED), "{body}");
        assert_eq!(
            get("/tap?raw=true", "127.0.0.1:40000").await,
            (StatusCode::OK, "(a stream)".into())
        );
        assert_eq!(
            get("/tap", "192.0.2.7:40000").await,
            (StatusCode::OK, "(a stream)".into())
        );
        let (status, body) = get("/tap?rate=x", "127.0.0.1:1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.starts_with("/tap: rate: \"x\""), "{body}");
    }
}
