//! `fbpixel top` and `fbpixel tap` through the binary, against a running pipeline's `[api]`:
//! top drawn in tmux and its screen read back, tap's NDJSON masked and raw.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::graph::GraphStandin;
use crate::support::{Proc, free_port, post, temp_dir, temp_file, track_event, wait_until};

const EMAIL: &str = "ada.lovelace@example.com";
const PHONE: &str = "+44 20 7946 0958";

/// An `http_server` source `web` feeding the Conversions API sink `facebook`, with an `[api]`.
fn pipeline(graph: &GraphStandin, port: u16, api_port: u16) -> Proc {
    let config = temp_file(
        "top-tap.toml",
        &format!(
            r#"
[api]
address = "127.0.0.1:{api_port}"

[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"

[sinks.facebook]
type = "facebook_pixel_server_side"
inputs = ["web"]
pixel_id = "123"
access_token = "${{FB_ACCESS_TOKEN}}"
endpoint = "{}"
batch.timeout_secs = 0.05
"#,
            graph.endpoint
        ),
    );
    let mut p = Proc::spawn(
        &["--config", config.to_str().unwrap()],
        &[("FB_ACCESS_TOKEN", "TOKEN-top-tap")],
        None,
    );
    p.wait_for_port(port);
    p.wait_for_port(api_port);
    p
}

/// A Segment track call with an email in its traits and a phone in its properties.
fn event(id: &str) -> String {
    track_event(id, EMAIL).replace(
        r#""revenue":12.5"#,
        &format!(r#""revenue":12.5,"phone":"{PHONE}""#),
    )
}

/// tmux on a socket of this test's own, so no other tmux session is touched.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// The IN/S column of the row whose first cell is `id`, as drawn.
fn in_rate(screen: &str, id: &str) -> Option<f64> {
    screen.lines().find_map(|line| {
        let cells: Vec<&str> = line
            .trim_matches(|c: char| c == '│' || c.is_whitespace())
            .split_whitespace()
            .collect();
        (cells.first() == Some(&id)).then(|| cells.get(3)?.parse().ok())?
    })
}

#[test]
fn top_in_tmux_shows_every_component_with_its_rate_and_the_sink_then_quits_on_q() {
    let graph = GraphStandin::strict();
    let (port, api_port) = (free_port(), free_port());
    let mut pipeline = pipeline(&graph, port, api_port);
    let exit_file: PathBuf = temp_dir("top-exit").join("code");
    let tmux = Tmux {
        socket: format!("fbpixel-top-{}", std::process::id()),
    };
    let command = format!(
        "{} top --url http://127.0.0.1:{api_port} --interval 0.3; echo $? > {}; sleep 5",
        env!("CARGO_BIN_EXE_fbpixel"),
        exit_file.display()
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "160",
        "-y",
        "40",
        &command,
    ]);
    assert!(started.status.success(), "{started:?}");

    let mut screen = String::new();
    let mut n = 0;
    let drawn = wait_until(Duration::from_secs(20), || {
        n += 1;
        let r = post(port, &[], event(&format!("m{n}")).as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        screen = tmux.screen();
        in_rate(&screen, "web").is_some_and(|rate| rate > 0.0)
            && in_rate(&screen, "facebook").is_some_and(|rate| rate > 0.0)
            && screen.contains("pixel 123: healthy")
    });
    assert!(drawn, "{screen}");
    for expected in [
        "fbpixel top",
        "connected",
        "IN/S",
        "OUT/S",
        "http_server",
        "facebook_pixel_server_side",
        "user_data coverage: ",
        "client_ip_address 100%",
        "retries: none",
    ] {
        assert!(
            screen.contains(expected),
            "{expected:?} missing from\n{screen}"
        );
    }
    assert!(!screen.contains(EMAIL), "{screen}");

    // The pipeline goes away: the view says so and keeps trying.
    pipeline.signal("INT");
    pipeline.wait_exit(Duration::from_secs(20));
    let noticed = wait_until(Duration::from_secs(10), || {
        screen = tmux.screen();
        screen.contains("disconnected, retrying")
    });
    assert!(noticed, "{screen}");
    assert!(!exit_file.exists(), "top kept running");

    tmux.run(&["send-keys", "-t", "top", "q"]);
    let exited = wait_until(Duration::from_secs(10), || exit_file.exists());
    assert!(exited, "top did not quit on q:\n{}", tmux.screen());
    let code = std::fs::read_to_string(&exit_file).unwrap();
    assert_eq!(code.trim(), "0");
}

/// Run `fbpixel tap ARGS` against `api_port` while posting events to `port` until it exits.
fn tap_while_posting(port: u16, args: &[&str]) -> Proc {
    let mut tap = Proc::spawn(args, &[], None);
    let mut n = 0;
    let exited = wait_until(Duration::from_secs(20), || {
        n += 1;
        post(port, &[], event(&format!("t{n}")).as_bytes());
        std::thread::sleep(Duration::from_millis(50));
        tap.wait_timeout(Duration::ZERO).is_some()
    });
    assert!(
        exited,
        "tap did not stop at --limit; stderr:\n{}",
        tap.stderr()
    );
    tap
}

#[test]
fn tap_prints_events_of_the_named_component_with_customer_information_masked_unless_raw() {
    let graph = GraphStandin::strict();
    let (port, api_port) = (free_port(), free_port());
    let _pipeline = pipeline(&graph, port, api_port);
    let url = format!("http://127.0.0.1:{api_port}");

    let mut tap = tap_while_posting(
        port,
        &[
            "tap",
            "--url",
            &url,
            "--outputs-of",
            "web",
            "--limit",
            "3",
            "--rate",
            "1000",
        ],
    );
    let status = tap.wait_exit(Duration::ZERO);
    assert!(status.success(), "{}", tap.stderr());
    let stdout = tap.stdout();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in &lines {
        assert_eq!(line["component_id"], "web");
        assert_eq!(line["component_kind"], "source");
        assert_eq!(line["component_type"], "http_server");
        let event = &line["event"];
        assert_eq!(event["context"]["traits"]["email"], "***", "{line}");
        assert_eq!(event["properties"]["phone"], "***", "{line}");
        assert_eq!(event["context"]["ip"], "***", "{line}");
        assert_eq!(event["userId"], "***", "{line}");
        assert_eq!(
            event["event"], "Order Completed",
            "what is not personal stays"
        );
        assert_eq!(event["properties"]["revenue"], 12.5);
    }
    for raw in [EMAIL, PHONE, "203.0.113.9"] {
        assert!(!stdout.contains(raw), "{raw} leaked: {stdout}");
    }
    assert!(
        tap.stderr()
            .contains("[tap] Pattern 'web' successfully matched."),
        "{}",
        tap.stderr()
    );

    let mut raw = tap_while_posting(
        port,
        &[
            "tap",
            "--url",
            &url,
            "--outputs-of",
            "web",
            "--limit",
            "1",
            "--raw",
        ],
    );
    assert!(raw.wait_exit(Duration::ZERO).success(), "{}", raw.stderr());
    let stdout = raw.stdout();
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        line["event"]["context"]["traits"]["email"], EMAIL,
        "{stdout}"
    );
    assert_eq!(line["event"]["properties"]["phone"], PHONE, "{stdout}");
}

#[test]
fn tap_names_the_problem_when_the_api_cannot_be_reached_or_has_none() {
    let port = free_port();
    let mut tap = Proc::spawn(
        &["tap", "--url", &format!("http://127.0.0.1:{port}")],
        &[],
        None,
    );
    assert_eq!(tap.wait_exit(Duration::from_secs(10)).code(), Some(1));
    assert!(
        tap.stderr()
            .contains(&format!("http://127.0.0.1:{port}/tap?")),
        "{}",
        tap.stderr()
    );

    let config = temp_file(
        "no-api.toml",
        "[sources.in]\ntype = \"stdin\"\n[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\n",
    );
    let mut top = Proc::spawn(&["top", "--config", config.to_str().unwrap()], &[], None);
    assert_eq!(top.wait_exit(Duration::from_secs(10)).code(), Some(1));
    assert!(
        top.stderr()
            .contains("the config has no enabled [api] table"),
        "{}",
        top.stderr()
    );
}
