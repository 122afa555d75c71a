//! The `http_server` source: JSON events POSTed over HTTP, in the shapes a
//! Vector `http` sink sends (a JSON array, or NDJSON), or a single object.
//!
//! With acknowledgements, a request is answered only when every one of its
//! events has been delivered (or dead-lettered) by every sink: 200 then; 500
//! when delivery failed and 503 when the process is shutting down, so the
//! sender retries; 400 when a sink rejected the events for good.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode, header};
use serde::Deserialize;

use super::decode;
use super::http_input::{BodyError, deliver, read_body};
use crate::acks::AcknowledgementsConfig;
use crate::component::{
    Acknowledgements, BuildContext, BuildError, ComponentError, Output, ShutdownSignal, Source,
    SourceConfig, SourceContext, ValidSource, ValidateContext,
};
use crate::config::Secret;
use crate::http::{self, HttpResponse, TlsConfig, constant_time_eq, text};
use crate::telemetry::{ComponentMetrics, Stage};

/// Settings of the `http_server` source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Listen address, e.g. `0.0.0.0:8081`.
    pub address: String,
    /// The path events are POSTed to.
    #[serde(default = "default_path")]
    pub path: String,
    /// When false, any path is accepted.
    #[serde(default = "default_true")]
    pub strict_path: bool,
    /// Largest request body, before and after gzip decompression; larger gets 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Optional authentication of senders.
    pub auth: Option<AuthConfig>,
    /// Whether to answer only after delivery (also on when a downstream sink asks for it).
    #[serde(default)]
    pub acknowledgements: AcknowledgementsConfig,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<TlsConfig>,
    /// Most connections open at once; at the limit, new clients wait until one closes.
    /// Default: 1024, or a quarter of the open-file limit (`ulimit -n`) when that is lower.
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a complete request head, from connecting (TLS
    /// handshake included) and again after each answer on a kept-alive connection; a
    /// connection that does not is closed.
    #[serde(default = "http::connections::default_header_timeout_secs")]
    pub header_timeout_secs: u64,
    /// `max_connection_age_secs` (300) and `max_connection_age_jitter_factor` (0.1), as
    /// Vector's: a busy connection is retired after its current answer once that old.
    #[serde(default)]
    pub keepalive: http::KeepaliveConfig,
}

/// Every setting, at its default, for `fbpixel generate`: a comment line before each; one
/// unset by default is commented out. `tests/generate.rs` fails when a setting is missing.
pub const EXAMPLE: &str = concat!(
    r#"
# Listen address, IP:port (required).
address = "0.0.0.0:8081"
# The path events are POSTed to.
path = "/"
# When false, any path is accepted.
strict_path = true
# Largest request body in bytes, before and after decompression; larger gets 413.
max_body_bytes = 10485760
# Who may send; unset: anyone. Basic (username and password) or bearer (token).
# auth = { strategy = "basic", username = "vector", password = "${HTTP_SERVER_PASSWORD}" }
# auth = { strategy = "bearer", token = "${HTTP_SERVER_TOKEN}" }
"#,
    crate::http::listener_example!(),
    r#""#
);

/// `auth`: HTTP basic or bearer authentication.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// The expected user.
        username: String,
        /// The expected password.
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The expected token.
        token: Secret,
    },
}

fn default_path() -> String {
    "/".into()
}
fn default_true() -> bool {
    true
}
fn default_max_body_bytes() -> usize {
    10 * 1024 * 1024
}

impl SourceConfig for HttpServerConfig {
    fn validate(&self, cx: &ValidateContext) -> Result<Box<dyn ValidSource>, BuildError> {
        let listener = http::ListenerSettings::source(
            &cx.id,
            &self.address,
            self.tls.as_ref(),
            self.max_connections,
            self.header_timeout_secs,
            &self.keepalive,
        )
        .map_err(BuildError)?;
        if !self.path.starts_with('/') {
            return Err(BuildError(format!(
                "`path` {:?} must start with `/`",
                self.path
            )));
        }
        if self.max_body_bytes == 0 {
            return Err(BuildError("`max_body_bytes` must be at least 1".into()));
        }
        Ok(Box::new(ValidHttpServer {
            listener,
            config: self.clone(),
        }))
    }

    fn acknowledgements(&self) -> Acknowledgements {
        Acknowledgements::Supported(self.acknowledgements.enabled())
    }
}

/// Checked settings: the listener's, ready to bind.
struct ValidHttpServer {
    listener: http::ListenerSettings,
    config: HttpServerConfig,
}

#[async_trait]
impl ValidSource for ValidHttpServer {
    async fn build(self: Box<Self>, _cx: BuildContext) -> Result<Box<dyn Source>, BuildError> {
        let listener = self.listener.bind().await.map_err(BuildError)?;
        Ok(Box::new(HttpServerSource {
            listener,
            config: self.config,
        }))
    }
}

struct HttpServerSource {
    listener: http::Listener,
    config: HttpServerConfig,
}

/// What every request handler shares.
struct Shared {
    path: Option<String>,
    max_body_bytes: usize,
    authorization: Option<Secret>,
    acknowledgements: bool,
    out: Output,
    shutdown: ShutdownSignal,
    metrics: ComponentMetrics,
}

#[async_trait]
impl Source for HttpServerSource {
    async fn run(self: Box<Self>, cx: SourceContext) -> Result<(), ComponentError> {
        let HttpServerSource { listener, config } = *self;
        let authorization = config.auth.as_ref().map(|auth| match auth {
            AuthConfig::Basic { username, password } => {
                let pair = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                Secret::new(format!("Basic {encoded}"))
            }
            AuthConfig::Bearer { token } => Secret::new(format!("Bearer {}", token.expose())),
        });
        let shared = Arc::new(Shared {
            path: config.strict_path.then_some(config.path),
            max_body_bytes: config.max_body_bytes,
            authorization,
            acknowledgements: cx.acknowledgements,
            out: cx.out,
            shutdown: cx.shutdown.clone(),
            metrics: cx.metrics,
        });
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(component = %shared.metrics.info().id, %address, acknowledgements = shared.acknowledgements, "listening");
        http::serve(listener, cx.shutdown, move |req, _peer: SocketAddr| {
            let shared = shared.clone();
            async move { handle(&shared, req).await }
        })
        .await;
        Ok(())
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> HttpResponse {
    let response = receive(shared, req).await;
    if let Err((status, message)) = &response {
        let error_type = match *status {
            StatusCode::UNAUTHORIZED => "authentication_failed",
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::BAD_REQUEST => "decode_failed",
            _ => "request_failed",
        };
        if status.is_client_error() {
            shared.metrics.error(error_type, Stage::Receiving);
        }
        tracing::debug!(component = %shared.metrics.info().id, status = status.as_u16(), "{message}");
    }
    match response {
        Ok(()) => text(StatusCode::OK, ""),
        Err((status, message)) => {
            let mut response = text(status, message);
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Basic"),
                );
            }
            response
        }
    }
}

type Failure = (StatusCode, String);

async fn receive(shared: &Shared, req: Request<Incoming>) -> Result<(), Failure> {
    if shared.shutdown.is_triggered() {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down; retry later".into(),
        ));
    }
    if let Some(path) = &shared.path {
        if req.uri().path() != path {
            return Err((
                StatusCode::NOT_FOUND,
                format!("not found; POST events to {path}"),
            ));
        }
    }
    if req.method() != Method::POST {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "use POST".into()));
    }
    if let Some(expected) = &shared.authorization {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !given.is_some_and(|g| constant_time_eq(g, expected.expose().as_bytes())) {
            return Err((
                StatusCode::UNAUTHORIZED,
                "missing or wrong credentials".into(),
            ));
        }
    }
    let limit = shared.max_body_bytes;
    let body = read_body(req, limit).await.map_err(|e| match e {
        BodyError::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than max_body_bytes ({limit} bytes)"),
        ),
        other => other.failure(),
    })?;
    shared.metrics.received_wire_bytes(body.len());
    let events = decode::body(&body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    if events.is_empty() {
        return Ok(());
    }
    deliver(
        &shared.out,
        events,
        shared.acknowledgements,
        &shared.shutdown,
        &shared.metrics,
    )
    .await
}
