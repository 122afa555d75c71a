//! What the commands that act on `facebook_pixel_server_side` sinks (`map`, `replay`,
//! `enrichment forget`, `quality`) share: loading the config and finding the sink(s) in it.

use anyhow::bail;

use super::config_args::ConfigArgs;
use crate::component::SinkOptions;
use crate::config::{self, ComponentConfig, LoadOptions, MissingVars, PipelineConfig};
use crate::sinks::facebook_pixel::{FacebookPixelConfig, SINK_TYPE};

/// One sink of a loaded config, with its parsed settings.
pub(crate) struct Sink {
    /// The whole config (for `data_dir`).
    pub pipeline: PipelineConfig,
    /// The sink's table.
    pub component: ComponentConfig,
    /// Its settings.
    pub settings: FacebookPixelConfig,
}

/// Load the config `args` name and parse the sink `sink_id` (needed only when there are
/// several). Config warnings go to stderr.
pub(crate) fn load_sink(
    args: &ConfigArgs,
    sink_id: Option<&str>,
    missing_vars: MissingVars,
) -> anyhow::Result<Sink> {
    let pipeline = load_pipeline(args, missing_vars)?;
    let component = pick_sink(&pipeline, sink_id)?.clone();
    parse_sink(pipeline, component)
}

/// Every `facebook_pixel_server_side` sink of the config `args` name, or only `sink_id`.
pub(crate) fn load_sinks(
    args: &ConfigArgs,
    sink_id: Option<&str>,
    missing_vars: MissingVars,
) -> anyhow::Result<Vec<Sink>> {
    let pipeline = load_pipeline(args, missing_vars)?;
    let components: Vec<ComponentConfig> = match sink_id {
        Some(_) => vec![pick_sink(&pipeline, sink_id)?.clone()],
        None => pipeline
            .sinks()
            .filter(|c| c.type_name == SINK_TYPE)
            .cloned()
            .collect(),
    };
    if components.is_empty() {
        bail!("the config has no `{SINK_TYPE}` sink");
    }
    components
        .into_iter()
        .map(|component| parse_sink(pipeline.clone(), component))
        .collect()
}

fn load_pipeline(args: &ConfigArgs, missing_vars: MissingVars) -> anyhow::Result<PipelineConfig> {
    let env = |name: &str| std::env::var(name).ok();
    let paths = args.paths(&[], &env)?;
    let options = LoadOptions {
        env: &env,
        missing_vars,
    };
    let pipeline = config::load(&paths, &options).map_err(|e| anyhow::anyhow!("{e}"))?;
    for warning in &pipeline.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(pipeline)
}

fn parse_sink(pipeline: PipelineConfig, component: ComponentConfig) -> anyhow::Result<Sink> {
    // The settings every sink shares (buffer, acknowledgements, healthcheck) are not the
    // sink's own.
    let (_, own, errors) = SinkOptions::split(&component);
    if !errors.is_empty() {
        bail!("{}", crate::config::ConfigErrors(errors));
    }
    let settings = own.parse_options().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Sink {
        pipeline,
        component,
        settings,
    })
}

fn pick_sink<'c>(
    pipeline: &'c PipelineConfig,
    wanted: Option<&str>,
) -> anyhow::Result<&'c ComponentConfig> {
    let ours: Vec<&ComponentConfig> = pipeline
        .sinks()
        .filter(|c| c.type_name == SINK_TYPE)
        .collect();
    match wanted {
        Some(id) => match pipeline.sinks().find(|c| c.id == id) {
            Some(c) if c.type_name == SINK_TYPE => Ok(c),
            Some(c) => bail!("sinks.{id} is a `{}` sink, not `{SINK_TYPE}`", c.type_name),
            None => bail!(
                "there is no sink `{id}`; the config's {SINK_TYPE} sinks are: {}",
                ids(&ours)
            ),
        },
        None => match ours.as_slice() {
            [only] => Ok(only),
            [] => bail!("the config has no `{SINK_TYPE}` sink"),
            several => bail!(
                "the config has {} `{SINK_TYPE}` sinks ({}); pick one with --sink",
                several.len(),
                ids(several)
            ),
        },
    }
}

fn ids(components: &[&ComponentConfig]) -> String {
    if components.is_empty() {
        return "none".to_string();
    }
    components
        .iter()
        .map(|c| c.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
