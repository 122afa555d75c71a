//! Flow control against a stand-in that enforces a rate limit the way Meta does (code 17 past
//! the limit, usage headers rising with use): adaptive concurrency keeps under it, a fixed
//! concurrency above the limit's pace does not, and nothing is lost either way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::graph::Throttling;
use super::*;

/// Events a second the stand-in accepts per pixel.
const LIMIT_PER_SEC: u64 = 400;
/// Its latency: with 5 events a request, the limit's pace is 8 requests in flight, so 16 asks
/// for twice what Meta allows. Both are low enough for a debug build on a loaded
/// machine to map faster than the limit.
const LATENCY: Duration = Duration::from_millis(100);
/// Ignored at the start while adaptive concurrency finds the limit.
const WARM_UP: Duration = Duration::from_millis(2000);

/// What one run under the limit measured, after the warm-up.
#[derive(Debug)]
struct Measured {
    /// Requests refused with the throttling error, as a share of all requests.
    throttled: f64,
    /// Events accepted a second, as a share of the limit.
    throughput: f64,
    requests: usize,
}

fn measure(log: &[Throttling]) -> Measured {
    let start = log.first().expect("requests").at + WARM_UP;
    let steady: Vec<&Throttling> = log.iter().filter(|t| t.at >= start).collect();
    let throttled = steady.iter().filter(|t| t.throttled).count();
    let accepted: Vec<&&Throttling> = steady.iter().filter(|t| !t.throttled).collect();
    let span = accepted
        .last()
        .map_or(Duration::ZERO, |t| t.at.duration_since(start));
    let events: u64 = accepted.iter().map(|t| t.events).sum();
    Measured {
        throttled: throttled as f64 / steady.len().max(1) as f64,
        throughput: events as f64 / span.as_secs_f64().max(1e-3) / LIMIT_PER_SEC as f64,
        requests: steady.len(),
    }
}

async fn under_the_limit(concurrency: &str, events: usize) -> Measured {
    let limit = RateLimit::new(LIMIT_PER_SEC);
    let answers = Arc::clone(&limit);
    let graph = GraphStandin::builder()
        .delay(LATENCY)
        .start(move |_, r| answers.reply(r));
    let config = config(
        graph.port,
        None,
        &format!("batch.max_events = 5\nrequest.concurrency = {concurrency}\n"),
    );
    let ids = ids(&format!("rl{}", concurrency.len()), events);
    let batches: Vec<Vec<Value>> = ids.chunks(100).map(tracks).collect();
    let started = Instant::now();
    let statuses = run(&config, batches).await;
    let took = started.elapsed();
    assert!(
        statuses.iter().all(|s| *s == BatchStatus::Delivered),
        "{statuses:?}"
    );
    // Nothing lost, nothing twice, whatever was throttled on the way.
    assert_each_once(&delivered(&graph), &ids);
    let measured = measure(&limit.log());
    eprintln!(
        "request.concurrency = {concurrency}: {events} events in {took:?}; after {WARM_UP:?} of warm-up, {} requests, {:.2}% throttled, throughput {:.1}% of the limit ({LIMIT_PER_SEC} events/s)",
        measured.requests,
        measured.throttled * 100.0,
        measured.throughput * 100.0
    );
    measured
}

// One test, both runs in turn: side by side they would share the two cores and the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_concurrency_keeps_under_metas_rate_limit_where_a_fixed_16_is_throttled() {
    let adaptive = under_the_limit("\"adaptive\"", 2_400).await;
    assert!(
        adaptive.throttled <= 0.02,
        "adaptive: at most 2% of requests throttled after warm-up: {adaptive:?}"
    );
    let fixed = under_the_limit("16", 1_600).await;
    assert!(
        fixed.throttled >= 0.05 && fixed.throttled >= 3.0 * adaptive.throttled,
        "a fixed 16 is throttled far more: {fixed:?} against {adaptive:?}"
    );
}
