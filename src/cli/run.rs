//! `fbpixel [run] --config FILE… --config-dir DIR…`: run a pipeline.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::config_args::ConfigArgs;
use crate::component::shutdown_pair;
use crate::config::{self, LoadOptions, MissingVars, PipelineConfig};
use crate::state::Permissions;
use crate::telemetry::{self, LogFormat};
use crate::topology;

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Seconds to drain and flush after SIGINT/SIGTERM before giving up on what is left.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 60,
        env = "FBPIXEL_GRACEFUL_SHUTDOWN_LIMIT_SECS"
    )]
    pub graceful_shutdown_limit_secs: u64,
    /// Log line format on stderr (level from FBPIXEL_LOG, default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "FBPIXEL_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Refuse to start unless every sink's healthcheck passes.
    #[arg(long)]
    pub require_healthy: bool,
    /// Refuse to start when a state file or folder (disk buffer, enrichment store, dead
    /// letter) can be read or written by other users, instead of logging a warning.
    #[arg(long)]
    pub strict_permissions: bool,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let env = |name: &str| std::env::var(name).ok();
    let paths = args.config.paths(&[], &env)?;
    telemetry::init_logs(args.log_format);
    let options = LoadOptions {
        env: &env,
        missing_vars: MissingVars::Error,
    };
    let config = config::load(&paths, &options).map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime.block_on(run_pipeline(config, &args));
    // stdin's reader may be blocked in a read that never returns; do not wait for it.
    runtime.shutdown_background();
    code
}

async fn run_pipeline(config: PipelineConfig, args: &RunArgs) -> anyhow::Result<ExitCode> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    // Every setting is checked before anything is bound or opened.
    let validated = topology::validate(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let api_config = config.api.as_ref().filter(|api| api.enabled != Some(false));
    let api = match api_config {
        Some(api) => {
            let handle = crate::api::install_recorder().map_err(anyhow::Error::msg)?;
            Some(
                crate::api::Api::bind(api, handle)
                    .await
                    .map_err(anyhow::Error::msg)?,
            )
        }
        None => None,
    };
    let permissions = if args.strict_permissions {
        Permissions::Strict
    } else {
        Permissions::Warn
    };
    let mut pieces = validated
        .build(permissions)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.require_healthy {
        pieces.require_healthy().await.map_err(anyhow::Error::msg)?;
    }

    let (api_stop, api_signal) = shutdown_pair();
    let api_task = api.map(|api| {
        if let Some(addr) = api.local_addr() {
            tracing::info!(address = %addr, "API listening: GET /health, GET /metrics");
        }
        tokio::spawn(api.serve(api_signal))
    });

    let mut signals = Signals::install()?;
    let mut running = pieces.start();
    tracing::info!(components = config.components.len(), "pipeline started");
    let limit = Duration::from_secs(args.graceful_shutdown_limit_secs);
    let (failure, signalled) = tokio::select! {
        failure = running.wait() => (failure, false),
        () = signals.next() => (None, true),
    };
    if let Some((info, error)) = &failure {
        tracing::error!(component = %info.id, "component failed: {error}; shutting down");
    } else if signalled {
        tracing::info!(limit_secs = limit.as_secs(), "signal received; draining");
    } else {
        tracing::info!("every source has finished; draining");
    }
    let finished_by_itself = !signalled && failure.is_none();
    let deadline = async move {
        if finished_by_itself {
            // Finished by itself: drain as long as it takes, unless told to stop.
            signals.next().await;
            tracing::info!(limit_secs = limit.as_secs(), "signal received; draining");
        }
        // The grace period runs while a further signal ends the process at once.
        tokio::select! {
            () = tokio::time::sleep(limit) => {}
            () = signals.next() => {
                tracing::warn!("second signal received; exiting without draining");
                std::process::exit(130);
            }
        }
    };
    let report = running.stop(deadline, failure).await;
    api_stop.trigger();
    if let Some(task) = api_task {
        let _ = task.await;
    }
    for (info, events) in &report.cancelled {
        tracing::error!(
            component = %info.id,
            queued_events = events,
            "did not finish within --graceful-shutdown-limit-secs={}; its events were not flushed (senders that wait for acknowledgements got 503)",
            limit.as_secs()
        );
    }
    for (info, error) in &report.failed {
        tracing::error!(component = %info.id, "failed: {error}");
    }
    if report.is_clean() {
        tracing::info!("pipeline stopped");
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// SIGINT and SIGTERM, installed before the pipeline starts so that a signal
/// arriving at any moment is seen (and not left to kill the process).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the next SIGINT or SIGTERM.
    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
