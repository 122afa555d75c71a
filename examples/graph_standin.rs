//! A stand-in for the Graph API that only counts, for load tests:
//! answers every `POST …/events` with `{"events_received": N}` after an
//! optional delay, and prints the totals every second, with the time from the first events
//! request to the latest (so a script can compute the delivery rate).
//!
//! ```text
//! cargo run --release --example graph_standin -- --address 127.0.0.1:18090 [--delay-ms 0]
//! ```
//!
//! The stand-in itself is the tests' (`tests/support/graph.rs`), here without recording.

use std::time::Duration;

// Shared with the integration tests and the sink's unit tests, which use other parts of it.
#[allow(dead_code)]
#[path = "../tests/support/graph.rs"]
mod graph;

use graph::{GraphStandin, Reply};

fn main() {
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
    let standin = GraphStandin::builder()
        .address(&address)
        .delay(delay)
        .record(false)
        .start(|_, request| {
            if request.is_events() {
                Reply::Json(
                    200,
                    format!(
                        "{{\"events_received\":{},\"fbtrace_id\":\"standin\"}}",
                        request.events
                    ),
                )
            } else {
                Reply::Json(200, "{\"id\":\"standin\"}".to_string())
            }
        });
    let mut last = 0;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let counts = standin.counts();
        if counts.events != last {
            eprintln!(
                "graph_standin: {} events in {} requests over {:.3} s",
                counts.events,
                counts.requests,
                counts.span().as_secs_f64()
            );
            last = counts.events;
        }
    }
}
