//! The settings every sink takes, whatever its type, as in Vector: `acknowledgements`,
//! `buffer` and `healthcheck`. They are split off a sink's table before the sink reads its own
//! settings, and the topology honours them for every sink alike.

use serde::Deserialize;

use super::BufferConfig;
use crate::acks::AcknowledgementsConfig;
use crate::config::{ComponentConfig, ConfigError};

/// What every sink's table may hold besides its own settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkOptions {
    /// Whether the sources feeding this sink wait for its deliveries before answering their
    /// senders; unset: the sink type's default (see
    /// [`SinkConfig::acknowledgements_by_default`](super::SinkConfig::acknowledgements_by_default)).
    #[serde(default)]
    pub acknowledgements: Option<AcknowledgementsConfig>,
    /// Where events wait in front of the sink.
    #[serde(default)]
    pub buffer: BufferConfig,
    /// Whether the sink's healthcheck runs at start.
    #[serde(default)]
    pub healthcheck: HealthcheckConfig,
}

/// `healthcheck.enabled`: check the destination at start (default true). A failing check is
/// logged, not fatal, unless `--require-healthy`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckConfig {
    /// Whether it runs.
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for HealthcheckConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn yes() -> bool {
    true
}

impl SinkOptions {
    /// The settings every sink takes, at their defaults, for `fbpixel generate` (as each sink
    /// type's `EXAMPLE`: a comment line before each setting).
    pub const EXAMPLE: &'static str = r#"
# Whether the sources feeding this sink answer their senders only once it delivered their events; unset: the sink type's default.
# acknowledgements = true
# Where events wait for the sink: `memory` or `disk` (under data_dir; survives a crash).
buffer.type = "memory"
# Most events queued in a memory buffer.
buffer.max_events = 10000
# Most bytes stored in a disk buffer (at least 1 MiB).
buffer.max_size = 268435456
# When the buffer is full: `block` (backpressure up to the senders) or `drop_newest`.
buffer.when_full = "block"
# Run the sink's healthcheck at start and in `fbpixel validate`.
healthcheck.enabled = true
"#;

    /// The keys of these settings in a sink's table.
    pub const KEYS: [&'static str; 3] = ["acknowledgements", "buffer", "healthcheck"];

    /// Split a sink's table: the shared settings, the table of the sink's own settings
    /// (everything else, to be parsed with its own unknown-key check), and every problem of
    /// the shared ones (those that do not parse are left at their defaults).
    pub fn split(c: &ComponentConfig) -> (SinkOptions, ComponentConfig, Vec<ConfigError>) {
        let mut own = c.clone();
        let mut shared = c.clone();
        shared.options = toml::Table::new();
        for key in Self::KEYS {
            if let Some(value) = own.options.remove(key) {
                shared.options.insert(key.to_owned(), value);
            }
        }
        let (options, errors) = shared.parse_options_salvaged::<SinkOptions>();
        (options.unwrap_or_default(), own, errors)
    }

    /// Whether the sources wait for this sink, given its type's default.
    pub fn acknowledgements(&self, by_default: bool) -> bool {
        self.acknowledgements
            .map_or(by_default, AcknowledgementsConfig::enabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::BufferType;
    use crate::config::ComponentKind;

    fn sink(text: &str) -> ComponentConfig {
        ComponentConfig {
            id: "out".into(),
            kind: ComponentKind::Sink,
            type_name: "console".into(),
            inputs: vec!["in".into()],
            options: toml::from_str(text).unwrap(),
            file: Default::default(),
        }
    }

    #[test]
    fn shared_settings_are_split_off_and_the_rest_is_the_sinks_own() {
        let (shared, own, errors) = SinkOptions::split(&sink(
            "target = \"stderr\"\nacknowledgements = true\nbuffer.type = \"disk\"\nhealthcheck.enabled = false",
        ));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(shared.acknowledgements.map(|a| a.enabled()), Some(true));
        assert_eq!(shared.buffer.kind, BufferType::Disk);
        assert!(!shared.healthcheck.enabled);
        assert_eq!(own.options.keys().collect::<Vec<_>>(), ["target"]);
    }

    #[test]
    fn defaults_leave_acknowledgements_to_the_sink_type_and_check_health() {
        let (shared, _, errors) = SinkOptions::split(&sink(""));
        assert!(errors.is_empty());
        assert!(shared.acknowledgements(true));
        assert!(!shared.acknowledgements(false));
        assert!(shared.healthcheck.enabled);
        assert_eq!(shared.buffer, BufferConfig::default());
    }

    #[test]
    fn a_bad_shared_setting_names_the_sink_and_the_key() {
        let (_, _, errors) = SinkOptions::split(&sink("healthcheck.enable = false"));
        let e = errors[0].to_string();
        assert!(
            e.starts_with("sinks.out.healthcheck: unknown field `enable`"),
            "{e}"
        );
        assert!(e.contains("did you mean `enabled`"), "{e}");
        let (_, _, errors) = SinkOptions::split(&sink(
            "acknowledgements.enabled = true\nacknowledgements.x = 1",
        ));
        assert!(!errors.is_empty());
    }
}
