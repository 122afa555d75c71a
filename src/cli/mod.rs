//! The command line: one file per subcommand.

pub mod map;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Segment-spec events to Meta's Conversions API.
#[derive(Debug, Parser)]
#[command(name = "fbpixel", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the Conversions API event each Segment message on stdin becomes (a dry run: nothing
    /// is sent, no credentials needed).
    Map(map::MapArgs),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Map(args) => map::run(args),
        }
    }
}
