//! `fbpixel replay --config FILE DEAD_LETTER_FILE`: send dead-lettered events
//! through the sink again, after a setting or the data was fixed.
//!
//! Nothing is lost if replay is interrupted: when the input is the sink's own
//! dead letter it is first renamed aside (`…replaying-<time>`), new failures
//! go to a fresh dead letter, and the renamed file is removed only once every
//! event in it was delivered or dead-lettered again. Re-sending an event that
//! was already delivered is harmless: Meta deduplicates by `event_id`. The
//! pipeline that writes the dead letter must be stopped first: its open file
//! would follow the rename.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::config_args::ConfigArgs;
use super::sink::{Sink, load_sink};
use crate::acks::BatchStatus;
use crate::component::{Backlog, BuildContext, EventStream, ValidSink, ValidateContext};
use crate::config::MissingVars;
use crate::event::Event;
use crate::sinks::facebook_pixel::FacebookPixelConfig;
use crate::telemetry::{self, ComponentInfo, ComponentMetrics, LogFormat};

/// Events per batch fed to the sink.
const CHUNK: usize = 500;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Which `facebook_pixel_server_side` sink, when the config has several.
    #[arg(long, value_name = "ID")]
    pub sink: Option<String>,
    /// The dead-letter file to replay.
    #[arg(value_name = "DEAD_LETTER_FILE")]
    pub file: PathBuf,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    event: &'a RawValue,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    telemetry::init_logs(LogFormat::Text);
    let Sink {
        component,
        settings,
        ..
    } = load_sink(&args.config, args.sink.as_deref(), MissingVars::Error)?;
    if !args.file.exists() {
        bail!("{}: no such file", args.file.display());
    }

    // Replaying the sink's own dead letter: move it aside so new failures
    // start a fresh one and nothing is read and written at once.
    let own = settings
        .dead_letter
        .as_ref()
        .is_some_and(|d| same_file(&d.path, &args.file));
    let input = if own {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
        let aside = PathBuf::from(format!("{}.replaying-{stamp}", args.file.display()));
        std::fs::rename(&args.file, &aside).with_context(|| {
            format!(
                "cannot move {} aside to {}",
                args.file.display(),
                aside.display()
            )
        })?;
        eprintln!(
            "fbpixel replay: moved {} to {}; new failures go to a fresh {}",
            args.file.display(),
            aside.display(),
            args.file.display()
        );
        aside
    } else {
        args.file.clone()
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(replay(component.id.clone(), &settings, &input));
    let summary = outcome?;
    eprintln!(
        "fbpixel replay: {} events sent again; {} dead-lettered again; {} lines without an event skipped",
        summary.events, summary.dead_lettered, summary.invalid
    );
    if summary.failed {
        eprintln!(
            "fbpixel replay: some events could not be delivered; {} is kept, replay it again later",
            input.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if own {
        std::fs::remove_file(&input)
            .with_context(|| format!("cannot remove {}", input.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

struct Summary {
    events: u64,
    dead_lettered: u64,
    invalid: u64,
    failed: bool,
}

async fn replay(
    id: String,
    settings: &FacebookPixelConfig,
    input: &Path,
) -> anyhow::Result<Summary> {
    let metrics = ComponentMetrics::new(ComponentInfo {
        id: id.clone(),
        kind: "sink",
        type_name: crate::sinks::facebook_pixel::SINK_TYPE.into(),
    });
    let cx = ValidateContext {
        id: id.clone(),
        data_dir: None,
    };
    let (sink, healthcheck) = Box::new(
        settings
            .validated(&cx)
            .map_err(|e| anyhow::anyhow!("sinks.{id}: {e}"))?,
    )
    .build(BuildContext {
        metrics: metrics.clone(),
        data_dir: None,
        permissions: Default::default(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("sinks.{id}: {e}"))?;
    healthcheck.await.map_err(|e| {
        anyhow::anyhow!("sinks.{id}: healthcheck failed, nothing was replayed: {e}")
    })?;
    let dead_letter = settings.dead_letter.as_ref().map(|d| d.path.clone());
    let lines_before = dead_letter.as_deref().map_or(0, count_lines);

    let total = count_lines(input);
    let (tx, rx) = mpsc::channel(4);
    let stream = EventStream::new(rx, Backlog::default(), metrics);
    let sink_task = tokio::spawn(sink.run(stream));

    let file =
        std::fs::File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let progress = std::io::stderr().is_terminal() && total > CHUNK as u64;
    let (mut events, mut invalid, mut seen) = (0u64, 0u64, 0u64);
    let mut waits = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", input.display()))?;
        seen += 1;
        match serde_json::from_str::<Line>(&line) {
            Ok(parsed) if parsed.event.get().starts_with('{') => {
                let json = Bytes::copy_from_slice(parsed.event.get().as_bytes());
                chunk.push(Event::from_json(json));
                events += 1;
            }
            _ => {
                invalid += 1;
                tracing::warn!(
                    "{}: line {}: not a dead-letter line with an `event` object; skipped",
                    input.display(),
                    n + 1
                );
            }
        }
        if chunk.len() == CHUNK {
            // Each chunk is its own acknowledged batch, so a failure is seen.
            waits.push(crate::event::track(&mut chunk));
            if tx.send(std::mem::take(&mut chunk)).await.is_err() {
                break;
            }
            if progress {
                eprint!(
                    "\rfbpixel replay: {seen}/{total} lines ({}%)",
                    seen * 100 / total.max(1)
                );
                let _ = std::io::stderr().flush();
            }
        }
    }
    if !chunk.is_empty() {
        waits.push(crate::event::track(&mut chunk));
        let _ = tx.send(chunk).await;
    }
    drop(tx);
    if progress {
        eprintln!("\rfbpixel replay: {seen}/{total} lines (100%)");
    }
    let run = sink_task.await.context("the sink stopped unexpectedly")?;
    run.map_err(|e| anyhow::anyhow!("sinks.{id}: {e}"))?;
    let mut failed = false;
    for wait in waits {
        failed |= wait.wait().await == BatchStatus::Errored;
    }
    let lines_after = dead_letter.as_deref().map_or(0, count_lines);
    Ok(Summary {
        events,
        dead_lettered: lines_after.saturating_sub(lines_before),
        invalid,
        failed,
    })
}

fn count_lines(path: &Path) -> u64 {
    std::fs::File::open(path)
        .map(|f| BufReader::new(f).split(b'\n').count() as u64)
        .unwrap_or(0)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
