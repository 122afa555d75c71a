//! Reading one file's table into components and merging files together.

use std::path::{Path, PathBuf};

use super::format::{self, ComponentOrder, Format};
use super::interpolate::interpolate_value;
use super::{
    ApiConfig, ComponentConfig, ComponentKind, ConfigError, ConfigErrors, LoadOptions,
    PipelineConfig, graph, join_key,
};

const KINDS: [ComponentKind; 3] = ComponentKind::ALL;

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

    /// Parse `text` (the contents of `file`, in the format its name tells) and merge it in.
    pub(super) fn add(&mut self, text: &str, file: &Path) {
        let table = match format::parse(Format::of(file), text, file) {
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
    use super::super::format::line_column;
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
            "EVIL_YAML" => Some("a\n  b: c\nsinks:\n  evil: {type: file, inputs: [web]}".into()),
            "EVIL_JSON" => Some("\", \"evil\": {\"type\": \"file\"}, \"x\": \"".into()),
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

    // ---------------------------------------------------------------------------------------
    // YAML and JSON: read into the same tree as TOML, so checked and named the same.
    // ---------------------------------------------------------------------------------------

    const EXAMPLE_YAML: &str = r#"
data_dir: /var/lib/fbpixel
api:
  address: 127.0.0.1:8686
sources:
  web:
    type: segment
    address: 0.0.0.0:8080
    write_keys: ["${SEGMENT_WRITE_KEY}"]
  input:
    type: stdin
transforms:
  tidy:
    type: remap
    inputs: [web, input]
    source: '.properties.fbp = .context.cookies._fbp ?? .properties.fbp'
sinks:
  facebook:
    type: facebook_pixel_server_side
    inputs: [tidy]
    pixel_id: "${FB_PIXEL_ID}"
    access_token: ${FB_ACCESS_TOKEN}
    app_secret: "${FB_APP_SECRET:-}"
    standard_events: { "Signed Up": CompleteRegistration }
    batch:
      max_events: 1000
  archive:
    type: file
    inputs: ["web*"]
    path: /var/log/fbpixel/events.ndjson
"#;

    const EXAMPLE_JSON: &str = r#"{
  "data_dir": "/var/lib/fbpixel",
  "api": { "address": "127.0.0.1:8686" },
  "sources": {
    "web": { "type": "segment", "address": "0.0.0.0:8080", "write_keys": ["${SEGMENT_WRITE_KEY}"] },
    "input": { "type": "stdin" }
  },
  "transforms": {
    "tidy": {
      "type": "remap",
      "inputs": ["web", "input"],
      "source": ".properties.fbp = .context.cookies._fbp ?? .properties.fbp"
    }
  },
  "sinks": {
    "facebook": {
      "type": "facebook_pixel_server_side",
      "inputs": ["tidy"],
      "pixel_id": "${FB_PIXEL_ID}",
      "access_token": "${FB_ACCESS_TOKEN}",
      "app_secret": "${FB_APP_SECRET:-}",
      "standard_events": { "Signed Up": "CompleteRegistration" },
      "batch": { "max_events": 1000 }
    },
    "archive": { "type": "file", "inputs": ["web*"], "path": "/var/log/fbpixel/events.ndjson" }
  }
}"#;

    fn load_as(name: &str, text: &str) -> Result<PipelineConfig, ConfigErrors> {
        load_str(text, Path::new(name), &opts(MissingVars::Error))
    }

    fn errors_as(name: &str, text: &str) -> Vec<String> {
        load_as(name, text)
            .expect_err("config should be rejected")
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// What a config says, without where it was read from.
    fn said(config: &PipelineConfig) -> impl PartialEq + std::fmt::Debug {
        let components: Vec<_> = config
            .components
            .iter()
            .map(|c| {
                (
                    c.id.clone(),
                    c.kind,
                    c.type_name.clone(),
                    c.inputs.clone(),
                    c.options.clone(),
                )
            })
            .collect();
        (config.data_dir.clone(), config.api.clone(), components)
    }

    #[test]
    fn the_example_in_yaml_and_in_json_is_the_toml_example() {
        let toml = load(EXAMPLE).unwrap();
        for (name, text) in [("test.yaml", EXAMPLE_YAML), ("test.json", EXAMPLE_JSON)] {
            let other = load_as(name, text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(said(&other), said(&toml), "{name}");
            assert_eq!(other.component("web").unwrap().file, PathBuf::from(name));
            assert_eq!(other.files, [PathBuf::from(name)]);
        }
    }

    #[test]
    fn yaml_and_json_components_keep_file_order_not_key_order() {
        let yaml = "sources:\n  zeta: {type: a}\n  alpha: {type: a}\n\
                    sinks:\n  b: {type: x, inputs: ['*']}\n  a: {type: x, inputs: ['*']}\n";
        let json = r#"{"sinks": {"b": {"type": "x", "inputs": ["*"]}, "a": {"type": "x", "inputs": ["*"]}},
                       "sources": {"zeta": {"type": "a"}, "alpha": {"type": "a"}}}"#;
        for (name, text) in [("o.yml", yaml), ("o.json", json)] {
            let config = load_as(name, text).unwrap();
            let ids: Vec<&str> = config.components.iter().map(|c| c.id.as_str()).collect();
            assert_eq!(ids, ["zeta", "alpha", "b", "a"], "{name}");
        }
    }

    #[test]
    fn a_yaml_or_json_null_is_named_by_file_and_key() {
        let yaml = "sources:\n  web:\n    type: segment\n    address:\n    write_keys: [a, ~]\n";
        assert_eq!(
            errors_as("n.yaml", yaml),
            [
                "n.yaml: sources.web.address: null is not a value: write \"\" for an empty string, or leave the key out",
                "n.yaml: sources.web.write_keys[1]: null is not a value: write \"\" for an empty string, or leave the key out",
            ]
        );
        let json = r#"{"sources": {"web": {"type": "segment", "address": null}}}"#;
        assert_eq!(
            errors_as("n.json", json),
            [
                "n.json: sources.web.address: null is not a value: write \"\" for an empty string, or leave the key out"
            ]
        );
    }

    #[test]
    fn a_yaml_key_that_is_not_a_string_is_named_with_its_place() {
        let yaml = "sources:\n  web:\n    type: segment\nsinks:\n  fb:\n    type: facebook_pixel_server_side\n    \
                    inputs: [web]\n    pixels:\n      2222222222: tok\n      true: x\n      ? [a, b]\n      : y\n      ~: z\n";
        assert_eq!(
            errors_as("k.yaml", yaml),
            [
                "k.yaml: sinks.fb.pixels: key 2222222222 is not a string: quote it (\"2222222222\")",
                "k.yaml: sinks.fb.pixels: key true is not a string: quote it (\"true\")",
                "k.yaml: sinks.fb.pixels: a key is a list: keys must be strings",
                "k.yaml: sinks.fb.pixels: a key is null (`~`, `null` or nothing): keys must be strings",
            ]
        );
    }

    #[test]
    fn a_key_set_twice_in_yaml_or_json_is_an_error() {
        let yaml = "sources:\n  web: {type: segment}\n  web: {type: stdin}\n";
        assert_eq!(
            errors_as("d.yaml", yaml),
            ["d.yaml: sources.web: is set twice in this mapping"]
        );
        let json = r#"{"sources": {"web": {"type": "segment", "type": "stdin"}}}"#;
        assert_eq!(
            errors_as("d.json", json),
            ["d.json: sources.web.type: is set twice in this mapping"]
        );
    }

    #[test]
    fn yaml_tags_and_integers_beyond_64_bits_are_refused_by_key() {
        let yaml =
            "sources:\n  web:\n    type: !custom segment\n    max_length: 18446744073709551616\n";
        let errors = errors_as("t.yaml", yaml);
        assert_eq!(
            errors[0],
            "t.yaml: sources.web.type: YAML tags such as `!custom` are not supported"
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn yaml_anchors_and_aliases_are_expanded() {
        let yaml = "sources:\n  web: &web {type: stdin, max_length: 5}\n  other: *web\n\
                    sinks:\n  out: {type: console, inputs: [web, other]}\n";
        let config = load_as("a.yaml", yaml).unwrap();
        let other = config.component("other").unwrap();
        assert_eq!(other.type_name, "stdin");
        assert_eq!(other.options["max_length"].as_integer(), Some(5));
    }

    #[test]
    fn an_empty_yaml_file_is_an_empty_config_as_an_empty_toml_file_is() {
        for name in ["e.toml", "e.yaml"] {
            let config = load_as(name, "# nothing yet\n").unwrap();
            assert!(config.components.is_empty(), "{name}");
        }
    }

    #[test]
    fn a_top_level_that_is_not_a_mapping_is_named() {
        assert_eq!(
            errors_as("l.yaml", "- a\n- b\n"),
            [
                "l.yaml: the top level must be a YAML mapping of settings (`sources`, `transforms`, `sinks`, …), not a list"
            ]
        );
        assert_eq!(
            errors_as("l.json", "\"x\""),
            [
                "l.json: the top level must be a JSON object of settings (`sources`, `transforms`, `sinks`, …), not a string"
            ]
        );
    }

    #[test]
    fn several_yaml_documents_in_one_file_are_an_error() {
        let errors = errors_as("m.yaml", "sources: {}\n---\nsinks: {}\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("m.yaml: "), "{errors:?}");
        assert!(errors[0].contains("more than one document"), "{errors:?}");
    }

    #[test]
    fn yaml_and_json_syntax_errors_have_line_and_column_and_no_text() {
        let yaml = "sinks:\n  fb:\n    access_token: EAAB-inline-secret: x\n  next: 1\n";
        let json = "{\"sinks\": {\"fb\": {\"access_token\": \"EAAB-inline-secret\",}}}";
        for (name, text, line) in [("s.yaml", yaml, 3), ("s.json", json, 1)] {
            let errors = load_as(name, text).unwrap_err().0;
            assert_eq!(errors.len(), 1, "{errors:?}");
            let ConfigError::Syntax {
                line: l, column, ..
            } = errors[0]
            else {
                panic!("{name}: {errors:?}");
            };
            assert_eq!(l, line, "{name}: {errors:?}");
            assert!(column > 1, "{name}: {errors:?}");
            let shown = errors[0].to_string();
            assert!(
                shown.starts_with(&format!("{name}: line {line}, column {column}: ")),
                "{shown}"
            );
            assert!(!shown.contains("EAAB"), "{shown}");
            assert!(!shown.contains(" at line "), "{shown}");
        }
    }

    #[test]
    fn json_syntax_error_columns_count_characters() {
        let errors = errors_as("c.json", "{\"é€\": 1,}");
        assert!(
            errors[0].starts_with("c.json: line 1, column 10: "),
            "{errors:?}"
        );
    }

    #[test]
    fn yaml_and_json_structure_errors_are_named_as_toml_ones() {
        let yaml =
            "sources:\n  web:\n    type: segment\n    inputs: [x]\nsinkz:\n  x: {type: file}\n";
        assert_eq!(
            errors_as("e.yaml", yaml),
            [
                "e.yaml: unknown top-level key `sinkz` (expected data_dir, api, sources, transforms or sinks)",
                "e.yaml: sources.web: sources do not take `inputs`",
            ]
        );
        let json = r#"{"sources": {"web": {"type": 5}}, "api": {"address": "x", "port": 1}}"#;
        let errors = errors_as("e.json", json);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("e.json: api: unknown field `port`"),
            "{errors:?}"
        );
        assert_eq!(errors[1], "e.json: sources.web.type: expected a string");
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct FileSink {
        path: String,
        max: Option<u32>,
    }

    #[test]
    fn a_component_rejects_a_yaml_or_json_key_as_it_rejects_a_toml_one() {
        let texts = [
            (
                "o.toml",
                "[sources.web]\ntype = \"segment\"\n\
                 [sinks.x]\ntype = \"file\"\ninputs = [\"web\"]\npathh = \"p\"\nmax = \"EAAB-secret\"\n",
            ),
            (
                "o.yaml",
                "sources:\n  web: {type: segment}\n\
                 sinks:\n  x:\n    type: file\n    inputs: [web]\n    pathh: p\n    max: EAAB-secret\n",
            ),
            (
                "o.json",
                r#"{"sources": {"web": {"type": "segment"}},
                    "sinks": {"x": {"type": "file", "inputs": ["web"], "pathh": "p", "max": "EAAB-secret"}}}"#,
            ),
        ];
        for (name, text) in texts {
            let config = load_as(name, text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let shown: Vec<String> = config
                .component("x")
                .unwrap()
                .parse_options::<FileSink>()
                .unwrap_err()
                .0
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(
                shown,
                [
                    format!("{name}: sinks.x.max: invalid type: string, expected u32"),
                    format!(
                        "{name}: sinks.x: unknown field `pathh`, expected `path` or `max`; did you mean `path`?"
                    ),
                    format!("{name}: sinks.x: missing field `path`"),
                ],
                "{name}"
            );
        }
    }

    #[test]
    fn an_interpolated_value_cannot_add_structure_in_yaml_or_json() {
        let yaml = "sources:\n  web: {type: segment}\nsinks:\n  s:\n    type: file\n    inputs: [web]\n    \
                    path: ${EVIL_YAML}\n    other: \"${EVIL_YAML}\"\n";
        let json = r#"{"sources": {"web": {"type": "segment"}},
                       "sinks": {"s": {"type": "file", "inputs": ["web"], "path": "${EVIL_JSON}", "other": "${EVIL_YAML}"}}}"#;
        for (name, text, var) in [("i.yaml", yaml, "EVIL_YAML"), ("i.json", json, "EVIL_JSON")] {
            let config = load_as(name, text).unwrap();
            assert_eq!(config.components.len(), 2, "{name}");
            let s = config.component("s").unwrap();
            assert_eq!(s.options.len(), 2, "{name}: {:?}", s.options);
            assert_eq!(s.options["path"].as_str(), env(var).as_deref(), "{name}");
            assert_eq!(
                s.options["other"].as_str(),
                env("EVIL_YAML").as_deref(),
                "{name}"
            );
        }
    }

    #[test]
    fn yaml_and_json_files_merge_with_toml_ones() {
        let a = TempFile::new("a.toml", &format!("data_dir = \"/d\"\n{SOURCE}"));
        let b = TempFile::new(
            "b.yaml",
            "data_dir: /d\ntransforms:\n  t: {type: remap, inputs: [web], source: '.'}\n",
        );
        let c = TempFile::new(
            "c.json",
            r#"{"sinks": {"out": {"type": "file", "inputs": ["t"]}}}"#,
        );
        let files = [a.0.clone(), b.0.clone(), c.0.clone()];
        let config = load_files(&files, &opts(MissingVars::Error)).unwrap();
        assert_eq!(config.data_dir, Some(PathBuf::from("/d")));
        let ids: Vec<(&str, &Path)> = config
            .components
            .iter()
            .map(|c| (c.id.as_str(), c.file.as_path()))
            .collect();
        assert_eq!(
            ids,
            [
                ("web", a.0.as_path()),
                ("t", b.0.as_path()),
                ("out", c.0.as_path())
            ]
        );
        assert_eq!(config.files, files);
    }

    #[test]
    fn a_config_dir_loads_with_named_files_and_its_problems_are_collected() {
        let dir = std::env::temp_dir().join(format!("fbpixel-config-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("10-sources.yaml"),
            "sources:\n  web: {type: segment}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("20-sinks.json"),
            r#"{"sinks": {"out": {"type": "file", "inputs": ["web"]}}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("notes.md"), "not a config").unwrap();
        let extra = TempFile::new(
            "extra.toml",
            "[sinks.more]\ntype = \"file\"\ninputs = [\"web\"]\n",
        );
        let paths = super::super::ConfigPaths {
            files: vec![extra.0.clone()],
            dirs: vec![dir.clone()],
        };
        let config = super::super::load(&paths, &opts(MissingVars::Error)).unwrap();
        let ids: Vec<&str> = config.components.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["more", "web", "out"]);
        assert_eq!(
            config.files,
            [
                extra.0.clone(),
                dir.join("10-sources.yaml"),
                dir.join("20-sinks.json")
            ]
        );

        let empty = dir.join("empty");
        std::fs::create_dir(&empty).unwrap();
        let paths = super::super::ConfigPaths {
            files: vec![extra.0.clone()],
            dirs: vec![empty.clone()],
        };
        let errors = super::super::load(&paths, &opts(MissingVars::Error)).unwrap_err();
        // The folder is named, and the file's input cannot be checked against what is missing.
        assert_eq!(
            errors.to_string(),
            format!(
                "{}: no .toml, .yaml, .yml or .json file in this folder",
                empty.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
