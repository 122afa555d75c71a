//! What every HTTP source does with a request: read the body with a size
//! limit checked before and while reading and again after decompression
//! (gzip, deflate), so neither a large body nor a small bomb can take memory;
//! then hand the events on and, with acknowledgements, answer only once they
//! are delivered.

use std::io::Read;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode, header};

use crate::acks::BatchStatus;
use crate::component::{Output, ShutdownSignal};
use crate::event::Event;
use crate::telemetry::ComponentMetrics;

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Larger than the limit, as sent or once decompressed.
    TooLarge,
    /// The connection failed while reading.
    Read(String),
    /// A `content-encoding` this server does not decode.
    UnsupportedEncoding(String),
    /// The compressed body is corrupt.
    Decompress(String),
    /// The body did not arrive within [`crate::http::READ_TIMEOUT`].
    TimedOut,
}

impl BodyError {
    /// The answer for every error but `TooLarge`, whose status each source chooses.
    pub fn failure(self) -> (StatusCode, String) {
        match self {
            BodyError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is too large".into(),
            ),
            BodyError::Read(e) => (
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            ),
            BodyError::UnsupportedEncoding(e) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content-encoding {e:?}; send identity, gzip or deflate"),
            ),
            BodyError::Decompress(e) => (
                StatusCode::BAD_REQUEST,
                format!("cannot decompress the body: {e}"),
            ),
            BodyError::TimedOut => (
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive within 30 s".into(),
            ),
        }
    }
}

/// The body of `req`, decompressed, at most `limit` bytes either way.
pub async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, BodyError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let collect = Limited::new(req.into_body(), limit).collect();
    let body = tokio::time::timeout(crate::http::READ_TIMEOUT, collect)
        .await
        .map_err(|_| BodyError::TimedOut)?
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                BodyError::TooLarge
            } else {
                BodyError::Read(e.to_string())
            }
        })?
        .to_bytes();
    match encoding.as_deref() {
        None | Some("identity") | Some("") => Ok(body),
        Some("gzip" | "x-gzip") => inflate(flate2::read::MultiGzDecoder::new(&body[..]), limit),
        Some("deflate") => inflate(flate2::read::ZlibDecoder::new(&body[..]), limit),
        Some(other) => Err(BodyError::UnsupportedEncoding(other.to_owned())),
    }
}

fn inflate(decoder: impl Read, limit: usize) -> Result<Bytes, BodyError> {
    let mut out = Vec::new();
    let read = decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Decompress(e.to_string()))?;
    if read > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(out.into())
}

/// Send a request's events downstream and, with `acknowledgements`, wait for
/// their fate: `Ok` when all were handled, else the answer that tells the
/// sender whether to retry (5xx) or not (400).
pub async fn deliver(
    out: &Output,
    mut events: Vec<Event>,
    acknowledgements: bool,
    shutdown: &ShutdownSignal,
    metrics: &ComponentMetrics,
) -> Result<(), (StatusCode, String)> {
    let (n, bytes) = (events.len(), events.iter().map(|e| e.size_hint()).sum());
    metrics.received(n, bytes);
    let status = acknowledgements.then(|| crate::event::track(&mut events));
    if out.clone().send(events).await.is_err() {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline is shutting down; retry later".into(),
        ));
    }
    metrics.sent(n, bytes);
    let Some(status) = status else {
        return Ok(());
    };
    match status.wait().await {
        BatchStatus::Delivered => Ok(()),
        BatchStatus::Rejected => Err((
            StatusCode::BAD_REQUEST,
            "a sink rejected the events; do not retry them as they are".into(),
        )),
        BatchStatus::Errored if shutdown.is_triggered() => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline shut down before the events were delivered; retry later".into(),
        )),
        BatchStatus::Errored => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "the events could not be delivered; retry later".into(),
        )),
    }
}
