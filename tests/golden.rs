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
    let output = support::fbpixel(
        &["map", "--config", config.to_str().unwrap(), "--now", NOW],
        &input,
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
