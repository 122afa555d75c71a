//! `fbpixel map` as a user meets it: config problems, sink selection, the environment.

use crate::support;

const EVENT: &str = r#"{"type":"track","event":"Signed Up","userId":"u1","timestamp":"2024-06-15T11:00:00Z","properties":{"action_source":"system_generated"}}"#;

fn map(config: &str, extra_args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let path = support::temp_file("config.toml", config);
    let mut args = vec![
        "map",
        "--config",
        path.to_str().unwrap(),
        "--now",
        "2024-06-15T12:00:00Z",
    ];
    args.extend_from_slice(extra_args);
    let output = support::fbpixel(&args, EVENT.as_bytes(), env);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

const SOURCE: &str = "[sources.in]\ntype = \"stdin\"\n";

fn sink(id: &str, extra: &str) -> String {
    format!(
        "[sinks.{id}]\ntype = \"facebook_pixel_server_side\"\ninputs = [\"in\"]\npixel_id = \"1\"\n{extra}\n"
    )
}

#[test]
fn maps_with_a_valid_config() {
    let (code, stdout, stderr) = map(&format!("{SOURCE}{}", sink("fb", "")), &[], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with(r#"{"event_name":"Signed Up","event_time":1718449200,"#),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 mapped, 0 skipped, 0 rejected"),
        "{stderr}"
    );
}

#[test]
fn every_invalid_setting_is_reported_naming_its_key() {
    let config = format!(
        "{SOURCE}{}",
        sink(
            "fb",
            "default_currency = \"XXX1\"\nstandard_events = { \"A\" = \"Buy\" }"
        )
    );
    let (code, stdout, stderr) = map(&config, &[], &[]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(stderr.contains("sinks.fb.default_currency:"), "{stderr}");
    assert!(
        stderr.contains("sinks.fb.standard_events.\"A\":"),
        "{stderr}"
    );
}

#[test]
fn unknown_keys_name_the_component() {
    let (code, _, stderr) = map(
        &format!("{SOURCE}{}", sink("fb", "pixelid = \"2\"")),
        &[],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("sinks.fb") && stderr.contains("pixelid"),
        "{stderr}"
    );
}

#[test]
fn several_sinks_need_the_sink_flag() {
    let config = format!(
        "{SOURCE}{}{}",
        sink("one", ""),
        sink("two", "page_view = true")
    );
    let (code, _, stderr) = map(&config, &[], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--sink") && stderr.contains("one, two"),
        "{stderr}"
    );
    let (code, stdout, _) = map(&config, &["--sink", "two"], &[]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 1);
    let (code, _, stderr) = map(&config, &["--sink", "three"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("there is no sink `three`"), "{stderr}");
}

#[test]
fn missing_environment_variables_are_empty_with_a_warning_and_secrets_never_print() {
    let config = format!(
        "{SOURCE}{}",
        sink(
            "fb",
            "access_token = \"${FB_TOKEN}\"\napp_secret = \"${FB_SECRET}\""
        )
    );
    let (code, _, stderr) = map(&config, &[], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("FB_TOKEN") && stderr.contains("not set"),
        "{stderr}"
    );
    let (code, stdout, stderr) = map(
        &config,
        &[],
        &[("FB_TOKEN", "EAAB-very-secret"), ("FB_SECRET", "s3cr3t")],
    );
    assert_eq!(code, 0);
    assert!(!stdout.contains("very-secret") && !stderr.contains("very-secret"));
    assert!(!stderr.contains("s3cr3t"));
}

#[test]
fn a_bad_clock_is_a_usage_error() {
    let path = support::temp_file("clock.toml", &format!("{SOURCE}{}", sink("fb", "")));
    let output = support::fbpixel(
        &[
            "map",
            "--config",
            path.to_str().unwrap(),
            "--now",
            "yesterday",
        ],
        b"",
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("RFC 3339"));
}

#[test]
fn an_unreadable_config_names_the_file() {
    let output = support::fbpixel(&["map", "--config", "/nonexistent/fbpixel.toml"], b"", &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/fbpixel.toml"));
}

#[test]
fn with_enrichment_earlier_lines_enrich_later_ones_without_touching_the_store() {
    let dir = support::temp_dir("map-enrichment");
    let config = format!(
        "data_dir = \"{}\"\n{SOURCE}{}",
        dir.display(),
        sink("fb", "enrichment = { enabled = true, store = \"disk\" }")
    );
    let path = support::temp_file("config.toml", &config);
    let identify = r#"{"type":"identify","userId":"u1","traits":{"email":"Jane@Example.com"}}"#;
    let input = format!("{identify}\n{EVENT}\n");
    let output = support::fbpixel(
        &[
            "map",
            "--config",
            path.to_str().unwrap(),
            "--now",
            "2024-06-15T12:00:00Z",
        ],
        input.as_bytes(),
        &[],
    );
    let (stdout, stderr) = (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    );
    assert!(output.status.success(), "{stderr}");
    let event: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    use sha2::Digest;
    let email = hex::encode(sha2::Sha256::digest(b"jane@example.com"));
    assert_eq!(event["user_data"]["em"], serde_json::json!([email]));
    assert!(
        stderr.contains("1 mapped, 1 skipped, 0 rejected"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 enriched from earlier messages"),
        "{stderr}"
    );
    assert!(!dir.join("enrichment").exists(), "a dry run opens no store");
}
