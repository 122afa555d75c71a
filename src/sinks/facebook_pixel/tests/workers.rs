//! `mapping.workers`: with several workers every event is still delivered exactly once and every
//! source batch acknowledged, the pixel's `request.concurrency` holds for the whole sink, and the
//! workers do share the load (against one worker, the control, which keeps the input's order).

use std::sync::Arc;

use super::*;

/// What one run saw.
struct Seen {
    /// Each request's events, as positions in the input.
    requests: Vec<Vec<usize>>,
    /// Most requests the stand-in held at once.
    most_in_flight: usize,
}

/// 1,000 track calls in 40 source batches of 25, each batch with its own acknowledgement,
/// through a sink with `workers` and a Graph API that takes 20 ms a request, at most two
/// requests at once: mapping outruns delivery, so a first worker soon waits for its pixel's
/// flow control and its queue fills.
async fn deliver_through(workers: usize) -> Seen {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (now, peak) = (in_flight.clone(), most.clone());
    let graph = GraphStandin::start(move |_, r| {
        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(n, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        now.fetch_sub(1, Ordering::SeqCst);
        ok(&r.json())
    });
    let mut config = config(
        graph.port,
        None,
        &format!("batch.max_events = 10\nrequest.concurrency = 2\nmapping.workers = {workers}\n"),
    );
    // Batches are cut by count alone, however slowly a loaded machine maps: a batch then goes
    // on into its worker's next chunk, and shows which chunks that worker was given.
    config.batch.timeout_secs = 30.0;
    let ids = ids(&format!("w{workers}"), 1000);
    let batches: Vec<Vec<Value>> = ids.chunks(25).map(tracks).collect();
    let statuses = run(&config, batches).await;

    assert_eq!(statuses.len(), 40);
    assert!(
        statuses.iter().all(|s| *s == BatchStatus::Delivered),
        "every source batch acknowledged as delivered: {statuses:?}"
    );
    assert_each_once(&delivered(&graph), &ids);
    let position = |id: &str| id.rsplit('-').next().unwrap().parse::<usize>().unwrap();
    Seen {
        requests: graph
            .requests()
            .iter()
            .map(|r| r.event_ids().iter().map(|id| position(id)).collect())
            .collect(),
        most_in_flight: most.load(Ordering::SeqCst),
    }
}

/// Whether a request's events are a run of the input (each the one after the previous).
fn consecutive(request: &[usize]) -> bool {
    request.windows(2).all(|w| w[1] == w[0] + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_workers_deliver_each_event_once_acknowledged_within_the_pixels_concurrency() {
    let one = deliver_through(1).await;
    // The control: one worker maps the input in order, so every request is a run of it.
    assert!(
        one.requests.iter().all(|r| consecutive(r)),
        "{:?}",
        one.requests
    );
    assert!(one.most_in_flight <= 2, "{}", one.most_in_flight);

    let three = deliver_through(3).await;
    assert!(
        three.most_in_flight <= 2,
        "request.concurrency is the pixel's, shared by its workers: {} at once",
        three.most_in_flight
    );
    // A worker's batch that goes on from one chunk into a later one it was given is no run of
    // the input: the chunks in between went to other workers.
    assert!(
        three.requests.iter().any(|r| !consecutive(r)),
        "the chunks were spread over the workers: {:?}",
        three.requests
    );
}
