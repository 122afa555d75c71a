//! Configuration errors. Messages name files, key paths and variable names
//! but never variable values, which may be secrets.

use std::fmt;
use std::path::{Path, PathBuf};

use super::ComponentKind;

/// One problem in the configuration: what is wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `load` was given no file and no folder.
    #[error("no configuration files given")]
    NoFiles,
    /// A file could not be read.
    #[error("{}: cannot read file: {error}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// Invalid TOML, YAML or JSON. The message is the parser's, without a source snippet (a
    /// snippet could show an inline secret).
    #[error("{}: line {line}, column {column}: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// The parser's description of the problem.
        message: String,
    },
    /// A problem with a file as a whole (a YAML stream of several documents, a top level that
    /// is not a table).
    #[error("{message}")]
    Document {
        /// What is wrong.
        message: String,
    },
    /// A `--config-dir` folder that could not be listed.
    #[error("{}: cannot read folder: {error}", dir.display())]
    ReadDir {
        /// The folder.
        dir: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A `--config-dir` folder with no config file in it.
    #[error("{}: no .toml, .yaml, .yml or .json file in this folder", dir.display())]
    EmptyDir {
        /// The folder.
        dir: PathBuf,
    },
    /// Another error, located in a file.
    #[error("{}: {error}", file.display())]
    InFile {
        /// The file.
        file: PathBuf,
        /// What is wrong there.
        error: Box<ConfigError>,
    },
    /// A top-level key other than data_dir, api, sources, transforms, sinks.
    #[error("unknown top-level key `{key}` (expected data_dir, api, sources, transforms or sinks)")]
    UnknownTopLevelKey {
        /// The key.
        key: String,
    },
    /// A value of the wrong shape, or an option a component rejected.
    #[error("{path}: {message}")]
    Invalid {
        /// Dotted key path, e.g. `sinks.facebook.batch`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A `${` that is not a well-formed reference.
    #[error("{path}: malformed `${{` at character {position}: {problem}")]
    MalformedReference {
        /// Key path of the string.
        path: String,
        /// 1-based character position of the `$` in the string.
        position: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// `${VAR}` with VAR unset, in [`super::MissingVars::Error`] mode.
    #[error("{path}: environment variable {var} is not set")]
    UnsetVariable {
        /// Key path of the string.
        path: String,
        /// The variable name.
        var: String,
    },
    /// `${VAR:?message}` with VAR unset or empty.
    #[error("{path}: environment variable {var} is not set or empty{}", colon_prefixed(.message))]
    RequiredVariable {
        /// Key path of the string.
        path: String,
        /// The variable name.
        var: String,
        /// The message written after `:?`.
        message: String,
    },
    /// A component without a string `type`.
    #[error("{path}: missing `type`")]
    MissingType {
        /// Component path, e.g. `sinks.facebook`.
        path: String,
    },
    /// A transform or sink without `inputs`.
    #[error("{path}: missing `inputs`")]
    MissingInputs {
        /// Component path.
        path: String,
    },
    /// A source with `inputs`.
    #[error("{path}: sources do not take `inputs`")]
    SourceWithInputs {
        /// Component path.
        path: String,
    },
    /// A component id that is empty or contains `.`.
    #[error("{kind}: invalid component id `{id}`: {reason}")]
    InvalidId {
        /// Where it was defined.
        kind: ComponentKind,
        /// The id.
        id: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// The same id defined twice, in any kinds or files.
    #[error(
        "duplicate component id `{id}`: {first_kind}.{id} in {} and {second_kind}.{id} in {}",
        first_file.display(),
        second_file.display()
    )]
    DuplicateId {
        /// The id.
        id: String,
        /// Kind of the first definition.
        first_kind: ComponentKind,
        /// File of the first definition.
        first_file: PathBuf,
        /// Kind of the second definition.
        second_kind: ComponentKind,
        /// File of the second definition.
        second_file: PathBuf,
    },
    /// An input matching no source or transform.
    #[error("{path}: input `{input}` does not match any source or transform")]
    UnknownInput {
        /// Component path.
        path: String,
        /// The input as written.
        input: String,
    },
    /// An input naming a sink.
    #[error("{path}: input `{input}` is a sink, and sinks cannot be inputs")]
    SinkInput {
        /// Component path.
        path: String,
        /// The input as written.
        input: String,
    },
    /// A component listing itself as an input.
    #[error("{path}: lists itself as an input")]
    SelfInput {
        /// Component path.
        path: String,
    },
    /// Transforms reading from each other in a loop.
    #[error("transforms form a cycle: {}", .cycle.join(" -> "))]
    Cycle {
        /// The ids around the loop, first repeated at the end.
        cycle: Vec<String>,
    },
    /// `data_dir` or `api` set differently in two files.
    #[error("`{key}` is set differently in {} and {}", first.display(), second.display())]
    Conflict {
        /// `data_dir` or `api`.
        key: &'static str,
        /// The file that set it first.
        first: PathBuf,
        /// The file that set it again.
        second: PathBuf,
    },
}

fn colon_prefixed(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl ConfigError {
    /// Wrap this error with the file it was found in.
    pub fn in_file(self, file: &Path) -> ConfigError {
        ConfigError::InFile {
            file: file.to_path_buf(),
            error: Box::new(self),
        }
    }

    /// The error without its [`ConfigError::InFile`] wrappers.
    pub fn innermost(&self) -> &ConfigError {
        match self {
            ConfigError::InFile { error, .. } => error.innermost(),
            other => other,
        }
    }
}

/// Every problem found, in order. Display joins them one per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

/// Split a toml deserialization error into the key path toml tracked (only
/// reachable through its Display, as "\nin `a.b`") and a message with string
/// values elided: serde's "invalid type: string \"...\"" would otherwise
/// print an interpolated secret.
pub(super) fn split_toml_error(error: &toml::de::Error) -> (Vec<String>, String) {
    let display = error.to_string();
    let keys = display
        .trim_end()
        .rsplit_once("\nin `")
        .and_then(|(_, rest)| rest.strip_suffix('`'))
        .map(|keys| keys.split('.').map(str::to_owned).collect())
        .unwrap_or_default();
    (keys, elide_strings(error.message()))
}

/// Remove every `string "..."` literal (as serde's `Unexpected::Str` prints
/// it, Debug-escaped) from a message, keeping the word "string".
fn elide_strings(message: &str) -> String {
    const MARKER: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(MARKER) {
        out.push_str(&rest[..start + MARKER.len() - 2]);
        let quoted = &rest[start + MARKER.len()..];
        let mut escaped = false;
        let end = quoted.char_indices().find_map(|(i, c)| match c {
            _ if escaped => {
                escaped = false;
                None
            }
            '\\' => {
                escaped = true;
                None
            }
            '"' => Some(i),
            _ => None,
        });
        match end {
            Some(end) => rest = &quoted[end + 1..],
            // Unterminated: drop everything after rather than risk a leak.
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elide_strings_removes_quoted_values_including_escaped_quotes() {
        let m = elide_strings(r#"invalid type: string "se\"cr,et", expected u32"#);
        assert_eq!(m, "invalid type: string, expected u32");
        assert_eq!(elide_strings("unknown field `foo`"), "unknown field `foo`");
    }

    #[test]
    fn config_errors_display_one_per_line() {
        let errors = ConfigErrors(vec![
            ConfigError::MissingType {
                path: "sinks.a".into(),
            },
            ConfigError::UnknownTopLevelKey { key: "x".into() },
        ]);
        assert_eq!(
            errors.to_string(),
            "sinks.a: missing `type`\nunknown top-level key `x` (expected data_dir, api, sources, transforms or sinks)"
        );
    }

    #[test]
    fn required_variable_message_is_appended_only_when_given() {
        let with = ConfigError::RequiredVariable {
            path: "a".into(),
            var: "V".into(),
            message: "set it".into(),
        };
        let without = ConfigError::RequiredVariable {
            path: "a".into(),
            var: "V".into(),
            message: String::new(),
        };
        assert_eq!(
            with.to_string(),
            "a: environment variable V is not set or empty: set it"
        );
        assert_eq!(
            without.to_string(),
            "a: environment variable V is not set or empty"
        );
    }
}
