//! The HTTP side of the sink: one request to the Graph API, and what its
//! answer means (SPEC §7).

use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{KeyInit, Mac};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::usage::Usage;

/// Graph API error codes that mean "try again later" (SPEC §7).
const TRANSIENT_CODES: [i64; 10] = [1, 2, 4, 17, 32, 341, 368, 613, 80003, 80004];

/// Of those, Meta's throttling: 4 application, 17 user (account), 32 page, 613 custom-level
/// request limits ("Rate Limits" and "Handling Errors" of the Graph API docs), 80003 and
/// 80004 Business Use Case limits (custom audience, ads management). Flow control cuts on them.
pub const THROTTLING_CODES: [i64; 6] = [4, 17, 32, 613, 80003, 80004];

/// The longest answer read from the Graph API. Meta's answers are a few hundred bytes (an
/// `events_received` count, `messages`, `fbtrace_id`, or an `error` object); a longer one is not
/// Meta's (a proxy's page, a stream that never ends) and must not grow the process.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// What a request asks of the Graph API, and so what a successful answer must look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `POST …/events`: a JSON object with `events_received`.
    Events,
    /// `GET …?fields=id`: a JSON object.
    Object,
}

/// The Graph API's error object, as Meta returns it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct GraphError {
    /// Meta's error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// Meta's error subcode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<i64>,
    /// Meta's message for developers.
    #[serde(default)]
    pub message: String,
    /// Meta's message for users, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_user_msg: Option<String>,
    /// Meta's request id, for support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
    /// Whether Meta says retrying may succeed.
    #[serde(default, skip_serializing)]
    pub is_transient: bool,
    /// The HTTP status it came with.
    #[serde(default)]
    pub http_status: u16,
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.http_status)?;
        if let Some(code) = self.code {
            write!(f, ", code {code}")?;
        }
        if let Some(sub) = self.error_subcode {
            write!(f, ", subcode {sub}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(trace) = &self.fbtrace_id {
            write!(f, " (fbtrace_id {trace})")?;
        }
        Ok(())
    }
}

/// What an answer means for the events of the request.
#[derive(Debug)]
pub enum Answer {
    /// Delivered; Meta's count of events it received, when it gave one.
    Accepted {
        /// `events_received`.
        events_received: Option<u64>,
        /// Meta's request id, for the ledger and for support.
        fbtrace_id: Option<String>,
    },
    /// Try again after a pause; `reason` is a metric label.
    Transient {
        /// `connection`, `timeout`, `http_5xx`, `http_429` or `graph_transient`.
        reason: &'static str,
        /// For the log line.
        detail: String,
    },
    /// The token, the pixel or a permission is wrong: hold the events and
    /// back off until someone fixes the settings.
    Credentials(GraphError),
    /// Meta refused the payload: some event of the request is bad.
    Rejected(GraphError),
}

#[derive(Deserialize)]
struct Reply {
    error: Option<GraphError>,
    events_received: Option<u64>,
    fbtrace_id: Option<String>,
}

/// Classify a Graph API reply (SPEC §7). A 2xx counts as a delivery only when its body is
/// Meta's success object: a proxy or captive portal answering `200 text/html`, an empty or cut
/// body, or JSON without `events_received` delivered nothing, so those are transient
/// (`invalid_answer`) and the events are sent again.
pub fn classify(
    status: StatusCode,
    content_type: Option<&str>,
    body: &[u8],
    expect: Expect,
) -> Answer {
    // Only a JSON object is Meta's answer; `Reply` from a JSON array or string fails here.
    let reply: Option<Reply> = serde_json::from_slice(body).ok();
    let error = reply.as_ref().and_then(|r| r.error.clone()).map(|mut e| {
        e.http_status = status.as_u16();
        e
    });
    match error {
        None if status.is_success() => match (&reply, expect) {
            (Some(r), Expect::Events) if r.events_received.is_some() => Answer::Accepted {
                events_received: r.events_received,
                fbtrace_id: r.fbtrace_id.clone(),
            },
            (Some(_), Expect::Object) => Answer::Accepted {
                events_received: None,
                fbtrace_id: None,
            },
            (reply, _) => Answer::Transient {
                reason: "invalid_answer",
                detail: format!(
                    "HTTP {status} with {}, {} ({} bytes): not the Graph API's answer; a proxy or captive portal between here and `endpoint`? nothing was delivered",
                    describe_type(content_type),
                    if reply.is_some() {
                        "a JSON object without events_received"
                    } else if body.is_empty() {
                        "an empty body"
                    } else {
                        "a body that is not a JSON object"
                    },
                    body.len()
                ),
            },
        },
        None if status.is_server_error() => Answer::Transient {
            reason: "http_5xx",
            detail: format!("HTTP {status}"),
        },
        None if status == StatusCode::TOO_MANY_REQUESTS => Answer::Transient {
            reason: "http_429",
            detail: "HTTP 429".into(),
        },
        // A 4xx without a Graph error is not Meta's answer about the data (a
        // proxy, a wrong endpoint): hold the events rather than bisect them away.
        None => Answer::Credentials(GraphError {
            message: format!(
                "HTTP {status} with {} and no Graph API error; check `endpoint` and any proxy in between",
                describe_type(content_type)
            ),
            http_status: status.as_u16(),
            ..GraphError::default()
        }),
        Some(e) => {
            let code = e.code.unwrap_or(0);
            if e.is_transient || TRANSIENT_CODES.contains(&code) {
                Answer::Transient {
                    reason: if THROTTLING_CODES.contains(&code) {
                        "throttled"
                    } else {
                        "graph_transient"
                    },
                    detail: e.to_string(),
                }
            } else if status.is_server_error() {
                Answer::Transient {
                    reason: "http_5xx",
                    detail: e.to_string(),
                }
            } else if code == 190
                || code == 10
                || (200..=299).contains(&code)
                || (code == 100 && e.error_subcode == Some(33))
            {
                Answer::Credentials(e)
            } else {
                Answer::Rejected(e)
            }
        }
    }
}

/// The content type for a log line: only its media type (what a proxy put there is not ours
/// to echo at length), or that there was none.
fn describe_type(content_type: Option<&str>) -> String {
    match content_type {
        Some(t) => {
            let media: String = t
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            format!("content-type {media}")
        }
        None => "no content-type".into(),
    }
}

/// One sentence a user can act on, for a credentials or permission error.
pub fn advice(e: &GraphError) -> String {
    let what = match (e.code, e.error_subcode) {
        (Some(190), _) => {
            "the access token is invalid or expired: generate a new one in Events Manager → your pixel → Settings → Conversions API, and set `access_token`"
        }
        (Some(100), Some(33)) => {
            "the pixel does not exist or this access token cannot see it: check `pixel_id` and that the token was generated for this pixel"
        }
        (Some(10), _) | (Some(200..=299), _) => {
            "the access token lacks permission for this pixel: generate it from the pixel's own Conversions API settings, or grant the system user access to the pixel"
        }
        _ => "the Graph API refuses every request",
    };
    format!("{what} ({e})")
}

/// Where and as whom a sink talks to the Graph API, as its settings say.
pub struct GraphTarget<'a> {
    /// `endpoint`.
    pub endpoint: &'a str,
    /// `api_version`.
    pub api_version: &'a str,
    /// `pixel_id`.
    pub pixel_id: &'a str,
    /// `access_token`, or the pixel's token in `pixels`.
    pub access_token: &'a str,
    /// The setting the token comes from, as errors name it (`access_token`, `pixels."123"`).
    pub token_key: &'a str,
    /// `app_secret`, when set.
    pub app_secret: Option<&'a str>,
    /// `test_event_code`, when set.
    pub test_event_code: Option<&'a str>,
    /// `partner_agent`, when set.
    pub partner_agent: Option<&'a str>,
    /// `upload_tag`, `upload_source` and `namespace_id` (offline and CRM uploads), when set.
    pub upload: [(&'static str, Option<&'a str>); 3],
    /// `request.timeout_secs`.
    pub timeout: Duration,
}

/// A [`GraphTarget`] checked and prepared: URLs parsed, the token in its header, the body's
/// tail written. Made without I/O, so `validate` makes it too.
#[derive(Clone)]
pub struct GraphSettings {
    events_url: Uri,
    health_url: Uri,
    authorization: header::HeaderValue,
    body_suffix: Vec<u8>,
    timeout: Duration,
}

impl std::fmt::Debug for GraphSettings {
    // The authorization header holds the token: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphSettings")
            .field("events_url", &self.events_url)
            .finish_non_exhaustive()
    }
}

impl GraphSettings {
    /// Check the target; the error names the setting to fix and never holds the token.
    pub fn new(target: &GraphTarget<'_>) -> Result<Self, String> {
        let base = target.endpoint.trim_end_matches('/');
        let url = |suffix: &str| -> Result<Uri, String> {
            format!("{base}/{}/{}{suffix}", target.api_version, target.pixel_id)
                .parse()
                .map_err(|_| format!("endpoint: {:?} does not make a valid URL", target.endpoint))
        };
        let token = target.access_token;
        let key = target.token_key;
        if token.is_empty() {
            return Err(format!(
                "{key}: missing; create one in Events Manager → your pixel → Settings → Conversions API"
            ));
        }
        let mut authorization = header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| format!("{key}: contains characters a token cannot have"))?;
        authorization.set_sensitive(true);

        let mut suffix = serde_json::Map::new();
        if let Some(code) = target.test_event_code.filter(|c| !c.is_empty()) {
            suffix.insert("test_event_code".into(), code.into());
        }
        if let Some(agent) = target.partner_agent.filter(|a| !a.is_empty()) {
            suffix.insert("partner_agent".into(), agent.into());
        }
        for (key, value) in target.upload {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                suffix.insert(key.into(), value.into());
            }
        }
        if let Some(secret) = target.app_secret.filter(|s| !s.is_empty()) {
            suffix.insert(
                "appsecret_proof".into(),
                appsecret_proof(token, secret).into(),
            );
        }
        let mut body_suffix = Vec::new();
        for (key, value) in &suffix {
            body_suffix.push(b',');
            serde_json::to_writer(&mut body_suffix, key).expect("a string serializes");
            body_suffix.push(b':');
            serde_json::to_writer(&mut body_suffix, value).expect("a string serializes");
        }
        Ok(Self {
            events_url: url("/events")?,
            health_url: url("?fields=id")?,
            authorization,
            body_suffix,
            timeout: target.timeout,
        })
    }
}

/// The Graph API client of one sink. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct GraphClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    events_url: Uri,
    health_url: Uri,
    authorization: header::HeaderValue,
    body_suffix: Vec<u8>,
    timeout: Duration,
}

/// The client cannot be made (the system's root certificates cannot be read).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(String);

impl GraphClient {
    /// A client for another pixel's settings that shares this one's connection pool.
    pub fn for_pixel(&self, settings: GraphSettings) -> Self {
        Self {
            client: self.client.clone(),
            events_url: settings.events_url,
            health_url: settings.health_url,
            authorization: settings.authorization,
            body_suffix: settings.body_suffix,
            timeout: settings.timeout,
        }
    }

    /// A client for checked settings; reads the system's root certificates.
    pub fn new(settings: GraphSettings) -> Result<Self, ClientError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| ClientError(format!("cannot load the system's root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Ok(Self {
            client,
            events_url: settings.events_url,
            health_url: settings.health_url,
            authorization: settings.authorization,
            body_suffix: settings.body_suffix,
            timeout: settings.timeout,
        })
    }

    /// What follows the `data` array in a request body (`,"test_event_code":…`), without `}`.
    pub fn body_suffix(&self) -> &[u8] {
        &self.body_suffix
    }

    /// The request body for these serialized server events.
    pub fn body<'a>(&self, events: impl Iterator<Item = &'a [u8]>) -> Bytes {
        let mut body = Vec::with_capacity(64 * 1024);
        body.extend_from_slice(b"{\"data\":[");
        for (i, event) in events.enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(event);
        }
        body.push(b']');
        body.extend_from_slice(&self.body_suffix);
        body.push(b'}');
        body.into()
    }

    /// POST a body to `/{pixel_id}/events`; returns the answer, the time it took and Meta's
    /// usage headers.
    pub async fn send(&self, body: Bytes) -> (Answer, Duration, Usage) {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.events_url.clone())
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("fbpixel/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .expect("a valid request");
        let started = Instant::now();
        let (answer, usage) = self.exchange(request, Expect::Events).await;
        (answer, started.elapsed(), usage)
    }

    /// The healthcheck: `GET /{pixel_id}?fields=id` must answer with the pixel.
    pub async fn healthcheck(&self) -> Result<(), String> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(self.health_url.clone())
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(
                header::USER_AGENT,
                concat!("fbpixel/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        match self.exchange(request, Expect::Object).await.0 {
            Answer::Accepted { .. } => Ok(()),
            Answer::Transient { detail, .. } => Err(format!(
                "the Graph API is unreachable or failing ({detail}); events will wait and be retried"
            )),
            Answer::Credentials(e) | Answer::Rejected(e) => Err(advice(&e)),
        }
    }

    /// GET a Graph API object with this pixel's token (Meta's Dataset Quality API): its JSON
    /// body, or what the answer meant when it is not the object.
    pub async fn get_object(&self, uri: Uri) -> Result<Bytes, Answer> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(
                header::USER_AGENT,
                concat!("fbpixel/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        let (status, content_type, body, _) = self.fetch_in_time(request).await?;
        match classify(status, content_type.as_deref(), &body, Expect::Object) {
            Answer::Accepted { .. } => Ok(body),
            other => Err(other),
        }
    }

    async fn exchange(&self, request: Request<Full<Bytes>>, expect: Expect) -> (Answer, Usage) {
        match self.fetch_in_time(request).await {
            Ok((status, content_type, body, usage)) => (
                classify(status, content_type.as_deref(), &body, expect),
                usage,
            ),
            Err(answer) => (answer, Usage::default()),
        }
    }

    /// The answer read whole within `request.timeout_secs`, or the transient failure it was.
    async fn fetch_in_time(&self, request: Request<Full<Bytes>>) -> Result<Fetched, Answer> {
        let exchange = self.fetch(request);
        Err(match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(Ok(fetched))) => return Ok(fetched),
            Ok(Ok(Err(status))) => Answer::Transient {
                reason: "oversized_answer",
                detail: format!(
                    "HTTP {status} with an answer longer than {MAX_ANSWER_BYTES} bytes: not the Graph API's; nothing was delivered"
                ),
            },
            Ok(Err(e)) => Answer::Transient {
                reason: "connection",
                detail: error_chain(&*e),
            },
            Err(_) => Answer::Transient {
                reason: "timeout",
                detail: format!("no answer within request.timeout_secs ({:?})", self.timeout),
            },
        })
    }

    /// Send a request and read its answer, at most `MAX_ANSWER_BYTES` of it (`Err(status)`:
    /// the answer is longer).
    async fn fetch(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Result<Fetched, StatusCode>, BoxError> {
        let response = self.client.request(request).await?;
        let status = response.status();
        let usage = Usage::from_headers(response.headers());
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        // Dropping the body unread closes the connection, so a too long answer costs
        // nothing more than what was read of it.
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
            return Ok(Err(status));
        }
        match Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
        {
            Ok(body) => Ok(Ok((status, content_type, body.to_bytes(), usage))),
            Err(e) if e.is::<LengthLimitError>() => Ok(Err(status)),
            // The head came, the body did not: say which answer was cut short.
            Err(e) => Err(format!(
                "HTTP {status} with {}, cut short: {}",
                describe_type(content_type.as_deref()),
                error_chain(&*e)
            )
            .into()),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An answer read whole: status, content type, body, usage headers.
type Fetched = (StatusCode, Option<String>, Bytes, Usage);

/// `appsecret_proof`: hex HMAC-SHA256 of the token, keyed by the app secret.
pub fn appsecret_proof(token: &str, app_secret: &str) -> String {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(status: u16, body: &str) -> Answer {
        classify(
            StatusCode::from_u16(status).unwrap(),
            Some("application/json"),
            body.as_bytes(),
            Expect::Events,
        )
    }

    #[test]
    fn answers_are_classified_as_the_spec_says() {
        assert!(matches!(
            graph(200, r#"{"events_received":3,"fbtrace_id":"x"}"#),
            Answer::Accepted {
                events_received: Some(3),
                fbtrace_id: Some(ref trace),
            } if trace == "x"
        ));
        assert!(matches!(
            graph(500, "oops"),
            Answer::Transient {
                reason: "http_5xx",
                ..
            }
        ));
        assert!(matches!(
            graph(429, ""),
            Answer::Transient {
                reason: "http_429",
                ..
            }
        ));
        assert!(matches!(
            graph(
                400,
                r#"{"error":{"code":17,"message":"User request limit reached"}}"#
            ),
            Answer::Transient {
                reason: "throttled",
                ..
            }
        ));
        assert!(matches!(
            graph(400, r#"{"error":{"code":1,"message":"x"}}"#),
            Answer::Transient {
                reason: "graph_transient",
                ..
            }
        ));
        assert!(matches!(
            graph(400, r#"{"error":{"code":99,"is_transient":true}}"#),
            Answer::Transient { .. }
        ));
        assert!(matches!(
            graph(
                400,
                r#"{"error":{"code":190,"message":"Invalid OAuth access token"}}"#
            ),
            Answer::Credentials(_)
        ));
        assert!(matches!(
            graph(
                403,
                r#"{"error":{"code":200,"message":"Permissions error"}}"#
            ),
            Answer::Credentials(_)
        ));
        assert!(matches!(
            graph(400, r#"{"error":{"code":100,"error_subcode":33}}"#),
            Answer::Credentials(_)
        ));
        assert!(matches!(graph(404, "<html>"), Answer::Credentials(_)));
        match graph(
            400,
            r#"{"error":{"code":100,"error_subcode":2804003,"message":"Invalid parameter","fbtrace_id":"AbC"}}"#,
        ) {
            Answer::Rejected(e) => {
                assert_eq!(
                    (e.code, e.error_subcode, e.http_status),
                    (Some(100), Some(2804003), 400)
                );
                assert_eq!(e.fbtrace_id.as_deref(), Some("AbC"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_2xx_that_is_not_metas_success_object_is_transient_and_says_what_came() {
        let invalid = |content_type: Option<&str>, body: &str| match classify(
            StatusCode::OK,
            content_type,
            body.as_bytes(),
            Expect::Events,
        ) {
            Answer::Transient {
                reason: "invalid_answer",
                detail,
            } => detail,
            other => panic!("{body:?}: {other:?}"),
        };
        let html = invalid(Some("text/html; charset=utf-8"), "<html>portal</html>");
        assert!(
            html.contains("200 OK") && html.contains("content-type text/html"),
            "{html}"
        );
        assert!(html.contains("not a JSON object"), "{html}");
        assert!(invalid(Some("application/json"), "").contains("an empty body"));
        assert!(invalid(None, r#"{"events_rec"#).contains("no content-type"));
        assert!(invalid(Some("application/json"), "[1,2]").contains("not a JSON object"));
        assert!(
            invalid(Some("application/json"), r#"{"ok":true}"#).contains("without events_received")
        );
        // The healthcheck's answer is the pixel, with no events_received.
        assert!(matches!(
            classify(StatusCode::OK, None, br#"{"id":"1"}"#, Expect::Object),
            Answer::Accepted { .. }
        ));
        assert!(matches!(
            classify(StatusCode::OK, None, b"<html>", Expect::Object),
            Answer::Transient { .. }
        ));
        // A proxy's header cannot flood the log line.
        let long = "x".repeat(500);
        assert!(invalid(Some(&long), "<html>").len() < 400);
    }

    #[test]
    fn appsecret_proof_is_hmac_sha256_of_the_token() {
        // HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog"), RFC 4231 style vector.
        assert_eq!(
            appsecret_proof("The quick brown fox jumps over the lazy dog", "key"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn credential_advice_names_the_setting_to_fix() {
        let e = GraphError {
            code: Some(190),
            http_status: 400,
            message: "Invalid OAuth access token".into(),
            ..Default::default()
        };
        assert!(advice(&e).contains("set `access_token`"));
    }
}
