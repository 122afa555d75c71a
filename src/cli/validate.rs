//! `fbpixel validate [--no-environment] FILE…`: check a config and print every problem.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{self, LoadOptions, MissingVars};
use crate::topology;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Skip the checks that touch the outside world (healthchecks), and treat
    /// unset environment variables as empty instead of as errors.
    #[arg(long)]
    pub no_environment: bool,
    /// Config file(s) to check together, as `--config` would merge them.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Seconds each healthcheck may take.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub healthcheck_timeout_secs: u64,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(validate(args)))
}

async fn validate(args: ValidateArgs) -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let options = LoadOptions {
        env: &env,
        missing_vars: if args.no_environment {
            MissingVars::Empty
        } else {
            MissingVars::Error
        },
    };
    let names: Vec<String> = args.files.iter().map(|f| f.display().to_string()).collect();
    let config = match config::load_files(&args.files, &options) {
        Ok(config) => config,
        Err(errors) => {
            println!("x Failed to load {names:?}");
            for e in &errors.0 {
                println!("  x {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    println!("√ Loaded {names:?}");
    for warning in &config.warnings {
        println!("  ~ {warning}");
    }

    // The checks alone; sinks are built (nothing bound or opened) only for their
    // healthchecks, which --no-environment skips.
    let mut problems = Vec::new();
    let sinks = match topology::validate(&config) {
        Ok(validated) if !args.no_environment => match validated.healthchecks().await {
            Ok(sinks) => sinks,
            Err(errors) => {
                problems.extend(errors.0);
                Vec::new()
            }
        },
        Ok(_) => Vec::new(),
        Err(errors) => {
            problems.extend(errors.0);
            Vec::new()
        }
    };
    if problems.is_empty() {
        println!("√ Component configuration");
    } else {
        println!("x Component configuration");
        for p in &problems {
            for (i, line) in p.lines().enumerate() {
                println!("{}{line}", if i == 0 { "  x " } else { "    " });
            }
        }
    }

    let mut healthy = true;
    if !args.no_environment && problems.is_empty() {
        let limit = Duration::from_secs(args.healthcheck_timeout_secs);
        for (path, check) in sinks {
            match tokio::time::timeout(limit, check).await {
                Ok(Ok(())) => println!("√ Health check {path:?}"),
                Ok(Err(e)) => {
                    healthy = false;
                    println!("x Health check {path:?}: {e}");
                }
                Err(_) => {
                    healthy = false;
                    println!(
                        "x Health check {path:?}: no answer within {}s",
                        limit.as_secs()
                    );
                }
            }
        }
    }
    println!("{}", "-".repeat(40));
    if problems.is_empty() && healthy {
        println!("Validated");
        ExitCode::SUCCESS
    } else {
        println!("Failed");
        ExitCode::FAILURE
    }
}
