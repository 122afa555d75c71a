//! Config files as a Vector user writes them: TOML, YAML or JSON (mixed in one run), a folder of
//! them with `--config-dir`, or named by `FBPIXEL_CONFIG`; through the real binary.

use std::path::Path;
use std::process::Output;

use crate::support::{fbpixel, root, temp_dir, temp_file};

/// `path` as a string literal that TOML, YAML and JSON all read the same.
fn quoted(path: &Path) -> String {
    serde_json::Value::String(path.to_str().expect("a UTF-8 path").to_owned()).to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// stdin → remap → file into `out`, written in `format` ("toml", "yaml" or "json").
fn remap_pipeline(format: &str, out: &Path) -> String {
    let out = quoted(out);
    let source = ".properties.fbp = .context.cookies._fbp || .properties.fbp";
    match format {
        "toml" => format!(
            "[sources.in]\ntype = \"stdin\"\n\n\
             [transforms.tidy]\ntype = \"remap\"\ninputs = [\"in\"]\nsource = {source:?}\n\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"tidy\"]\npath = {out}\nencoding.codec = \"json\"\n"
        ),
        "yaml" => format!(
            "sources:\n  in:\n    type: stdin\n\
             transforms:\n  tidy:\n    type: remap\n    inputs: [in]\n    source: {source:?}\n\
             sinks:\n  out:\n    type: file\n    inputs: [tidy]\n    path: {out}\n    encoding:\n      codec: json\n"
        ),
        "json" => format!(
            r#"{{"sources": {{"in": {{"type": "stdin"}}}},
  "transforms": {{"tidy": {{"type": "remap", "inputs": ["in"], "source": {source:?}}}}},
  "sinks": {{"out": {{"type": "file", "inputs": ["tidy"], "path": {out}, "encoding": {{"codec": "json"}}}}}}}}"#
        ),
        other => panic!("{other}"),
    }
}

const INPUT: &str = "{\"context\":{\"cookies\":{\"_fbp\":\"fb.1.1\"}},\"properties\":{\"x\":1}}\n\
                     not json\n{\"properties\":{\"fbp\":\"fb.2\"}}\n";

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\n{}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn the_same_pipeline_in_toml_yaml_and_json_writes_the_same_output() {
    let dir = temp_dir("formats-run");
    let mut outputs = Vec::new();
    for format in ["toml", "yaml", "json"] {
        let out = dir.join(format!("{format}.ndjson"));
        let config = temp_file(&format!("pipeline.{format}"), &remap_pipeline(format, &out));
        let run = fbpixel(
            &["--config", config.to_str().unwrap()],
            INPUT.as_bytes(),
            &[],
        );
        assert_success(format, &run);
        assert!(
            text(&run.stderr).contains("line 2"),
            "{format}: the bad line is named\n{}",
            text(&run.stderr)
        );
        outputs.push(lines(&out));
    }
    assert_eq!(
        outputs[0],
        [
            r#"{"context":{"cookies":{"_fbp":"fb.1.1"}},"properties":{"fbp":"fb.1.1","x":1}}"#,
            r#"{"properties":{"fbp":"fb.2"}}"#,
        ]
    );
    assert_eq!(outputs[1], outputs[0], "yaml");
    assert_eq!(outputs[2], outputs[0], "json");
}

const EVENT: &str = r#"{"type":"track","event":"Signed Up","userId":"u1","timestamp":"2024-06-15T11:00:00Z","properties":{"action_source":"system_generated","value":5,"currency":"EUR"}}"#;

#[test]
fn map_gives_the_same_events_from_a_toml_a_yaml_and_a_json_config() {
    let configs = [
        (
            "map.toml",
            "[sources.in]\ntype = \"stdin\"\n[sinks.fb]\ntype = \"facebook_pixel_server_side\"\n\
             inputs = [\"in\"]\npixel_id = \"${PIXEL}\"\nstandard_events = { \"Signed Up\" = \"CompleteRegistration\" }\n\
             hash_external_id = false\n",
        ),
        (
            "map.yml",
            "sources:\n  in: {type: stdin}\nsinks:\n  fb:\n    type: facebook_pixel_server_side\n    inputs: [in]\n    \
             pixel_id: \"${PIXEL}\"\n    standard_events:\n      Signed Up: CompleteRegistration\n    hash_external_id: false\n",
        ),
        (
            "map.json",
            r#"{"sources": {"in": {"type": "stdin"}}, "sinks": {"fb": {"type": "facebook_pixel_server_side",
                "inputs": ["in"], "pixel_id": "${PIXEL}", "standard_events": {"Signed Up": "CompleteRegistration"},
                "hash_external_id": false}}}"#,
        ),
    ];
    let mut events = Vec::new();
    for (name, config) in configs {
        let path = temp_file(name, config);
        let out = fbpixel(
            &[
                "map",
                "--config",
                path.to_str().unwrap(),
                "--now",
                "2024-06-15T12:00:00Z",
            ],
            EVENT.as_bytes(),
            &[("PIXEL", "42")],
        );
        assert_success(name, &out);
        assert!(
            text(&out.stderr).contains("1 mapped, 0 skipped, 0 rejected"),
            "{name}: {}",
            text(&out.stderr)
        );
        events.push(text(&out.stdout));
    }
    assert!(
        events[0].starts_with(r#"{"event_name":"CompleteRegistration","event_time":1718449200,"#),
        "{}",
        events[0]
    );
    assert!(
        events[0].contains(r#""external_id":["u1"]"#),
        "{}",
        events[0]
    );
    assert_eq!(events[1], events[0], "yaml");
    assert_eq!(events[2], events[0], "json");
}

/// A folder holding a pipeline split over three formats (and a file that is not a config).
fn split_pipeline(out: &Path) -> std::path::PathBuf {
    let dir = temp_dir("conf.d");
    std::fs::write(
        dir.join("10-sources.toml"),
        "[sources.in]\ntype = \"stdin\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("20-transforms.yaml"),
        "transforms:\n  tidy:\n    type: remap\n    inputs: [in]\n    source: .seen = true\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("30-sinks.json"),
        format!(
            r#"{{"sinks": {{"out": {{"type": "file", "inputs": ["tidy"], "path": {}}}}}}}"#,
            quoted(out)
        ),
    )
    .unwrap();
    std::fs::write(dir.join("README.md"), "# not a config: ignored").unwrap();
    dir
}

#[test]
fn a_config_dir_of_toml_yaml_and_json_files_runs_as_one_pipeline() {
    let out_dir = temp_dir("conf.d-out");
    let out = out_dir.join("out.ndjson");
    let dir = split_pipeline(&out);
    let run = fbpixel(
        &["--config-dir", dir.to_str().unwrap()],
        b"{\"n\":1}\n",
        &[],
    );
    assert_success("--config-dir", &run);
    assert_eq!(lines(&out), [r#"{"n":1,"seen":true}"#]);

    // validate lists each file it loaded, in order.
    let check = fbpixel(
        &["validate", "--no-environment", "-C", dir.to_str().unwrap()],
        b"",
        &[],
    );
    assert_success("validate -C", &check);
    let stdout = text(&check.stdout);
    let loaded: Vec<String> = ["10-sources.toml", "20-transforms.yaml", "30-sinks.json"]
        .iter()
        .map(|f| format!("{:?}", dir.join(f).display().to_string()))
        .collect();
    assert!(
        stdout.starts_with(&format!("√ Loaded [{}]\n", loaded.join(", "))),
        "{stdout}"
    );
}

#[test]
fn config_and_config_dir_combine() {
    let out_dir = temp_dir("combine-out");
    let out = out_dir.join("out.ndjson");
    let more = out_dir.join("more.ndjson");
    let dir = split_pipeline(&out);
    let extra = temp_file(
        "extra.yaml",
        &format!(
            "sinks:\n  more:\n    type: file\n    inputs: [in]\n    path: {}\n",
            quoted(&more)
        ),
    );
    let run = fbpixel(
        &[
            "--config",
            extra.to_str().unwrap(),
            "--config-dir",
            dir.to_str().unwrap(),
        ],
        b"{\"n\":2}\n",
        &[],
    );
    assert_success("--config with --config-dir", &run);
    assert_eq!(lines(&out), [r#"{"n":2,"seen":true}"#]);
    assert_eq!(lines(&more), [r#"{"n":2}"#]);
}

#[test]
fn a_config_dir_with_no_config_file_is_an_error_naming_it() {
    let dir = temp_dir("no-configs");
    std::fs::write(dir.join("notes.txt"), "nothing here").unwrap();
    let expected = format!(
        "{}: no .toml, .yaml, .yml or .json file in this folder",
        dir.display()
    );
    let run = fbpixel(&["--config-dir", dir.to_str().unwrap()], b"", &[]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains(&expected),
        "{}",
        text(&run.stderr)
    );

    let check = fbpixel(
        &["validate", "--config-dir", dir.to_str().unwrap()],
        b"",
        &[],
    );
    assert_eq!(check.status.code(), Some(1));
    assert!(
        text(&check.stdout).contains(&format!("  x {expected}")),
        "{}",
        text(&check.stdout)
    );
}

#[test]
fn fbpixel_config_names_the_files_when_the_command_line_names_none() {
    let out_dir = temp_dir("env-config");
    let out = out_dir.join("out.ndjson");
    let source = temp_file("source.yaml", "sources:\n  in: {type: stdin}\n");
    let sink = temp_file(
        "sink.json",
        &format!(
            r#"{{"sinks": {{"out": {{"type": "file", "inputs": ["in"], "path": {}}}}}}}"#,
            quoted(&out)
        ),
    );
    let list = format!("{},{}", source.display(), sink.display());
    let run = fbpixel(&[], b"{\"n\":3}\n", &[("FBPIXEL_CONFIG", &list)]);
    assert_success("FBPIXEL_CONFIG", &run);
    assert_eq!(lines(&out), [r#"{"n":3}"#]);

    // Every command reads it.
    let check = fbpixel(&["validate"], b"", &[("FBPIXEL_CONFIG", &list)]);
    assert_success("validate with FBPIXEL_CONFIG", &check);

    // A config on the command line wins whole: the variable is not merged in.
    let elsewhere = out_dir.join("elsewhere.ndjson");
    let alone = temp_file(
        "alone.toml",
        &format!(
            "[sources.in]\ntype = \"stdin\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = {}\n",
            quoted(&elsewhere)
        ),
    );
    let run = fbpixel(
        &["--config", alone.to_str().unwrap()],
        b"{\"n\":4}\n",
        &[("FBPIXEL_CONFIG", "/nonexistent/fbpixel.yaml")],
    );
    assert_success("--config over FBPIXEL_CONFIG", &run);
    assert_eq!(lines(&elsewhere), [r#"{"n":4}"#]);
}

#[test]
fn fbpixel_config_dir_names_a_folder_when_the_command_line_names_none() {
    let out_dir = temp_dir("env-config-dir");
    let out = out_dir.join("out.ndjson");
    let dir = split_pipeline(&out);
    let run = fbpixel(
        &[],
        b"{\"n\":5}\n",
        &[("FBPIXEL_CONFIG_DIR", dir.to_str().unwrap())],
    );
    assert_success("FBPIXEL_CONFIG_DIR", &run);
    assert_eq!(lines(&out), [r#"{"n":5,"seen":true}"#]);
}

#[test]
fn with_no_config_anywhere_every_command_says_how_to_give_one() {
    for args in [
        &[][..],
        &["validate"],
        &["map"],
        &["replay", "dead.ndjson"],
        &["enrichment", "forget", "--user-id", "u"],
    ] {
        let out = fbpixel(args, b"", &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains(
                "no config given: pass --config FILE or --config-dir DIR, or set FBPIXEL_CONFIG"
            ),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn validate_names_the_file_component_and_key_of_a_yaml_or_json_mistake() {
    let configs = [
        (
            "bad.yaml",
            "sources:\n  in:\n    type: stdin\n    max_length: many\n\
             sinks:\n  out:\n    type: file\n    inputs: [in]\n    pathh: x.ndjson\n",
        ),
        (
            "bad.json",
            r#"{"sources": {"in": {"type": "stdin", "max_length": "many"}},
                "sinks": {"out": {"type": "file", "inputs": ["in"], "pathh": "x.ndjson"}}}"#,
        ),
    ];
    for (name, config) in configs {
        let path = temp_file(name, config);
        let out = fbpixel(&["validate", path.to_str().unwrap()], b"", &[]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}");
        let file = path.display();
        for expected in [
            format!("  x {file}: sources.in.max_length: invalid type: string, expected usize"),
            format!(
                "  x {file}: sinks.out: unknown field `pathh`, expected `path` or `encoding` (or `acknowledgements`, `buffer`, `healthcheck`, which every sink takes); did you mean `path`?"
            ),
        ] {
            assert!(
                stdout.contains(&expected),
                "{name}: {expected:?} missing from:\n{stdout}"
            );
        }
    }
}

#[test]
fn validate_names_a_yaml_null_and_a_key_that_is_not_a_string() {
    let path = temp_file(
        "nulls.yaml",
        "sources:\n  in:\n    type: stdin\n    max_length:\n\
         sinks:\n  fb:\n    type: facebook_pixel_server_side\n    inputs: [in]\n    pixel_id: \"1\"\n    \
         pixels:\n      2222222222: tok\n",
    );
    let out = fbpixel(&["validate", path.to_str().unwrap()], b"", &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let file = path.display();
    assert!(
        stdout.contains(&format!(
            "  x {file}: sources.in.max_length: null is not a value: write \"\" for an empty string, or leave the key out"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "  x {file}: sinks.fb.pixels: key 2222222222 is not a string: quote it (\"2222222222\")"
        )),
        "{stdout}"
    );
}

#[test]
fn an_env_value_cannot_add_a_component_to_a_yaml_or_json_config() {
    let dir = temp_dir("env-injection-formats");
    let configs = [
        (
            "inject.yaml",
            "sources:\n  in: {type: stdin}\nsinks:\n  out:\n    type: file\n    inputs: [in]\n    path: \"${OUT_DIR}/${X}\"\n",
            "a\n  b: c\nsinks:\n  evil: {type: file, inputs: [in], path: evil.ndjson}",
        ),
        (
            "inject.json",
            r#"{"sources": {"in": {"type": "stdin"}}, "sinks": {"out": {"type": "file", "inputs": ["in"], "path": "${OUT_DIR}/${X}"}}}"#,
            "\"}, \"evil\": {\"type\": \"file\", \"inputs\": [\"in\"], \"path\": \"evil.ndjson\"}, \"x\": {\"a\": \"",
        ),
    ];
    for (name, config, injected) in configs {
        let out_dir = dir.join(name);
        let path = temp_file(name, config);
        let env = [
            ("OUT_DIR", out_dir.to_str().unwrap()),
            ("X", injected),
            ("NO_COLOR", "1"),
        ];
        let check = fbpixel(&["validate", path.to_str().unwrap()], b"", &env);
        let stdout = text(&check.stdout);
        assert_success(name, &check);
        assert!(
            stdout.contains("Health check \"sinks.out\""),
            "{name}: {stdout}"
        );
        assert!(!stdout.contains("evil"), "{name}: {stdout}");
        let run = fbpixel(&["--config", path.to_str().unwrap()], b"{\"n\":1}\n", &env);
        assert_success(name, &run);
        assert!(
            text(&run.stderr).contains("components=2"),
            "{name}: {}",
            text(&run.stderr)
        );
        // The whole value, newlines and quotes included, is the file name under OUT_DIR.
        let written = Path::new(&format!("{}/{injected}", out_dir.display())).to_path_buf();
        assert_eq!(lines(&written), [r#"{"n":1}"#], "{name}");
    }
}

#[test]
fn the_yaml_example_runs_as_the_readme_says() {
    // `fbpixel --config vector.yaml.example`: the `.example` suffix does not hide the format.
    let out = fbpixel(
        &[
            "validate",
            "--no-environment",
            "--config",
            root().join("vector.yaml.example").to_str().unwrap(),
        ],
        b"",
        &[],
    );
    assert_success("vector.yaml.example", &out);
}
