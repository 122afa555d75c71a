//! The disk buffer through the whole binary: what a source acknowledged survives `kill -9`.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::graph::GraphStandin;
use crate::support::{Proc, free_port, temp_dir, temp_file, track_event, wait_until};

fn config(port: u16, data_dir: &Path, endpoint: &str) -> String {
    format!(
        r#"
data_dir = "{}"

[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"

[sinks.capi]
type = "facebook_pixel_server_side"
inputs = ["web"]
pixel_id = "123"
access_token = "${{FB_ACCESS_TOKEN}}"
endpoint = "{endpoint}"
healthcheck.enabled = false
batch.max_events = 50
batch.timeout_secs = 0.05
request.concurrency = 2
buffer.type = "disk"
"#,
        data_dir.display()
    )
}

fn start(config: &Path, port: u16) -> Proc {
    let mut p = Proc::spawn(
        &["--config", config.to_str().unwrap()],
        &[("FB_ACCESS_TOKEN", "token")],
        None,
    );
    p.wait_for_port(port);
    p
}

/// Every event_id the stand-in has received, with how often.
fn received(graph: &GraphStandin) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in graph.requests() {
        for id in r.event_ids() {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

#[test]
fn every_event_acknowledged_before_a_kill_9_is_delivered_after_the_restart() {
    // A slow Graph API (100 ms a request, 2 at a time, 50 events each: about 1,000 events/s),
    // so acknowledged events pile up in the buffer while the sender goes on.
    let graph = GraphStandin::start(|_, r| {
        std::thread::sleep(Duration::from_millis(100));
        (
            200,
            format!(r#"{{"events_received":{}}}"#, r.event_ids().len()),
        )
    });
    let port = free_port();
    let dir = temp_dir("kill-9");
    let config = temp_file(
        "kill-9.toml",
        &config(port, &dir.join("data"), &graph.endpoint),
    );
    let mut first = start(&config, port);

    // Four senders post batches of 25 until told to stop, remembering what got a 200.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut batch_no = 0;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<String> =
                        (0..25).map(|i| format!("t{t}-b{batch_no}-{i}")).collect();
                    batch_no += 1;
                    let body: String = ids
                        .iter()
                        .map(|id| track_event(id, "jane@example.com") + "\n")
                        .collect();
                    match support::http_request(port, "POST", "/", &[], body.as_bytes()) {
                        Ok(r) if r.status == 200 => acknowledged.lock().unwrap().extend(ids),
                        // Refused or cut off by the kill: not acknowledged, so not owed.
                        _ => {}
                    }
                }
            })
        })
        .collect();

    assert!(
        wait_until(Duration::from_secs(60), || received(&graph).len() >= 200
            && acknowledged.lock().unwrap().len() >= 2000),
        "events flow before the kill"
    );
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    let acknowledged: HashSet<String> = acknowledged.lock().unwrap().iter().cloned().collect();
    let delivered_before = received(&graph).len();
    assert!(
        delivered_before < acknowledged.len(),
        "the kill came while acknowledged events waited in the buffer ({delivered_before} of {} delivered)",
        acknowledged.len()
    );

    let mut second = start(&config, port);
    let all_arrived = wait_until(Duration::from_secs(120), || {
        let got = received(&graph);
        acknowledged.iter().all(|id| got.contains_key(id))
    });
    let got = received(&graph);
    let missing = acknowledged
        .iter()
        .filter(|id| !got.contains_key(*id))
        .count();
    assert!(
        all_arrived,
        "{missing} of {} acknowledged events never arrived\n{}",
        acknowledged.len(),
        second.stderr()
    );
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    println!(
        "kill -9 test: {} events acknowledged, {delivered_before} delivered before the kill, \
         all delivered after the restart, {duplicates} duplicates",
        acknowledged.len()
    );
    assert!(
        second
            .stderr()
            .contains("resuming with events a previous run did not deliver"),
        "the restart says it found a backlog:\n{}",
        second.stderr()
    );

    // A clean stop after everything was delivered leaves the buffer empty: a third start
    // sends nothing.
    second.signal("TERM");
    assert!(
        second.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        second.stderr()
    );
    let before = graph.requests().len();
    let mut third = start(&config, port);
    std::thread::sleep(Duration::from_millis(500));
    third.signal("TERM");
    assert!(third.wait_exit(Duration::from_secs(30)).success());
    assert_eq!(graph.requests().len(), before, "nothing left in the buffer");
}

#[test]
fn a_disk_buffer_without_data_dir_is_refused_by_validate_with_what_to_set() {
    let config = temp_file(
        "no-data-dir.toml",
        r#"
[sources.in]
type = "stdin"

[sinks.capi]
type = "facebook_pixel_server_side"
inputs = ["in"]
pixel_id = "123"
access_token = "token"
buffer.type = "disk"
"#,
    );
    let out = support::fbpixel(
        &["validate", "--no-environment", config.to_str().unwrap()],
        b"",
        &[],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        report.contains("sinks.capi: buffer.type = \"disk\"") && report.contains("set `data_dir"),
        "{report}"
    );
}
