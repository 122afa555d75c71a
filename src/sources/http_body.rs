//! Reading a request body the same way in every HTTP source: a size limit
//! checked before and while reading and again after decompression (gzip,
//! deflate), so neither a large body nor a small bomb can take memory.

use std::io::Read;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode, header};

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
    let body = Limited::new(req.into_body(), limit)
        .collect()
        .await
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
