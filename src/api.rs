//! The `[api]` endpoint: `GET /health` and `GET /metrics` (Prometheus text).

use std::net::SocketAddr;

use hyper::{Method, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::component::ShutdownSignal;
use crate::config::ApiConfig;
use crate::http::{self, text};

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
        Ok(Self { listener, handle })
    }

    /// The address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown`.
    pub async fn serve(self, shutdown: ShutdownSignal) {
        let handle = self.handle;
        http::serve(self.listener, shutdown, move |req, _peer| {
            let handle = handle.clone();
            async move {
                if req.method() != Method::GET {
                    return text(StatusCode::METHOD_NOT_ALLOWED, "use GET");
                }
                match req.uri().path() {
                    "/health" => {
                        let mut r = text(StatusCode::OK, r#"{"ok":true}"#);
                        r.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        r
                    }
                    "/metrics" => {
                        let mut r = text(StatusCode::OK, handle.render());
                        r.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                        );
                        r
                    }
                    _ => text(StatusCode::NOT_FOUND, "not found; try /health or /metrics"),
                }
            }
        })
        .await;
    }
}
