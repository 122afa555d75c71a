//! Component types by their `type` name. Adding a component type is one line here.

use serde::de::DeserializeOwned;

use super::component::{SinkConfig, SourceConfig, TransformConfig};
use crate::config::{ComponentConfig, ConfigError, ConfigErrors};
use crate::{sinks, sources, transforms};

/// The settings without the keys they reject (when the rest parse), and every error.
type Parsed<T> = (Option<Box<T>>, Vec<ConfigError>);

type Parse<T> = fn(&ComponentConfig) -> Parsed<T>;

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
) -> Parsed<dyn SourceConfig> {
    let (settings, errors) = c.parse_options_salvaged::<T>();
    (
        settings.map(|s| Box::new(s) as Box<dyn SourceConfig>),
        errors,
    )
}

fn transform_of<T: TransformConfig + DeserializeOwned + 'static>(
    c: &ComponentConfig,
) -> Parsed<dyn TransformConfig> {
    let (settings, errors) = c.parse_options_salvaged::<T>();
    (
        settings.map(|s| Box::new(s) as Box<dyn TransformConfig>),
        errors,
    )
}

fn sink_of<T: SinkConfig + DeserializeOwned + 'static>(
    c: &ComponentConfig,
) -> Parsed<dyn SinkConfig> {
    let (settings, errors) = c.parse_options_salvaged::<T>();
    (settings.map(|s| Box::new(s) as Box<dyn SinkConfig>), errors)
}

fn find<T: ?Sized>(table: &[(&str, Parse<T>)], c: &ComponentConfig) -> Parsed<T> {
    match table.iter().find(|(name, _)| *name == c.type_name) {
        Some((_, parse)) => parse(c),
        None => {
            let known: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
            let suggestion = crate::config::did_you_mean(&c.type_name, known.iter().copied())
                .map(|near| format!("; did you mean `{near}`?"))
                .unwrap_or_default();
            let error = ConfigError::Invalid {
                path: format!("{}.type", c.path()),
                message: format!(
                    "unknown {} type `{}`; known types: {}{suggestion}",
                    c.kind.table_name().trim_end_matches('s'),
                    c.type_name,
                    known.join(", ")
                ),
            };
            (None, vec![error])
        }
    }
}

/// The settings if there is no error at all.
fn strict<T: ?Sized>((settings, errors): Parsed<T>) -> Result<Box<T>, ConfigErrors> {
    match settings {
        Some(settings) if errors.is_empty() => Ok(settings),
        _ => Err(ConfigErrors(errors)),
    }
}

/// Parse a source's settings by its `type`, reporting every problem.
pub fn source(c: &ComponentConfig) -> Result<Box<dyn SourceConfig>, ConfigErrors> {
    strict(find(SOURCES, c))
}

/// Parse a transform's settings by its `type`, reporting every problem.
pub fn transform(c: &ComponentConfig) -> Result<Box<dyn TransformConfig>, ConfigErrors> {
    strict(find(TRANSFORMS, c))
}

/// Parse a sink's settings by its `type`, reporting every problem.
pub fn sink(c: &ComponentConfig) -> Result<Box<dyn SinkConfig>, ConfigErrors> {
    strict(find(SINKS, c))
}

/// For `validate`: a source's settings without the keys they reject, so
/// that the rest are checked in the same run, and every error.
pub fn source_salvaged(c: &ComponentConfig) -> Parsed<dyn SourceConfig> {
    find(SOURCES, c)
}

/// For `validate`: as [`source_salvaged`], for a transform.
pub fn transform_salvaged(c: &ComponentConfig) -> Parsed<dyn TransformConfig> {
    find(TRANSFORMS, c)
}

/// For `validate`: as [`source_salvaged`], for a sink.
pub fn sink_salvaged(c: &ComponentConfig) -> Parsed<dyn SinkConfig> {
    find(SINKS, c)
}
