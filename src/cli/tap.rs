//! `fbpixel tap`: print a sample of the events leaving components as NDJSON, from the `[api]`'s
//! `GET /tap` (see `crate::api::tap`), as `vector tap --meta` prints them. The API masks
//! customer information before sending; `--raw` asks it not to, which it grants only to a client
//! on its own machine. Events go to stdout, one per line; the API's notices (which ids matched,
//! how many events the rate limit skipped) go to stderr.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use http_body_util::BodyExt;

use super::api_client::{ApiArgs, ApiClient};
use crate::api::tap::{DEFAULT_RATE, MAX_RATE};

#[derive(Debug, Clone, clap::Args)]
pub struct TapArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Sample the events leaving this source or transform (repeatable, or comma-separated);
    /// every one when not given. A sink has no outputs: tap what feeds it.
    #[arg(long = "outputs-of", value_name = "ID", value_delimiter = ',')]
    pub outputs_of: Vec<String>,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// At most this many events per second; the others are skipped, and a notice on stderr
    /// says how many.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RATE,
          value_parser = clap::value_parser!(u32).range(1..=MAX_RATE as i64))]
    pub rate: u32,
    /// Show customer information (emails, phones, names, addresses, IPs…) unmasked. Only
    /// granted when fbpixel tap runs on the pipeline's own machine (a loopback address).
    #[arg(long)]
    pub raw: bool,
}

pub fn run(args: TapArgs) -> anyhow::Result<ExitCode> {
    let base = args.api.base_url()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        tokio::select! {
            tapped = tap(ApiClient::new(base), &args) => tapped,
            _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
        }
    })
}

/// The query of `/tap` for these arguments.
fn query(args: &TapArgs) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for id in &args.outputs_of {
        q.append_pair("outputs_of", id);
    }
    q.append_pair("rate", &args.rate.to_string());
    q.append_pair("raw", if args.raw { "true" } else { "false" });
    q.finish()
}

async fn tap(client: ApiClient, args: &TapArgs) -> anyhow::Result<ExitCode> {
    let answer = client.get(&format!("/tap?{}", query(args))).await?;
    let mut body = answer.into_body();
    let stdout = std::io::stdout();
    let mut printed = 0u64;
    let mut pending: Vec<u8> = Vec::new();
    if args.limit == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.with_context(|| format!("{}/tap: the stream broke", client.base()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            if line.is_empty() {
                continue;
            }
            if let Some(note) = note(line) {
                eprintln!("{note}");
                continue;
            }
            let mut out = stdout.lock();
            // A closed stdout (`| head`) ends the tap quietly.
            if out
                .write_all(line)
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
                .is_err()
            {
                return Ok(ExitCode::SUCCESS);
            }
            printed += 1;
            if args.limit.is_some_and(|limit| printed >= limit) {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    eprintln!("[tap] {} closed the tap", client.base());
    Ok(ExitCode::FAILURE)
}

/// The text of a notice line (`{"note":…}`), or `None` for an event.
fn note(line: &[u8]) -> Option<String> {
    if !line.starts_with(br#"{"note":"#) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    value.get("note")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_told_from_events_by_their_first_key() {
        assert_eq!(
            note(br#"{"note":"[tap] 3 events skipped"}"#).as_deref(),
            Some("[tap] 3 events skipped")
        );
        assert_eq!(
            note(br#"{"component_id":"note","event":{"note":"x"}}"#),
            None
        );
    }

    #[test]
    fn the_query_carries_every_id_encoded_the_rate_and_raw() {
        let args = TapArgs {
            api: ApiArgs {
                url: None,
                config: Default::default(),
            },
            outputs_of: vec!["in".into(), "a b&c".into()],
            limit: None,
            rate: 7,
            raw: true,
        };
        assert_eq!(
            query(&args),
            "outputs_of=in&outputs_of=a+b%26c&rate=7&raw=true"
        );
    }
}
