//! The `file` sink: appends each event as one JSON line to a file.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use super::{EncodingConfig, write_lines};
use crate::component::{
    BuildContext, BuildError, ComponentError, EventStream, Healthcheck, Sink, SinkConfig,
    ValidSink, ValidateContext,
};

/// Settings of the `file` sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to; its directory is created when missing.
    pub path: PathBuf,
    /// Accepted for Vector compatibility; always JSON.
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted for Vector compatibility; JSON is the only codec"
    )]
    pub encoding: EncodingConfig,
}

/// Every setting, at its default, for `fbpixel generate`: a comment line before each; one
/// unset by default is commented out. `tests/generate.rs` fails when a setting is missing.
pub const EXAMPLE: &str = r#"
# The file to append NDJSON to (required); its directory is created when missing.
path = "/var/lib/fbpixel/events.ndjson"
# Accepted for Vector compatibility; `json`, the only codec.
encoding.codec = "json"
"#;

impl SinkConfig for FileConfig {
    fn validate(&self, _cx: &ValidateContext) -> Result<Box<dyn ValidSink>, BuildError> {
        if self.path.as_os_str().is_empty() {
            return Err(BuildError("`path` is empty".into()));
        }
        Ok(Box::new(self.clone()))
    }
}

#[async_trait]
impl ValidSink for FileConfig {
    async fn build(
        self: Box<Self>,
        _cx: BuildContext,
    ) -> Result<(Box<dyn Sink>, Healthcheck), BuildError> {
        let path = self.path.clone();
        // The healthcheck opens the file the way the sink will.
        let healthcheck = Box::pin(async move { open(&path).await.map(drop) });
        Ok((
            Box::new(FileSink {
                path: self.path.clone(),
            }),
            healthcheck,
        ))
    }
}

async fn open(path: &PathBuf) -> Result<tokio::fs::File, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
    }
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|e| format!("cannot open {} for appending: {e}", path.display()))
}

struct FileSink {
    path: PathBuf,
}

#[async_trait]
impl Sink for FileSink {
    async fn run(self: Box<Self>, mut input: EventStream) -> Result<(), ComponentError> {
        let mut file = open(&self.path).await.map_err(ComponentError)?;
        let mut buf = Vec::new();
        while let Some(events) = input.next().await {
            let n = events.len();
            // One write per batch; with O_APPEND it lands after whatever
            // another writer appended meanwhile.
            if let Err(e) = write_lines(&mut file, events, &mut buf, input.metrics()).await {
                tracing::error!(component = %input.metrics().info().id, "cannot write {n} events to {}: {e}", self.path.display());
            }
        }
        file.sync_data()
            .await
            .map_err(|e| ComponentError(format!("cannot flush {}: {e}", self.path.display())))
    }
}
