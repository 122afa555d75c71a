//! Every config the documentation points to is valid, so the docs match the behaviour.

use std::path::PathBuf;

use fbpixel::config::{self, LoadOptions, MissingVars, PipelineConfig};

use crate::support::{fbpixel, root};

/// The commented pipeline the README points to, in each format it is given in.
const READMES_EXAMPLES: [&str; 2] = ["vector.toml.example", "vector.yaml.example"];

#[test]
fn every_example_config_validates() {
    let mut files: Vec<PathBuf> = READMES_EXAMPLES.iter().map(|f| root().join(f)).collect();
    files.push(root().join("examples/pipeline.toml"));
    // Every format `--config-dir` would take.
    let configs = config::files_in_dir(&root().join("examples/configs")).unwrap();
    assert!(configs.len() >= 6, "{configs:?}");
    files.extend(configs);
    let env = [
        ("FB_PIXEL_ID", "1234"),
        ("FB_ACCESS_TOKEN", "token"),
        ("SEGMENT_WRITE_KEY", "key"),
        ("INGEST_TOKEN", "ingest"),
    ];
    for file in files {
        let out = fbpixel(
            &["validate", "--no-environment", file.to_str().unwrap()],
            b"",
            &env,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}:\n{stdout}{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.ends_with("Validated\n"),
            "{}: {stdout}",
            file.display()
        );
    }
}

#[test]
fn the_readme_example_validates_with_no_environment_and_no_variables_set() {
    for name in READMES_EXAMPLES {
        readme_example_validates_with_no_environment(name);
    }
}

fn readme_example_validates_with_no_environment(name: &str) {
    // As in CI: none of FB_PIXEL_ID, FB_ACCESS_TOKEN, ... is set (support::fbpixel clears the
    // environment), and `${VAR:?message}` must not stop the check.
    let file = root().join(name);
    let out = fbpixel(
        &["validate", "--no-environment", file.to_str().unwrap()],
        b"",
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.ends_with("Validated\n"), "{name}: {stdout}");
    for var in ["FB_PIXEL_ID", "FB_ACCESS_TOKEN"] {
        assert!(
            stdout.contains(&format!(
                "environment variable {var} is not set; checked with the placeholder"
            )),
            "{name}: {var}: {stdout}"
        );
    }
    assert!(!stdout.contains("Health check"), "{name}: {stdout}");
}

#[test]
fn without_no_environment_an_unset_required_variable_still_fails_validate() {
    for name in READMES_EXAMPLES {
        let file = root().join(name);
        let out = fbpixel(&["validate", file.to_str().unwrap()], b"", &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{name}: {stdout}");
        assert!(
            stdout.contains(
                "environment variable FB_ACCESS_TOKEN is not set or empty: set FB_ACCESS_TOKEN"
            ),
            "{name}: {stdout}"
        );
    }
}

/// What a config says, without the files it was read from.
fn said(config: &PipelineConfig) -> impl PartialEq + std::fmt::Debug {
    let components: Vec<_> = config
        .components
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                c.kind,
                c.type_name.clone(),
                c.inputs.clone(),
                c.options.clone(),
            )
        })
        .collect();
    (config.data_dir.clone(), config.api.clone(), components)
}

#[test]
fn the_yaml_example_is_the_toml_example_once_interpolated() {
    // Every variable either example references, so each `${…}` is compared resolved.
    let env = |name: &str| {
        let value = match name {
            "FB_PIXEL_ID" => "1234",
            "FB_ACCESS_TOKEN" => "token",
            "FBPIXEL_DATA_DIR" => "/var/lib/fbpixel",
            "FB_APP_SECRET" => "app-secret",
            _ => return None,
        };
        Some(value.to_owned())
    };
    let options = LoadOptions {
        env: &env,
        missing_vars: MissingVars::Error,
    };
    let [toml, yaml] = READMES_EXAMPLES.map(|name| {
        config::load_files(&[root().join(name)], &options).unwrap_or_else(|e| panic!("{name}: {e}"))
    });
    assert_eq!(said(&yaml), said(&toml));
    assert!(toml.warnings.is_empty() && yaml.warnings.is_empty());
}
