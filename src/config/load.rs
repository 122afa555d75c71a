//! Parsing one file into components and merging files together.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use super::interpolate::interpolate_value;
use super::{
    ApiConfig, ComponentConfig, ComponentKind, ConfigError, ConfigErrors, LoadOptions,
    PipelineConfig, graph, join_key,
};

const KINDS: [ComponentKind; 3] = [
    ComponentKind::Source,
    ComponentKind::Transform,
    ComponentKind::Sink,
];

/// Accumulates files into one [`PipelineConfig`], collecting every error.
pub(super) struct Loader<'o, 'e> {
    opts: &'o LoadOptions<'e>,
    config: PipelineConfig,
    data_dir_file: PathBuf,
    api_file: PathBuf,
    errors: Vec<ConfigError>,
    // False once a file could not be read or parsed: its ids are unknown, so
    // graph checks would only add misleading "unknown input" errors.
    complete: bool,
}

/// What one file contributes.
struct FileParts {
    data_dir: Option<PathBuf>,
    api: Option<ApiConfig>,
    components: Vec<ComponentConfig>,
}

impl<'o, 'e> Loader<'o, 'e> {
    pub(super) fn new(opts: &'o LoadOptions<'e>) -> Self {
        Loader {
            opts,
            config: PipelineConfig::default(),
            data_dir_file: PathBuf::new(),
            api_file: PathBuf::new(),
            errors: Vec::new(),
            complete: true,
        }
    }

    /// Record a file that could not be loaded at all.
    pub(super) fn fail(&mut self, error: ConfigError) {
        self.errors.push(error);
        self.complete = false;
    }

    /// Parse `text` (the contents of `file`) and merge it in.
    pub(super) fn add(&mut self, text: &str, file: &Path) {
        let table = match parse_toml(text, file) {
            Ok(table) => table,
            Err(errors) => {
                self.errors.extend(errors);
                self.complete = false;
                return;
            }
        };
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let parts = self.parse_file(table, file, &mut errors, &mut warnings);
        self.errors
            .extend(errors.into_iter().map(|e| e.in_file(file)));
        self.config.warnings.extend(
            warnings
                .into_iter()
                .map(|w| format!("{}: {w}", file.display())),
        );
        self.merge(parts, file);
    }

    fn parse_file(
        &self,
        (table, order): (toml::Table, ComponentOrder),
        file: &Path,
        errors: &mut Vec<ConfigError>,
        warnings: &mut Vec<String>,
    ) -> FileParts {
        let mut parts = FileParts {
            data_dir: None,
            api: None,
            components: Vec::new(),
        };
        let mut by_kind: [Vec<ComponentConfig>; 3] = Default::default();
        for (key, mut value) in table {
            let kind = KINDS.iter().position(|k| k.table_name() == key);
            if kind.is_none() && key != "data_dir" && key != "api" {
                errors.push(ConfigError::UnknownTopLevelKey { key });
                continue;
            }
            let (env, mode) = (self.opts.env, self.opts.missing_vars);
            interpolate_value(&mut value, &key, env, mode, warnings, errors);
            match kind {
                Some(k) => by_kind[k] = components(KINDS[k], value, file, &order, errors),
                None if key == "data_dir" => parts.data_dir = data_dir(value, errors),
                None => parts.api = api(value, errors),
            }
        }
        parts.components = by_kind.into_iter().flatten().collect();
        parts
    }

    fn merge(&mut self, parts: FileParts, file: &Path) {
        merge_setting(
            &mut self.config.data_dir,
            &mut self.data_dir_file,
            parts.data_dir,
            file,
            "data_dir",
            &mut self.errors,
        );
        merge_setting(
            &mut self.config.api,
            &mut self.api_file,
            parts.api,
            file,
            "api",
            &mut self.errors,
        );
        self.config.components.extend(parts.components);
    }

    /// Run the cross-file checks and hand back the result.
    pub(super) fn finish(mut self) -> Result<PipelineConfig, ConfigErrors> {
        if self.complete {
            graph::check(&self.config.components, &mut self.errors);
        }
        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }
        if self.config.api.is_some() {
            self.config.api_file = Some(self.api_file);
        }
        let unused = graph::unused_warnings(&self.config.components);
        self.config.warnings.extend(unused);
        Ok(self.config)
    }
}

/// A setting that may appear in several files as long as it is the same.
fn merge_setting<T: PartialEq>(
    slot: &mut Option<T>,
    slot_file: &mut PathBuf,
    new: Option<T>,
    file: &Path,
    key: &'static str,
    errors: &mut Vec<ConfigError>,
) {
    let Some(new) = new else { return };
    match slot {
        Some(old) if *old != new => errors.push(ConfigError::Conflict {
            key,
            first: slot_file.clone(),
            second: file.to_path_buf(),
        }),
        Some(_) => {}
        None => {
            *slot = Some(new);
            *slot_file = file.to_path_buf();
        }
    }
}

/// Where each component's key starts in the file, keyed by (kind, id):
/// `toml::Table` is sorted by key, and components should keep file order.
type ComponentOrder = HashMap<(ComponentKind, String), usize>;

/// Parse TOML, reporting every syntax error as `FILE: line L, column C: msg`.
fn parse_toml(text: &str, file: &Path) -> Result<(toml::Table, ComponentOrder), Vec<ConfigError>> {
    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        return Err(syntax_errors
            .iter()
            .map(|e| syntax_error(text, file, e))
            .collect());
    }
    let order = component_order(doc.get_ref());
    toml::Table::deserialize(toml::de::Deserializer::from(doc))
        .map(|table| (table, order))
        .map_err(|e| vec![syntax_error(text, file, &e)])
}

fn component_order(doc: &DeTable<'_>) -> ComponentOrder {
    let mut order = HashMap::new();
    for (key, value) in doc.iter() {
        let Some(kind) = KINDS.into_iter().find(|k| k.table_name() == key.get_ref()) else {
            continue;
        };
        if let DeValue::Table(entries) = value.get_ref() {
            for (id, _) in entries.iter() {
                order.insert((kind, id.get_ref().to_string()), id.span().start);
            }
        }
    }
    order
}

// Built from message() and span() only: toml's Display quotes the offending
// source line, which could hold an inline secret.
fn syntax_error(text: &str, file: &Path, error: &toml::de::Error) -> ConfigError {
    // toml gives parse errors a span; for the rare one without, point at the start.
    let (line, column) = line_column(text, error.span().map_or(0, |s| s.start));
    ConfigError::Syntax {
        file: file.to_path_buf(),
        line,
        column,
        message: error.message().to_owned(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

fn data_dir(value: toml::Value, errors: &mut Vec<ConfigError>) -> Option<PathBuf> {
    let message = match value {
        toml::Value::String(s) if !s.is_empty() => return Some(PathBuf::from(s)),
        toml::Value::String(_) => "must not be empty",
        _ => "expected a string (a directory path)",
    };
    errors.push(ConfigError::Invalid {
        path: "data_dir".into(),
        message: message.into(),
    });
    None
}

fn api(value: toml::Value, errors: &mut Vec<ConfigError>) -> Option<ApiConfig> {
    let toml::Value::Table(table) = value else {
        errors.push(ConfigError::Invalid {
            path: "api".into(),
            message: "expected a table".into(),
        });
        return None;
    };
    let (api, api_errors) = super::deserialize_every_error::<ApiConfig>(table, "api");
    if !api_errors.is_empty() {
        errors.extend(api_errors);
        return None;
    }
    api
}

/// The components under one of `sources`, `transforms`, `sinks`, in file
/// order. A malformed entry still yields a component (with what could be
/// read) so that references to its id do not produce further errors.
fn components(
    kind: ComponentKind,
    value: toml::Value,
    file: &Path,
    order: &ComponentOrder,
    errors: &mut Vec<ConfigError>,
) -> Vec<ComponentConfig> {
    let toml::Value::Table(entries) = value else {
        errors.push(ConfigError::Invalid {
            path: kind.table_name().into(),
            message: "expected a table of components".into(),
        });
        return Vec::new();
    };
    let mut list: Vec<ComponentConfig> = entries
        .into_iter()
        .map(|(id, value)| component(kind, id, value, file, errors))
        .collect();
    list.sort_by_key(|c| {
        order
            .get(&(kind, c.id.clone()))
            .copied()
            .unwrap_or(usize::MAX)
    });
    list
}

fn component(
    kind: ComponentKind,
    id: String,
    value: toml::Value,
    file: &Path,
    errors: &mut Vec<ConfigError>,
) -> ComponentConfig {
    let mut c = ComponentConfig {
        id,
        kind,
        type_name: String::new(),
        inputs: Vec::new(),
        options: toml::Table::new(),
        file: file.to_path_buf(),
    };
    let path = c.path();
    let invalid = |key: &str, message: &str| ConfigError::Invalid {
        path: join_key(&path, key),
        message: message.into(),
    };
    let toml::Value::Table(mut options) = value else {
        errors.push(ConfigError::Invalid {
            path: path.clone(),
            message: "expected a table".into(),
        });
        return c;
    };
    match options.remove("type") {
        Some(toml::Value::String(s)) if !s.is_empty() => c.type_name = s,
        Some(toml::Value::String(_)) => errors.push(invalid("type", "must not be empty")),
        Some(_) => errors.push(invalid("type", "expected a string")),
        None => errors.push(ConfigError::MissingType { path: path.clone() }),
    }
    match (kind, options.remove("inputs")) {
        (ComponentKind::Source, None) => {}
        (ComponentKind::Source, Some(_)) => {
            errors.push(ConfigError::SourceWithInputs { path: path.clone() });
        }
        (_, None) => errors.push(ConfigError::MissingInputs { path: path.clone() }),
        (_, Some(toml::Value::Array(items))) if items.is_empty() => {
            errors.push(invalid("inputs", "must list at least one input"));
        }
        (_, Some(toml::Value::Array(items))) => {
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    toml::Value::String(s) if !s.is_empty() => c.inputs.push(s),
                    _ => errors.push(ConfigError::Invalid {
                        path: format!("{path}.inputs[{i}]"),
                        message: "expected a non-empty string".into(),
                    }),
                }
            }
        }
        (_, Some(_)) => errors.push(invalid("inputs", "expected an array of strings")),
    }
    c.options = options;
    c
}

#[cfg(test)]
mod tests {
    use super::super::{MissingVars, load_files, load_str};
    use super::*;

    const EXAMPLE: &str = r#"
data_dir = "/var/lib/fbpixel"
[api]
address = "127.0.0.1:8686"
[sources.web]
type = "segment"
address = "0.0.0.0:8080"
write_keys = ["${SEGMENT_WRITE_KEY}"]
[sources.input]
type = "stdin"
[transforms.tidy]
type = "remap"
inputs = ["web", "input"]
source = '.properties.fbp = .context.cookies._fbp ?? .properties.fbp'
[sinks.facebook]
type = "facebook_pixel_server_side"
inputs = ["tidy"]
pixel_id = "${FB_PIXEL_ID}"
access_token = "${FB_ACCESS_TOKEN}"
app_secret = "${FB_APP_SECRET:-}"
standard_events = { "Signed Up" = "CompleteRegistration" }
batch.max_events = 1000
[sinks.archive]
type = "file"
inputs = ["web*"]
path = "/var/log/fbpixel/events.ndjson"
"#;

    const TOKEN: &str = "EAAB-very-secret-token";

    fn env(name: &str) -> Option<String> {
        match name {
            "SEGMENT_WRITE_KEY" => Some("wk_123".into()),
            "FB_PIXEL_ID" => Some("1234567890".into()),
            "FB_ACCESS_TOKEN" => Some(TOKEN.into()),
            "EVIL" => Some("\"\n[sinks.evil]\ntype = \"file\"\ninputs = [\"web\"]".into()),
            _ => None,
        }
    }

    fn opts(missing_vars: MissingVars) -> LoadOptions<'static> {
        LoadOptions {
            env: &env,
            missing_vars,
        }
    }

    fn load(text: &str) -> Result<PipelineConfig, ConfigErrors> {
        load_str(text, Path::new("test.toml"), &opts(MissingVars::Error))
    }

    fn errors(text: &str) -> Vec<String> {
        load(text)
            .expect_err("config should be rejected")
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// A file in the temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "fbpixel-config-test-{}-{n}-{name}",
                std::process::id()
            ));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    const SOURCE: &str = "[sources.web]\ntype = \"segment\"\n";

    #[test]
    fn example_loads_with_env_vars() {
        let config = load(EXAMPLE).unwrap();
        assert_eq!(config.data_dir, Some(PathBuf::from("/var/lib/fbpixel")));
        assert_eq!(
            config.api,
            Some(ApiConfig {
                address: "127.0.0.1:8686".into(),
                enabled: None,
                max_connections: None,
                header_timeout_secs: 30,
            })
        );
        let ids: Vec<&str> = config.components.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["web", "input", "tidy", "facebook", "archive"]);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);

        let web = config.component("web").unwrap();
        assert_eq!(web.kind, ComponentKind::Source);
        assert_eq!(web.type_name, "segment");
        assert!(web.inputs.is_empty());
        assert_eq!(web.options["write_keys"][0].as_str(), Some("wk_123"));
        assert_eq!(web.file, PathBuf::from("test.toml"));

        let fb = config.component("facebook").unwrap();
        assert_eq!(fb.type_name, "facebook_pixel_server_side");
        assert_eq!(fb.inputs, ["tidy"]);
        assert!(!fb.options.contains_key("type") && !fb.options.contains_key("inputs"));
        assert_eq!(fb.options["pixel_id"].as_str(), Some("1234567890"));
        assert_eq!(fb.options["access_token"].as_str(), Some(TOKEN));
        assert_eq!(fb.options["app_secret"].as_str(), Some(""));
        assert_eq!(
            fb.options["standard_events"]["Signed Up"].as_str(),
            Some("CompleteRegistration")
        );
        assert_eq!(fb.options["batch"]["max_events"].as_integer(), Some(1000));

        let tidy = config.component("tidy").unwrap();
        assert_eq!(config.resolved_inputs(tidy), ["web", "input"]);
        let archive = config.component("archive").unwrap();
        assert_eq!(archive.inputs, ["web*"]);
        assert_eq!(config.resolved_inputs(archive), ["web"]);
        assert_eq!(config.sources().count(), 2);
        assert_eq!(config.transforms().count(), 1);
        assert_eq!(config.sinks().count(), 2);
    }

    #[test]
    fn example_with_missing_vars_in_empty_mode_loads_with_warnings() {
        let no_env = |_: &str| None;
        let opts = LoadOptions {
            env: &no_env,
            missing_vars: MissingVars::Empty,
        };
        let config = load_str(EXAMPLE, Path::new("test.toml"), &opts).unwrap();
        let fb = config.component("facebook").unwrap();
        assert_eq!(fb.options["access_token"].as_str(), Some(""));
        assert!(config.warnings.contains(
            &"test.toml: sinks.facebook.access_token: environment variable FB_ACCESS_TOKEN is not set; using an empty value"
                .to_owned()
        ), "{:?}", config.warnings);
        assert_eq!(config.warnings.len(), 3, "{:?}", config.warnings);
    }

    #[test]
    fn missing_vars_in_error_mode_are_all_reported() {
        let no_env = |_: &str| None;
        let opts = LoadOptions {
            env: &no_env,
            missing_vars: MissingVars::Error,
        };
        let errors = load_str(EXAMPLE, Path::new("test.toml"), &opts)
            .unwrap_err()
            .0;
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(shown.contains(
            &"test.toml: sinks.facebook.access_token: environment variable FB_ACCESS_TOKEN is not set"
                .to_owned()
        ));
        assert!(shown.contains(
            &"test.toml: sources.web.write_keys[0]: environment variable SEGMENT_WRITE_KEY is not set"
                .to_owned()
        ));
    }

    #[test]
    fn components_keep_file_order_not_key_order() {
        let config = load(
            "[sources.zeta]\ntype = \"a\"\n[sources.alpha]\ntype = \"a\"\n\
             [sinks.b]\ntype = \"x\"\ninputs = [\"*\"]\n[sinks.a]\ntype = \"x\"\ninputs = [\"*\"]\n",
        )
        .unwrap();
        let ids: Vec<&str> = config.components.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["zeta", "alpha", "b", "a"]);
    }

    #[test]
    fn unknown_top_level_key_is_named() {
        let errors = errors(&format!("{SOURCE}[sinkz.x]\ntype = \"file\"\n"));
        assert_eq!(
            errors,
            [
                "test.toml: unknown top-level key `sinkz` (expected data_dir, api, sources, transforms or sinks)"
            ]
        );
    }

    #[test]
    fn unknown_api_field_is_an_error() {
        let errors = errors(&format!("{SOURCE}[api]\naddress = \"x\"\nport = 1\n"));
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("test.toml: api: unknown field `port`"),
            "{errors:?}"
        );
    }

    #[test]
    fn missing_type_is_named_by_component_path() {
        let errors = errors(&format!("{SOURCE}[sinks.facebook]\ninputs = [\"web\"]\n"));
        assert_eq!(errors, ["test.toml: sinks.facebook: missing `type`"]);
    }

    #[test]
    fn non_string_type_is_an_error() {
        let errors = errors("[sources.web]\ntype = 5\n");
        assert_eq!(errors, ["test.toml: sources.web.type: expected a string"]);
    }

    #[test]
    fn sink_without_inputs_is_an_error() {
        let errors = errors(&format!("{SOURCE}[sinks.out]\ntype = \"file\"\n"));
        assert_eq!(errors, ["test.toml: sinks.out: missing `inputs`"]);
    }

    #[test]
    fn empty_or_malformed_inputs_are_errors() {
        let errors = errors(&format!(
            "{SOURCE}[sinks.a]\ntype = \"f\"\ninputs = []\n[sinks.b]\ntype = \"f\"\ninputs = \"web\"\n\
             [sinks.c]\ntype = \"f\"\ninputs = [\"web\", 3]\n"
        ));
        assert_eq!(
            errors,
            [
                "test.toml: sinks.a.inputs: must list at least one input",
                "test.toml: sinks.b.inputs: expected an array of strings",
                "test.toml: sinks.c.inputs[1]: expected a non-empty string",
            ]
        );
    }

    #[test]
    fn source_with_inputs_is_an_error() {
        let errors = errors("[sources.web]\ntype = \"segment\"\ninputs = [\"x\"]\n");
        assert_eq!(
            errors,
            ["test.toml: sources.web: sources do not take `inputs`"]
        );
    }

    #[test]
    fn input_naming_unknown_id_is_an_error() {
        let errors = errors(&format!(
            "{SOURCE}[sinks.out]\ntype = \"file\"\ninputs = [\"wbe\"]\n"
        ));
        assert_eq!(
            errors,
            ["test.toml: sinks.out: input `wbe` does not match any source or transform"]
        );
    }

    #[test]
    fn glob_input_matches_sources_and_transforms() {
        let config = load(
            "[sources.web_eu]\ntype = \"s\"\n[sources.web_us]\ntype = \"s\"\n\
             [transforms.web_tidy]\ntype = \"remap\"\ninputs = [\"web_eu\"]\n\
             [sinks.all]\ntype = \"file\"\ninputs = [\"web*\"]\n",
        )
        .unwrap();
        let all = config.component("all").unwrap();
        assert_eq!(
            config.resolved_inputs(all),
            ["web_eu", "web_us", "web_tidy"]
        );
    }

    #[test]
    fn self_input_is_an_error() {
        let errors = errors(&format!(
            "{SOURCE}[transforms.t]\ntype = \"remap\"\ninputs = [\"web\", \"t\"]\n\
             [sinks.s]\ntype = \"file\"\ninputs = [\"t\"]\n"
        ));
        assert_eq!(
            errors,
            ["test.toml: transforms.t: lists itself as an input"]
        );
    }

    #[test]
    fn sink_as_input_is_an_error() {
        let errors = errors(&format!(
            "{SOURCE}[sinks.a]\ntype = \"f\"\ninputs = [\"web\"]\n[sinks.b]\ntype = \"f\"\ninputs = [\"a\"]\n"
        ));
        assert_eq!(
            errors,
            ["test.toml: sinks.b: input `a` is a sink, and sinks cannot be inputs"]
        );
    }

    #[test]
    fn transform_cycle_is_an_error() {
        let errors = errors(&format!(
            "{SOURCE}[transforms.a]\ntype = \"r\"\ninputs = [\"web\", \"b\"]\n\
             [transforms.b]\ntype = \"r\"\ninputs = [\"a\"]\n[sinks.s]\ntype = \"f\"\ninputs = [\"b\"]\n"
        ));
        assert_eq!(errors, ["transforms form a cycle: a -> b -> a"]);
    }

    #[test]
    fn id_with_a_dot_is_named() {
        let errors = errors("[sources.\"web.eu\"]\ntype = \"segment\"\n");
        assert_eq!(
            errors,
            ["test.toml: sources: invalid component id `web.eu`: ids must not contain `.`"]
        );
    }

    #[test]
    fn empty_id_is_an_error() {
        let errors = errors("[sources.\"\"]\ntype = \"segment\"\n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("ids must not be empty"), "{errors:?}");
    }

    #[test]
    fn duplicate_id_in_one_file_across_kinds_is_an_error() {
        let errors = errors(&format!(
            "{SOURCE}[sinks.web]\ntype = \"f\"\ninputs = [\"x\"]\n"
        ));
        assert_eq!(
            errors[0],
            "duplicate component id `web`: sources.web in test.toml and sinks.web in test.toml"
        );
    }

    #[test]
    fn duplicate_id_across_two_files_names_both() {
        let a = TempFile::new("a.toml", SOURCE);
        let b = TempFile::new(
            "b.toml",
            "[transforms.web]\ntype = \"remap\"\ninputs = [\"x\"]\n",
        );
        let errors = load_files(&[a.0.clone(), b.0.clone()], &opts(MissingVars::Error))
            .unwrap_err()
            .0;
        let first = errors[0].to_string();
        assert!(
            matches!(errors[0], ConfigError::DuplicateId { .. }),
            "{first}"
        );
        assert_eq!(
            first,
            format!(
                "duplicate component id `web`: sources.web in {} and transforms.web in {}",
                a.0.display(),
                b.0.display()
            )
        );
    }

    #[test]
    fn several_files_merge_and_may_reference_each_other() {
        let a = TempFile::new("a.toml", &format!("data_dir = \"/d\"\n{SOURCE}"));
        let b = TempFile::new(
            "b.toml",
            "data_dir = \"/d\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"web\"]\n",
        );
        let config = load_files(&[a.0.clone(), b.0.clone()], &opts(MissingVars::Error)).unwrap();
        assert_eq!(config.data_dir, Some(PathBuf::from("/d")));
        assert_eq!(config.component("web").unwrap().file, a.0);
        assert_eq!(config.component("out").unwrap().file, b.0);
    }

    #[test]
    fn conflicting_data_dir_and_api_name_both_files() {
        let a = TempFile::new("a.toml", "data_dir = \"/a\"\napi.address = \"x:1\"\n");
        let b = TempFile::new("b.toml", "data_dir = \"/b\"\napi.address = \"x:2\"\n");
        let errors = load_files(&[a.0.clone(), b.0.clone()], &opts(MissingVars::Error))
            .unwrap_err()
            .0;
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let (a, b) = (a.0.display(), b.0.display());
        assert_eq!(
            shown,
            [
                format!("`data_dir` is set differently in {a} and {b}"),
                format!("`api` is set differently in {a} and {b}"),
            ]
        );
    }

    #[test]
    fn unreadable_file_names_path_and_os_error() {
        let missing = std::env::temp_dir().join("fbpixel-config-test-does-not-exist.toml");
        let errors = load_files(std::slice::from_ref(&missing), &opts(MissingVars::Error))
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), 1);
        let ConfigError::Read { file, error } = &errors[0] else {
            panic!("{errors:?}");
        };
        assert_eq!(file, &missing);
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
        let shown = errors[0].to_string();
        assert!(shown.starts_with(&format!("{}: cannot read file: ", missing.display())));
        assert!(shown.ends_with(&error.to_string()), "{shown}");
    }

    #[test]
    fn no_files_is_an_error() {
        let errors = load_files(&[], &opts(MissingVars::Error)).unwrap_err().0;
        assert!(matches!(errors[..], [ConfigError::NoFiles]));
    }

    #[test]
    fn syntax_error_has_line_and_column_and_no_snippet() {
        let text = "[sinks.fb]\ntype = \"x\"\naccess_token = \"EAAB-inline-secret\nnext = 1\n";
        let errors = load(text).unwrap_err().0;
        let ConfigError::Syntax { line, column, .. } = errors[0] else {
            panic!("{errors:?}");
        };
        assert_eq!((line, column), (3, 35));
        let shown = errors[0].to_string();
        assert!(
            shown.starts_with("test.toml: line 3, column 35: "),
            "{shown}"
        );
        assert!(!shown.contains("EAAB"), "{shown}");
        assert!(!shown.contains('|') && !shown.contains('^'), "{shown}");
    }

    #[test]
    fn several_syntax_errors_are_all_reported() {
        let errors = errors("a = [1,,2]\nb = }\n");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("test.toml: line 1, column 8: "),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("test.toml: line 2, column 5: "),
            "{errors:?}"
        );
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé€d", 9), (2, 4));
        // An offset inside a multi-byte character points at that character.
        assert_eq!(line_column("ab\ncé€d", 8), (2, 3));
        assert_eq!(line_column("", 0), (1, 1));
        assert_eq!(line_column("abc", 99), (1, 4));
    }

    #[test]
    fn interpolated_value_cannot_change_structure() {
        let config = load(&format!(
            "{SOURCE}[sinks.s]\ntype = \"file\"\ninputs = [\"web\"]\npath = \"${{EVIL}}\"\n"
        ))
        .unwrap();
        assert_eq!(config.sinks().count(), 1);
        assert!(config.component("evil").is_none());
        let s = config.component("s").unwrap();
        assert_eq!(s.options.len(), 1);
        assert_eq!(s.options["path"].as_str(), env("EVIL").as_deref());
    }

    #[test]
    fn keys_are_not_interpolated_when_loading() {
        let config = load(&format!(
            "{SOURCE}[sinks.s]\ntype = \"f\"\ninputs = [\"web\"]\nmap = {{ \"${{FB_PIXEL_ID}}\" = \"${{FB_PIXEL_ID}}\" }}\n"
        ))
        .unwrap();
        let map = config.component("s").unwrap().options["map"]
            .as_table()
            .unwrap()
            .clone();
        assert_eq!(
            map.get("${FB_PIXEL_ID}").and_then(|v| v.as_str()),
            Some("1234567890")
        );
    }

    #[test]
    fn every_problem_is_collected_and_none_shows_a_value() {
        let text = format!(
            "bogus = 1\n{SOURCE}[sinks.a]\ninputs = [\"nowhere\"]\n\
             [sinks.b]\ntype = \"f\"\ninputs = [\"web\"]\ntoken = \"${{FB_ACCESS_TOKEN}}${{UNSET}}\"\n"
        );
        let errors = errors(&text);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors.iter().all(|e| !e.contains(TOKEN)), "{errors:?}");
        let joined = load(&text).unwrap_err().to_string();
        assert_eq!(joined.lines().count(), 4);
    }

    #[test]
    fn unused_source_gives_a_warning() {
        let config = load(&format!(
            "{SOURCE}[sources.idle]\ntype = \"stdin\"\n[sinks.s]\ntype = \"f\"\ninputs = [\"web\"]\n"
        ))
        .unwrap();
        assert_eq!(
            config.warnings,
            ["sources.idle: not used as an input by any transform or sink"]
        );
    }
}
