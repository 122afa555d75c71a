//! `fbpixel enrichment forget --config FILE --user-id ID`: erase one user from a sink's
//! enrichment store — the profile of the `userId` and every anonymous id linked to it — as a
//! deletion request requires.

use std::process::ExitCode;

use anyhow::bail;

use super::config_args::ConfigArgs;
use super::sink::load_sink;
use crate::config::MissingVars;
use crate::sinks::facebook_pixel::enrichment::{EnrichmentConfig, StoreKind, disk};

#[derive(Debug, clap::Args)]
pub struct EnrichmentArgs {
    #[command(subcommand)]
    pub command: EnrichmentCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum EnrichmentCommand {
    /// Erase a user (and the anonymous ids linked to it) from the enrichment store.
    Forget(ForgetArgs),
}

#[derive(Debug, clap::Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Which `facebook_pixel_server_side` sink, when the config has several.
    #[arg(long, value_name = "ID")]
    pub sink: Option<String>,
    /// The user's Segment `userId`.
    #[arg(long, value_name = "ID")]
    pub user_id: String,
}

pub fn run(args: EnrichmentArgs) -> anyhow::Result<ExitCode> {
    let EnrichmentCommand::Forget(args) = args.command;
    let sink = load_sink(&args.config, args.sink.as_deref(), MissingVars::Error)?;
    let path = sink.component.path();
    let enrichment = &sink.settings.enrichment;
    if !enrichment.enabled {
        bail!("{path}.enrichment is not enabled: this sink stores nothing about users");
    }
    if args.user_id.trim().is_empty() {
        bail!("--user-id is empty");
    }
    let removed = match enrichment.store {
        StoreKind::Memory => bail!(
            "{path}.enrichment.store is \"memory\": nothing is written anywhere, and what a running \
             process remembers is gone when it restarts (or after ttl_secs)"
        ),
        StoreKind::Disk => {
            let dir =
                EnrichmentConfig::disk_dir(sink.pipeline.data_dir.as_deref(), &sink.component.id)
                    .map_err(|e| anyhow::anyhow!("{path}.{e}"))?;
            if !dir.exists() {
                println!(
                    "fbpixel enrichment forget: {} holds no store yet; nothing to erase",
                    dir.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            disk::forget(&dir, &args.user_id).map_err(|e| anyhow::anyhow!("{e}"))?
        }
        StoreKind::NatsKv => crate::sinks::facebook_pixel::enrichment::nats_kv::forget_blocking(
            enrichment,
            &args.user_id,
        )
        .map_err(|e| anyhow::anyhow!("{path}.enrichment: {e}"))?,
    };
    println!(
        "fbpixel enrichment forget: erased {removed} profile(s) of that user (its userId and the anonymous ids linked to it)"
    );
    Ok(ExitCode::SUCCESS)
}
