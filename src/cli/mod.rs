//! The command line: one file per subcommand.

mod api_client;
mod config_args;
mod enrichment;
mod explain;
mod generate;
mod ledger;
mod map;
mod quality;
mod reconcile;
mod replay;
mod run;
mod sink;
mod tap;
mod top;
mod validate;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Segment-spec events to Meta's Conversions API.
///
/// Without a subcommand, runs the pipeline of the given config files until
/// SIGINT/SIGTERM, or until every source has finished (stdin at end of input). SIGHUP (or,
/// with --watch-config, a changed file) reloads the config without losing events.
#[derive(Debug, Parser)]
#[command(
    name = "fbpixel",
    version,
    about,
    propagate_version = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: run::RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline (the default when no subcommand is given).
    Run(run::RunArgs),
    /// Check a config: graph, settings, VRL and, unless --no-environment, healthchecks.
    Validate(validate::ValidateArgs),
    /// Print the Conversions API event each Segment message on stdin becomes (a dry run: nothing
    /// is sent, no credentials needed).
    Map(map::MapArgs),
    /// Send the events of a dead-letter file through the sink again (after fixing a setting or
    /// the data); what fails again goes to the current dead letter.
    Replay(replay::ReplayArgs),
    /// Meta's verdict on each pixel's data (Event Match Quality, per-key coverage, freshness,
    /// diagnostics, from its Dataset Quality API) beside our own coverage, with hints.
    Quality(quality::QualityArgs),
    /// Manage what the sink's `enrichment` remembers about users.
    Enrichment(enrichment::EnrichmentArgs),
    /// Print an example config with every setting of the named component types, each at its
    /// default with a comment, wired by `inputs` in the order given (as `vector generate`).
    Generate(generate::GenerateArgs),
    /// Tell what became of one message, by its event_id, messageId or order_id, from the sink's
    /// delivery ledger.
    Explain(explain::ExplainArgs),
    /// Check a list of ids (an export of orders) against the delivery ledger: delivered,
    /// skipped, dead-lettered or never seen; exits 1 when any was never seen.
    Reconcile(reconcile::ReconcileArgs),
    /// Watch a running pipeline live, from its [api]: events in and out per second, errors,
    /// discarded and buffered events per component, and each Conversions API sink's user_data
    /// coverage, retries and delivery per pixel (as `vector top`; q quits).
    Top(top::TopArgs),
    /// Print a sample of the events leaving components, from the pipeline's [api], as NDJSON
    /// (as `vector tap --meta`), customer information masked unless --raw on the pipeline's own
    /// machine; until Ctrl-C or --limit.
    Tap(tap::TapArgs),
}

impl Cli {
    /// Run the parsed command; the exit code tells scripts and supervisors how it ended.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            None => run::run(self.run),
            Some(Command::Run(args)) => run::run(args),
            Some(Command::Validate(args)) => validate::run(args),
            Some(Command::Map(args)) => map::run(args),
            Some(Command::Replay(args)) => replay::run(args),
            Some(Command::Quality(args)) => quality::run(args),
            Some(Command::Enrichment(args)) => enrichment::run(args),
            Some(Command::Generate(args)) => generate::run(args),
            Some(Command::Explain(args)) => explain::run(args),
            Some(Command::Reconcile(args)) => reconcile::run(args),
            Some(Command::Top(args)) => top::run(args),
            Some(Command::Tap(args)) => tap::run(args),
        }
    }
}
