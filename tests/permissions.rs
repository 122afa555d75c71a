//! State files through the whole binary: the disk buffer, the enrichment store and the dead
//! letter hold personal data, so they and their folders are created owner-only, a pre-existing
//! one other users can open is reported, and `--strict-permissions` refuses to start on it.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::graph::GraphStandin;
use crate::support::{fbpixel, temp_dir, temp_file, track_event};

/// A stdin pipeline to a sink with a disk buffer, a disk enrichment store and a dead letter
/// under `data_dir`.
fn config(data_dir: &Path, endpoint: &str) -> String {
    format!(
        r#"
data_dir = "{dir}"

[sources.in]
type = "stdin"

[sinks.capi]
type = "facebook_pixel_server_side"
inputs = ["in"]
pixel_id = "123"
access_token = "token"
endpoint = "{endpoint}"
healthcheck.enabled = false
batch.timeout_secs = 0.05
buffer.type = "disk"
enrichment = {{ enabled = true, store = "disk" }}
dead_letter.path = "{dir}/dead/dead.ndjson"
"#,
        dir = data_dir.display()
    )
}

/// A Graph API stand-in that rejects every event, so each one reaches the dead letter.
fn rejecting_graph() -> GraphStandin {
    GraphStandin::start(|_, _| {
        (
            400,
            r#"{"error":{"message":"Invalid parameter","code":100,"error_subcode":2804003,"fbtrace_id":"T"}}"#
                .to_owned(),
        )
    })
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn input() -> String {
    let identify = r#"{"type":"identify","userId":"u1","traits":{"email":"jane@example.com"}}"#;
    format!(
        "{identify}\n{}\n",
        track_event("e1", "jane.doe@example.com")
    )
}

#[test]
fn every_state_file_and_folder_a_run_creates_is_owner_only() {
    let graph = rejecting_graph();
    let dir = temp_dir("perm-modes");
    let data = dir.join("data");
    let config = temp_file("perm-modes.toml", &config(&data, &graph.endpoint));
    let out = fbpixel(
        &["run", "--config", config.to_str().unwrap()],
        input().as_bytes(),
        &[],
    );
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{logs}");
    let dead_letter = data.join("dead/dead.ndjson");
    assert!(
        std::fs::read_to_string(&dead_letter)
            .unwrap()
            .contains("\"e1\""),
        "the rejected event was dead-lettered"
    );
    for path in [
        data.clone(),
        data.join("buffers"),
        data.join("buffers/capi"),
        data.join("buffers/capi/buffer.redb"),
        data.join("enrichment"),
        data.join("enrichment/capi"),
        data.join("enrichment/capi/users.redb"),
        data.join("dead"),
        dead_letter,
    ] {
        let mode = mode(&path);
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:04o}", path.display());
    }
    assert!(!logs.contains("chmod"), "nothing to report:\n{logs}");
}

#[test]
fn a_buffer_file_others_can_read_is_reported_and_refused_with_strict_permissions() {
    let graph = rejecting_graph();
    let dir = temp_dir("perm-open");
    let data = dir.join("data");
    let buffer = data.join("buffers/capi");
    std::fs::create_dir_all(&buffer).unwrap();
    std::fs::set_permissions(&buffer, std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = buffer.join("buffer.redb");
    // An empty file is a new redb database to redb.
    std::fs::write(&file, "").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = temp_file("perm-open.toml", &config(&data, &graph.endpoint));
    let config = config.to_str().unwrap();
    let path = file.display().to_string();

    let strict = fbpixel(
        &["run", "--strict-permissions", "--config", config],
        input().as_bytes(),
        &[],
    );
    let logs = String::from_utf8_lossy(&strict.stderr);
    assert!(!strict.status.success(), "refused to start:\n{logs}");
    assert!(logs.contains(&path), "the error names the file:\n{logs}");
    assert!(
        logs.contains("0644") && logs.contains("chmod 600"),
        "{logs}"
    );
    assert!(logs.contains("--strict-permissions"), "{logs}");
    assert_eq!(mode(&file), 0o644, "a refused file is left as it was");
    assert!(
        !data.join("dead/dead.ndjson").exists(),
        "nothing ran: no event was handled"
    );

    let lax = fbpixel(&["run", "--config", config], input().as_bytes(), &[]);
    let logs = String::from_utf8_lossy(&lax.stderr);
    assert!(lax.status.success(), "a warning only:\n{logs}");
    let warning = logs
        .lines()
        .find(|l| l.contains("WARN") && l.contains(&path))
        .unwrap_or_else(|| panic!("a warning names the file:\n{logs}"));
    assert!(
        warning.contains("0644") && warning.contains("chmod 600"),
        "{warning}"
    );
    for raw in ["jane@example.com", "jane.doe@example.com"] {
        assert!(!logs.contains(raw), "{raw} reached the logs:\n{logs}");
    }
}
