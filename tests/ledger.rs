//! The delivery ledger through the binary: a run with good, skipped, rejected and poison
//! events, then `fbpixel explain` and `fbpixel reconcile` over what it kept; the file holds no
//! raw personal data, survives a restart and is pruned by age.

use std::path::Path;
use std::time::Duration;

use crate::support::graph::{GraphStandin, Reply, invalid_parameter};
use crate::support::{self, Proc, temp_dir, track_event};

const EMAIL: &str = "jane.doe@example.com";
const PHONE_DIGITS: &str = "6505550100";

fn config(endpoint: &str, data_dir: &Path, extra: &str) -> String {
    format!(
        r#"
data_dir = "{}"

[sources.in]
type = "stdin"

[sinks.facebook]
type = "facebook_pixel_server_side"
inputs = ["in"]
pixel_id = "123"
access_token = "TOKEN"
endpoint = "{endpoint}"
batch.timeout_secs = 0.05
request.retry_initial_backoff_secs = 0.05
dead_letter.path = "{}"
{extra}
"#,
        data_dir.display(),
        data_dir.join("dead.ndjson").display()
    )
}

/// Meta's answer: the poison event's request is refused as Meta refuses an invalid parameter,
/// every other is accepted with a trace id.
fn graph() -> GraphStandin {
    GraphStandin::start(|_, r| -> Reply {
        let ids = r.event_ids();
        if ids.iter().any(|id| id.starts_with("poison")) {
            let mut refusal = invalid_parameter("$['data'][0]['custom_data']", "is invalid");
            refusal["error"]["fbtrace_id"] = "TRACE-BAD".into();
            return (400, refusal).into();
        }
        (
            200,
            serde_json::json!({"events_received": ids.len(), "messages": [], "fbtrace_id": "TRACE-OK"}),
        )
            .into()
    })
}

fn good(id: &str, order: &str) -> String {
    track_event(id, EMAIL)
        .replace(
            r#""properties":{"revenue""#,
            &format!(r#""properties":{{"order_id":"{order}","revenue""#),
        )
        .replace(
            r#""traits":{"email""#,
            r#""traits":{"phone":"+1 650 555 0100","email""#,
        )
}

fn input() -> String {
    [
        good("good-1", "order-1"),
        format!(r#"{{"type":"identify","messageId":"skip-1","userId":"u-1","traits":{{"email":"{EMAIL}"}}}}"#),
        track_event("bad-currency", EMAIL).replace("\"USD\"", "\"XYZ\""),
        track_event("poison-1", EMAIL),
    ]
    .join("\n")
}

fn run(config: &Path, input: &str) {
    let mut proc = Proc::spawn(
        &["--config", config.to_str().unwrap()],
        &[],
        Some(input.as_bytes()),
    );
    assert!(
        proc.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        proc.stderr()
    );
}

fn explain(config: &Path, id: &str, json: bool) -> (bool, String) {
    let mut args = vec!["explain", "--config", config.to_str().unwrap(), id];
    if json {
        args.push("--json");
    }
    let out = support::fbpixel(&args, b"", &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // Found (0) or never seen (1); anything else is the command failing.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn explain_tells_what_became_of_each_message_with_meta_s_trace_id() {
    let graph = graph();
    let dir = temp_dir("ledger-explain");
    let config = support::temp_file("ledger.toml", &config(&graph.endpoint, &dir, ""));
    run(&config, &input());

    let (found, good) = explain(&config, "good-1", false);
    assert!(found, "{good}");
    assert!(good.contains("good-1: delivered to pixel 123"), "{good}");
    assert!(good.contains("fbtrace_id TRACE-OK"), "{good}");
    assert!(good.contains("order_id order-1"), "{good}");
    let present = good.lines().find(|l| l.contains("keys present:")).unwrap();
    for key in ["em", "ph", "client_ip_address", "client_user_agent"] {
        assert!(present.contains(key), "{present}");
    }
    assert!(good.contains("\"event_name\": \"Purchase\""), "{good}");
    // The order id finds the same event.
    let (_, by_order) = explain(&config, "order-1", false);
    assert!(by_order.contains("event_id good-1"), "{by_order}");

    let (_, skipped) = explain(&config, "skip-1", false);
    assert!(skipped.contains("skip-1: skipped"), "{skipped}");
    assert!(skipped.contains("identify"), "{skipped}");

    let (_, rejected) = explain(&config, "bad-currency", false);
    assert!(
        rejected.contains("dead-lettered") && rejected.contains("mapping stage"),
        "{rejected}"
    );
    assert!(rejected.contains("currency"), "{rejected}");

    let (_, poison) = explain(&config, "poison-1", false);
    assert!(
        poison.contains("dead-lettered") && poison.contains("delivery stage"),
        "{poison}"
    );
    assert!(poison.contains("code 100, subcode"), "{poison}");
    assert!(poison.contains("fbtrace_id TRACE-BAD"), "{poison}");

    let (found, never) = explain(&config, "never-1", false);
    assert!(!found, "an unknown id must exit 1");
    assert!(
        never.contains("never-1: never seen by sinks.facebook"),
        "{never}"
    );

    let (_, json) = explain(&config, "good-1", true);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json[0]["outcome"], "delivered");
    assert_eq!(json[0]["fbtrace_id"], "TRACE-OK");
    assert_eq!(json[0]["events_received"], 1);
    assert_eq!(json[0]["sent"]["event_id"], "good-1");

    // Hashes and key names only: no raw email, phone, IP or user agent in the file.
    let raw = std::fs::read(dir.join("ledger/facebook/ledger.redb")).unwrap();
    for secret in [EMAIL, PHONE_DIGITS, "203.0.113.9", "Mozilla/5.0"] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is in the ledger"
        );
    }
}

#[test]
fn reconcile_counts_each_id_and_exits_1_for_one_never_seen() {
    let graph = graph();
    let dir = temp_dir("ledger-reconcile");
    let config = support::temp_file("reconcile.toml", &config(&graph.endpoint, &dir, ""));
    run(&config, &input());
    let ids = support::temp_file(
        "orders.csv",
        "order_number,order_id,total\n1,order-1,12.50\n2,order-404,3.00\n",
    );
    let out = support::fbpixel(
        &[
            "reconcile",
            "--config",
            config.to_str().unwrap(),
            "--ids",
            ids.to_str().unwrap(),
        ],
        b"",
        &[],
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(table.contains("never seen (not in the ledger"), "{table}");
    assert!(table.contains("order-404"), "{table}");

    let list = support::temp_file(
        "ids.txt",
        "good-1\nskip-1\nbad-currency\npoison-1\nnever-1\n",
    );
    let out = support::fbpixel(
        &[
            "reconcile",
            "--config",
            config.to_str().unwrap(),
            "--ids",
            list.to_str().unwrap(),
            "--json",
        ],
        b"",
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let counts = &json["counts"];
    assert_eq!(counts["delivered"], 1, "{json}");
    assert_eq!(counts["skipped"], 1, "{json}");
    assert_eq!(counts["dead_lettered"], 2, "{json}");
    assert_eq!(counts["never_seen"], 1, "{json}");

    let all_there = support::temp_file("found.txt", "good-1\norder-1\n");
    let out = support::fbpixel(
        &[
            "reconcile",
            "--config",
            config.to_str().unwrap(),
            "--ids",
            all_there.to_str().unwrap(),
        ],
        b"",
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_ledger_survives_a_restart_and_is_pruned_by_age() {
    let graph = graph();
    let dir = temp_dir("ledger-restart");
    let restart = support::temp_file("restart.toml", &config(&graph.endpoint, &dir, ""));
    run(&restart, &good("first", "o-first"));
    run(&restart, &good("second", "o-second"));
    assert!(explain(&restart, "first", false).0, "lost at restart");
    assert!(explain(&restart, "second", false).0);

    let dir = temp_dir("ledger-prune");
    let config = support::temp_file(
        "prune.toml",
        &config(&graph.endpoint, &dir, "ledger.retention_secs = 1"),
    );
    run(&config, &good("old", "o-old"));
    assert!(explain(&config, "old", false).0);
    std::thread::sleep(Duration::from_millis(1500));
    run(&config, &good("new", "o-new"));
    assert!(!explain(&config, "old", false).0, "kept past its retention");
    assert!(explain(&config, "new", false).0);
}

#[test]
fn with_nats_kv_two_instances_keep_one_ledger_that_explain_and_reconcile_read() {
    let Some(nats) = crate::support::nats::NatsServer::start("ledger nats_kv", &[]) else {
        return;
    };
    let graph = graph();
    let shared = format!("ledger.store = \"nats_kv\"\nledger.url = \"{}\"", nats.url);
    let a_dir = temp_dir("ledger-kv-a");
    let b_dir = temp_dir("ledger-kv-b");
    let a = support::temp_file("kv-a.toml", &config(&graph.endpoint, &a_dir, &shared));
    let b = support::temp_file("kv-b.toml", &config(&graph.endpoint, &b_dir, &shared));
    // Two instances, each with its own data_dir, one bucket.
    let mut first = Proc::spawn(
        &["--config", a.to_str().unwrap()],
        &[],
        Some(good("kv-a", "o-kv-a").as_bytes()),
    );
    let input = [good("kv-b", "o-kv-b"), track_event("poison-kv", EMAIL)].join("\n");
    let mut second = Proc::spawn(
        &["--config", b.to_str().unwrap()],
        &[],
        Some(input.as_bytes()),
    );
    for p in [&mut first, &mut second] {
        assert!(
            p.wait_exit(Duration::from_secs(30)).success(),
            "{}",
            p.stderr()
        );
    }
    assert!(
        !a_dir.join("ledger").exists(),
        "nats_kv wrote a local ledger"
    );

    let (found, a_seen) = explain(&b, "kv-a", false);
    assert!(
        found && a_seen.contains("delivered to pixel 123"),
        "{a_seen}"
    );
    assert!(a_seen.contains("fbtrace_id TRACE-OK"), "{a_seen}");
    let (_, by_order) = explain(&a, "o-kv-b", false);
    assert!(by_order.contains("event_id kv-b"), "{by_order}");
    let (_, poison) = explain(&a, "poison-kv", false);
    assert!(
        poison.contains("dead-lettered") && poison.contains("code 100"),
        "{poison}"
    );

    let ids = support::temp_file("kv-ids.txt", "kv-a\no-kv-b\nkv-never\n");
    let out = support::fbpixel(
        &[
            "reconcile",
            "--config",
            a.to_str().unwrap(),
            "--ids",
            ids.to_str().unwrap(),
            "--json",
        ],
        b"",
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["counts"]["delivered"], 2, "{json}");
    assert_eq!(json["counts"]["never_seen"], 1, "{json}");
}
