//! `fbpixel quality --config FILE [--json] [--sink ID]`: Meta's verdict on the data of each
//! Conversions API sink and pixel (Event Match Quality, per-key coverage, event coverage,
//! freshness, diagnostics, from Meta's Dataset Quality API) beside our own per-key coverage,
//! one report per event name, with hints from the gap.
//!
//! Exits 1 when Meta's answer could not be read for some pixel (the report says why), so a
//! script notices a token that cannot read the Dataset Quality API.

use std::process::ExitCode;

use anyhow::anyhow;
use serde::Serialize;

use super::config_args::ConfigArgs;
use super::sink::{Sink, load_sinks};
use crate::config::MissingVars;
use crate::sinks::facebook_pixel::FacebookPixelConfig;
use crate::sinks::facebook_pixel::capi::UserDataKeys;
use crate::sinks::facebook_pixel::ledger::{LedgerConfig, LedgerStore, Reader, coverage};
use crate::sinks::facebook_pixel::quality::report::{self, MetaQuality, OwnCoverage, Report};

#[derive(Debug, clap::Args)]
pub struct QualityArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Only this `facebook_pixel_server_side` sink (default: every one).
    #[arg(long, value_name = "ID")]
    pub sink: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One sink's report, as `--json` prints it.
#[derive(Serialize)]
struct SinkReport {
    sink: String,
    #[serde(flatten)]
    report: Report,
}

pub fn run(args: QualityArgs) -> anyhow::Result<ExitCode> {
    let sinks = load_sinks(&args.config, args.sink.as_deref(), MissingVars::Error)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut reports = Vec::new();
    let mut failed = false;
    for sink in &sinks {
        let Sink {
            component,
            settings,
            ..
        } = sink;
        let meta = runtime
            .block_on(ask_meta(settings))
            .map_err(|problems| anyhow!("sinks.{}: {}", component.id, problems.join("; ")))?;
        failed |= meta.iter().any(|m| m.answer.is_err());
        reports.push(SinkReport {
            sink: component.id.clone(),
            report: report::report(&meta, &own_coverage(sink)),
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            println!("Sink {}:\n{}", r.sink, r.report);
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Meta's answer for every pixel of the sink, one request each.
async fn ask_meta(settings: &FacebookPixelConfig) -> Result<Vec<MetaQuality>, Vec<String>> {
    let mut meta = Vec::new();
    for target in settings.quality_targets()? {
        let answer = target.fetch().await.map_err(|(_, why)| why);
        meta.push(MetaQuality {
            pixel: target.pixel,
            answer,
        });
    }
    Ok(meta)
}

/// Our own per-key coverage of the events the sink delivered, from its delivery ledger on
/// disk. None (the report is then Meta's side only, and says so) when the sink keeps no ledger
/// there: off, not written yet, or in a `nats_kv` bucket, which is read by id, not scanned.
fn own_coverage(sink: &Sink) -> Vec<OwnCoverage> {
    let data_dir = sink.pipeline.data_dir.as_deref();
    let ledger = &sink.settings.ledger;
    if !ledger.is_enabled(data_dir) || ledger.store != LedgerStore::Disk {
        return Vec::new();
    }
    let read = LedgerConfig::dir(data_dir, &sink.component.id)
        .and_then(|dir| Reader::open(&dir))
        .and_then(|reader| coverage(&reader));
    match read {
        Ok(coverage) => coverage
            .into_iter()
            .map(|c| OwnCoverage {
                pixel: c.pixel,
                event_name: c.event_name,
                events: c.events,
                keys: UserDataKeys::NAMES.iter().copied().zip(c.keys).collect(),
            })
            .collect(),
        Err(e) => {
            eprintln!(
                "warning: sinks.{}: {e}; our own coverage is left out",
                sink.component.id
            );
            Vec::new()
        }
    }
}
