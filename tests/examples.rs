//! Every config the documentation points to is valid, so the docs match the behaviour.

use crate::support::{fbpixel, root};

#[test]
fn every_example_config_validates() {
    let mut files = vec![
        root().join("vector.toml.example"),
        root().join("examples/pipeline.toml"),
    ];
    let mut configs: Vec<_> = std::fs::read_dir(root().join("examples/configs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    configs.sort();
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
    // As in CI: none of FB_PIXEL_ID, FB_ACCESS_TOKEN, ... is set (support::fbpixel clears the
    // environment), and `${VAR:?message}` must not stop the check.
    let file = root().join("vector.toml.example");
    let out = fbpixel(
        &["validate", "--no-environment", file.to_str().unwrap()],
        b"",
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.ends_with("Validated\n"), "{stdout}");
    for var in ["FB_PIXEL_ID", "FB_ACCESS_TOKEN"] {
        assert!(
            stdout.contains(&format!(
                "environment variable {var} is not set; checked with the placeholder"
            )),
            "{var}: {stdout}"
        );
    }
    assert!(!stdout.contains("Health check"), "{stdout}");
}

#[test]
fn without_no_environment_an_unset_required_variable_still_fails_validate() {
    let file = root().join("vector.toml.example");
    let out = fbpixel(&["validate", file.to_str().unwrap()], b"", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "environment variable FB_ACCESS_TOKEN is not set or empty: set FB_ACCESS_TOKEN"
        ),
        "{stdout}"
    );
}
