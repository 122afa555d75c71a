//! The HTTP side of the sink: one request to the Graph API, and what its
//! answer means (SPEC §7).

use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::config::FacebookPixelConfig;

/// Graph API error codes that mean "try again later" (SPEC §7).
const TRANSIENT_CODES: [i64; 10] = [1, 2, 4, 17, 32, 341, 368, 613, 80003, 80004];

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
}

/// Classify a Graph API reply (SPEC §7).
pub fn classify(status: StatusCode, body: &[u8]) -> Answer {
    let reply: Option<Reply> = serde_json::from_slice(body).ok();
    let error = reply.as_ref().and_then(|r| r.error.clone()).map(|mut e| {
        e.http_status = status.as_u16();
        e
    });
    match error {
        None if status.is_success() => Answer::Accepted {
            events_received: reply.and_then(|r| r.events_received),
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
                "HTTP {status} without a Graph API error; check `endpoint` and any proxy in between"
            ),
            http_status: status.as_u16(),
            ..GraphError::default()
        }),
        Some(e) => {
            let code = e.code.unwrap_or(0);
            if e.is_transient || TRANSIENT_CODES.contains(&code) {
                Answer::Transient {
                    reason: if code == 17 || code == 4 || code == 32 || code == 613 {
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

/// The Graph API client of one sink.
pub struct GraphClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    events_url: Uri,
    health_url: Uri,
    authorization: header::HeaderValue,
    body_suffix: Vec<u8>,
    timeout: Duration,
}

/// An error in the settings that makes the client impossible to build.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(String);

impl GraphClient {
    /// A client for the sink's settings: URL, token, proof, test code.
    pub fn new(config: &FacebookPixelConfig) -> Result<Self, ClientError> {
        let base = config.endpoint.trim_end_matches('/');
        let url = |suffix: &str| -> Result<Uri, ClientError> {
            format!("{base}/{}/{}{suffix}", config.api_version, config.pixel_id)
                .parse()
                .map_err(|_| {
                    ClientError(format!(
                        "endpoint: {:?} does not make a valid URL",
                        config.endpoint
                    ))
                })
        };
        let token = config.access_token.expose();
        if token.is_empty() {
            return Err(ClientError(
                "access_token: missing; create one in Events Manager → your pixel → Settings → Conversions API".into(),
            ));
        }
        let mut authorization =
            header::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ClientError("access_token: contains characters a token cannot have".into())
            })?;
        authorization.set_sensitive(true);

        let mut suffix = serde_json::Map::new();
        if let Some(code) = config.test_event_code.as_deref().filter(|c| !c.is_empty()) {
            suffix.insert("test_event_code".into(), code.into());
        }
        if let Some(agent) = config.partner_agent.as_deref().filter(|a| !a.is_empty()) {
            suffix.insert("partner_agent".into(), agent.into());
        }
        if let Some(secret) = config
            .app_secret
            .as_ref()
            .filter(|s| !s.expose().is_empty())
        {
            suffix.insert(
                "appsecret_proof".into(),
                appsecret_proof(token, secret.expose()).into(),
            );
        }
        let mut body_suffix = Vec::new();
        for (key, value) in &suffix {
            body_suffix.push(b',');
            serde_json::to_writer(&mut body_suffix, key).expect("a string serializes");
            body_suffix.push(b':');
            serde_json::to_writer(&mut body_suffix, value).expect("a string serializes");
        }

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
            events_url: url("/events")?,
            health_url: url("?fields=id")?,
            authorization,
            body_suffix,
            timeout: Duration::from_secs_f64(config.request.timeout_secs),
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

    /// POST a body to `/{pixel_id}/events`; returns the answer and the time it took.
    pub async fn send(&self, body: Bytes) -> (Answer, Duration) {
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
        let answer = self.exchange(request).await;
        (answer, started.elapsed())
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
        match self.exchange(request).await {
            Answer::Accepted { .. } => Ok(()),
            Answer::Transient { detail, .. } => Err(format!(
                "the Graph API is unreachable or failing ({detail}); events will wait and be retried"
            )),
            Answer::Credentials(e) | Answer::Rejected(e) => Err(advice(&e)),
        }
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Answer {
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok((status, body))) => classify(status, &body),
            Ok(Err(e)) => Answer::Transient {
                reason: "connection",
                detail: error_chain(&*e),
            },
            Err(_) => Answer::Transient {
                reason: "timeout",
                detail: format!("no answer within request.timeout_secs ({:?})", self.timeout),
            },
        }
    }
}

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
        classify(StatusCode::from_u16(status).unwrap(), body.as_bytes())
    }

    #[test]
    fn answers_are_classified_as_the_spec_says() {
        assert!(matches!(
            graph(200, r#"{"events_received":3,"fbtrace_id":"x"}"#),
            Answer::Accepted {
                events_received: Some(3)
            }
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
