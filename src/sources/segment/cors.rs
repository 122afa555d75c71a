//! Cross-origin answers (CORS) of the `segment` source, so that analytics.js on a page of
//! another origin can post here: the `cors` settings, the preflight `OPTIONS`, and the
//! `Access-Control-Allow-Origin` every answer carries.
//!
//! What the browser library sends, read in analytics-next
//! (<https://github.com/segmentio/analytics-next/tree/0c4fa881d3a1c8653fbe434170ae1178fb49841d/packages/browser/src/plugins/segmentio>):
//! `fetch(url, { method: 'post', headers, body: JSON.stringify(…), credentials, keepalive })`
//! (`fetch-dispatcher.ts`, `batched-dispatcher.ts`) with `Content-Type: text/plain`
//! (`shared-dispatcher.ts`, `createHeaders`, which the page may override or add to through
//! `deliveryStrategy.config.headers`), and since @segment/analytics-next 1.84.0 (#1342)
//! `Authorization: Basic base64(writeKey + ':')` on every request and `X-Retry-Count` on
//! retries. `text/plain` alone would be a "simple" request, sent without a preflight; the other
//! two are not CORS-safelisted, so current releases preflight each path with `OPTIONS` first
//! (then cached by the browser for `Access-Control-Max-Age`). `credentials` is unset by default,
//! that is `same-origin`: no cookies go cross-origin, and `Access-Control-Allow-Origin: *`
//! suffices. With `credentials: 'include'` the browser wants the exact origin back and
//! `Access-Control-Allow-Credentials: true`: `allow_credentials`.
//!
//! In fetch's default `cors` mode an answer without a matching `Access-Control-Allow-Origin`
//! is hidden from the page and the promise rejects, which analytics.js takes for a network
//! failure and retries: so every answer to an allowed origin carries it, refusals included,
//! and a POST from an origin not allowed is refused (403) rather than delivered, or the retries
//! would deliver its events again and again.
//!
//! CORS decides what a browser lets a page do; anything that is not a browser sends what it
//! likes, and the write key is in every page's source. Hence the default, any origin, so that
//! the library works once pointed here; a list of origins stops other sites' pages from posting
//! through their visitors' browsers, which is all an origin check can do.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

/// The request headers analytics.js sends (see the module docs), allowed in every preflight.
const LIBRARY_HEADERS: [&str; 3] = ["Content-Type", "Authorization", "X-Retry-Count"];

/// Chromium's ceiling for `Access-Control-Max-Age` (Firefox allows a day): longer is cut to it,
/// so this is the fewest preflights a browser will do.
pub const DEFAULT_MAX_AGE_SECS: u64 = 7200;

/// The `cors` settings of the `segment` source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins whose pages may post here: `["*"]` (the default) any; `scheme://host[:port]`
    /// ones, as browsers send `Origin`; empty: CORS off (no CORS headers, preflights refused).
    #[serde(default = "any_origin")]
    pub allowed_origins: Vec<String>,
    /// Request headers to allow beyond what analytics.js sends (`Content-Type`,
    /// `Authorization`, `X-Retry-Count`): those the page adds in `deliveryStrategy.config.headers`.
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// Answer `Access-Control-Allow-Credentials: true`, for pages that set analytics.js's
    /// `credentials: 'include'`. Only with listed origins.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long a browser may keep a preflight's answer.
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
}

fn any_origin() -> Vec<String> {
    vec!["*".into()]
}

fn default_max_age_secs() -> u64 {
    DEFAULT_MAX_AGE_SECS
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: any_origin(),
            allowed_headers: Vec::new(),
            allow_credentials: false,
            max_age_secs: DEFAULT_MAX_AGE_SECS,
        }
    }
}

/// The checked `cors` settings.
#[derive(Debug)]
pub(super) struct Cors {
    origins: Origins,
    credentials: bool,
    allow_headers: HeaderValue,
    max_age: HeaderValue,
}

#[derive(Debug, PartialEq)]
enum Origins {
    Off,
    Any,
    /// Lowercase, without the scheme's default port: as browsers serialize an origin.
    Listed(Vec<String>),
}

/// What a request gets for its `Origin`.
#[derive(Debug, PartialEq)]
pub(super) enum Verdict {
    /// No CORS headers, nothing refused: no `Origin` (server libraries, curl) with listed
    /// origins, or any request with CORS off.
    Unjudged,
    /// `Access-Control-Allow-Origin` with this value.
    Allowed(HeaderValue),
    /// An origin not listed (as text, for the message): no CORS headers, and a 403.
    Refused(String),
    /// An `Origin` with CORS off: a preflight is refused; anything else is served as without it.
    Off(String),
}

impl Cors {
    /// The policy `config` describes; an error names the setting and says what to write.
    pub(super) fn new(config: &CorsConfig) -> Result<Cors, String> {
        let origins = origins(&config.allowed_origins)?;
        if config.allow_credentials {
            match origins {
                // Browsers refuse `*` with credentials; echoing any origin instead would let every
                // site send credentialed requests, which is what listing origins is there to stop.
                Origins::Any => return Err("cors.allow_credentials: needs the origins listed, not \"*\" (browsers refuse credentials with any origin); list the pages' origins in cors.allowed_origins".into()),
                Origins::Off => return Err("cors.allow_credentials: CORS is off (cors.allowed_origins is empty); list the pages' origins in cors.allowed_origins, or remove allow_credentials".into()),
                Origins::Listed(_) => {}
            }
        }
        let mut names: Vec<String> = LIBRARY_HEADERS.iter().map(|h| (*h).to_owned()).collect();
        for (i, name) in config.allowed_headers.iter().enumerate() {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!(
                    "cors.allowed_headers[{i}]: {name:?} is not a header name; write it as the page sends it, e.g. \"X-CSRF-Token\""
                ));
            }
            if !names.iter().any(|known| known.eq_ignore_ascii_case(name)) {
                names.push(name.clone());
            }
        }
        let allow_headers = HeaderValue::from_str(&names.join(", "))
            .expect("header names are valid in a header value");
        Ok(Cors {
            origins,
            credentials: config.allow_credentials,
            allow_headers,
            max_age: HeaderValue::from(config.max_age_secs),
        })
    }

    /// The verdict on a request with this `Origin` header.
    pub(super) fn judge(&self, origin: Option<&HeaderValue>) -> Verdict {
        if self.origins == Origins::Any {
            // `*` whether or not the request has an Origin: then a cache in between cannot hand
            // a browser an answer stored for a server library, without the header.
            return Verdict::Allowed(HeaderValue::from_static("*"));
        }
        let Some(origin) = origin else {
            return Verdict::Unjudged;
        };
        let text = origin.to_str().unwrap_or("(not ASCII)");
        match &self.origins {
            Origins::Listed(list) if list.iter().any(|o| o.eq_ignore_ascii_case(text)) => {
                Verdict::Allowed(origin.clone())
            }
            Origins::Listed(_) => Verdict::Refused(text.to_owned()),
            _ => Verdict::Off(text.to_owned()),
        }
    }

    /// Adds to an answer what `verdict` calls for: `Access-Control-Allow-Origin` (and
    /// `-Credentials`) when allowed, and `Vary: Origin` whenever the answer depends on it.
    pub(super) fn add_headers(&self, verdict: &Verdict, headers: &mut HeaderMap) {
        if let Verdict::Allowed(value) = verdict {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value.clone());
            if self.credentials {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
        // Also on answers without the header (no Origin, or refused), or a cache would serve
        // those to an allowed page.
        if matches!(self.origins, Origins::Listed(_)) {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }

    /// Adds what an allowed preflight's answer needs beyond [`Cors::add_headers`].
    pub(super) fn add_preflight_headers(&self, headers: &mut HeaderMap) {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        // Listed by name: `*` would not cover `Authorization` (Fetch standard), nor anything
        // in a credentialed request.
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            self.allow_headers.clone(),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
    }
}

/// Whether a request is a CORS preflight: an `OPTIONS` (checked by the caller) with `Origin`
/// and `Access-Control-Request-Method`, which browsers always send in one.
pub(super) fn is_preflight(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The message of a refusal for `verdict`'s origin, if it is one.
pub(super) fn refusal_message(verdict: &Verdict) -> Option<String> {
    match verdict {
        Verdict::Refused(origin) => Some(format!(
            "origin {origin} is not in cors.allowed_origins; add it there if pages on it should post here"
        )),
        Verdict::Off(origin) => Some(format!(
            "CORS is off (cors.allowed_origins is empty); list {origin} in cors.allowed_origins, or \"*\", for pages on it to post here"
        )),
        _ => None,
    }
}

fn origins(entries: &[String]) -> Result<Origins, String> {
    if entries.is_empty() {
        return Ok(Origins::Off);
    }
    if entries.iter().any(|e| e == "*") {
        if entries.len() > 1 {
            return Err("cors.allowed_origins: \"*\" already allows every origin; list it alone, or list origins without it".into());
        }
        return Ok(Origins::Any);
    }
    let mut list: Vec<String> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let origin =
            origin(entry).map_err(|why| format!("cors.allowed_origins[{i}]: {entry:?} {why}"))?;
        if !list.contains(&origin) {
            list.push(origin);
        }
    }
    Ok(Origins::Listed(list))
}

/// `entry` as browsers serialize an origin (lowercase, no default port), or why it is not one.
fn origin(entry: &str) -> Result<String, String> {
    const FORM: &str = "write scheme://host[:port] as the browser sends it in Origin, e.g. \"https://shop.example\" or \"http://localhost:3000\", or \"*\" for any";
    if entry.eq_ignore_ascii_case("null") {
        // Any page can give itself this origin (a sandboxed iframe), so allowing it allows all.
        return Err("is the origin of sandboxed pages and files, which any page can take; use \"*\" to allow it".into());
    }
    let Some((scheme, rest)) = entry.split_once("://") else {
        return Err(format!("has no scheme; {FORM}"));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(format!("has no valid scheme; {FORM}"));
    }
    if let Some(at) = rest.find(['/', '?', '#']) {
        let tail = &rest[at..];
        let host = &rest[..at];
        return Err(format!(
            "has a path or more ({tail:?}); an origin ends after the host and port: \"{scheme}://{host}\""
        ));
    }
    if rest.contains('@') {
        return Err(format!("has a user name; {FORM}"));
    }
    if rest.contains('*') {
        return Err(
            "has a wildcard, which is not supported; list each origin, or use \"*\" alone for any"
                .into(),
        );
    }
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let Some((address, after)) = inner.split_once(']') else {
            return Err(format!("has an unclosed IPv6 bracket; {FORM}"));
        };
        let Ok(address) = address.parse::<std::net::Ipv6Addr>() else {
            return Err(format!("has an invalid IPv6 address; {FORM}"));
        };
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("has text after the IPv6 address; {FORM}"))?,
            ),
        };
        // Rust writes it as browsers do (RFC 5952: lowercase, the longest zero run as `::`).
        (format!("[{address}]"), port)
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (rest.to_owned(), None),
        }
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[')
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')));
    if !host_ok {
        return Err(format!("has no valid host; {FORM}"));
    }
    let scheme = scheme.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let port = match port {
        None => None,
        Some(port) => match port.parse::<u16>() {
            Ok(n) if n > 0 && port.chars().all(|c| c.is_ascii_digit()) => Some(n),
            _ => return Err(format!("has an invalid port {port:?}; {FORM}")),
        },
    };
    // Browsers leave the scheme's default port out of Origin, so it is left out to match.
    let default = match scheme.as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    };
    Ok(match port {
        Some(port) if Some(port) != default => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(toml_text: &str) -> Result<Cors, String> {
        let config: CorsConfig = toml::from_str(toml_text).unwrap();
        Cors::new(&config)
    }

    fn value(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    #[test]
    fn origins_are_normalized_as_browsers_send_them() {
        for (entry, expected) in [
            ("https://shop.example", "https://shop.example"),
            ("HTTPS://Shop.Example", "https://shop.example"),
            ("https://shop.example:443", "https://shop.example"),
            ("http://shop.example:80", "http://shop.example"),
            ("http://localhost:3000", "http://localhost:3000"),
            ("https://shop.example:8443", "https://shop.example:8443"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://[::1]:3000", "http://[::1]:3000"),
            ("http://[::1]", "http://[::1]"),
            ("http://[0:0:0:0:0:0:0:1]:80", "http://[::1]"),
            ("http://[2001:DB8::1]", "http://[2001:db8::1]"),
            ("capacitor://localhost", "capacitor://localhost"),
            (
                "chrome-extension://abcdefghijklmnop",
                "chrome-extension://abcdefghijklmnop",
            ),
        ] {
            assert_eq!(origin(entry).as_deref(), Ok(expected), "{entry}");
        }
    }

    #[test]
    fn what_is_not_an_origin_is_refused_with_the_key_and_the_fix() {
        for (entry, needle) in [
            ("shop.example", "has no scheme"),
            (
                "https://shop.example/",
                "has a path or more (\"/\"); an origin ends after the host and port: \"https://shop.example\"",
            ),
            ("https://shop.example/checkout", "has a path"),
            ("https://shop.example?x", "has a path"),
            ("https://user@shop.example", "has a user name"),
            ("https://*.shop.example", "wildcard"),
            ("https://", "no valid host"),
            ("https://shop example", "no valid host"),
            ("https://shop.example:0", "invalid port"),
            ("https://shop.example:99999", "invalid port"),
            ("https://shop.example:+80", "invalid port"),
            ("https://[::1", "unclosed"),
            ("https://[zz]", "invalid IPv6"),
            ("1http://x", "no valid scheme"),
            ("null", "sandboxed"),
        ] {
            let err = cors(&format!(
                "allowed_origins = [\"https://ok.example\", {entry:?}]"
            ))
            .err()
            .unwrap_or_else(|| panic!("{entry} accepted"));
            assert!(
                err.starts_with(&format!("cors.allowed_origins[1]: {entry:?} ")),
                "{err}"
            );
            assert!(err.contains(needle), "{entry}: {err}");
        }
        let err = cors("allowed_origins = [\"*\", \"https://a.example\"]")
            .err()
            .unwrap();
        assert!(err.contains("list it alone"), "{err}");
    }

    #[test]
    fn credentials_need_listed_origins_and_headers_must_be_names() {
        let err = cors("allow_credentials = true").err().unwrap();
        assert!(
            err.starts_with("cors.allow_credentials: needs the origins listed"),
            "{err}"
        );
        let err = cors("allow_credentials = true\nallowed_origins = []")
            .err()
            .unwrap();
        assert!(err.contains("CORS is off"), "{err}");
        assert!(
            cors("allow_credentials = true\nallowed_origins = [\"https://a.example\"]").is_ok()
        );
        let err = cors("allowed_headers = [\"X-Ok\", \"Bad Header\"]")
            .err()
            .unwrap();
        assert!(
            err.starts_with("cors.allowed_headers[1]: \"Bad Header\" is not a header name"),
            "{err}"
        );
    }

    #[test]
    fn by_default_any_origin_gets_a_star_and_nothing_varies() {
        let cors = Cors::new(&CorsConfig::default()).unwrap();
        for origin in [
            Some(value("https://shop.example")),
            Some(value("null")),
            None,
        ] {
            let verdict = cors.judge(origin.as_ref());
            assert_eq!(verdict, Verdict::Allowed(value("*")), "{origin:?}");
            let mut headers = HeaderMap::new();
            cors.add_headers(&verdict, &mut headers);
            assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
            assert!(!headers.contains_key(header::VARY));
            assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
        }
    }

    #[test]
    fn listed_origins_are_echoed_others_refused_and_every_answer_varies() {
        let cors = cors(
            "allowed_origins = [\"https://Shop.example:443\", \"http://localhost:3000\"]\nallow_credentials = true",
        )
        .unwrap();
        let allowed = cors.judge(Some(&value("https://shop.example")));
        assert_eq!(allowed, Verdict::Allowed(value("https://shop.example")));
        let mut headers = HeaderMap::new();
        cors.add_headers(&allowed, &mut headers);
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://shop.example"
        );
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(headers[header::VARY], "Origin");

        for other in [
            "https://evil.example",
            "http://shop.example",
            "https://shop.example:8443",
            "http://localhost:3001",
            "null",
        ] {
            let verdict = cors.judge(Some(&HeaderValue::from_str(other).unwrap()));
            assert_eq!(verdict, Verdict::Refused(other.into()));
            let mut headers = HeaderMap::new();
            cors.add_headers(&verdict, &mut headers);
            assert!(
                !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
                "{other}"
            );
            assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
            assert_eq!(headers[header::VARY], "Origin");
            let message = refusal_message(&verdict).unwrap();
            assert!(message.starts_with(&format!("origin {other} is not in cors.allowed_origins")));
        }

        // A server library sends no Origin: served as before, but the answer still varies.
        let verdict = cors.judge(None);
        assert_eq!(verdict, Verdict::Unjudged);
        assert_eq!(refusal_message(&verdict), None);
        let mut headers = HeaderMap::new();
        cors.add_headers(&verdict, &mut headers);
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        assert_eq!(headers[header::VARY], "Origin");
    }

    #[test]
    fn with_cors_off_nothing_is_added_and_only_preflights_are_refused() {
        let cors = cors("allowed_origins = []").unwrap();
        let verdict = cors.judge(Some(&value("https://shop.example")));
        assert_eq!(verdict, Verdict::Off("https://shop.example".into()));
        assert!(refusal_message(&verdict).unwrap().contains("CORS is off"));
        let mut headers = HeaderMap::new();
        cors.add_headers(&verdict, &mut headers);
        assert!(headers.is_empty());
        assert_eq!(cors.judge(None), Verdict::Unjudged);
    }

    #[test]
    fn a_preflight_allows_post_the_librarys_headers_and_the_extra_ones() {
        let cors =
            cors("allowed_headers = [\"X-CSRF-Token\", \"content-type\"]\nmax_age_secs = 600")
                .unwrap();
        let mut headers = HeaderMap::new();
        cors.add_preflight_headers(&mut headers);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_METHODS], "POST");
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "Content-Type, Authorization, X-Retry-Count, X-CSRF-Token"
        );
        assert_eq!(headers[header::ACCESS_CONTROL_MAX_AGE], "600");
        let mut headers = HeaderMap::new();
        Cors::new(&CorsConfig::default())
            .unwrap()
            .add_preflight_headers(&mut headers);
        assert_eq!(headers[header::ACCESS_CONTROL_MAX_AGE], "7200");

        let mut request = HeaderMap::new();
        request.insert(header::ORIGIN, value("https://shop.example"));
        assert!(
            !is_preflight(&request),
            "an OPTIONS without Access-Control-Request-Method"
        );
        request.insert(header::ACCESS_CONTROL_REQUEST_METHOD, value("POST"));
        assert!(is_preflight(&request));
    }
}
