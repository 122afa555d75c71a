//! The command line: one file per subcommand.

mod api_client;
mod config_args;
mod enrichment;
mod generate;
mod map;
mod replay;
mod run;
mod sink;
mod tap;
mod top;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Segment-spec events to Meta's Conversions API.
///
/// Without a subcommand, runs the pipeline of the given config files until
/// SIGINT/SIGTERM, or until every source has finished (stdin at end of input).
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
    /// Manage what the sink's `enrichment` remembers about users.
    Enrichment(enrichment::EnrichmentArgs),
    /// Print an example config with every setting of the named component types, each at its
    /// default with a comment, wired by `inputs` in the order given (as `vector generate`).
    Generate(generate::GenerateArgs),
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
            Some(Command::Enrichment(args)) => enrichment::run(args),
            Some(Command::Generate(args)) => generate::run(args),
            Some(Command::Top(args)) => top::run(args),
            Some(Command::Tap(args)) => tap::run(args),
        }
    }
}
