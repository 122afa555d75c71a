//! What `top` and `tap` share: where the pipeline's `[api]` is (`--url`, or the `[api] address`
//! of a config, or Vector's default `127.0.0.1:8686`) and plain HTTP GETs to it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::config_args::{CONFIG_DIR_VAR, CONFIG_VAR, ConfigArgs};
use crate::config::{self, LoadOptions, MissingVars};

/// The API address when neither `--url` nor a config names one (Vector's `[api]` default).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8686";

/// How long a request may take to get its answer's head.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The pipeline's API, as `http://IP:PORT` [default: the `[api] address` of the config given
    /// with --config / --config-dir or FBPIXEL_CONFIG, else http://127.0.0.1:8686]
    #[arg(long, value_name = "URL", conflicts_with_all = ["config", "config_dir"])]
    pub url: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

impl ApiArgs {
    /// The API's base URL, without a trailing `/`.
    pub fn base_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.url {
            return check_url(url);
        }
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let named = !self.config.config.is_empty() || !self.config.config_dir.is_empty();
        if !named && env(CONFIG_VAR).is_none() && env(CONFIG_DIR_VAR).is_none() {
            return Ok(DEFAULT_URL.to_owned());
        }
        let paths = self.config.paths(&[], &env)?;
        // Only the address is read: secrets the config refers to need not be set here.
        let options = LoadOptions {
            env: &env,
            missing_vars: MissingVars::Placeholder,
        };
        let pipeline = config::load(&paths, &options).map_err(|e| anyhow::anyhow!("{e}"))?;
        let Some(api) = pipeline
            .api
            .as_ref()
            .filter(|api| api.enabled != Some(false))
        else {
            bail!(
                "the config has no enabled [api] table, so the pipeline serves no metrics or taps: add `[api]` with `address = \"127.0.0.1:8686\"` to it (and restart the pipeline), or pass --url"
            );
        };
        let addr = crate::api::check_address(&api.address).map_err(anyhow::Error::msg)?;
        Ok(format!("http://{}", reachable(addr)))
    }
}

/// An address to connect to for one the API listens on: a wildcard (`0.0.0.0`, `[::]`) is
/// reached on this machine's loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

fn check_url(url: &str) -> anyhow::Result<String> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("--url {url:?} is not a URL such as http://127.0.0.1:8686"))?;
    match uri.scheme_str() {
        Some("http") if uri.authority().is_some() => {}
        Some("https") => bail!(
            "--url {url:?}: the [api] serves plain HTTP only; use http:// (and keep it on a private address)"
        ),
        _ => bail!("--url {url:?} is not a URL such as http://127.0.0.1:8686"),
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// A plain-HTTP client for the API.
pub struct ApiClient {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl ApiClient {
    /// A client of the API at `base` (from [`ApiArgs::base_url`]).
    pub fn new(base: String) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(TIMEOUT));
        connector.set_nodelay(true);
        Self {
            base,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The base URL, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`: the answer's head, its body still to read; an error for anything but 200
    /// carries the API's own message.
    pub async fn get(&self, path_and_query: &str) -> anyhow::Result<Response<Incoming>> {
        let url = format!("{}{path_and_query}", self.base);
        let uri: Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        let answer = tokio::time::timeout(TIMEOUT, self.client.get(uri))
            .await
            .map_err(|_| anyhow::anyhow!("{url}: no answer within {} s", TIMEOUT.as_secs()))?
            .map_err(|e| anyhow::anyhow!("{url}: {}", describe(&e)))?;
        let status = answer.status();
        if status == StatusCode::OK {
            return Ok(answer);
        }
        let body = tokio::time::timeout(TIMEOUT, answer.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
            .unwrap_or_default();
        if status == StatusCode::NOT_FOUND {
            bail!(
                "{url}: 404; is this fbpixel's [api] (an older fbpixel has no {path_and_query})?"
            );
        }
        bail!("{url}: {status}: {body}");
    }

    /// `GET path`, the whole body as text.
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let answer = self.get(path).await?;
        let body = tokio::time::timeout(TIMEOUT, answer.into_body().collect())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{}{path}: the answer took over {} s",
                    self.base,
                    TIMEOUT.as_secs()
                )
            })?
            .map_err(|e| anyhow::anyhow!("{}{path}: {e}", self.base))?;
        String::from_utf8(body.to_bytes().to_vec())
            .map_err(|_| anyhow::anyhow!("{}{path}: the answer is not UTF-8 text", self.base))
    }
}

/// A client error with its cause (the legacy client's own message says only "client error").
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_must_be_plain_http_and_loses_its_trailing_slash() {
        assert_eq!(
            check_url("http://127.0.0.1:9/").unwrap(),
            "http://127.0.0.1:9"
        );
        let e = check_url("https://10.0.0.1:8686").unwrap_err().to_string();
        assert!(e.contains("plain HTTP only; use http://"), "{e}");
        let e = check_url("127.0.0.1:8686").unwrap_err().to_string();
        assert!(
            e.contains("is not a URL such as http://127.0.0.1:8686"),
            "{e}"
        );
    }

    #[test]
    fn a_wildcard_listen_address_is_reached_on_loopback() {
        let cases = [
            ("0.0.0.0:8686", "127.0.0.1:8686"),
            ("[::]:1", "[::1]:1"),
            ("10.1.2.3:5", "10.1.2.3:5"),
        ];
        for (listen, reached) in cases {
            assert_eq!(reachable(listen.parse().unwrap()).to_string(), reached);
        }
    }
}
