//! Configuration reload through the binary, while a client posts with acknowledgements: a sink
//! added, a broken config refused, SIGHUP, and a changed sink drained before its replacement.
//! Every test counts event ids at the Graph API stand-in: each acknowledged event must arrive
//! exactly once.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::support::graph::GraphStandin;
use crate::support::{self, Proc, free_port, temp_dir, track_event, wait_until};

/// `http_server` → Conversions API sink (which asks for acknowledgements), with `extra`
/// appended (more sinks, `[api]`, or a setting of the Conversions API sink, its table being
/// the last one).
fn config(port: u16, graph: &GraphStandin, capi_settings: &str, extra: &str) -> String {
    format!(
        r#"
[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"

{extra}

[sinks.capi]
type = "facebook_pixel_server_side"
inputs = ["web"]
pixel_id = "123"
access_token = "token"
endpoint = "{endpoint}"
healthcheck.enabled = false
batch.timeout_secs = 0.05
request.concurrency = 2
{capi_settings}
"#,
        endpoint = graph.endpoint
    )
}

fn file_sink(path: &Path) -> String {
    format!(
        "[sinks.copy]\ntype = \"file\"\ninputs = [\"web\"]\npath = \"{}\"\n",
        path.display()
    )
}

/// A Graph API stand-in that accepts everything after `delay`.
fn graph(delay: Duration) -> GraphStandin {
    GraphStandin::start(move |_, r| {
        std::thread::sleep(delay);
        (
            200,
            format!(r#"{{"events_received":{}}}"#, r.event_ids().len()),
        )
    })
}

/// Two clients posting batches of 10 events until stopped, remembering which ids got a 200,
/// and which of those were posted once `reloaded` was set.
struct Clients {
    stop: Arc<AtomicBool>,
    reloaded: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<String>>>,
    after: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Clients {
    fn start(port: u16) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let reloaded = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let after = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..2)
            .map(|t| {
                let (stop, reloaded) = (stop.clone(), reloaded.clone());
                let (acknowledged, after) = (acknowledged.clone(), after.clone());
                std::thread::spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let posted_after = reloaded.load(Ordering::SeqCst);
                        let ids: Vec<String> = (0..10).map(|i| format!("c{t}-{n}-{i}")).collect();
                        n += 1;
                        let body: String = ids
                            .iter()
                            .map(|id| track_event(id, "jane@example.com") + "\n")
                            .collect();
                        let answer = support::http_request(port, "POST", "/", &[], body.as_bytes());
                        match answer {
                            Ok(r) if r.status == 200 => {
                                if posted_after {
                                    after.lock().unwrap().extend(ids.iter().cloned());
                                }
                                acknowledged.lock().unwrap().extend(ids);
                            }
                            // Not acknowledged, so not owed; a reload must not cause any.
                            Ok(r) => panic!("a post was answered {}: {}", r.status, r.text()),
                            Err(e) => panic!("a post failed: {e}"),
                        }
                    }
                })
            })
            .collect();
        Clients {
            stop,
            reloaded,
            acknowledged,
            after,
            threads,
        }
    }

    fn acknowledged(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    fn after(&self) -> usize {
        self.after.lock().unwrap().len()
    }

    /// Stop posting; returns every id acknowledged, and those posted after the reload.
    fn finish(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("a client thread panicked");
        }
        let acknowledged = self.acknowledged.lock().unwrap().clone();
        let after = self.after.lock().unwrap().clone();
        (acknowledged, after)
    }
}

/// Every event_id the stand-in received, with how often.
fn received(graph: &GraphStandin) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in graph.requests() {
        for id in r.event_ids() {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

/// Waits until every acknowledged id reached the stand-in, then asserts each arrived exactly
/// once.
fn assert_delivered_exactly_once(graph: &GraphStandin, acknowledged: &[String], p: &Proc) {
    let all = wait_until(Duration::from_secs(60), || {
        let got = received(graph);
        acknowledged.iter().all(|id| got.contains_key(id))
    });
    let got = received(graph);
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !got.contains_key(*id))
        .collect();
    assert!(
        all,
        "{} of {} acknowledged events never arrived (first: {:?})\n{}",
        missing.len(),
        acknowledged.len(),
        missing.first(),
        p.stderr()
    );
    let twice: Vec<(&String, &usize)> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} events arrived more than once, e.g. {:?}",
        twice.len(),
        twice.first()
    );
    println!(
        "{} events acknowledged, each delivered once ({} requests)",
        acknowledged.len(),
        graph.requests().len()
    );
}

fn wait_for_log(p: &Proc, text: &str) {
    assert!(
        wait_until(Duration::from_secs(20), || p.stderr().contains(text)),
        "the log never said {text:?}:\n{}",
        p.stderr()
    );
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn start(config: &Path, port: u16, watch: bool) -> Proc {
    let path = config.to_str().unwrap();
    let args: &[&str] = if watch {
        &["run", "--watch-config", "--config", path]
    } else {
        &["run", "--config", path]
    };
    let mut p = Proc::spawn(args, &[], None);
    p.wait_for_port(port);
    p
}

fn stop(mut p: Proc) -> String {
    p.signal("TERM");
    let status = p.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{}", p.stderr());
    p.stderr()
}

fn lines_of(file: &Path) -> HashSet<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["messageId"].as_str().map(str::to_owned))
        .collect()
}

fn reloads(api_port: u16, outcome: &str) -> Option<f64> {
    let text = support::get(api_port, "/metrics").text();
    support::metric(
        &text,
        "fbpixel_config_reloads_total",
        &[("outcome", outcome)],
    )
}

#[test]
fn a_reload_that_adds_a_sink_loses_nothing_and_the_new_sink_gets_what_follows() {
    let graph = graph(Duration::from_millis(20));
    let (port, api_port) = (free_port(), free_port());
    let dir = temp_dir("reload-add");
    let (path, copy) = (dir.join("pipeline.toml"), dir.join("copy.ndjson"));
    let api = format!("[api]\naddress = \"127.0.0.1:{api_port}\"\n");
    write(&path, &config(port, &graph, "", &api));
    let p = start(&path, port, true);
    let clients = Clients::start(port);
    assert!(wait_until(Duration::from_secs(30), || clients
        .acknowledged()
        >= 300));

    write(
        &path,
        &config(port, &graph, "", &format!("{api}\n{}", file_sink(&copy))),
    );
    wait_for_log(
        &p,
        "configuration reloaded: added [sinks.copy], removed [], changed [], unchanged 2",
    );
    clients.reloaded.store(true, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(30), || clients.after() >= 300));
    let (acknowledged, after) = clients.finish();

    assert_delivered_exactly_once(&graph, &acknowledged, &p);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let written = lines_of(&copy);
            after.iter().all(|id| written.contains(id))
        }),
        "the added sink got every event posted after the reload"
    );
    assert_eq!(reloads(api_port, "applied"), Some(1.0));
    assert_eq!(reloads(api_port, "refused"), Some(0.0));
    let log = stop(p);
    assert!(log.contains("reloading configuration…"), "{log}");
}

#[test]
fn a_broken_config_is_refused_with_its_errors_and_the_pipeline_keeps_delivering() {
    let graph = graph(Duration::from_millis(20));
    let (port, api_port) = (free_port(), free_port());
    let dir = temp_dir("reload-refused");
    let path = dir.join("pipeline.toml");
    let api = format!("[api]\naddress = \"127.0.0.1:{api_port}\"\n");
    write(&path, &config(port, &graph, "", &api));
    let p = start(&path, port, true);
    let clients = Clients::start(port);
    assert!(wait_until(Duration::from_secs(30), || clients
        .acknowledged()
        >= 300));

    write(
        &path,
        &config(port, &graph, "batch.max_evnts = 5\nbogus = 1", &api),
    );
    wait_for_log(
        &p,
        "configuration refused; the running pipeline is unchanged:",
    );
    let log = p.stderr();
    assert!(
        log.contains("pipeline.toml: sinks.capi") && log.contains("`max_evnts`"),
        "the refusal names the file, the component and the key:\n{log}"
    );
    assert!(log.contains("`bogus`"), "every problem is listed:\n{log}");
    assert!(!log.contains("configuration reloaded"), "{log}");
    clients.reloaded.store(true, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(30), || clients.after() >= 300));
    let (acknowledged, _) = clients.finish();

    assert_delivered_exactly_once(&graph, &acknowledged, &p);
    assert_eq!(reloads(api_port, "refused"), Some(1.0));
    assert_eq!(reloads(api_port, "applied"), Some(0.0));
    stop(p);
}

#[test]
fn sighup_reloads_and_without_watch_config_a_changed_file_alone_does_not() {
    let graph = graph(Duration::ZERO);
    let port = free_port();
    let dir = temp_dir("reload-hup");
    let (path, copy) = (dir.join("pipeline.toml"), dir.join("copy.ndjson"));
    write(&path, &config(port, &graph, "", ""));
    let p = start(&path, port, false);
    write(&path, &config(port, &graph, "", &file_sink(&copy)));
    // Two polls' worth: a watched config would have reloaded by now.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !p.stderr().contains("reloading configuration"),
        "{}",
        p.stderr()
    );

    p.signal("HUP");
    wait_for_log(&p, "reloading configuration… trigger=\"SIGHUP\"");
    wait_for_log(
        &p,
        "configuration reloaded: added [sinks.copy], removed [], changed [], unchanged 2",
    );
    let body = track_event("after-hup", "jane@example.com");
    let answer = support::post(port, &[], body.as_bytes());
    assert_eq!(answer.status, 200);
    assert!(wait_until(Duration::from_secs(10), || lines_of(&copy)
        .contains("after-hup")));
    assert_delivered_exactly_once(&graph, &["after-hup".to_owned()], &p);
    stop(p);
}

#[test]
fn a_changed_sink_with_a_disk_buffer_drains_before_its_replacement_and_nothing_is_lost() {
    // Slow answers, so the old sink has requests in flight when the reload comes.
    let graph = graph(Duration::from_millis(150));
    let port = free_port();
    let dir = temp_dir("reload-change");
    let path = dir.join("pipeline.toml");
    let data_dir = format!("data_dir = \"{}\"\n", dir.join("data").display());
    let old = "batch.max_events = 50\nbuffer.type = \"disk\"";
    let new = "batch.max_events = 20\nbuffer.type = \"disk\"";
    write(&path, &(data_dir.clone() + &config(port, &graph, old, "")));
    let p = start(&path, port, true);
    let clients = Clients::start(port);
    assert!(wait_until(Duration::from_secs(30), || {
        graph.requests().iter().any(|r| r.event_ids().len() > 20) && clients.acknowledged() >= 300
    }));

    write(&path, &(data_dir + &config(port, &graph, new, "")));
    wait_for_log(
        &p,
        "configuration reloaded: added [], removed [], changed [sinks.capi], unchanged 1",
    );
    wait_for_log(&p, "the old sink drained; its replacement runs");
    clients.reloaded.store(true, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(30), || clients.after() >= 300));
    let (acknowledged, after) = clients.finish();
    assert_delivered_exactly_once(&graph, &acknowledged, &p);

    // The old sink's requests (up to 50 events) all came before any request of the new one
    // (at most 20), which is the only one to see what was posted after it started.
    let after: HashSet<String> = after.into_iter().collect();
    let requests = graph.requests();
    let first_new = requests
        .iter()
        .position(|r| r.event_ids().iter().any(|id| after.contains(id)))
        .expect("events posted after the reload arrived");
    let last_old = requests
        .iter()
        .rposition(|r| r.event_ids().len() > 20)
        .expect("the old sink sent batches of more than 20");
    assert!(
        last_old < first_new,
        "a batch of the old settings (request {last_old}) came after the replacement's first (request {first_new})"
    );
    assert!(
        requests[first_new..]
            .iter()
            .all(|r| r.event_ids().len() <= 20),
        "the replacement runs with the new batch size"
    );
    stop(p);
}

#[test]
fn a_file_added_to_a_watched_config_folder_is_loaded_and_an_edit_with_an_unset_variable_is_refused()
{
    let graph = graph(Duration::ZERO);
    let port = free_port();
    let dir = temp_dir("reload-dir");
    let conf = dir.join("conf.d");
    std::fs::create_dir_all(&conf).unwrap();
    let copy = dir.join("copy.ndjson");
    write(&conf.join("a.toml"), &config(port, &graph, "", ""));
    let conf_arg = conf.to_str().unwrap();
    let mut p = Proc::spawn(&["run", "-w", "--config-dir", conf_arg], &[], None);
    p.wait_for_port(port);

    write(
        &conf.join("b.yaml"),
        &format!(
            "sinks:\n  copy:\n    type: file\n    inputs: [web]\n    path: \"{}\"\n",
            copy.display()
        ),
    );
    wait_for_log(
        &p,
        "configuration reloaded: added [sinks.copy], removed [], changed [], unchanged 2",
    );
    let answer = support::post(
        port,
        &[],
        track_event("in-dir", "jane@example.com").as_bytes(),
    );
    assert_eq!(answer.status, 200);
    assert!(wait_until(Duration::from_secs(10), || lines_of(&copy)
        .contains("in-dir")));

    // The same interpolation as at start: an unset variable refuses the whole file.
    write(
        &conf.join("b.yaml"),
        "sinks:\n  copy:\n    type: file\n    inputs: [web]\n    path: \"${RELOAD_TEST_UNSET}\"\n",
    );
    wait_for_log(
        &p,
        "configuration refused; the running pipeline is unchanged:",
    );
    assert!(p.stderr().contains("RELOAD_TEST_UNSET"), "{}", p.stderr());
    let answer = support::post(
        port,
        &[],
        track_event("after-refusal", "jane@example.com").as_bytes(),
    );
    assert_eq!(answer.status, 200);
    assert!(
        wait_until(Duration::from_secs(10), || lines_of(&copy)
            .contains("after-refusal")),
        "the file sink from before the refusal still runs"
    );
    assert_delivered_exactly_once(
        &graph,
        &["in-dir".to_owned(), "after-refusal".to_owned()],
        &p,
    );
    stop(p);
}
