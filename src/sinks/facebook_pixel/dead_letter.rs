//! The dead letter: events that cannot be delivered as they are, one NDJSON
//! line each, with the original input so they can be fixed and replayed.
//!
//! The file holds raw personal data, so it is created with mode 0600 (and any
//! folder created for it 0700), through [`crate::state`]. Each
//! line is written with one `write` on an append-only descriptor and synced;
//! a line torn by a crash (the only way to get one) is cut off the end of the
//! file the next time it is opened, so the file is always whole lines.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use super::service::GraphError;

/// Where a dead-lettered event failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The mapping rejected it (SPEC §1–6).
    Mapping,
    /// Meta rejected it (SPEC §7).
    Delivery,
}

impl Stage {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Mapping => "mapping",
            Stage::Delivery => "delivery",
        }
    }
}

/// One dead-letter line, apart from the event itself.
#[derive(Serialize)]
struct Record<'a> {
    time: String,
    sink: &'a str,
    stage: Stage,
    /// The pixel it was for, when it got as far as having one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pixel: Option<&'a str>,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a GraphError>,
}

/// An open dead-letter file, shared by the sink's delivery tasks. The lock
/// is taken only to write a rejected event, never on the delivery path.
pub struct DeadLetter {
    path: PathBuf,
    file: Mutex<File>,
}

impl DeadLetter {
    /// Open (or create, mode 0600) the file for appending, cutting off a torn
    /// last line left by a crash. The mode of an existing file is checked when
    /// the sink is built ([`crate::state::check`]), before anything starts.
    pub fn open(path: &Path) -> Result<Self, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::state::create_dir(dir).map_err(|e| {
                format!(
                    "dead_letter.path: cannot create directory {}: {e}",
                    dir.display()
                )
            })?;
        }
        let mut file = crate::state::file_options()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| {
                format!(
                    "dead_letter.path: cannot open {} for appending: {e}",
                    path.display()
                )
            })?;
        let torn = repair(&mut file)
            .map_err(|e| format!("dead_letter.path: cannot check {}: {e}", path.display()))?;
        if torn > 0 {
            tracing::warn!(path = %path.display(), bytes = torn, "the dead letter ended with a line torn by a crash; it was cut off");
        }
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one event with why it failed; `event` is its original JSON.
    #[cfg(test)]
    pub fn write(
        &self,
        sink: &str,
        stage: Stage,
        reason: &str,
        error: Option<&GraphError>,
        event: &[u8],
    ) -> std::io::Result<()> {
        self.write_many(
            sink,
            stage,
            &[Failed {
                pixel: None,
                reason,
                error,
                event,
            }],
        )
    }

    /// Append several events with one write and one sync, so a burst of bad
    /// events costs one disk flush, not one each.
    pub fn write_many(
        &self,
        sink: &str,
        stage: Stage,
        events: &[Failed<'_>],
    ) -> std::io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let time = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut lines = Vec::new();
        for failed in events {
            let record = Record {
                time: time.clone(),
                sink,
                stage,
                pixel: failed.pixel,
                reason: failed.reason,
                error: failed.error,
            };
            serde_json::to_writer(&mut lines, &record).map_err(std::io::Error::other)?;
            // `…}` becomes `…,"event":<original>}`: the original is embedded as is.
            lines.pop();
            lines.extend_from_slice(b",\"event\":");
            lines.extend_from_slice(failed.event);
            lines.extend_from_slice(b"}\n");
        }
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(&lines)?;
        file.sync_data()
    }
}

/// One event for the dead letter.
pub struct Failed<'a> {
    /// The pixel it was for (`None`: rejected before it had one).
    pub pixel: Option<&'a str>,
    /// Why it failed.
    pub reason: &'a str,
    /// Meta's error, when Meta gave one.
    pub error: Option<&'a GraphError>,
    /// Its original JSON.
    pub event: &'a [u8],
}

/// Truncate the file after its last newline; returns how many bytes were cut.
fn repair(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    // Look back in chunks for the last newline.
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        std::io::Read::read_exact(file, chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                file.set_len(keep)?;
            }
            return Ok(len - keep);
        }
        end = start;
    }
    file.set_len(0)?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fbpixel-dl-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("dead.ndjson")
    }

    #[test]
    fn lines_hold_the_reason_the_error_and_the_original_event() {
        let path = temp("lines");
        let dl = DeadLetter::open(&path).unwrap();
        let error = GraphError {
            code: Some(100),
            error_subcode: Some(2804003),
            message: "Invalid parameter".into(),
            fbtrace_id: Some("T".into()),
            http_status: 400,
            ..Default::default()
        };
        dl.write(
            "fb",
            Stage::Delivery,
            "Meta rejected the event",
            Some(&error),
            br#"{"type":"track"}"#,
        )
        .unwrap();
        dl.write(
            "fb",
            Stage::Mapping,
            "event: missing",
            None,
            br#"{"type":"track","n":2}"#,
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["stage"], "delivery");
        assert_eq!(lines[0]["error"]["error_subcode"], 2804003);
        assert_eq!(lines[0]["error"]["fbtrace_id"], "T");
        assert_eq!(lines[0]["event"]["type"], "track");
        assert_eq!(lines[1]["stage"], "mapping");
        assert_eq!(lines[1]["event"]["n"], 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn a_torn_last_line_is_cut_off_on_open() {
        let path = temp("torn");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"a\":1}\n{\"b\":").unwrap();
        let dl = DeadLetter::open(&path).unwrap();
        dl.write("fb", Stage::Mapping, "r", None, b"{}").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"a\":1}\n{\"time\""), "{text}");
        assert!(text.ends_with("\"event\":{}}\n"));
        assert_eq!(text.lines().count(), 2);
    }
}
