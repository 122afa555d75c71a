//! Golden tests: Segment messages in, Conversions API events out, through `fbpixel map`.
//!
//! Each case under `tests/golden/<case>/` holds `config.toml` and `input.ndjson`, and the
//! expected `stdout.ndjson` and `stderr.txt`. Regenerate with `UPDATE_GOLDEN=1 cargo test
//! --test integration golden::`, then read the diff: these files are the contract.

use crate::support;

use std::path::Path;

const NOW: &str = "2024-06-15T12:00:00Z";

fn check_case(case: &str) {
    let dir = support::root().join("tests/golden").join(case);
    check(&dir, &dir.join("config.toml"), &dir.join("input.ndjson"));
}

fn check(expected_dir: &Path, config: &Path, input: &Path) {
    let input = std::fs::read(input).unwrap();
    check_input(expected_dir, config, &input, NOW);
}

fn check_input(expected_dir: &Path, config: &Path, input: &[u8], now: &str) {
    let output = support::fbpixel(
        &["map", "--config", config.to_str().unwrap(), "--now", now],
        input,
        &[],
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "fbpixel map failed: {stderr}");
    support::assert_golden(
        &expected_dir.join("stdout.ndjson"),
        &String::from_utf8(output.stdout).unwrap(),
    );
    support::assert_golden(&expected_dir.join("stderr.txt"), &stderr);
}

/// The README's quick start: the bundled examples.
#[test]
fn bundled_examples() {
    let root = support::root();
    check(
        &root.join("tests/golden/examples"),
        &root.join("examples/pipeline.toml"),
        &root.join("examples/segment-events.ndjson"),
    );
}

#[test]
fn ecommerce_events() {
    check_case("ecommerce");
}

#[test]
fn settings() {
    check_case("settings");
}

#[test]
fn rejections_and_skips() {
    check_case("rejections");
}

#[test]
fn web_event_fields() {
    check_case("web");
}

/// Messages in the exact shapes Segment's iOS, Android and React Native libraries send
/// (`tests/data/segment-mobile/`, with the sources they were read from), as app events; and
/// value updates, CRM stages and business messaging after them (`extra.ndjson`).
#[test]
fn mobile_libraries_offline_crm_messaging_and_value_updates() {
    let root = support::root();
    let fixtures = root.join("tests/data/segment-mobile");
    let mut input = Vec::new();
    for name in [
        "ios-track.json",
        "ios-screen.json",
        "android-track.json",
        "android-screen.json",
        "react-native-track.json",
    ] {
        let text = std::fs::read_to_string(fixtures.join(name)).unwrap();
        let message: serde_json::Value = serde_json::from_str(&text).unwrap();
        input.extend(serde_json::to_vec(&message).unwrap());
        input.push(b'\n');
    }
    let dir = root.join("tests/golden/beyond_web");
    input.extend(std::fs::read(dir.join("extra.ndjson")).unwrap());
    check_input(
        &dir,
        &dir.join("config.toml"),
        &input,
        "2026-03-14T18:30:00Z",
    );
}
