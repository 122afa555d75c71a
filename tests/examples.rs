//! Every config the documentation points to is valid, so the docs match the behaviour.

mod support;

use support::{fbpixel, root};

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
