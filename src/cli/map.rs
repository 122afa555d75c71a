//! `fbpixel map`: Segment messages (NDJSON) on stdin → the CAPI server events the sink would send.

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::config_args::ConfigArgs;
use super::sink::load_sink;
use crate::config::MissingVars;
use crate::sinks::facebook_pixel::capi::UserDataKeys;
use crate::sinks::facebook_pixel::enrichment::Identities;
use crate::sinks::facebook_pixel::mapping::{DroppedValues, UserMemory};
use crate::sinks::facebook_pixel::{FacebookPixelConfig, Mapper, Outcome, SkipReason};

#[derive(Debug, clap::Args)]
pub struct MapArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Which `facebook_pixel_server_side` sink, when the config has several.
    #[arg(long, value_name = "ID")]
    pub sink: Option<String>,
    /// Fix the clock for the event-time window (RFC 3339, e.g. 2024-06-15T12:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_now)]
    pub now: Option<DateTime<Utc>>,
}

fn parse_now(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}; expected RFC 3339 such as 2024-06-15T12:00:00Z"))
}

pub fn run(args: MapArgs) -> anyhow::Result<ExitCode> {
    let (mapper, settings) = load_mapper(&args.config, args.sink.as_deref())?;
    // With `enrichment`, what earlier lines teach enriches later ones, in memory only: a dry
    // run never reads or writes the configured store.
    let mut memory = settings
        .enrichment
        .enabled
        .then(|| Identities::new(settings.enrichment.max_users, settings.enrichment.ttl_secs));
    let stdin = io::stdin().lock();
    let stdout = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let stderr = BufWriter::new(io::stderr().lock());
    let memory = memory.as_mut().map(|m| m as &mut dyn UserMemory);
    match map_stream(&mapper, memory, stdin, stdout, stderr, args.now) {
        Ok(totals) => eprintln!("fbpixel map: {totals}"),
        // The reader went away (`fbpixel map … | head`): not an error of ours.
        Err(e) if is_broken_pipe(&e) => {}
        Err(e) => return Err(e),
    }
    Ok(ExitCode::SUCCESS)
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// The sink's mapper (and its settings) from a pipeline config. Missing environment variables
/// become empty values (a dry run needs no credentials), each reported as a warning on stderr.
pub fn load_mapper(
    config: &ConfigArgs,
    sink_id: Option<&str>,
) -> anyhow::Result<(Mapper, FacebookPixelConfig)> {
    let sink = load_sink(config, sink_id, MissingVars::Empty)?;
    let mapper = sink.settings.mapper().map_err(|e| {
        let path = sink.component.path();
        let lines: Vec<String> = e.iter().map(|p| format!("{path}.{p}")).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })?;
    Ok((mapper, sink.settings))
}

/// Counts of one `map` run.
#[derive(Debug, Default)]
pub struct Totals {
    pub mapped: u64,
    pub skipped: u64,
    pub rejected: u64,
    pub dropped: DroppedValues,
    pub purchase_value_defaulted: u64,
    /// Events that got user_data keys from enrichment.
    pub enriched: u64,
    /// Skipped for `consent`.
    pub consent_skipped: u64,
    /// Mapped events per pixel (the mapper's pixel order), shown with more than one pixel.
    pub by_pixel: Vec<(String, u64)>,
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} mapped, {} skipped, {} rejected",
            self.mapped, self.skipped, self.rejected
        )?;
        if self.dropped.total() > 0 {
            let fields: Vec<String> = self
                .dropped
                .iter()
                .map(|(field, n)| format!("{field} {n}"))
                .collect();
            write!(f, "; user_data values dropped: {}", fields.join(", "))?;
        }
        if self.consent_skipped > 0 {
            write!(f, "; {} skipped for consent", self.consent_skipped)?;
        }
        if self.by_pixel.len() > 1 {
            let pixels: Vec<String> = self
                .by_pixel
                .iter()
                .map(|(id, n)| format!("{id} {n}"))
                .collect();
            write!(f, "; mapped per pixel: {}", pixels.join(", "))?;
        }
        if self.enriched > 0 {
            write!(f, "; {} enriched from earlier messages", self.enriched)?;
        }
        if self.purchase_value_defaulted > 0 {
            write!(
                f,
                "; {} Purchase events without a value sent with value 0",
                self.purchase_value_defaulted
            )?;
        }
        Ok(())
    }
}

/// Maps every NDJSON line of `input`: mapped events to `output`, one a line; rejections to
/// `errors` as `line N: reason`; skipped messages print nothing.
pub fn map_stream(
    mapper: &Mapper,
    mut memory: Option<&mut dyn UserMemory>,
    mut input: impl BufRead,
    mut output: impl Write,
    mut errors: impl Write,
    now: Option<DateTime<Utc>>,
) -> anyhow::Result<Totals> {
    let mut totals = Totals {
        by_pixel: mapper.pixels().iter().map(|id| (id.clone(), 0)).collect(),
        ..Totals::default()
    };
    let mut line = Vec::with_capacity(4096);
    let mut event = Vec::with_capacity(4096);
    let mut number = 0u64;
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .context("reading stdin")?
            == 0
        {
            break;
        }
        number += 1;
        if line.trim_ascii().is_empty() {
            continue;
        }
        event.clear();
        // Parsed in place: the line buffer is ours and refilled for the next line.
        let now = now.unwrap_or_else(Utc::now);
        let (outcome, notes) = match memory.as_deref_mut() {
            Some(memory) => mapper.map_json_remembering(&mut line, now, &mut event, memory),
            None => mapper.map_json(&mut line, now, &mut event),
        };
        totals.enriched += u64::from(notes.enriched != UserDataKeys::default());
        totals.dropped.merge(&notes.dropped);
        totals.purchase_value_defaulted += u64::from(notes.purchase_value_defaulted);
        match outcome {
            Outcome::Mapped(()) => {
                totals.mapped += 1;
                if let Some((_, n)) = totals.by_pixel.get_mut(notes.pixel) {
                    *n += 1;
                }
                event.push(b'\n');
                output.write_all(&event).context("writing stdout")?;
            }
            Outcome::Skipped(reason) => {
                totals.skipped += 1;
                totals.consent_skipped += u64::from(reason == SkipReason::Consent);
            }
            Outcome::Rejected(rejection) => {
                totals.rejected += 1;
                writeln!(errors, "line {number}: {rejection}").context("writing stderr")?;
            }
        }
    }
    output.flush().context("writing stdout")?;
    errors.flush().context("writing stderr")?;
    Ok(totals)
}
