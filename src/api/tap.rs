//! `GET /tap?outputs_of=ID&rate=N&raw=false`: a sample of the events leaving components, as
//! NDJSON in a chunked body, until the client goes away or the API stops.
//!
//! Each event is one line, `{"component_id":…,"component_kind":…,"component_type":…,"event":…}`
//! (`vector tap --meta`'s JSON shape), its customer information masked ([`super::mask`]) unless
//! `raw=true`, which is served only to a client on a loopback address: unmasked data never
//! leaves the machine. Lines starting `{"note":` are notices for the user (which ids matched, how
//! many events the rate limit skipped); empty lines keep the connection checked while nothing
//! flows, so a tap whose client has gone is closed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use super::mask;
use crate::component::{ShutdownSignal, TapRequest, Tapped, Taps};

/// Events per second when the request does not say.
pub const DEFAULT_RATE: u32 = 10;
/// The most events per second a tap may ask for.
pub const MAX_RATE: u32 = 10_000;
/// How often skipped events are reported, and an idle connection checked.
const NOTE_INTERVAL: Duration = Duration::from_secs(1);
const HEARTBEAT: Duration = Duration::from_secs(5);

/// A tap's query, checked.
#[derive(Debug, PartialEq)]
pub struct TapQuery {
    /// Component ids; empty: every component.
    pub outputs_of: Vec<String>,
    /// Events per second.
    pub rate: u32,
    /// Unmasked events.
    pub raw: bool,
}

impl TapQuery {
    /// Parse `outputs_of` (repeatable, or comma-separated), `rate` and `raw`; every problem is
    /// named in the error.
    pub fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut q = TapQuery {
            outputs_of: Vec::new(),
            rate: DEFAULT_RATE,
            raw: false,
        };
        let mut problems = Vec::new();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "outputs_of" => q.outputs_of.extend(
                    value
                        .split(',')
                        .filter(|id| !id.is_empty())
                        .map(str::to_owned),
                ),
                "rate" => match value.parse::<u32>() {
                    Ok(rate) if (1..=MAX_RATE).contains(&rate) => q.rate = rate,
                    _ => problems.push(format!(
                        "rate: {value:?} is not a number of events per second from 1 to {MAX_RATE}"
                    )),
                },
                "raw" => match &*value {
                    "true" | "1" => q.raw = true,
                    "false" | "0" => q.raw = false,
                    _ => problems.push(format!("raw: {value:?} is not true or false")),
                },
                other => problems.push(format!(
                    "unknown parameter {other:?}; /tap takes outputs_of, rate and raw"
                )),
            }
        }
        if problems.is_empty() {
            Ok(q)
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Why a raw tap is refused to a client on another machine.
pub const RAW_REFUSED: &str = "raw taps are served only to a client on the pipeline's own machine (a loopback address such as 127.0.0.1): unmasked customer information never leaves it. Tap without --raw to see the events masked, or run `fbpixel tap --raw` on that machine";

/// Whether `peer` may receive unmasked events.
pub fn is_local(peer: SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

/// The streamed body of a tap.
pub struct TapBody(mpsc::Receiver<Bytes>);

impl Body for TapBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// Open the tap and stream it; the stream ends at `shutdown` or when the client has gone.
pub fn stream(taps: &Taps, query: TapQuery, mut shutdown: ShutdownSignal) -> Response<TapBody> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut notes = matched_notes(taps, &query.outputs_of);
    let mut subscription = taps.subscribe(TapRequest {
        outputs_of: query.outputs_of,
        rate: query.rate,
    });
    let (raw, rate) = (query.raw, query.rate);
    tokio::spawn(async move {
        for note in notes.drain(..) {
            if tx.send(note).await.is_err() {
                return;
            }
        }
        let mut report = tokio::time::interval(NOTE_INTERVAL);
        let mut quiet_since = tokio::time::Instant::now();
        loop {
            let chunk = tokio::select! {
                tapped = subscription.recv() => line(&tapped, raw),
                _ = report.tick() => match subscription.take_skipped() {
                    0 if quiet_since.elapsed() < HEARTBEAT => continue,
                    0 => Bytes::from_static(b"\n"),
                    skipped => note(&format!("[tap] {skipped} events skipped: more than --rate {rate} per second")),
                },
                () = shutdown.wait() => {
                    // Not waited for: the client may have stopped reading.
                    let _ = tx.try_send(note("[tap] the pipeline's API is stopping"));
                    return;
                }
            };
            quiet_since = tokio::time::Instant::now();
            // A client that has stopped reading must not hold the API's shutdown.
            let sent = tokio::select! {
                sent = tx.send(chunk) => sent.is_ok(),
                () = shutdown.wait() => false,
            };
            if !sent {
                // The client has gone (or the API is stopping); dropping the subscription
                // closes the tap.
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, "application/x-ndjson")
        .header(hyper::header::CACHE_CONTROL, "no-store")
        .body(TapBody(rx))
        .expect("a valid response")
}

/// Vector's notices for each id asked for: matched, or not (yet).
fn matched_notes(taps: &Taps, outputs_of: &[String]) -> Vec<Bytes> {
    let running = taps.components();
    if outputs_of.is_empty() {
        let ids: Vec<&str> = running.iter().map(|c| c.id.as_str()).collect();
        return vec![note(&format!(
            "[tap] tapping the outputs of every source and transform: {}",
            ids.join(", ")
        ))];
    }
    outputs_of
        .iter()
        .map(|id| {
            if running.iter().any(|c| &c.id == id) {
                note(&format!("[tap] Pattern '{id}' successfully matched."))
            } else {
                note(&format!(
                    "[tap] Pattern '{id}' failed to match: no source or transform with this id is running (a sink has no outputs: tap what feeds it). Will match if a reload adds it."
                ))
            }
        })
        .collect()
}

fn note(text: &str) -> Bytes {
    let mut line = serde_json::to_vec(&serde_json::json!({ "note": text })).expect("a string");
    line.push(b'\n');
    Bytes::from(line)
}

/// One tapped event as a line, masked unless `raw`.
pub fn line(tapped: &Tapped, raw: bool) -> Bytes {
    let c = &tapped.component;
    let mut out = Vec::with_capacity(tapped.json.len() + 96);
    out.extend_from_slice(b"{\"component_id\":");
    serde_json::to_writer(&mut out, &c.id).expect("a string");
    out.extend_from_slice(b",\"component_kind\":");
    serde_json::to_writer(&mut out, c.kind).expect("a string");
    out.extend_from_slice(b",\"component_type\":");
    serde_json::to_writer(&mut out, &c.type_name).expect("a string");
    out.extend_from_slice(b",\"event\":");
    if raw {
        out.extend_from_slice(&tapped.json);
    } else {
        match serde_json::from_slice::<serde_json::Value>(&tapped.json) {
            Ok(mut event) => {
                mask::mask(&mut event);
                serde_json::to_writer(&mut out, &event).expect("a JSON value");
            }
            // Sources take valid JSON only; should one not be, show nothing of it.
            Err(_) => out.extend_from_slice(br#""(not JSON)""#),
        }
    }
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::telemetry::ComponentInfo;

    #[test]
    fn the_query_takes_ids_in_both_forms_and_names_every_problem() {
        let q = TapQuery::parse(Some("outputs_of=a,b&outputs_of=c&rate=5&raw=true")).unwrap();
        assert_eq!(
            q,
            TapQuery {
                outputs_of: vec!["a".into(), "b".into(), "c".into()],
                rate: 5,
                raw: true
            }
        );
        assert_eq!(TapQuery::parse(None).unwrap().rate, DEFAULT_RATE);
        let e = TapQuery::parse(Some("rate=0&raw=yes&limit=3")).unwrap_err();
        assert!(e.contains("rate: \"0\" is not a number"), "{e}");
        assert!(e.contains("raw: \"yes\" is not true or false"), "{e}");
        assert!(e.contains("unknown parameter \"limit\""), "{e}");
    }

    #[test]
    fn only_loopback_peers_are_local() {
        for (addr, local) in [
            ("127.0.0.1:1", true),
            ("[::1]:1", true),
            ("[::ffff:127.0.0.1]:1", true),
            ("10.0.0.2:1", false),
            ("[::ffff:10.0.0.2]:1", false),
        ] {
            assert_eq!(is_local(addr.parse().unwrap()), local, "{addr}");
        }
    }

    #[test]
    fn a_line_wraps_the_event_with_its_component_masked_unless_raw() {
        let tapped = Tapped {
            component: Arc::new(ComponentInfo {
                id: "web\"1".into(),
                kind: "source",
                type_name: "segment".into(),
            }),
            json: br#"{"traits":{"email":"ada@example.com"},"event":"Buy"}"#.to_vec(),
        };
        let masked: serde_json::Value = serde_json::from_slice(&line(&tapped, false)).unwrap();
        assert_eq!(
            masked,
            serde_json::json!({
                "component_id": "web\"1",
                "component_kind": "source",
                "component_type": "segment",
                "event": {"traits": {"email": "***"}, "event": "Buy"}
            })
        );
        let raw = line(&tapped, true);
        assert!(
            raw.ends_with(
                br#""event":{"traits":{"email":"ada@example.com"},"event":"Buy"}}
"#
            ),
            "{raw:?}"
        );
    }
}
