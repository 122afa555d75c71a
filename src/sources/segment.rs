//! The `segment` source: Segment's HTTP tracking API, so Segment's own client
//! libraries (analytics.js, analytics-python, analytics-node, …) can send here
//! with a change of host name only.
//!
//! `POST /v1/{track,page,identify,screen,group,alias}` take one message, whose
//! `type` is set from the path; `/v1/batch` and `/v1/import` take
//! `{"batch": [...]}`. analytics.js's short paths (`/v1/t`, `/v1/p`, …) work
//! too. The write key comes as the HTTP basic user or as `writeKey` in the
//! body. Each message gets `receivedAt`, and a `messageId` when it has none.
//! The answer is `{"success": true}`, after delivery when acknowledgements
//! are on (5xx when it failed, so the libraries retry). A refusal is shaped as
//! Segment's own (see [`refusal`]): `{"success": false, "message": …, "code": …}`.
//!
//! With `infer_ip`, a message without `context.ip` gets the client's address: the peer's, or
//! with `trust_forwarded_for` the one Meta's Parameter Builder library would pick from
//! `X-Forwarded-For` (`client_ip`, where the rule and its source are).
//!
//! For analytics.js on pages of other origins, each tracking path answers the CORS preflight
//! `OPTIONS`, and every answer carries `Access-Control-Allow-Origin` as `cors` allows (`cors`,
//! where what the browser library sends and why the default is any origin are).

mod client_ip;
mod cors;
mod message;

pub use cors::CorsConfig;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode, header};
use serde::Deserialize;

use message::{Batch, MaybeObject};

use super::http_input::{BodyError, deliver, read_body};
use crate::acks::AcknowledgementsConfig;
use crate::component::{
    Acknowledgements, BuildContext, BuildError, ComponentError, Output, ShutdownSignal, Source,
    SourceConfig, SourceContext, ValidSource, ValidateContext,
};
use crate::config::Secret;
use crate::event::Event;
use crate::http::{self, HttpResponse, TlsConfig, constant_time_eq};
use crate::telemetry::{ComponentMetrics, Stage, Throttle};

/// Segment's limit for one message.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Segment's limit for one batch request.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
/// Seconds between two log lines about refused origins.
const ORIGIN_LOG_INTERVAL_SECS: u64 = 60;

/// Settings of the `segment` source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentConfig {
    /// Listen address, e.g. `0.0.0.0:8080`.
    pub address: String,
    /// Accepted write keys; a request with another (or none) gets 401.
    pub write_keys: Vec<Secret>,
    /// Set `context.ip` from the peer address when a message has none. Off by
    /// default: a server library's requests carry the server's address.
    #[serde(default)]
    pub infer_ip: bool,
    /// With `infer_ip`, take the address from `X-Forwarded-For` as Meta's Parameter Builder
    /// does (a public one, IPv6 first; see `client_ip`) instead of the peer. Only behind a proxy
    /// you trust to set it.
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// With `trust_forwarded_for`: the proxies (CIDRs, or single addresses) that may set
    /// `X-Forwarded-For`. A peer outside them has its own address used (when public); their hops
    /// in the header are skipped. Empty (the default): every peer may set it.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
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
    /// Which pages' origins may post here from a browser (`allowed_origins`, default any), and
    /// the preflight's `allowed_headers`, `allow_credentials` and `max_age_secs`.
    #[serde(default)]
    pub cors: CorsConfig,
}

/// Every setting, at its default, for `fbpixel generate`: a comment line before each; one
/// unset by default is commented out. `tests/generate.rs` fails when a setting is missing.
pub const EXAMPLE: &str = concat!(
    r#"
# Listen address, IP:port (required).
address = "0.0.0.0:8080"
# Accepted write keys (required); a request with another, or none, gets 401.
write_keys = ["${SEGMENT_WRITE_KEY}"]
# Set `context.ip` from the peer address when a message has none (a server library's requests carry the server's).
infer_ip = false
# With infer_ip: take the address from X-Forwarded-For instead of the peer; only behind a proxy you trust.
trust_forwarded_for = false
# With trust_forwarded_for: the proxies (CIDRs or addresses) that may set it; empty: every peer may.
trusted_proxies = []
"#,
    crate::http::listener_example!(),
    r#"# Web pages (origins) browser analytics.js may post from: "*" for any, a list of "https://shop.example", or [] for no CORS.
cors.allowed_origins = ["*"]
# Request headers allowed besides Content-Type, Authorization and X-Retry-Count.
cors.allowed_headers = []
# Answer Access-Control-Allow-Credentials for pages using credentials: 'include' (needs listed origins).
cors.allow_credentials = false
# Seconds a browser may cache a preflight answer.
cors.max_age_secs = 7200
"#
);

impl SegmentConfig {
    /// The write keys that are not empty (an unset `${VAR}` gives an empty one).
    fn keys(&self) -> Vec<Secret> {
        self.write_keys
            .iter()
            .filter(|k| !k.expose().is_empty())
            .cloned()
            .collect()
    }
}

impl SourceConfig for SegmentConfig {
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
        if self.keys().is_empty() {
            return Err(BuildError(
                "write_keys: list at least one write key (Segment → your source → Settings → API Keys)".into(),
            ));
        }
        let trusted_proxies =
            client_ip::trusted_proxies(&self.trusted_proxies).map_err(BuildError)?;
        let reads_header = self.infer_ip && self.trust_forwarded_for;
        if !trusted_proxies.is_empty() && !reads_header {
            // Otherwise the list would be silently unused: the header is not read at all.
            return Err(BuildError(
                "trusted_proxies: only read with `infer_ip = true` and `trust_forwarded_for = true`; set both, or remove trusted_proxies".into(),
            ));
        }
        let cors = cors::Cors::new(&self.cors).map_err(BuildError)?;
        Ok(Box::new(ValidSegment {
            listener,
            keys: self.keys(),
            trusted_proxies,
            cors,
            config: self.clone(),
        }))
    }

    fn acknowledgements(&self) -> Acknowledgements {
        Acknowledgements::Supported(self.acknowledgements.enabled())
    }
}

/// Checked settings: the listener's, ready to bind, the write keys, the trusted proxies and
/// the CORS policy.
struct ValidSegment {
    listener: http::ListenerSettings,
    keys: Vec<Secret>,
    trusted_proxies: Vec<client_ip::Cidr>,
    cors: cors::Cors,
    config: SegmentConfig,
}

#[async_trait]
impl ValidSource for ValidSegment {
    async fn build(self: Box<Self>, _cx: BuildContext) -> Result<Box<dyn Source>, BuildError> {
        let listener = self.listener.bind().await.map_err(BuildError)?;
        Ok(Box::new(SegmentSource {
            listener,
            keys: self.keys,
            trusted_proxies: self.trusted_proxies,
            cors: self.cors,
            config: self.config,
        }))
    }
}

struct SegmentSource {
    listener: http::Listener,
    keys: Vec<Secret>,
    trusted_proxies: Vec<client_ip::Cidr>,
    cors: cors::Cors,
    config: SegmentConfig,
}

struct Shared {
    keys: Vec<Secret>,
    infer_ip: bool,
    trust_forwarded_for: bool,
    trusted_proxies: Vec<client_ip::Cidr>,
    cors: cors::Cors,
    /// Refused origins are logged at most this often: a page that is not listed posts again
    /// and again, and its console shows only the browser's CORS error, not our message.
    origin_log: Throttle,
    acknowledgements: bool,
    out: Output,
    shutdown: ShutdownSignal,
    metrics: ComponentMetrics,
}

#[async_trait]
impl Source for SegmentSource {
    async fn run(self: Box<Self>, cx: SourceContext) -> Result<(), ComponentError> {
        let SegmentSource {
            listener,
            keys,
            trusted_proxies,
            cors,
            config,
        } = *self;
        let shared = Arc::new(Shared {
            keys,
            infer_ip: config.infer_ip,
            trust_forwarded_for: config.trust_forwarded_for,
            trusted_proxies,
            cors,
            origin_log: Throttle::new(ORIGIN_LOG_INTERVAL_SECS),
            acknowledgements: cx.acknowledgements,
            out: cx.out,
            shutdown: cx.shutdown.clone(),
            metrics: cx.metrics,
        });
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(component = %shared.metrics.info().id, %address, tls = listener.is_tls(), acknowledgements = shared.acknowledgements, "listening for Segment's HTTP tracking API");
        http::serve(listener, cx.shutdown, move |req, peer| {
            let shared = shared.clone();
            async move { handle(&shared, req, peer).await }
        })
        .await;
        Ok(())
    }
}

/// What a path asks for.
enum Call {
    Single(&'static str),
    Batch,
}

fn call(path: &str) -> Option<Call> {
    let name = path.strip_prefix("/v1/")?.trim_end_matches('/');
    Some(match name {
        "track" | "t" => Call::Single("track"),
        "page" | "p" => Call::Single("page"),
        "identify" | "i" => Call::Single("identify"),
        "screen" | "s" => Call::Single("screen"),
        "group" | "g" => Call::Single("group"),
        "alias" | "a" => Call::Single("alias"),
        "batch" | "b" | "import" => Call::Batch,
        _ => return None,
    })
}

async fn handle(shared: &Shared, req: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
    // Judged before the request is consumed, so that every answer, refusals too, carries the
    // CORS headers: without them the page could not read it, and analytics.js would retry.
    let verdict = shared.cors.judge(req.headers().get(header::ORIGIN));
    let mut response = match respond(shared, req, peer, &verdict).await {
        Ok(response) => response,
        Err((status, message)) => {
            if status.is_client_error() {
                let error_type = match status {
                    StatusCode::UNAUTHORIZED => "authentication_failed",
                    _ => "request_rejected",
                };
                shared.metrics.error(error_type, Stage::Receiving);
            }
            if status == StatusCode::FORBIDDEN && shared.origin_log.ready() {
                tracing::warn!(component = %shared.metrics.info().id, "refused a browser request: {message}");
            }
            refusal(status, &message)
        }
    };
    shared.cors.add_headers(&verdict, response.headers_mut());
    response
}

async fn respond(
    shared: &Shared,
    req: Request<Incoming>,
    peer: SocketAddr,
    verdict: &cors::Verdict,
) -> Result<HttpResponse, Failure> {
    if req.method() == Method::OPTIONS {
        return options(shared, &req, verdict);
    }
    receive(shared, req, peer, verdict).await?;
    Ok(json(StatusCode::OK, r#"{"success":true}"#.into()))
}

/// The answer to an `OPTIONS`: on a tracking path, 204 to a preflight from an allowed origin
/// (403 otherwise), and to a plain one the methods (RFC 9110 §9.3.7).
fn options(
    shared: &Shared,
    req: &Request<Incoming>,
    verdict: &cors::Verdict,
) -> Result<HttpResponse, Failure> {
    if call(req.uri().path()).is_none() {
        return Err(not_found());
    }
    let mut response = http::text(StatusCode::NO_CONTENT, "");
    response.headers_mut().remove(header::CONTENT_TYPE);
    if !cors::is_preflight(req.headers()) {
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(ALLOW));
        return Ok(response);
    }
    if let Some(message) = cors::refusal_message(verdict) {
        return Err((StatusCode::FORBIDDEN, message));
    }
    shared.cors.add_preflight_headers(response.headers_mut());
    Ok(response)
}

/// The methods of the tracking paths.
const ALLOW: &str = "POST, OPTIONS";

fn not_found() -> Failure {
    (
        StatusCode::NOT_FOUND,
        "not found; POST to /v1/track, /v1/page, /v1/identify, /v1/screen, /v1/group, /v1/alias, /v1/batch or /v1/import".into(),
    )
}

/// An error answer as Segment's tracking API shapes it, so that its client libraries show
/// `message`: `{"success": false, "message": "malformed JSON", "code": "invalid_request"}`,
/// `application/json`. That body is the one Segment's analytics-next tests use for a
/// rejection by its tracking API (`packages/node/src/__tests__/oauth.integration.test.ts`,
/// "TAPI rejection"), and analytics-python reads exactly those two keys
/// (`segment/analytics/request.py`: `APIError(res.status_code, payload['code'],
/// payload['message'])`, logged by the consumer as `error uploading: [Segment] {code}:
/// {message} ({status})`); its releases up to 2.3.x catch only `ValueError` there, so a body
/// without `code` was logged as `error uploading: 'code'`. analytics-ruby logs the body.
///
/// @segment/analytics-node never reads the body, only the status line
/// (`packages/node/src/plugins/segmentio/publisher.ts`: `new Error(`[${status}]
/// ${statusText}`)`), so over HTTP/1.1 the message goes in the reason phrase too
/// (`401 Unauthorized: missing or unknown write key; …`): RFC 9112 lets it be any text
/// for people to read, and it is the only part of a refusal the Node library reports.
/// (analytics.js reports the status alone.)
fn refusal(status: StatusCode, message: &str) -> HttpResponse {
    /// Segment's keys in Segment's order (a JSON map would sort them).
    #[derive(serde::Serialize)]
    struct Body<'a> {
        success: bool,
        message: &'a str,
        code: &'a str,
    }
    let body = Body {
        success: false,
        message,
        code: error_code(status),
    };
    let mut response = json(
        status,
        serde_json::to_string(&body).expect("strings serialize"),
    );
    let headers = response.headers_mut();
    match status {
        StatusCode::UNAUTHORIZED => {
            headers.insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"Segment write key\""),
            );
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            headers.insert(header::ALLOW, header::HeaderValue::from_static(ALLOW));
        }
        _ => {}
    }
    if let Some(reason) = reason_phrase(status, message) {
        response.extensions_mut().insert(reason);
    }
    response
}

/// The `code` of a refusal with `status`. A 400 has Segment's own (`invalid_request`, which
/// its API gives malformed JSON and a missing write key alike); the others, which Segment's
/// API does not answer, a name in its style.
fn error_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::UNAUTHORIZED => "invalid_write_key",
        StatusCode::FORBIDDEN => "origin_not_allowed",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_encoding",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        status if status.is_server_error() => "delivery_failed",
        _ => "invalid_request",
    }
}

/// Longest reason phrase sent: a status line stays one short line.
const MAX_REASON_BYTES: usize = 200;

/// `Unauthorized: <message>` as an HTTP/1.1 reason phrase: printable ASCII only (anything
/// else becomes `?`), at most [`MAX_REASON_BYTES`].
fn reason_phrase(status: StatusCode, message: &str) -> Option<hyper::ext::ReasonPhrase> {
    let standard = status.canonical_reason().unwrap_or("Error");
    let text: String = format!("{standard}: {message}")
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(MAX_REASON_BYTES)
        .collect();
    hyper::ext::ReasonPhrase::try_from(text).ok()
}

fn json(status: StatusCode, body: String) -> HttpResponse {
    let mut response = http::text(status, body);
    // Without `; charset=utf-8`: a client matching the type's end (analytics-ruby's Faraday
    // releases: `/\bjson$/`) would not parse the body otherwise.
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

type Failure = (StatusCode, String);

fn bad(message: impl Into<String>) -> Failure {
    (StatusCode::BAD_REQUEST, message.into())
}

async fn receive(
    shared: &Shared,
    req: Request<Incoming>,
    peer: SocketAddr,
    verdict: &cors::Verdict,
) -> Result<(), Failure> {
    if shared.shutdown.is_triggered() {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down; retry later".into(),
        ));
    }
    let Some(call) = call(req.uri().path()) else {
        return Err(not_found());
    };
    if req.method() != Method::POST {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "use POST".into()));
    }
    // Refused before delivery, not just left without CORS headers: the page could not read a
    // success, and analytics.js would resend the events until it gives up.
    if let cors::Verdict::Refused(_) = verdict {
        let message = cors::refusal_message(verdict).expect("a refused origin has a message");
        return Err((StatusCode::FORBIDDEN, message));
    }
    let basic_key = basic_user(req.headers().get(header::AUTHORIZATION));
    // Chosen before the body is read, while the headers are at hand. Personal data: never logged.
    let ip = match (shared.infer_ip, shared.trust_forwarded_for) {
        (false, _) => None,
        (true, false) => Some(peer.ip()),
        (true, true) => client_ip::choose(
            peer.ip(),
            req.headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|line| line.to_str().ok()),
            &shared.trusted_proxies,
        ),
    }
    .map(|ip| ip.to_string());
    let limit = match call {
        Call::Single(_) => MAX_MESSAGE_BYTES,
        Call::Batch => MAX_BATCH_BYTES,
    };
    let body = read_body(req, limit).await.map_err(|e| match e {
        BodyError::TooLarge => bad(match call {
            Call::Single(_) => {
                format!("the message is larger than Segment's limit of 32 KB ({MAX_MESSAGE_BYTES} bytes)")
            }
            Call::Batch => {
                format!("the batch is larger than Segment's limit of 500 KB ({MAX_BATCH_BYTES} bytes)")
            }
        }),
        other => other.failure(),
    })?;
    shared.metrics.received_wire_bytes(body.len());

    let body_members = match message::parse_body(&body, matches!(call, Call::Batch)) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Err(bad("the body must be a JSON object")),
        Err(e) => return Err(bad(format!("invalid JSON: {e}"))),
    };
    let key = basic_key.or_else(|| {
        body_members
            .members
            .get("writeKey")
            .and_then(message::string)
            .map(String::from)
    });
    let authorized = key.is_some_and(|k| {
        shared
            .keys
            .iter()
            .any(|known| constant_time_eq(k.as_bytes(), known.expose().as_bytes()))
    });
    if !authorized {
        return Err((
            StatusCode::UNAUTHORIZED,
            "missing or unknown write key; send it as the HTTP basic user or as `writeKey`".into(),
        ));
    }

    let received_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let events = events(&body_members, call, &received_at, ip.as_deref())?;
    deliver(
        &shared.out,
        events,
        shared.acknowledgements,
        &shared.shutdown,
        &shared.metrics,
    )
    .await
}

/// The events of a request: each message with its additions (see [`message::write`]).
fn events(
    body: &message::Body<'_>,
    call: Call,
    received_at: &str,
    ip: Option<&str>,
) -> Result<Vec<Event>, Failure> {
    let (kind, messages, shared_context, shared_integrations) = match call {
        Call::Single(kind) => (Some(kind), vec![&body.members], None, None),
        Call::Batch => {
            let messages = batch_messages(body)?;
            let shared_object = |key| match body.members.get(key).map(message::object) {
                Some(MaybeObject::Object(members)) => Some(members),
                _ => None,
            };
            (
                None,
                messages,
                shared_object("context"),
                shared_object("integrations"),
            )
        }
    };
    let additions = message::Additions {
        kind,
        shared_context: shared_context.as_ref(),
        shared_integrations: shared_integrations.as_ref(),
        received_at,
        ip,
        new_message_id: &new_message_id,
    };
    // Each event gets its own exact-size bytes, written in one reused buffer: one buffer for
    // the whole request, as large as the body, cost the kernel fresh pages on every request
    // (a tenth more CPU time than http_server under load, though not more instructions), and
    // would keep the whole request in memory while any one of its events waits.
    let mut scratch = Vec::with_capacity(4096);
    let mut events = Vec::with_capacity(messages.len());
    for (i, members) in messages.iter().enumerate() {
        scratch.clear();
        message::write(&mut scratch, members, &additions);
        if scratch.len() > MAX_MESSAGE_BYTES {
            return Err(bad(format!(
                "batch[{i}] is larger than Segment's limit of 32 KB ({MAX_MESSAGE_BYTES} bytes) for a message"
            )));
        }
        events.push(Event::from_json(Bytes::copy_from_slice(&scratch)));
    }
    Ok(events)
}

/// The messages of a `/v1/batch` body, checked: each an object with a known `type`. Each gets
/// the batch's `context` and `integrations` under its own (its own keys win) when written.
fn batch_messages<'b, 'a>(
    body: &'b message::Body<'a>,
) -> Result<Vec<&'b message::Members<'a>>, Failure> {
    let items = match &body.batch {
        Some(Batch::Items(items)) if items.is_empty() => return Err(bad("`batch` is empty")),
        Some(Batch::Items(items)) => items,
        Some(Batch::Not) => return Err(bad("`batch` must be an array of messages")),
        None => {
            return Err(bad(
                "missing `batch`: POST {\"batch\": [messages]} to /v1/batch",
            ));
        }
    };
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let message = match item {
            MaybeObject::Object(message) => message,
            MaybeObject::Not(kind) => {
                return Err(bad(format!("batch[{i}] must be a JSON object, not {kind}")));
            }
        };
        match message.get("type") {
            Some(t)
                if message::string(t).is_some_and(|t| {
                    matches!(
                        t.as_ref(),
                        "track" | "page" | "identify" | "screen" | "group" | "alias"
                    )
                }) => {}
            Some(_) => {
                return Err(bad(format!(
                    "batch[{i}].type must be one of track, page, identify, screen, group, alias"
                )));
            }
            None => return Err(bad(format!("batch[{i}] has no `type`"))),
        }
        messages.push(message);
    }
    Ok(messages)
}

/// The user of `Authorization: Basic base64(user:password)`. As RFC 7235 §2.1 has it, the
/// scheme is matched without regard to case (`basic`, `BASIC`) and one or more spaces
/// separate it from the credentials; spaces (or tabs) around those are ignored too.
fn basic_user(value: Option<&header::HeaderValue>) -> Option<String> {
    let is_space = |c: char| c == ' ' || c == '\t';
    let (scheme, credentials) = value?
        .to_str()
        .ok()?
        .trim_matches(is_space)
        .split_once(is_space)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let encoded = credentials.trim_matches(is_space);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split(':').next().unwrap_or("");
    (!user.is_empty()).then(|| user.to_owned())
}

/// A random UUID v4 in Segment's style, for messages without a `messageId`.
fn new_message_id() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_calls_including_analytics_js_short_forms() {
        assert!(matches!(call("/v1/track"), Some(Call::Single("track"))));
        assert!(matches!(call("/v1/t"), Some(Call::Single("track"))));
        assert!(matches!(call("/v1/import"), Some(Call::Batch)));
        assert!(matches!(call("/v1/b"), Some(Call::Batch)));
        assert!(call("/v2/track").is_none());
        assert!(call("/v1/nope").is_none());
    }

    #[test]
    fn the_write_key_is_the_basic_user() {
        let v = header::HeaderValue::from_static("Basic a2V5LTE6"); // "key-1:"
        assert_eq!(basic_user(Some(&v)).as_deref(), Some("key-1"));
        let v = header::HeaderValue::from_static("Basic a2V5LTE="); // "key-1", no colon
        assert_eq!(basic_user(Some(&v)).as_deref(), Some("key-1"));
        for refused in [
            "Bearer a2V5LTE6",
            "Basica2V5LTE6",
            "Basic",
            "Basic  ",
            "Basic a2V5 LTE6",
        ] {
            let v = header::HeaderValue::from_static(refused);
            assert_eq!(basic_user(Some(&v)), None, "{refused:?}");
        }
        assert_eq!(basic_user(None), None);
    }

    #[test]
    fn the_basic_scheme_is_matched_in_any_case_and_with_extra_spaces() {
        for value in [
            "basic a2V5LTE6",
            "BASIC a2V5LTE6",
            "bAsIc a2V5LTE6",
            "Basic   a2V5LTE6",
            "Basic\ta2V5LTE6",
            "  Basic a2V5LTE6  ",
        ] {
            let v = header::HeaderValue::from_str(value).unwrap();
            assert_eq!(basic_user(Some(&v)).as_deref(), Some("key-1"), "{value:?}");
        }
    }

    async fn body_of(response: &HttpResponse) -> serde_json::Value {
        use http_body_util::BodyExt;
        let bytes = response.body().clone().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn refusals_have_segments_shape_and_the_message_in_the_reason_phrase() {
        let cases = [
            (
                StatusCode::BAD_REQUEST,
                "invalid JSON: EOF",
                "invalid_request",
            ),
            (
                StatusCode::UNAUTHORIZED,
                "missing or unknown write key",
                "invalid_write_key",
            ),
            (StatusCode::NOT_FOUND, "not found", "not_found"),
            (
                StatusCode::FORBIDDEN,
                "origin https://evil.example is not in cors.allowed_origins",
                "origin_not_allowed",
            ),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "use POST",
                "method_not_allowed",
            ),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not be delivered",
                "delivery_failed",
            ),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down",
                "unavailable",
            ),
        ];
        for (status, message, code) in cases {
            let response = refusal(status, message);
            use http_body_util::BodyExt;
            let raw = response.body().clone().collect().await.unwrap().to_bytes();
            assert!(
                raw.starts_with(br#"{"success":false,"message":"#),
                "Segment's order: {raw:?}"
            );
            assert_eq!(response.status(), status);
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/json",
                "{status}"
            );
            assert_eq!(
                body_of(&response).await,
                serde_json::json!({"success": false, "message": message, "code": code})
            );
            let reason = response
                .extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .expect("a reason phrase");
            let reason = std::str::from_utf8(reason.as_bytes()).unwrap();
            assert_eq!(
                reason,
                format!("{}: {message}", status.canonical_reason().unwrap())
            );
        }
        let unauthorized = refusal(StatusCode::UNAUTHORIZED, "x");
        assert!(
            unauthorized
                .headers()
                .contains_key(header::WWW_AUTHENTICATE)
        );
        assert_eq!(
            refusal(StatusCode::METHOD_NOT_ALLOWED, "x").headers()[header::ALLOW],
            "POST, OPTIONS"
        );
        let ok = json(StatusCode::OK, r#"{"success":true}"#.into());
        assert_eq!(body_of(&ok).await, serde_json::json!({"success": true}));
    }

    #[test]
    fn a_reason_phrase_is_printable_ascii_and_short() {
        let long = format!("é\r\nx{}", "y".repeat(500));
        let reason = reason_phrase(StatusCode::BAD_REQUEST, &long).unwrap();
        let text = std::str::from_utf8(reason.as_bytes()).unwrap();
        assert!(text.starts_with("Bad Request: ???x"), "{text}");
        assert_eq!(text.len(), MAX_REASON_BYTES);
    }

    /// The events a body becomes, as JSON values, or the refusal.
    fn events_of(
        call: Call,
        body: &str,
        ip: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, Failure> {
        let parsed = message::parse_body(body.as_bytes(), matches!(call, Call::Batch))
            .unwrap()
            .unwrap();
        let events = events(&parsed, call, "2026-12-03T00:00:00.000Z", ip)?;
        Ok(events
            .iter()
            .map(|e| serde_json::from_slice(&e.to_json()).unwrap())
            .collect())
    }

    #[test]
    fn batch_context_fills_in_without_overriding() {
        let messages = events_of(
            Call::Batch,
            r#"{"batch":[{"type":"track","writeKey":"k","context":{"ip":"1.1.1.1"}},{"type":"page"}],"context":{"ip":"9.9.9.9","library":{"name":"x"}}}"#,
            None,
        )
        .unwrap();
        assert!(
            messages[0].get("writeKey").is_none(),
            "the write key stays out of events"
        );
        assert_eq!(messages[0]["context"]["ip"], "1.1.1.1");
        assert_eq!(messages[0]["context"]["library"]["name"], "x");
        assert_eq!(messages[1]["context"]["ip"], "9.9.9.9");
        assert_eq!(messages[1]["receivedAt"], "2026-12-03T00:00:00.000Z");
        assert_eq!(messages[1]["messageId"].as_str().unwrap().len(), 36);
    }

    #[test]
    fn a_single_call_takes_the_paths_type_and_the_inferred_ip() {
        let messages = events_of(
            Call::Single("page"),
            r#"{"type":"track","writeKey":"k","messageId":"m-1","name":"Home"}"#,
            Some("198.51.100.4"),
        )
        .unwrap();
        assert_eq!(
            messages,
            [serde_json::json!({
                "type": "page",
                "messageId": "m-1",
                "name": "Home",
                "context": {"ip": "198.51.100.4"},
                "receivedAt": "2026-12-03T00:00:00.000Z",
            })]
        );
    }

    #[test]
    fn a_message_over_segments_limit_is_refused_by_index() {
        let big = "x".repeat(MAX_MESSAGE_BYTES);
        let body = format!(r#"{{"batch":[{{"type":"track"}},{{"type":"track","p":"{big}"}}]}}"#);
        let (status, message) = events_of(Call::Batch, &body, None).err().unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.starts_with("batch[1] is larger than"), "{message}");
    }

    #[test]
    fn malformed_batches_are_refused_with_the_reason() {
        let cases = [
            (r#"{"batch":[]}"#, "`batch` is empty"),
            (r#"{"batch":{}}"#, "`batch` must be an array"),
            (r#"{"batch":7}"#, "`batch` must be an array"),
            (r#"{"events":[]}"#, "missing `batch`"),
            (r#"{"batch":[3]}"#, "batch[0] must be a JSON object"),
            (
                r#"{"batch":[{"type":"boom"}]}"#,
                "batch[0].type must be one of",
            ),
            (
                r#"{"batch":[{"type":"track"},{"type":null}]}"#,
                "batch[1].type must be one of",
            ),
            (r#"{"batch":[{"event":"x"}]}"#, "batch[0] has no `type`"),
        ];
        for (body, expected) in cases {
            let (status, message) = events_of(Call::Batch, body, None).err().unwrap();
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(message.contains(expected), "{body}: {message}");
        }
    }

    fn validate(extra: &str) -> Result<Box<dyn ValidSource>, BuildError> {
        let config: SegmentConfig = toml::from_str(&format!(
            "address = \"127.0.0.1:0\"\nwrite_keys = [\"k\"]\n{extra}"
        ))
        .unwrap();
        config.validate(&ValidateContext {
            id: "web".into(),
            data_dir: None,
        })
    }

    #[test]
    fn trusted_proxies_are_checked_at_validate_with_the_entry_named() {
        let on = "infer_ip = true\ntrust_forwarded_for = true\n";
        assert!(
            validate(&format!(
                "{on}trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"2001:db8::/32\"]"
            ))
            .is_ok()
        );
        let err = validate(&format!(
            "{on}trusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]"
        ))
        .err()
        .unwrap();
        assert!(
            err.0
                .starts_with("trusted_proxies[1]: \"10.0.0.0/33\" is not a CIDR"),
            "{}",
            err.0
        );
        // Without both switches the header is never read: say so rather than ignore the list.
        let err = validate("infer_ip = true\ntrusted_proxies = [\"10.0.0.0/8\"]")
            .err()
            .unwrap();
        assert!(
            err.0
                .contains("only read with `infer_ip = true` and `trust_forwarded_for = true`"),
            "{}",
            err.0
        );
    }

    #[test]
    fn cors_settings_are_checked_at_validate_with_the_key_named() {
        assert!(validate("").is_ok(), "the default, any origin");
        assert!(
            validate(
                "cors.allowed_origins = [\"https://shop.example\"]\ncors.allow_credentials = true"
            )
            .is_ok()
        );
        let err = validate("cors.allowed_origins = [\"https://shop.example/\"]")
            .err()
            .unwrap();
        assert!(
            err.0
                .starts_with("cors.allowed_origins[0]: \"https://shop.example/\" has a path"),
            "{}",
            err.0
        );
        let err = validate("cors.allow_credentials = true").err().unwrap();
        assert!(err.0.starts_with("cors.allow_credentials:"), "{}", err.0);
    }

    #[test]
    fn message_ids_look_like_uuid_v4() {
        let id = new_message_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(new_message_id(), id);
    }
}
