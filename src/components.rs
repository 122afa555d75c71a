//! The table of component types by their `type` name, above every component and below the
//! topology that looks them up. Adding a component type is its own module and one line here.
//!
//! Parsing reports every problem of a table at once: the settings come back without the keys
//! they reject (when the rest parse), so their own checks run in the same pass.

use serde::de::DeserializeOwned;

use crate::component::{SinkConfig, SinkOptions, SourceConfig, TransformConfig};
use crate::config::{ComponentConfig, ConfigError};
use crate::{sinks, sources, transforms};

/// The settings without the keys they reject (when the rest parse), and every error.
pub type Parsed<T> = (Option<Box<T>>, Vec<ConfigError>);

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

/// Parse a source's settings by its `type`.
pub fn source(c: &ComponentConfig) -> Parsed<dyn SourceConfig> {
    find(SOURCES, c)
}

/// Parse a transform's settings by its `type`.
pub fn transform(c: &ComponentConfig) -> Parsed<dyn TransformConfig> {
    find(TRANSFORMS, c)
}

/// Parse a sink's settings by its `type`: the settings every sink takes (defaults where they
/// do not parse, so the errors say what to fix), its own, and every error of both.
pub fn sink(c: &ComponentConfig) -> (SinkOptions, Option<Box<dyn SinkConfig>>, Vec<ConfigError>) {
    let (shared, own, mut errors) = SinkOptions::split(c);
    let (sink, own_errors) = find(SINKS, &own);
    errors.extend(
        own_errors
            .into_iter()
            .map(|e| with_shared_keys(e, &c.path())),
    );
    (shared, sink, errors)
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
            let note = " (or `acknowledgements`, `buffer`, `healthcheck`, which every sink takes)";
            // The sink's own names were suggested from already; the shared ones are
            // suggested from only when none of those was close.
            let message = match message.find("; did you mean") {
                Some(at) => format!("{}{note}{}", &message[..at], &message[at..]),
                None => {
                    let near = crate::config::unknown_name(&message)
                        .and_then(|(key, _)| crate::config::did_you_mean(key, SinkOptions::KEYS))
                        .map(|near| format!("; did you mean `{near}`?"))
                        .unwrap_or_default();
                    format!("{message}{note}{near}")
                }
            };
            ConfigError::Invalid { path, message }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ComponentKind;

    fn console(text: &str) -> Vec<String> {
        let c = ComponentConfig {
            id: "out".into(),
            kind: ComponentKind::Sink,
            type_name: "console".into(),
            inputs: vec!["in".into()],
            options: toml::from_str(text).unwrap(),
            file: Default::default(),
        };
        sink(&c).2.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn an_unknown_sink_key_names_the_keys_every_sink_takes_and_their_near_misses() {
        assert!(console("acknowledgements = true\nbuffer.max_events = 5").is_empty());
        let errors = console("acknowledgement = true");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("sinks.out: unknown field `acknowledgement`"),
            "{errors:?}"
        );
        assert!(errors[0].contains("which every sink takes"), "{errors:?}");
        assert!(
            errors[0].ends_with("did you mean `acknowledgements`?"),
            "{errors:?}"
        );
    }
}
