//! `fbpixel [run] --config FILE… --config-dir DIR… [--watch-config]`: run a pipeline, and
//! reload its configuration on SIGHUP or, watched, when a file changes.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::config_args::ConfigArgs;
use super::watch::{Reloads, Trigger};
use crate::component::shutdown_pair;
use crate::config::{self, ConfigPaths, LoadOptions, MissingVars, PipelineConfig};
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
    /// Reload the configuration when one of its files changes (checked every second; a file
    /// added to or removed from a --config-dir folder too). SIGHUP reloads with or without it.
    /// Unchanged components keep running; a config that does not validate is refused and the
    /// running pipeline is kept (see README, "Reloading").
    #[arg(
        long,
        short = 'w',
        env = "FBPIXEL_WATCH_CONFIG",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub watch_config: bool,
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
    let code = runtime.block_on(run_pipeline(config, &paths, &args));
    // stdin's reader may be blocked in a read that never returns; do not wait for it.
    runtime.shutdown_background();
    code
}

async fn run_pipeline(
    config: PipelineConfig,
    paths: &ConfigPaths,
    args: &RunArgs,
) -> anyhow::Result<ExitCode> {
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
            tracing::info!(address = %addr, "API listening: GET /health, GET /metrics, GET /tap");
        }
        tokio::spawn(api.serve(api_signal))
    });

    let mut signals = Signals::install()?;
    let mut reloads = Reloads::install(paths, args.watch_config)?;
    let mut running = pieces.start();
    tracing::info!(components = config.components.len(), "pipeline started");
    for outcome in ["applied", "refused"] {
        telemetry::config_reloaded(outcome, 0);
    }
    let mut current = config;
    let limit = Duration::from_secs(args.graceful_shutdown_limit_secs);
    let (failure, signalled) = loop {
        tokio::select! {
            failure = running.wait() => break (failure, false),
            () = signals.next() => break (None, true),
            trigger = reloads.next() => {
                reloads.loaded();
                reload(&mut running, &mut current, paths, trigger).await;
            }
        }
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

/// Load the configuration again and apply it by difference; refuse it, keeping the running
/// pipeline, when it does not load or validate. Global settings are kept as they were.
async fn reload(
    running: &mut topology::Running,
    current: &mut PipelineConfig,
    paths: &ConfigPaths,
    trigger: Trigger,
) {
    tracing::info!(trigger = trigger.as_str(), "reloading configuration…");
    let env = |name: &str| std::env::var(name).ok();
    let options = LoadOptions {
        env: &env,
        missing_vars: MissingVars::Error,
    };
    let refuse = |errors: &dyn std::fmt::Display| {
        let listed: String = errors
            .to_string()
            .lines()
            .map(|line| format!("\n  x {line}"))
            .collect();
        tracing::error!("configuration refused; the running pipeline is unchanged:{listed}");
        telemetry::config_reloaded("refused", 1);
    };
    let mut config = match config::load(paths, &options) {
        Ok(config) => config,
        Err(errors) => return refuse(&errors),
    };
    keep_globals(current, &mut config);
    match running.reload(&config).await {
        Ok(changes) => {
            for warning in &config.warnings {
                tracing::warn!("{warning}");
            }
            tracing::info!(
                "configuration reloaded: added [{}], removed [{}], changed [{}], unchanged {}",
                changes.added.join(", "),
                changes.removed.join(", "),
                changes.changed.join(", "),
                changes.unchanged
            );
            telemetry::config_reloaded("applied", 1);
            *current = config;
        }
        Err(errors) => refuse(&errors),
    }
}

/// `data_dir` and `[api]` hold state and a listener the whole process shares: a reload says
/// they need a restart and keeps the ones in force.
fn keep_globals(current: &PipelineConfig, new: &mut PipelineConfig) {
    if new.data_dir != current.data_dir {
        let kept = match &current.data_dir {
            Some(dir) => format!("data_dir = \"{}\"", dir.display()),
            None => "no data_dir".to_owned(),
        };
        tracing::warn!(
            "data_dir changed; it takes effect only after a restart: the pipeline keeps {kept}"
        );
        new.data_dir = current.data_dir.clone();
    }
    if new.api != current.api {
        tracing::warn!(
            "[api] changed; it takes effect only after a restart: the API keeps its settings"
        );
        new.api = current.api.clone();
        new.api_file = current.api_file.clone();
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
