//! The table of component types by their `type` name, above every component and below the
//! topology that looks them up. Adding a component type is its own module and one line here:
//! its settings' parser and its `EXAMPLE` (every setting at its default, which `fbpixel
//! generate` prints), so a type cannot be added without one.
//!
//! Parsing reports every problem of a table at once: the settings come back without the keys
//! they reject (when the rest parse), so their own checks run in the same pass.

use serde::de::DeserializeOwned;

use crate::component::{SinkConfig, SinkOptions, SourceConfig, TransformConfig};
use crate::config::{ComponentConfig, ComponentKind, ConfigError};
use crate::{sinks, sources, transforms};

/// The settings without the keys they reject (when the rest parse), and every error.
pub type Parsed<T> = (Option<Box<T>>, Vec<ConfigError>);

type Parse<T> = fn(&ComponentConfig) -> Parsed<T>;

/// A type's name, its parser, and its example settings.
type Entry<T> = (&'static str, Parse<T>, &'static str);

const SOURCES: &[Entry<dyn SourceConfig>] = &[
    (
        "stdin",
        source_of::<sources::stdin::StdinConfig>,
        sources::stdin::EXAMPLE,
    ),
    (
        "http_server",
        source_of::<sources::http_server::HttpServerConfig>,
        sources::http_server::EXAMPLE,
    ),
    (
        "segment",
        source_of::<sources::segment::SegmentConfig>,
        sources::segment::EXAMPLE,
    ),
    (
        "nats",
        source_of::<sources::nats::NatsSourceConfig>,
        sources::nats::EXAMPLE,
    ),
];

const TRANSFORMS: &[Entry<dyn TransformConfig>] = &[
    (
        "remap",
        transform_of::<transforms::remap::RemapConfig>,
        transforms::remap::EXAMPLE,
    ),
    (
        "filter",
        transform_of::<transforms::filter::FilterConfig>,
        transforms::filter::EXAMPLE,
    ),
];

const SINKS: &[Entry<dyn SinkConfig>] = &[
    (
        "console",
        sink_of::<sinks::console::ConsoleConfig>,
        sinks::console::EXAMPLE,
    ),
    (
        "file",
        sink_of::<sinks::file::FileConfig>,
        sinks::file::EXAMPLE,
    ),
    (
        "blackhole",
        sink_of::<sinks::blackhole::BlackholeConfig>,
        sinks::blackhole::EXAMPLE,
    ),
    (
        "nats",
        sink_of::<sinks::nats::NatsSinkConfig>,
        sinks::nats::EXAMPLE,
    ),
    (
        sinks::facebook_pixel::SINK_TYPE,
        sink_of::<sinks::facebook_pixel::FacebookPixelConfig>,
        sinks::facebook_pixel::EXAMPLE,
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

fn find<T: ?Sized>(table: &[Entry<T>], c: &ComponentConfig) -> Parsed<T> {
    match table.iter().find(|(name, ..)| *name == c.type_name) {
        Some((_, parse, _)) => parse(c),
        None => {
            let known: Vec<&str> = table.iter().map(|(name, ..)| *name).collect();
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

/// The type names of a kind, in the table's order.
pub fn type_names(kind: ComponentKind) -> Vec<&'static str> {
    fn names<T: ?Sized>(table: &[Entry<T>]) -> Vec<&'static str> {
        table.iter().map(|(name, ..)| *name).collect()
    }
    match kind {
        ComponentKind::Source => names(SOURCES),
        ComponentKind::Transform => names(TRANSFORMS),
        ComponentKind::Sink => names(SINKS),
    }
}

/// Every setting a component of this kind and type takes, at its default, as the body of its
/// TOML table (a comment line before each setting; one unset by default is commented out); a
/// sink's ends with the settings every sink takes. None for an unknown type.
pub fn example(kind: ComponentKind, type_name: &str) -> Option<String> {
    fn of<T: ?Sized>(table: &[Entry<T>], type_name: &str) -> Option<&'static str> {
        table
            .iter()
            .find(|(name, ..)| *name == type_name)
            .map(|(.., example)| *example)
    }
    let own = match kind {
        ComponentKind::Source => of(SOURCES, type_name),
        ComponentKind::Transform => of(TRANSFORMS, type_name),
        ComponentKind::Sink => of(SINKS, type_name),
    }?;
    let own = own.trim_matches('\n');
    Some(match kind {
        ComponentKind::Sink => format!("{own}\n{}", SinkOptions::EXAMPLE.trim_matches('\n')),
        _ => own.to_owned(),
    })
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
