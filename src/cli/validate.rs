//! `fbpixel validate [--no-environment] [FILE…] [--config FILE…] [--config-dir DIR…]`: check a
//! config and print every problem.
//!
//! It runs every check `run` runs that needs nothing from the outside world (no port is bound,
//! no file or store opened), so a config it accepts is one `run` would start with, and then the
//! sinks' healthchecks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::config_args::ConfigArgs;
use crate::config::{self, LoadOptions, MissingVars, PipelineConfig};
use crate::topology;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// For CI, where the secrets are not set: skip the healthchecks, and check
    /// every `${VAR}` or `${VAR:?msg}` whose VAR is unset (or empty, for `:?`)
    /// with a placeholder value (each listed as a warning); `${VAR:-default}`
    /// takes its default.
    #[arg(long)]
    pub no_environment: bool,
    /// Config file(s) to check together, as `--config` would merge them (with those of
    /// --config and --config-dir).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Seconds each healthcheck may take.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub healthcheck_timeout_secs: u64,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let env = |name: &str| std::env::var(name).ok();
    let paths = args.config.paths(&args.files, &env)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(validate(args, paths)))
}

async fn validate(args: ValidateArgs, paths: config::ConfigPaths) -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let options = LoadOptions {
        env: &env,
        missing_vars: if args.no_environment {
            MissingVars::Placeholder
        } else {
            MissingVars::Error
        },
    };
    let config = match config::load(&paths, &options) {
        Ok(config) => config,
        Err(errors) => {
            let given = paths.files.iter().chain(&paths.dirs);
            println!("x Failed to load {:?}", names(given));
            for e in &errors.0 {
                println!("  x {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    // Each file, a folder's one by one, as Vector lists them.
    println!("√ Loaded {:?}", names(&config.files));
    for warning in &config.warnings {
        println!("  ~ {warning}");
    }

    // The checks alone (what `run` checks before it binds anything); sinks are built
    // (nothing bound or opened) only for their healthchecks, which --no-environment skips.
    let mut problems = listener_problems(&config);
    let sinks = match topology::validate(&config) {
        Ok(validated) if !args.no_environment && problems.is_empty() => {
            match validated.healthchecks().await {
                Ok(sinks) => sinks,
                Err(errors) => {
                    problems.extend(errors.0);
                    Vec::new()
                }
            }
        }
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

fn names<'p>(paths: impl IntoIterator<Item = &'p PathBuf>) -> Vec<String> {
    paths.into_iter().map(|p| p.display().to_string()).collect()
}

/// What `run` would refuse when it binds the `[api]` and the sources' listeners, checked without
/// binding: an address that is not IP:port, and two listeners on one port.
fn listener_problems(config: &PipelineConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let in_file = |file: Option<&Path>, message: String| match file {
        Some(file) if !file.as_os_str().is_empty() => format!("{}: {message}", file.display()),
        _ => message,
    };
    let mut listeners = Vec::new();
    let api = config.api.as_ref().filter(|api| api.enabled != Some(false));
    if let Some(api) = api {
        if let Err(e) =
            crate::http::connections::check_settings(api.max_connections, api.header_timeout_secs)
        {
            problems.push(in_file(config.api_file.as_deref(), format!("api: {e}")));
        }
        match crate::api::check_address(&api.address) {
            Ok(addr) => {
                listeners.push(("api.address".to_owned(), config.api_file.as_deref(), addr))
            }
            Err(e) => problems.push(in_file(config.api_file.as_deref(), e)),
        }
    }
    // Sources' own checks report a malformed address; only the parsed ones matter here.
    for c in config.sources() {
        if let Some(Ok(addr)) = c
            .options
            .get("address")
            .and_then(|a| a.as_str())
            .map(|a| a.parse())
        {
            listeners.push((
                format!("{}.address", c.path()),
                Some(c.file.as_path()),
                addr,
            ));
        }
    }
    for (i, (path, file, addr)) in listeners.iter().enumerate() {
        if let Some((first, _, _)) = listeners[..i]
            .iter()
            .find(|(_, _, other)| overlap(*other, *addr))
        {
            problems.push(in_file(
                *file,
                format!("{path}: {addr} is also where {first} listens; give each its own port"),
            ));
        }
    }
    problems
}

/// Whether two listeners would fight over one port: the same port (0 picks a free one), on the
/// same IP or with one on every IP of that family.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let env = |_: &str| None;
        let options = LoadOptions {
            env: &env,
            missing_vars: MissingVars::Error,
        };
        let config = config::load_str(text, Path::new("v.toml"), &options).unwrap();
        listener_problems(&config)
    }

    const SINK: &str = "[sinks.out]\ntype = \"console\"\ninputs = [\"*\"]\n";

    #[test]
    fn an_api_address_run_would_refuse_is_named() {
        let found = problems(&format!(
            "[api]\naddress = \"localhost\"\n[sources.in]\ntype = \"stdin\"\n{SINK}"
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("v.toml: api.address: \"localhost\" is not an IP:port address"),
            "{found:?}"
        );
        // Disabled, it is never bound.
        let found = problems(&format!(
            "[api]\naddress = \"localhost\"\nenabled = false\n[sources.in]\ntype = \"stdin\"\n{SINK}"
        ));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn two_listeners_on_one_port_are_named() {
        let found = problems(&format!(
            "[api]\naddress = \"127.0.0.1:8686\"\n\
             [sources.a]\ntype = \"http_server\"\naddress = \"0.0.0.0:8686\"\n\
             [sources.b]\ntype = \"http_server\"\naddress = \"127.0.0.2:8081\"\n\
             [sources.c]\ntype = \"http_server\"\naddress = \"127.0.0.1:0\"\n\
             [sources.d]\ntype = \"http_server\"\naddress = \"127.0.0.1:0\"\n{SINK}"
        ));
        assert_eq!(
            found,
            [
                "v.toml: sources.a.address: 0.0.0.0:8686 is also where api.address listens; give each its own port"
            ]
        );
    }
}
