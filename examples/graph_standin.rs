//! A stand-in for the Graph API that only counts, for load tests:
//! answers every `POST …/events` with `{"events_received": N}` after an
//! optional delay, and prints the totals every second, with the time from the first events
//! request to the latest (so a script can compute the delivery rate).
//!
//! ```text
//! cargo run --release --example graph_standin -- --address 127.0.0.1:18090 [--delay-ms 0]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// When the first and the latest events request arrived.
static FIRST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
static LATEST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);

#[tokio::main]
async fn main() {
    let mut address = "127.0.0.1:18090".to_string();
    let mut delay = Duration::ZERO;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--address" => address = value,
            "--delay-ms" => delay = Duration::from_millis(value.parse().expect("--delay-ms N")),
            other => panic!("unknown flag {other}"),
        }
    }
    let listener = tokio::net::TcpListener::bind(&address).await.expect("bind");
    let events = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    {
        let (events, requests) = (events.clone(), requests.clone());
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = events.load(Ordering::Relaxed);
                if now != last {
                    let span = match (*FIRST.lock().unwrap(), *LATEST.lock().unwrap()) {
                        (Some(first), Some(latest)) => (latest - first).as_secs_f64(),
                        _ => 0.0,
                    };
                    eprintln!(
                        "graph_standin: {now} events in {} requests over {span:.3} s",
                        requests.load(Ordering::Relaxed)
                    );
                    last = now;
                }
            }
        });
    }
    loop {
        let (stream, _) = listener.accept().await.expect("accept");
        let (events, requests) = (events.clone(), requests.clone());
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (events, requests) = (events.clone(), requests.clone());
                    async move {
                        let is_events = req.uri().path().ends_with("/events");
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let answer = if is_events {
                            // Each server event has exactly one "event_id" key.
                            let n =
                                body.windows(11).filter(|w| w == b"\"event_id\":").count() as u64;
                            let at = std::time::Instant::now();
                            FIRST.lock().unwrap().get_or_insert(at);
                            *LATEST.lock().unwrap() = Some(at);
                            events.fetch_add(n, Ordering::Relaxed);
                            requests.fetch_add(1, Ordering::Relaxed);
                            format!("{{\"events_received\":{n},\"fbtrace_id\":\"standin\"}}")
                        } else {
                            "{\"id\":\"standin\"}".to_string()
                        };
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .status(StatusCode::OK)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(answer)))
                                .unwrap(),
                        )
                    }
                });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
