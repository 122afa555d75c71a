//! The table of component types by their `type` name, above every component and below the
//! topology that looks them up. Adding a component type is its own module and one line here.

use serde::de::DeserializeOwned;

use crate::component::{SinkConfig, SinkOptions, SourceConfig, TransformConfig};
use crate::config::{ComponentConfig, ConfigError};
use crate::{sinks, sources, transforms};

type Parse<T> = fn(&ComponentConfig) -> Result<Box<T>, ConfigError>;

const SOURCES: &[(&str, Parse<dyn SourceConfig>)] = &[
    ("stdin", source_of::<sources::stdin::StdinConfig>),
    (
        "http_server",
        source_of::<sources::http_server::HttpServerConfig>,
    ),
    ("segment", source_of::<sources::segment::SegmentConfig>),
    ("nats", source_of::<sources::nats::NatsSourceConfig>),
];

const TRANSFORMS: &[(&str, Parse<dyn TransformConfig>)] = &[
    ("remap", transform_of::<transforms::remap::RemapConfig>),
    ("filter", transform_of::<transforms::filter::FilterConfig>),
];

const SINKS: &[(&str, Parse<dyn SinkConfig>)] = &[
    ("console", sink_of::<sinks::console::ConsoleConfig>),
    ("file", sink_of::<sinks::file::FileConfig>),
    ("blackhole", sink_of::<sinks::blackhole::BlackholeConfig>),
    ("nats", sink_of::<sinks::nats::NatsSinkConfig>),
    (
        sinks::facebook_pixel::SINK_TYPE,
        sink_of::<sinks::facebook_pixel::FacebookPixelConfig>,
    ),
];

fn source_of<T: SourceConfig + DeserializeOwned + 'static>(
    c: &ComponentConfig,
) -> Result<Box<dyn SourceConfig>, ConfigError> {
    Ok(Box::new(c.parse_options::<T>()?))
}

fn transform_of<T: TransformConfig + DeserializeOwned + 'static>(
    c: &ComponentConfig,
) -> Result<Box<dyn TransformConfig>, ConfigError> {
    Ok(Box::new(c.parse_options::<T>()?))
}

fn sink_of<T: SinkConfig + DeserializeOwned + 'static>(
    c: &ComponentConfig,
) -> Result<Box<dyn SinkConfig>, ConfigError> {
    Ok(Box::new(c.parse_options::<T>()?))
}

fn find<T: ?Sized>(table: &[(&str, Parse<T>)], c: &ComponentConfig) -> Result<Box<T>, ConfigError> {
    match table.iter().find(|(name, _)| *name == c.type_name) {
        Some((_, parse)) => parse(c),
        None => {
            let known: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
            Err(ConfigError::Invalid {
                path: format!("{}.type", c.path()),
                message: format!(
                    "unknown {} type `{}`; known types: {}",
                    c.kind.table_name().trim_end_matches('s'),
                    c.type_name,
                    known.join(", ")
                ),
            })
        }
    }
}

/// Parse a source's settings by its `type`.
pub fn source(c: &ComponentConfig) -> Result<Box<dyn SourceConfig>, ConfigError> {
    find(SOURCES, c)
}

/// Parse a transform's settings by its `type`.
pub fn transform(c: &ComponentConfig) -> Result<Box<dyn TransformConfig>, ConfigError> {
    find(TRANSFORMS, c)
}

/// Parse a sink's settings by its `type`: the settings every sink takes, and its own.
pub fn sink(c: &ComponentConfig) -> Result<(SinkOptions, Box<dyn SinkConfig>), ConfigError> {
    let (shared, own) = SinkOptions::split(c)?;
    let sink = find(SINKS, &own).map_err(|e| with_shared_keys(e, &c.path()))?;
    Ok((shared, sink))
}

/// An unknown key of a sink's own table also lists the keys every sink takes, which were split
/// off before the sink read its table.
fn with_shared_keys(e: ConfigError, sink_path: &str) -> ConfigError {
    match e {
        ConfigError::InFile { file, error } => ConfigError::InFile {
            file,
            error: Box::new(with_shared_keys(*error, sink_path)),
        },
        ConfigError::Invalid { path, message }
            if path == sink_path && message.starts_with("unknown field") =>
        {
            ConfigError::Invalid {
                path,
                message: format!(
                    "{message}, or one of every sink's: `acknowledgements`, `buffer`, `healthcheck`"
                ),
            }
        }
        other => other,
    }
}
