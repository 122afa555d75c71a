//! The pipeline runtime as a user meets it: the real binary, real configs, real pipes, files,
//! signals and HTTP on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::support::{Proc, free_port, get, gzip, metric, post, temp_dir, temp_file, wait_until};

/// How long a pipeline fed from stdin may take to finish.
const EXIT_LIMIT: Duration = Duration::from_secs(30);

/// `path` as a TOML string literal.
fn toml_str(path: &Path) -> String {
    toml::Value::String(path.to_str().expect("a UTF-8 path").to_owned()).to_string()
}

/// Writes `text` as a config file and returns its path as an argument.
fn config(text: &str) -> String {
    temp_file("pipeline.toml", text)
        .to_str()
        .expect("a UTF-8 path")
        .to_owned()
}

/// The lines of a file the sinks wrote.
fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Runs `fbpixel --config CONFIG` on `stdin` to its end; returns the exit status and the process
/// (for its complete output).
fn run_stdin(config: &str, stdin: &str, env: &[(&str, &str)]) -> (ExitStatus, Proc) {
    let mut p = Proc::spawn(&["--config", config], env, Some(stdin.as_bytes()));
    let status = p.wait_exit(EXIT_LIMIT);
    (status, p)
}

/// Runs `fbpixel validate ARGS…` (with its healthchecks); returns (exit code, stdout, stderr).
fn validate(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut all = vec!["validate"];
    all.extend_from_slice(args);
    let mut p = Proc::spawn(&all, env, None);
    let status = p.wait_exit(EXIT_LIMIT);
    (status.code().unwrap_or(-1), p.stdout(), p.stderr())
}

/// Starts a pipeline from `config_text` (plus `extra_args`) and waits until
/// every one of `ports` accepts connections.
fn serve(config_text: &str, extra_args: &[&str], ports: &[u16]) -> Proc {
    let path = config(config_text);
    let mut args = vec!["--config", path.as_str()];
    args.extend_from_slice(extra_args);
    let mut p = Proc::spawn(&args, &[], None);
    for &port in ports {
        p.wait_for_port(port);
    }
    p
}

/// An `http_server` source `web` on `port` (with `options`) feeding a `console` sink `out`.
fn http_to_console(port: u16, options: &str) -> Proc {
    serve(
        &format!(
            r#"
[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"
{options}

[sinks.out]
type = "console"
inputs = ["web"]
"#
        ),
        &[],
        &[port],
    )
}

// ---------------------------------------------------------------------------------------------
// stdin → remap → file
// ---------------------------------------------------------------------------------------------

#[test]
fn stdin_through_remap_to_file_writes_the_transformed_valid_lines_in_order_and_names_bad_lines() {
    let dir = temp_dir("remap-file");
    let out = dir.join("out.ndjson");
    let config = config(&format!(
        r#"
[sources.in]
type = "stdin"

[transforms.tidy]
type = "remap"
inputs = ["in"]
source = ".properties.fbp = .context.cookies._fbp || .properties.fbp"

[sinks.out]
type = "file"
inputs = ["tidy"]
path = {}
"#,
        toml_str(&out)
    ));
    let input = [
        r#"{"context":{"cookies":{"_fbp":"fb.1.1"}},"properties":{"x":1}}"#,
        "not json",
        r#"{"properties":{"fbp":"fb.2"}}"#,
        r#"{"type":"track","context":{"cookies":{"_fbp":"fb.3"}}}"#,
        r#"[{"type":"track"}]"#,
    ]
    .join("\n")
        + "\n";

    let (status, p) = run_stdin(&config, &input, &[]);
    let stderr = p.stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    // VRL writes objects back with sorted keys.
    assert_eq!(
        read_lines(&out),
        [
            r#"{"context":{"cookies":{"_fbp":"fb.1.1"}},"properties":{"fbp":"fb.1.1","x":1}}"#,
            r#"{"properties":{"fbp":"fb.2"}}"#,
            r#"{"context":{"cookies":{"_fbp":"fb.3"}},"properties":{"fbp":"fb.3"},"type":"track"}"#,
        ]
    );
    assert!(stderr.contains("line 2: invalid JSON"), "{stderr}");
    assert!(
        stderr.contains("line 5: expected a JSON object, found an array"),
        "{stderr}"
    );
    for good in ["line 1:", "line 3:", "line 4:"] {
        assert!(!stderr.contains(good), "{good} reported:\n{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// http_server → filter → console
// ---------------------------------------------------------------------------------------------

#[test]
fn http_server_through_filter_to_console_prints_only_track_events_for_json_ndjson_and_gzip_bodies()
{
    let port = free_port();
    let mut p = serve(
        &format!(
            r#"
[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"

[transforms.tracks]
type = "filter"
inputs = ["web"]
condition = '.type == "track"'

[sinks.out]
type = "console"
inputs = ["tracks"]
"#
        ),
        &[],
        &[port],
    );
    let lines = |p: &Proc| p.stdout().lines().count();

    let array = br#"[{"type":"track","n":1},{"type":"page","n":2},{"type":"track","n":3}]"#;
    let r = post(port, &[("Content-Type", "application/json")], array);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        wait_until(Duration::from_secs(10), || lines(&p) >= 2),
        "stdout: {:?}\nstderr: {}",
        p.stdout(),
        p.stderr()
    );
    assert_eq!(
        p.stdout(),
        "{\"type\":\"track\",\"n\":1}\n{\"type\":\"track\",\"n\":3}\n"
    );

    let ndjson = b"{\"type\":\"page\",\"n\":4}\n{\"type\":\"track\",\"n\":5}\n";
    let r = post(port, &[("Content-Type", "application/x-ndjson")], ndjson);
    assert_eq!(r.status, 200, "{}", r.text());

    let gzipped = gzip(br#"[{"type":"track","n":6},{"type":"identify","n":7}]"#);
    let r = post(
        port,
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &gzipped,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        wait_until(Duration::from_secs(10), || lines(&p) >= 4),
        "stdout: {:?}\nstderr: {}",
        p.stdout(),
        p.stderr()
    );

    p.signal("TERM");
    let status = p.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
    assert_eq!(
        p.stdout(),
        "{\"type\":\"track\",\"n\":1}\n{\"type\":\"track\",\"n\":3}\n\
         {\"type\":\"track\",\"n\":5}\n{\"type\":\"track\",\"n\":6}\n"
    );
}

// ---------------------------------------------------------------------------------------------
// http_server: what it refuses
// ---------------------------------------------------------------------------------------------

#[test]
fn http_server_answers_invalid_json_with_400_naming_the_position_and_takes_none_of_the_body() {
    let port = free_port();
    let mut p = http_to_console(port, "");

    let r = post(port, &[], br#"{"type":"track","n":1,}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("invalid JSON"), "{}", r.text());
    assert!(r.text().contains("line 1 column 23"), "{}", r.text());

    // NDJSON whose second line is broken: the position names line 2, and the valid first line
    // is not taken either.
    let r = post(port, &[], b"{\"type\":\"track\",\"n\":1}\n{\"a\":}\n");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("line 2 column 6"), "{}", r.text());

    let r = post(port, &[], br#"{"type":"track","n":2}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    p.signal("TERM");
    assert_eq!(
        p.wait_exit(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        p.stderr()
    );
    assert_eq!(p.stdout(), "{\"type\":\"track\",\"n\":2}\n");
}

#[test]
fn http_server_answers_a_body_over_max_body_bytes_with_413_before_and_after_gzip() {
    let port = free_port();
    let mut p = http_to_console(port, "max_body_bytes = 64");

    let small = br#"{"n":1}"#;
    let r = post(port, &[], small);
    assert_eq!(r.status, 200, "{}", r.text());

    let large = format!(r#"{{"n":2,"pad":"{}"}}"#, "x".repeat(100));
    let r = post(port, &[], large.as_bytes());
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.text().contains("max_body_bytes (64 bytes)"),
        "{}",
        r.text()
    );

    // Small on the wire, too large once inflated.
    let bomb = format!(r#"{{"n":3,"pad":"{}"}}"#, "x".repeat(1000));
    let compressed = gzip(bomb.as_bytes());
    assert!(
        compressed.len() < 64,
        "{} bytes compressed",
        compressed.len()
    );
    let r = post(port, &[("Content-Encoding", "gzip")], &compressed);
    assert_eq!(r.status, 413, "{}", r.text());

    p.signal("TERM");
    p.wait_exit(Duration::from_secs(15));
    assert_eq!(p.stdout(), "{\"n\":1}\n", "only the small body was taken");
}

#[test]
fn http_server_with_basic_auth_answers_401_without_or_with_wrong_credentials_and_200_with_right_ones()
 {
    let port = free_port();
    let mut p = http_to_console(
        port,
        r#"auth = { strategy = "basic", username = "u", password = "p" }"#,
    );

    let r = post(port, &[], br#"{"n":1}"#);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), Some("Basic"));
    // base64("u:wrong") and base64("x:p")
    for wrong in ["Basic dTp3cm9uZw==", "Basic eDpw", "Bearer p"] {
        let r = post(port, &[("Authorization", wrong)], br#"{"n":2}"#);
        assert_eq!(r.status, 401, "{wrong}: {}", r.text());
    }
    // base64("u:p")
    let r = post(port, &[("Authorization", "Basic dTpw")], br#"{"n":3}"#);
    assert_eq!(r.status, 200, "{}", r.text());

    p.signal("TERM");
    p.wait_exit(Duration::from_secs(15));
    assert_eq!(
        p.stdout(),
        "{\"n\":3}\n",
        "only the authenticated event was taken"
    );
}

#[test]
fn http_server_with_bearer_auth_answers_401_without_or_with_a_wrong_token_and_200_with_the_right_one()
 {
    let port = free_port();
    let mut p = http_to_console(port, r#"auth = { strategy = "bearer", token = "s3cret" }"#);

    let r = post(port, &[], br#"{"n":1}"#);
    assert_eq!(r.status, 401, "{}", r.text());
    for wrong in ["Bearer s3cre", "Bearer s3cret2", "Bearer S3CRET", "s3cret"] {
        let r = post(port, &[("Authorization", wrong)], br#"{"n":2}"#);
        assert_eq!(r.status, 401, "{wrong}: {}", r.text());
    }
    let r = post(port, &[("Authorization", "Bearer s3cret")], br#"{"n":3}"#);
    assert_eq!(r.status, 200, "{}", r.text());

    p.signal("TERM");
    p.wait_exit(Duration::from_secs(15));
    assert_eq!(
        p.stdout(),
        "{\"n\":3}\n",
        "only the authenticated event was taken"
    );
}

// ---------------------------------------------------------------------------------------------
// Fan-out
// ---------------------------------------------------------------------------------------------

#[test]
fn one_source_read_by_two_file_sinks_delivers_every_event_to_both() {
    let dir = temp_dir("fanout");
    let (a, b) = (dir.join("a.ndjson"), dir.join("b.ndjson"));
    let config = config(&format!(
        r#"
[sources.in]
type = "stdin"

[sinks.a]
type = "file"
inputs = ["in"]
path = {}

[sinks.b]
type = "file"
inputs = ["in"]
path = {}
"#,
        toml_str(&a),
        toml_str(&b)
    ));
    let events: Vec<String> = (0..1500)
        .map(|n| format!(r#"{{"type":"track","n":{n}}}"#))
        .collect();
    let (status, p) = run_stdin(&config, &(events.join("\n") + "\n"), &[]);
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
    assert_eq!(read_lines(&a), events, "sink a");
    assert_eq!(read_lines(&b), events, "sink b");
}

// ---------------------------------------------------------------------------------------------
// VRL errors
// ---------------------------------------------------------------------------------------------

const FALLIBLE_REMAP: &str = r#"
[sources.in]
type = "stdin"

[transforms.tidy]
type = "remap"
inputs = ["in"]
source = ".a = to_int(.b)"

[sinks.out]
type = "console"
inputs = ["tidy"]
"#;

#[test]
fn validate_prints_the_rendered_vrl_diagnostic_of_a_program_that_does_not_compile() {
    let config = config(FALLIBLE_REMAP);
    let (code, stdout, stderr) = validate(&[&config], &[]);
    assert_ne!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("transforms.tidy: invalid VRL program"),
        "{stdout}"
    );
    assert!(
        stdout.contains("error[E103]: unhandled fallible assignment"),
        "{stdout}"
    );
    assert!(stdout.contains(".a = to_int(.b)"), "{stdout}");
    assert!(stdout.trim_end().ends_with("Failed"), "{stdout}");
}

#[test]
fn running_a_program_that_does_not_compile_fails_with_exit_1_and_the_vrl_diagnostic() {
    let config = config(FALLIBLE_REMAP);
    let (status, p) = run_stdin(&config, "{\"b\":\"1\"}\n", &[]);
    let stderr = p.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("transforms.tidy: invalid VRL program"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error[E103]: unhandled fallible assignment"),
        "{stderr}"
    );
    assert_eq!(p.stdout(), "", "nothing ran");
}

#[test]
fn a_vrl_runtime_error_without_drop_on_error_passes_the_event_on_unchanged() {
    let dir = temp_dir("vrl-runtime-error");
    let out = dir.join("out.ndjson");
    let config = config(&format!(
        r#"
[sources.in]
type = "stdin"

[transforms.tidy]
type = "remap"
inputs = ["in"]
drop_on_error = false
source = '''
.changed = true
.n = parse_int!(.s)
'''

[sinks.out]
type = "file"
inputs = ["tidy"]
path = {}
"#,
        toml_str(&out)
    ));
    let (status, p) = run_stdin(&config, "{\"k\":1,\"s\":\"x\"}\n{\"s\":\"7\"}\n", &[]);
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
    assert_eq!(
        read_lines(&out),
        [r#"{"k":1,"s":"x"}"#, r#"{"changed":true,"n":7,"s":"7"}"#]
    );
    assert!(p.stderr().contains("VRL runtime error"), "{}", p.stderr());
}

// ---------------------------------------------------------------------------------------------
// Environment interpolation
// ---------------------------------------------------------------------------------------------

#[test]
fn env_variables_and_defaults_are_substituted_into_string_values() {
    let dir = temp_dir("env");
    let named = dir.join("named.ndjson");
    let config = config(
        r#"
[sources.in]
type = "stdin"

[sinks.named]
type = "file"
inputs = ["in"]
path = "${OUT_PATH}"

[sinks.defaulted]
type = "file"
inputs = ["in"]
path = "${OUT_DIR}/${NAME:-fallback}.ndjson"
"#,
    );
    let env = [
        ("OUT_PATH", named.to_str().unwrap()),
        ("OUT_DIR", dir.to_str().unwrap()),
    ];
    let (status, p) = run_stdin(&config, "{\"n\":1}\n", &env);
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
    assert_eq!(read_lines(&named), [r#"{"n":1}"#]);
    assert_eq!(read_lines(&dir.join("fallback.ndjson")), [r#"{"n":1}"#]);
}

#[test]
fn an_env_value_with_quotes_and_newlines_stays_one_string_and_cannot_add_a_component() {
    let dir = temp_dir("env-injection");
    let evil = dir.join("evil.ndjson");
    let legit_dir = dir.join("legit");
    let injected = format!(
        "\"\n[sinks.evil]\ntype = \"file\"\ninputs = [\"in\"]\npath = {}",
        toml_str(&evil)
    );
    let config = config(
        r#"
[sources.in]
type = "stdin"

[sinks.out]
type = "file"
inputs = ["in"]
path = "${OUT_DIR}/${X}"
"#,
    );
    let env = [("OUT_DIR", legit_dir.to_str().unwrap()), ("X", &injected)];

    // validate health-checks every sink it finds: only `out` is there.
    let (code, stdout, _) = validate(&[&config], &env);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("Health check \"sinks.out\""), "{stdout}");
    assert!(!stdout.contains("evil"), "{stdout}");

    let (status, p) = run_stdin(&config, "{\"n\":1}\n", &env);
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
    assert!(p.stderr().contains("components=2"), "{}", p.stderr());
    assert!(!evil.exists(), "the injected sink wrote {}", evil.display());
    // The whole value, quotes and newlines included, is the file name under OUT_DIR.
    let legit = PathBuf::from(format!("{}/{injected}", legit_dir.display()));
    assert_eq!(read_lines(&legit), [r#"{"n":1}"#]);
}

#[test]
fn a_required_env_variable_that_is_unset_fails_with_its_message() {
    let config = config(
        r#"
[sources.in]
type = "stdin"

[sinks.out]
type = "file"
inputs = ["in"]
path = "${MISSING:?set MISSING to the output path}"
"#,
    );
    let expected = "sinks.out.path: environment variable MISSING is not set or empty: set MISSING to the output path";

    let (status, p) = run_stdin(&config, "{\"n\":1}\n", &[]);
    assert_eq!(status.code(), Some(1), "{}", p.stderr());
    assert!(p.stderr().contains(expected), "{}", p.stderr());

    let (code, stdout, _) = validate(&[&config], &[]);
    assert_ne!(code, 0, "{stdout}");
    assert!(stdout.contains(expected), "{stdout}");
}

// ---------------------------------------------------------------------------------------------
// validate's messages
// ---------------------------------------------------------------------------------------------

/// Validates the config files `texts` together; asserts it fails and returns stdout.
fn validate_fails(texts: &[&str]) -> String {
    let files: Vec<String> = texts.iter().map(|t| config(t)).collect();
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = validate(&args, &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(!stdout.contains("Validated"), "{stdout}");
    stdout
}

const STDIN: &str = "[sources.in]\ntype = \"stdin\"\n";

#[test]
fn validate_names_an_input_that_matches_nothing() {
    let stdout = validate_fails(&[&format!(
        "{STDIN}[sinks.out]\ntype = \"console\"\ninputs = [\"nope\"]\n"
    )]);
    assert!(
        stdout.contains("sinks.out: input `nope` does not match any source or transform"),
        "{stdout}"
    );
}

#[test]
fn validate_names_an_id_defined_in_two_files_and_both_files() {
    let first = config(STDIN);
    let second = config(&format!(
        "{STDIN}[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\n"
    ));
    let (code, stdout, _) = validate(&[&first, &second], &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "duplicate component id `in`: sources.in in {first} and sources.in in {second}"
        )),
        "{stdout}"
    );
}

#[test]
fn validate_names_a_cycle_between_two_transforms() {
    let stdout = validate_fails(&[&format!(
        "{STDIN}
[transforms.a]
type = \"remap\"
inputs = [\"in\", \"b\"]
source = \".\"

[transforms.b]
type = \"remap\"
inputs = [\"a\"]
source = \".\"

[sinks.out]
type = \"console\"
inputs = [\"b\"]
"
    )]);
    assert!(
        stdout.contains("transforms form a cycle: a -> b -> a")
            || stdout.contains("transforms form a cycle: b -> a -> b"),
        "{stdout}"
    );
}

#[test]
fn validate_prints_the_vrl_diagnostic_of_a_call_to_an_undefined_function() {
    let stdout = validate_fails(&[&format!(
        "{STDIN}
[transforms.tidy]
type = \"remap\"
inputs = [\"in\"]
source = \".a = no_such_function(.b)\"

[sinks.out]
type = \"console\"
inputs = [\"tidy\"]
"
    )]);
    assert!(
        stdout.contains("transforms.tidy: invalid VRL program"),
        "{stdout}"
    );
    assert!(
        stdout.contains("error[E105]: call to undefined function"),
        "{stdout}"
    );
}

#[test]
fn validate_names_the_component_and_the_unknown_key() {
    let stdout = validate_fails(&[&format!(
        "{STDIN}[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npathh = \"x.ndjson\"\n"
    )]);
    assert!(
        stdout.contains("sinks.out: unknown field `pathh`, expected `path` or `encoding` (or `acknowledgements`, `buffer`, `healthcheck`, which every sink takes); did you mean `path`?"),
        "{stdout}"
    );
}

#[test]
fn validate_refuses_an_api_address_that_run_would_refuse() {
    let stdout = validate_fails(&[&format!(
        "[api]\naddress = \"localhost\"\n{STDIN}[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\n"
    )]);
    assert!(
        stdout.contains(
            "api.address: \"localhost\" is not an IP:port address such as 127.0.0.1:8686"
        ),
        "{stdout}"
    );
}

#[test]
fn validate_reports_every_mistake_of_a_config_in_one_run_with_suggestions() {
    let stdout = validate_fails(&[r#"
[sources.in]
type = "stdin"
max_lenght = 1000

[sinks.facebook]
type = "facebook_pixel_server_side"
inputs = ["in"]
pixel_id = "1234"
access_token = "EAAB-do-not-print-me"
limited_data_usage = true
standard_events = { "Signed Up" = "CompleteRegistraton" }
"#]);
    for expected in [
        "sources.in: unknown field `max_lenght`, expected `max_length`; did you mean `max_length`?",
        "sinks.facebook: unknown field `limited_data_usage`, expected one of ",
        "; did you mean `limited_data_use`?",
        r#"sinks.facebook: standard_events."Signed Up": "CompleteRegistraton" is not a Meta standard event; did you mean "CompleteRegistration"?"#,
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    assert_eq!(stdout.matches("  x ").count(), 3, "{stdout}");
    assert!(!stdout.contains("EAAB"), "{stdout}");
}

#[test]
fn validate_accepts_a_valid_config_and_says_validated() {
    let out = temp_dir("validate-ok").join("out.ndjson");
    let config = config(&format!(
        r#"{STDIN}
[transforms.tidy]
type = "remap"
inputs = ["in"]
source = ".seen = true"

[sinks.out]
type = "file"
inputs = ["tidy"]
path = {}
"#,
        toml_str(&out)
    ));
    let (code, stdout, stderr) = validate(&[&config], &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("√ Component configuration"), "{stdout}");
    assert!(stdout.contains("√ Health check \"sinks.out\""), "{stdout}");
    assert_eq!(stdout.lines().last(), Some("Validated"), "{stdout}");
}

// ---------------------------------------------------------------------------------------------
// Acknowledgements
// ---------------------------------------------------------------------------------------------

/// `http_server` with acknowledgements into a `blackhole` that takes 2 events per second, with an
/// `[api]` on `api_port`.
fn acknowledged_slow_pipeline(port: u16, api_port: u16, extra_args: &[&str]) -> Proc {
    serve(
        &format!(
            r#"
[api]
address = "127.0.0.1:{api_port}"

[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"
acknowledgements = true

[sinks.slow]
type = "blackhole"
inputs = ["web"]
rate = 2
print_interval_secs = 0
"#
        ),
        extra_args,
        &[port, api_port],
    )
}

fn events(n: usize) -> Vec<u8> {
    let events: Vec<String> = (0..n).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    format!("[{}]", events.join(",")).into_bytes()
}

#[test]
fn with_acknowledgements_the_reply_waits_until_the_sink_has_taken_every_event() {
    let (port, api_port) = (free_port(), free_port());
    let _p = acknowledged_slow_pipeline(port, api_port, &[]);
    // Let the sink sit idle first: idle time must not let a later burst through faster than
    // `rate`.
    std::thread::sleep(Duration::from_secs(2));

    let started = Instant::now();
    let r = post(port, &[], &events(4));
    let elapsed = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    // 4 events at 2 per second: the last passes no sooner than 1.5 s after the first.
    assert!(
        elapsed >= Duration::from_secs(1),
        "answered after {elapsed:?}, before the sink could have taken 4 events at 2/s"
    );
    let metrics = get(api_port, "/metrics").text();
    assert_eq!(
        metric(
            &metrics,
            "component_sent_events_total",
            &[("component_id", "slow")]
        ),
        Some(4.0),
        "{metrics}"
    );
}

#[test]
fn with_acknowledgements_a_shutdown_that_cancels_the_sink_answers_5xx_not_200() {
    let (port, api_port) = (free_port(), free_port());
    let mut p =
        acknowledged_slow_pipeline(port, api_port, &["--graceful-shutdown-limit-secs", "1"]);
    // 20 events at 2 per second take 10 s, far beyond the 1 s grace period.
    let request = std::thread::spawn(move || post(port, &[], &events(20)));
    let received = || {
        let metrics = get(api_port, "/metrics").text();
        metric(
            &metrics,
            "component_received_events_total",
            &[("component_id", "web")],
        ) == Some(20.0)
    };
    assert!(
        wait_until(Duration::from_secs(20), received),
        "the source never received the events; stderr:\n{}",
        p.stderr()
    );
    std::thread::sleep(Duration::from_millis(300));
    p.signal("TERM");

    let r = request.join().expect("the request thread");
    assert!(
        matches!(r.status, 500 | 503),
        "status {}: {}",
        r.status,
        r.text()
    );
    let status = p
        .wait_timeout(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("still running 15s after SIGTERM:\n{}", p.stderr()));
    assert_eq!(status.code(), Some(1), "{}", p.stderr());
    assert!(
        p.stderr()
            .contains("did not finish within --graceful-shutdown-limit-secs=1"),
        "{}",
        p.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// [api]
// ---------------------------------------------------------------------------------------------

#[test]
fn api_reports_health_and_counts_events_per_component() {
    let (port, api_port) = (free_port(), free_port());
    let mut p = serve(
        &format!(
            r#"
[api]
address = "127.0.0.1:{api_port}"

[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"

[sinks.hole]
type = "blackhole"
inputs = ["web"]
print_interval_secs = 0
"#
        ),
        &[],
        &[port, api_port],
    );

    let health = get(api_port, "/health");
    assert_eq!(health.status, 200, "{}", health.text());
    assert!(health.text().contains(r#""ok":true"#), "{}", health.text());

    let received = |metrics: &str| {
        metric(
            metrics,
            "component_received_events_total",
            &[("component_id", "web"), ("component_kind", "source")],
        )
    };
    let sent = |metrics: &str| {
        metric(
            metrics,
            "component_sent_events_total",
            &[("component_id", "hole"), ("component_kind", "sink")],
        )
    };
    let before = get(api_port, "/metrics").text();
    assert_eq!(received(&before).unwrap_or(0.0), 0.0, "{before}");

    let r = post(port, &[], br#"[{"n":1},{"n":2},{"n":3}]"#);
    assert_eq!(r.status, 200, "{}", r.text());

    let mut metrics = String::new();
    let delivered = wait_until(Duration::from_secs(10), || {
        metrics = get(api_port, "/metrics").text();
        sent(&metrics) == Some(3.0)
    });
    assert!(delivered, "{metrics}");
    assert_eq!(received(&metrics), Some(3.0), "{metrics}");

    p.signal("INT");
    assert_eq!(
        p.wait_exit(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        p.stderr()
    );
}

#[test]
fn validate_reports_what_a_source_would_refuse_without_binding_its_port() {
    // A port something already listens on: validate must not try to bind it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let stdout = validate_fails(&[&format!(
        "[sources.web]\ntype = \"segment\"\naddress = \"127.0.0.1:{port}\"\nwrite_keys = [\"\"]\n\
         [sources.vec]\ntype = \"http_server\"\naddress = \"localhost\"\n\
         [sources.tls]\ntype = \"http_server\"\naddress = \"127.0.0.1:{port}\"\ntls = {{ crt_file = \"/nonexistent.crt\", key_file = \"/nonexistent.key\" }}\n\
         [sinks.out]\ntype = \"console\"\ninputs = [\"*\"]\n"
    )]);
    assert!(
        stdout.contains("sources.web: write_keys: list at least one write key"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sources.vec: `address` \"localhost\" is not an IP:port address"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("sources.tls: tls.crt_file: cannot read certificates from /nonexistent.crt"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("cannot listen"),
        "validate bound a port: {stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// Settings every sink takes
// ---------------------------------------------------------------------------------------------

#[test]
fn a_blackhole_sink_honours_the_buffer_acknowledgements_and_healthcheck_every_sink_takes() {
    let (port, api_port) = (free_port(), free_port());
    // Acknowledgements come from the sink's own `acknowledgements` (the source leaves them
    // off); a one-event drop_newest buffer in front of a sink taking 1 event a second discards.
    let p = serve(
        &format!(
            r#"
[api]
address = "127.0.0.1:{api_port}"

[sources.web]
type = "http_server"
address = "127.0.0.1:{port}"

[sinks.slow]
type = "blackhole"
inputs = ["web"]
rate = 1
print_interval_secs = 0
acknowledgements = true
buffer.max_events = 1
buffer.when_full = "drop_newest"
healthcheck.enabled = false
"#
        ),
        &[],
        &[port, api_port],
    );
    let started = Instant::now();
    let posts: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || post(port, &[], &events(1)).status))
        .collect();
    let statuses: Vec<u16> = posts.into_iter().map(|p| p.join().unwrap()).collect();
    // The buffer holds one event while the sink takes the first: the second is taken a second
    // later, and its sender, waiting for the acknowledgement, no sooner.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "answered after {:?}: the sink's acknowledgements were not honoured",
        started.elapsed()
    );
    // Every request is answered after the sink took its event or the buffer discarded it (a
    // deliberate drop is handled, so 200 too).
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let metrics = get(api_port, "/metrics").text();
    let discarded = metric(
        &metrics,
        "buffer_discarded_events_total",
        &[("component_id", "slow")],
    )
    .unwrap_or(0.0);
    let sent = metric(
        &metrics,
        "component_sent_events_total",
        &[("component_id", "slow")],
    )
    .unwrap_or(0.0);
    assert!(
        discarded >= 1.0,
        "nothing discarded by a full buffer: {metrics}"
    );
    assert_eq!(discarded + sent, 6.0, "{metrics}");
    assert!(
        !p.stderr().contains("healthcheck passed"),
        "healthcheck.enabled = false still ran it:\n{}",
        p.stderr()
    );
}

#[test]
fn validate_names_a_bad_ldu_state_an_unknown_consent_match_and_a_pixel_without_a_token() {
    let sink = |extra: &str| {
        format!(
            "{STDIN}[sinks.fb]\ntype = \"facebook_pixel_server_side\"\ninputs = [\"in\"]\npixel_id = \"123\"\naccess_token = \"t\"\n{extra}"
        )
    };
    let stdout = validate_fails(&[&sink(
        "limited_data_use = true\nldu_country = 1\nldu_state = 1099\n",
    )]);
    assert!(
        stdout.contains("sinks.fb: ldu_state: 1099 is not one of Meta's state codes"),
        "{stdout}"
    );
    let stdout = validate_fails(&[&sink("consent.match = \"most\"\n")]);
    assert!(stdout.contains("sinks.fb.consent.match"), "{stdout}");
    assert!(
        stdout.contains("`all`") && stdout.contains("`any`"),
        "{stdout}"
    );
    let stdout = validate_fails(&[&sink(
        "pixel_id_field = \"context.pixel_id\"\npixels = { \"456\" = \"\" }\n",
    )]);
    assert!(
        stdout.contains("sinks.fb: pixels.\"456\": missing"),
        "{stdout}"
    );
}
