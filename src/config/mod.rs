//! Loading the pipeline configuration: Vector-style files naming `sources`,
//! `transforms` and `sinks`, in TOML, YAML or JSON (told by the extension,
//! mixed freely), with `${VAR}` environment interpolation in string values.
//!
//! Loading never stops at the first problem: every error found is returned
//! in [`ConfigErrors`], each naming the file and key path it concerns.

mod error;
mod format;
mod graph;
pub mod interpolate;
mod load;
mod paths;
mod secret;
mod suggest;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use self::error::{ConfigError, ConfigErrors};
pub use self::format::Format;
pub use self::interpolate::{MissingVars, PLACEHOLDER, interpolate};
pub use self::paths::{ConfigPaths, files_in_dir};
pub use self::secret::Secret;
pub use self::suggest::{did_you_mean, unknown_name};

/// The three kinds of pipeline component, named after their top-level table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComponentKind {
    /// An entry under `[sources]`.
    Source,
    /// An entry under `[transforms]`.
    Transform,
    /// An entry under `[sinks]`.
    Sink,
}

impl ComponentKind {
    /// Every kind, in the order a file's components are listed: sources, transforms, sinks.
    pub const ALL: [ComponentKind; 3] = [
        ComponentKind::Source,
        ComponentKind::Transform,
        ComponentKind::Sink,
    ];

    /// The top-level table this kind lives in: `sources`, `transforms` or `sinks`.
    pub fn table_name(self) -> &'static str {
        match self {
            ComponentKind::Source => "sources",
            ComponentKind::Transform => "transforms",
            ComponentKind::Sink => "sinks",
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.table_name())
    }
}

/// The `[api]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address, e.g. `127.0.0.1:8686` (the default, as Vector's); checked by
    /// [`crate::api::check_address`], which both `run` and `validate` call.
    #[serde(default = "default_api_address")]
    pub address: String,
    /// `None` when not written, so the caller picks the default.
    pub enabled: Option<bool>,
    /// Most connections open at once (`None`: 128, or less under a low open-file limit);
    /// checked by `crate::http::connections`.
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request head (see `crate::http::connections`).
    #[serde(default = "crate::http::connections::default_header_timeout_secs")]
    pub header_timeout_secs: u64,
}

/// The folder `kind/id` under `data_dir` where a component keeps state, or an error saying
/// that `setting` needs `data_dir` and how to set it.
pub fn state_dir(
    data_dir: Option<&Path>,
    setting: &str,
    kind: &str,
    id: &str,
) -> Result<PathBuf, String> {
    match data_dir {
        Some(dir) => Ok(dir.join(kind).join(id)),
        None => Err(format!(
            "{setting} keeps its files under `data_dir`: set `data_dir = \"/var/lib/fbpixel\"` (any writable folder) at the top of the config"
        )),
    }
}

fn default_api_address() -> String {
    "127.0.0.1:8686".to_owned()
}

/// One source, transform or sink, with its options still untyped so each
/// component can deserialize its own settings via [`ComponentConfig::parse_options`].
#[derive(Clone)]
pub struct ComponentConfig {
    /// The table key, e.g. `facebook` for `[sinks.facebook]`.
    pub id: String,
    /// Which top-level table it was defined in.
    pub kind: ComponentKind,
    /// The `type` value.
    pub type_name: String,
    /// Inputs as written (globs unexpanded); always empty for sources.
    pub inputs: Vec<String>,
    /// Every key other than `type` and `inputs`, already interpolated.
    pub options: toml::Table,
    /// The file this component was defined in.
    pub file: PathBuf,
}

impl ComponentConfig {
    /// Deserialize `options` into a component's own settings struct (which
    /// uses `#[serde(deny_unknown_fields)]`), reporting every rejected key,
    /// each prefixed with the component path, e.g. "sinks.facebook: unknown
    /// field `foo`, expected one of ...", with a "did you mean" for a near miss.
    ///
    /// String values are elided from type errors because options hold
    /// interpolated secrets.
    pub fn parse_options<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigErrors> {
        match self.parse_options_salvaged() {
            (Some(value), errors) if errors.is_empty() => Ok(value),
            (_, errors) => Err(ConfigErrors(errors)),
        }
    }

    /// Like [`ComponentConfig::parse_options`], but also hands back the
    /// settings without the rejected keys when they parse so, for `validate`
    /// to check the rest of them in the same run.
    pub fn parse_options_salvaged<T: serde::de::DeserializeOwned>(
        &self,
    ) -> (Option<T>, Vec<ConfigError>) {
        let (value, errors) = deserialize_every_error(self.options.clone(), &self.path());
        let errors = if self.file.as_os_str().is_empty() {
            errors
        } else {
            errors.into_iter().map(|e| e.in_file(&self.file)).collect()
        };
        (value, errors)
    }

    /// The key path of this component, e.g. `sinks.facebook`.
    pub fn path(&self) -> String {
        join_key(self.kind.table_name(), &self.id)
    }
}

/// The most errors reported for one table: past this many, the rest are
/// likely the same mistake again, and each costs a full deserialization.
const MAX_ERRORS_PER_TABLE: usize = 32;

/// Deserialize `table` (found at `path`) into `T`, reporting every key it
/// rejects rather than only the first, as serde would.
///
/// serde stops at the first unknown or ill-typed key, so each rejected key
/// is recorded and removed and the rest tried again, until it parses or an
/// error names no key that can be removed. An error caused by such a
/// removal (a required key now missing) is not reported: the key's own error
/// already was.
pub(crate) fn deserialize_every_error<T: serde::de::DeserializeOwned>(
    mut table: toml::Table,
    path: &str,
) -> (Option<T>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let mut removed: Vec<Vec<String>> = Vec::new();
    while errors.len() < MAX_ERRORS_PER_TABLE {
        let e = match toml::Value::Table(table.clone()).try_into::<T>() {
            Ok(value) => return (Some(value), errors),
            Err(e) => e,
        };
        let (mut keys, message) = error::split_toml_error(&e);
        if let Some(missing) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            let mut missing_path = keys.clone();
            missing_path.push(missing.to_owned());
            if removed.contains(&missing_path) {
                break;
            }
        }
        let error_path = keys.iter().fold(path.to_owned(), |p, k| join_key(&p, k));
        errors.push(ConfigError::Invalid {
            path: error_path,
            message: suggest::with_suggestion(&message),
        });
        // An unknown field's error is located at its table; any other at the key itself.
        if let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(field, _)| field)
        {
            keys.push(field.to_owned());
        }
        if !remove_key(&mut table, &keys) {
            break;
        }
        removed.push(keys);
    }
    (None, errors)
}

/// Remove the value at `keys` (nested table keys), if there is one.
fn remove_key(table: &mut toml::Table, keys: &[String]) -> bool {
    match keys {
        [] => false,
        [last] => table.remove(last).is_some(),
        [first, rest @ ..] => match table.get_mut(first) {
            Some(toml::Value::Table(inner)) => remove_key(inner, rest),
            _ => false,
        },
    }
}

// Hand-written so that `{:?}` of a config (in a log line or a panic) cannot
// leak an access token: option strings are shown as "***".
impl fmt::Debug for ComponentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentConfig")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("type_name", &self.type_name)
            .field("inputs", &self.inputs)
            .field(
                "options",
                &redacted(&toml::Value::Table(self.options.clone())),
            )
            .field("file", &self.file)
            .finish()
    }
}

fn redacted(value: &toml::Value) -> toml::Value {
    match value {
        toml::Value::String(_) => toml::Value::String("***".into()),
        toml::Value::Array(items) => toml::Value::Array(items.iter().map(redacted).collect()),
        toml::Value::Table(table) => toml::Value::Table(
            table
                .iter()
                .map(|(k, v)| (k.clone(), redacted(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The merged configuration of all files.
#[derive(Clone, Debug, Default)]
pub struct PipelineConfig {
    /// The files loaded, in order (a folder's one by one).
    pub files: Vec<PathBuf>,
    /// The `data_dir` setting, if any file set it.
    pub data_dir: Option<PathBuf>,
    /// The `[api]` table, if any file set it.
    pub api: Option<ApiConfig>,
    /// The file that set `[api]`, for messages about it.
    pub api_file: Option<PathBuf>,
    /// In file order: sources, then transforms, then sinks per file, each
    /// kind in the order written.
    pub components: Vec<ComponentConfig>,
    /// Non-fatal problems (unset variables in [`MissingVars::Empty`] and
    /// [`MissingVars::Placeholder`] modes, components nothing reads from).
    pub warnings: Vec<String>,
}

impl PipelineConfig {
    /// All sources, in order.
    pub fn sources(&self) -> impl Iterator<Item = &ComponentConfig> {
        self.of_kind(ComponentKind::Source)
    }

    /// All transforms, in order.
    pub fn transforms(&self) -> impl Iterator<Item = &ComponentConfig> {
        self.of_kind(ComponentKind::Transform)
    }

    /// All sinks, in order.
    pub fn sinks(&self) -> impl Iterator<Item = &ComponentConfig> {
        self.of_kind(ComponentKind::Sink)
    }

    fn of_kind(&self, kind: ComponentKind) -> impl Iterator<Item = &ComponentConfig> {
        self.components.iter().filter(move |c| c.kind == kind)
    }

    /// The component with this id, of any kind.
    pub fn component(&self, id: &str) -> Option<&ComponentConfig> {
        self.components.iter().find(|c| c.id == id)
    }

    /// Input patterns expanded to the concrete upstream ids, without
    /// duplicates, in the order the patterns and components are written.
    pub fn resolved_inputs(&self, c: &ComponentConfig) -> Vec<&str> {
        graph::resolve_inputs(&self.components, c)
    }
}

/// How to load: where environment variables come from and what an unset one means.
pub struct LoadOptions<'e> {
    /// Looks up an environment variable; a function so tests need not touch
    /// the process environment.
    pub env: &'e dyn Fn(&str) -> Option<String>,
    /// What a `${VAR}` without a default does when VAR is unset.
    pub missing_vars: MissingVars,
}

/// Read, parse and merge the given files, then check the pipeline graph.
///
/// An unreadable file is an error naming its path and the OS error.
pub fn load_files(paths: &[PathBuf], opts: &LoadOptions) -> Result<PipelineConfig, ConfigErrors> {
    load(&ConfigPaths::files(paths), opts)
}

/// Read, parse and merge the files of `paths` (those named, then every folder's), then check
/// the pipeline graph.
///
/// An unreadable file or folder, and a folder with no config file, are errors naming it.
pub fn load(paths: &ConfigPaths, opts: &LoadOptions) -> Result<PipelineConfig, ConfigErrors> {
    if paths.is_empty() {
        return Err(ConfigErrors(vec![ConfigError::NoFiles]));
    }
    let (files, dir_errors) = paths.expand();
    let mut loader = load::Loader::new(opts);
    for error in dir_errors {
        loader.fail(error);
    }
    for path in &files {
        match std::fs::read_to_string(path) {
            Ok(text) => loader.add(&text, path),
            Err(error) => loader.fail(ConfigError::Read {
                file: path.clone(),
                error,
            }),
        }
    }
    let mut config = loader.finish()?;
    config.files = files;
    Ok(config)
}

/// Load a single configuration given as text; `origin` names it in messages, and its
/// extension tells the format ([`Format::of`]).
pub fn load_str(
    text: &str,
    origin: &Path,
    opts: &LoadOptions,
) -> Result<PipelineConfig, ConfigErrors> {
    let mut loader = load::Loader::new(opts);
    loader.add(text, origin);
    let mut config = loader.finish()?;
    config.files = vec![origin.to_path_buf()];
    Ok(config)
}

/// Append `key` to a dotted key path, quoting it as TOML would when it is
/// not a bare key, so paths stay unambiguous.
fn join_key(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct FacebookSettings {
        pixel_id: String,
        access_token: Secret,
        batch: Option<Batch>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Batch {
        max_events: u32,
    }

    fn sink(options: &str, file: &str) -> ComponentConfig {
        ComponentConfig {
            id: "facebook".into(),
            kind: ComponentKind::Sink,
            type_name: "facebook_pixel_server_side".into(),
            inputs: vec!["web".into()],
            options: toml::from_str(options).unwrap(),
            file: PathBuf::from(file),
        }
    }

    #[test]
    fn component_kind_displays_as_table_name() {
        assert_eq!(ComponentKind::Source.to_string(), "sources");
        assert_eq!(ComponentKind::Transform.to_string(), "transforms");
        assert_eq!(ComponentKind::Sink.to_string(), "sinks");
    }

    #[test]
    fn path_joins_kind_and_id() {
        assert_eq!(sink("", "").path(), "sinks.facebook");
    }

    #[test]
    fn join_key_quotes_keys_that_are_not_bare() {
        assert_eq!(join_key("a", "b_c-1"), "a.b_c-1");
        assert_eq!(join_key("a", "Signed Up"), r#"a."Signed Up""#);
        assert_eq!(join_key("", "x"), "x");
    }

    #[test]
    fn parse_options_deserializes_settings() {
        let c = sink(
            "pixel_id = \"1\"\naccess_token = \"tok\"\nbatch.max_events = 5",
            "",
        );
        let s: FacebookSettings = c.parse_options().unwrap();
        assert_eq!(s.pixel_id, "1");
        assert_eq!(s.access_token.expose(), "tok");
        assert_eq!(s.batch.unwrap().max_events, 5);
    }

    #[test]
    fn parse_options_error_names_component_path_and_unknown_field() {
        let c = sink("pixel_id = \"1\"\naccess_token = \"tok\"\nfoo = 1", "");
        let e = c
            .parse_options::<FacebookSettings>()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("sinks.facebook: unknown field `foo`, expected one of "),
            "{e}"
        );
    }

    #[test]
    fn parse_options_reports_every_unknown_key_with_suggestions() {
        let c = sink(
            "pixel_idd = \"1\"\naccess_token = \"tok\"\nbogus = 1\nbatch.max_event = 5\nbatch.other = 1",
            "",
        );
        let errors: Vec<String> = c
            .parse_options::<FacebookSettings>()
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect();
        // Required keys still missing once the unknown ones are set aside are real errors too.
        assert_eq!(
            errors,
            [
                "sinks.facebook.batch: unknown field `max_event`, expected `max_events`; did you mean `max_events`?",
                "sinks.facebook.batch: unknown field `other`, expected `max_events`",
                "sinks.facebook.batch: missing field `max_events`",
                "sinks.facebook: unknown field `bogus`, expected one of `pixel_id`, `access_token`, `batch`",
                "sinks.facebook: unknown field `pixel_idd`, expected one of `pixel_id`, `access_token`, `batch`; did you mean `pixel_id`?",
                "sinks.facebook: missing field `pixel_id`",
            ]
        );
    }

    #[test]
    fn parse_options_salvaged_keeps_what_parses_and_reports_type_errors_too() {
        let c = sink(
            "pixel_id = \"1\"\naccess_token = \"tok\"\nfoo = 1\nbatch = 7",
            "",
        );
        let (settings, errors) = c.parse_options_salvaged::<FacebookSettings>();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert!(
            shown[0].starts_with("sinks.facebook.batch: invalid type"),
            "{shown:#?}"
        );
        assert!(
            shown[1].starts_with("sinks.facebook: unknown field `foo`"),
            "{shown:#?}"
        );
        assert_eq!(settings.unwrap().pixel_id, "1");
    }

    #[test]
    fn a_required_key_removed_for_its_error_is_not_also_reported_missing() {
        let c = sink("pixel_id = 5\naccess_token = \"tok\"\nfoo = 1", "");
        let errors = c.parse_options::<FacebookSettings>().unwrap_err().0;
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert!(
            shown[1].starts_with("sinks.facebook.pixel_id: invalid type"),
            "{shown:#?}"
        );
        assert!(
            shown.iter().all(|e| !e.contains("missing field")),
            "{shown:#?}"
        );
    }

    #[test]
    fn parse_options_error_is_prefixed_with_the_file_when_known() {
        let c = sink(
            "pixel_id = \"1\"\naccess_token = \"tok\"\nfoo = 1",
            "fb.toml",
        );
        let e = c
            .parse_options::<FacebookSettings>()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("fb.toml: sinks.facebook: unknown field `foo`"),
            "{e}"
        );
    }

    #[test]
    fn parse_options_error_names_nested_key_and_hides_string_values() {
        let c = sink(
            "pixel_id = \"1\"\naccess_token = \"tok\"\nbatch.max_events = \"EAAB-secret\"",
            "",
        );
        let e = c
            .parse_options::<FacebookSettings>()
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "sinks.facebook.batch.max_events: invalid type: string, expected u32"
        );
    }

    #[test]
    fn parse_options_secret_type_error_does_not_show_the_value() {
        let c = sink("pixel_id = \"1\"\naccess_token = 8675309", "");
        let e = c
            .parse_options::<FacebookSettings>()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("sinks.facebook.access_token: "), "{e}");
        assert!(!e.contains("8675309"), "{e}");
    }

    #[test]
    fn component_debug_hides_option_strings() {
        let c = sink("access_token = \"EAAB-secret\"\nbatch.max_events = 5", "");
        let shown = format!("{c:?}");
        assert!(!shown.contains("EAAB"), "{shown}");
        assert!(
            shown.contains("access_token") && shown.contains("***"),
            "{shown}"
        );
        assert!(shown.contains("max_events"), "{shown}");
    }

    #[test]
    fn pipeline_lookups() {
        let mut source = sink("", "");
        source.id = "web".into();
        source.kind = ComponentKind::Source;
        source.inputs.clear();
        let config = PipelineConfig {
            components: vec![source, sink("", "")],
            ..PipelineConfig::default()
        };
        assert_eq!(
            config.sources().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["web"]
        );
        assert_eq!(config.transforms().count(), 0);
        assert_eq!(
            config.sinks().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["facebook"]
        );
        assert_eq!(config.component("web").unwrap().kind, ComponentKind::Source);
        assert!(config.component("nope").is_none());
        let fb = config.component("facebook").unwrap();
        assert_eq!(config.resolved_inputs(fb), ["web"]);
    }
}
