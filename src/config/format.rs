//! The three config formats, TOML, YAML and JSON, each read into the one tree the rest of
//! `config` works on: a `toml::Table`, with where each component was written.
//!
//! Converting every format to that tree up front keeps one path for everything after parsing
//! (interpolation, component checks, error naming), so a YAML or JSON file is checked exactly
//! as a TOML one is. What TOML cannot hold has no meaning in a config either and is refused by
//! name here: a null, a key that is not a string, a YAML tag.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use toml::de::{DeTable, DeValue};

use super::{ComponentKind, ConfigError, join_key};

/// A config file's format, told by its name as Vector tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.toml`, and any name without a known extension.
    Toml,
    /// `.yaml` or `.yml`.
    Yaml,
    /// `.json`.
    Json,
}

impl Format {
    /// The format an extension names (ASCII case ignored), if it names one.
    pub fn from_extension(extension: &str) -> Option<Format> {
        match extension.to_ascii_lowercase().as_str() {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    /// The format of the file at `path`: its last extension that names a format, so that
    /// `vector.yaml.example` (or a `.bak`) reads as YAML; TOML when none does, as every config
    /// was TOML before the other formats came.
    pub fn of(path: &Path) -> Format {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        // The first piece of the name is never an extension.
        let extensions = name.split_once('.').map_or("", |(_, rest)| rest);
        extensions
            .rsplit('.')
            .find_map(Format::from_extension)
            .unwrap_or(Format::Toml)
    }
}

/// Where each component's key is written in its file, keyed by (kind, id): `toml::Table` is
/// sorted by key, and components should keep the order they were written in (logs and errors
/// list them so). Only the order of the numbers matters.
pub(super) type ComponentOrder = HashMap<(ComponentKind, String), usize>;

/// Parse `text` (the contents of `file`) in `format`, reporting every problem found, each
/// naming `file`.
pub(super) fn parse(
    format: Format,
    text: &str,
    file: &Path,
) -> Result<(toml::Table, ComponentOrder), Vec<ConfigError>> {
    match format {
        Format::Toml => parse_toml(text, file),
        Format::Yaml => {
            // An empty file (or one of comments only) is null, so an empty config, as an empty
            // TOML file is.
            let node = serde_yaml_ng::from_str::<Node>(text)
                .map_err(|e| vec![yaml_error(text, file, &e)])?;
            from_node(node, format, file)
        }
        Format::Json => {
            let node =
                serde_json::from_str::<Node>(text).map_err(|e| vec![json_error(text, file, &e)])?;
            from_node(node, format, file)
        }
    }
}

/// Parse TOML, reporting every syntax error as `FILE: line L, column C: msg`.
fn parse_toml(text: &str, file: &Path) -> Result<(toml::Table, ComponentOrder), Vec<ConfigError>> {
    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        return Err(syntax_errors
            .iter()
            .map(|e| toml_error(text, file, e))
            .collect());
    }
    let order = toml_component_order(doc.get_ref());
    toml::Table::deserialize(toml::de::Deserializer::from(doc))
        .map(|table| (table, order))
        .map_err(|e| vec![toml_error(text, file, &e)])
}

fn toml_component_order(doc: &DeTable<'_>) -> ComponentOrder {
    let mut order = HashMap::new();
    for (key, value) in doc.iter() {
        let Some(kind) = ComponentKind::ALL
            .into_iter()
            .find(|k| k.table_name() == key.get_ref())
        else {
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
fn toml_error(text: &str, file: &Path, error: &toml::de::Error) -> ConfigError {
    // toml gives parse errors a span; for the rare one without, point at the start.
    let (line, column) = line_column(text, error.span().map_or(0, |s| s.start));
    ConfigError::Syntax {
        file: file.to_path_buf(),
        line,
        column,
        message: error.message().to_owned(),
    }
}

// libyaml's messages name the problem and the construct it was in ("did not find expected key,
// while parsing a block mapping"), never the text, so they can be shown once their positions
// (given separately) are taken out.
fn yaml_error(text: &str, file: &Path, error: &serde_yaml_ng::Error) -> ConfigError {
    let message = without_positions(&error.to_string());
    match error.location() {
        Some(location) => ConfigError::Syntax {
            file: file.to_path_buf(),
            line: location.line(),
            column: char_column(text, location.line(), location.column()),
            message,
        },
        None => ConfigError::Document { message }.in_file(file),
    }
}

// serde_json's syntax messages ("expected `,` or `}`", "trailing comma") never quote the text;
// the values that a type error would quote never reach it, as `Node` takes any value.
fn json_error(text: &str, file: &Path, error: &serde_json::Error) -> ConfigError {
    ConfigError::Syntax {
        file: file.to_path_buf(),
        line: error.line().max(1),
        column: char_column(text, error.line(), error.column().max(1)),
        message: without_positions(&error.to_string()),
    }
}

/// `message` without every " at line L column C" and " at position P" in it (the position is
/// reported on its own).
fn without_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" at ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 4..];
        let skipped = skip_position(after);
        if skipped.len() == after.len() {
            out.push_str(" at ");
        }
        rest = skipped;
    }
    out.push_str(rest);
    out
}

/// `text` after a leading "line L column C" or "position P", or all of it when it has none.
fn skip_position(text: &str) -> &str {
    fn number(t: &str) -> Option<&str> {
        let rest = t.trim_start_matches(|c: char| c.is_ascii_digit());
        (rest.len() < t.len()).then_some(rest)
    }
    let line_column = text
        .strip_prefix("line ")
        .and_then(number)
        .and_then(|t| t.strip_prefix(" column "))
        .and_then(number);
    let position = || text.strip_prefix("position ").and_then(number);
    line_column.or_else(position).unwrap_or(text)
}

/// The 1-based column, in characters, of the 1-based byte `column` on 1-based `line`: serde_json
/// counts bytes, and messages count characters as the TOML ones do.
fn char_column(text: &str, line: usize, column: usize) -> usize {
    let Some(line_text) = text.split('\n').nth(line.saturating_sub(1)) else {
        return column;
    };
    let mut bytes = column.saturating_sub(1).min(line_text.len());
    while !line_text.is_char_boundary(bytes) {
        bytes -= 1;
    }
    line_text[..bytes].chars().count() + 1
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
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

/// A YAML or JSON value as written, mappings in the order written: the step between the
/// parser and the `toml::Table`. It takes any value, so that what TOML cannot hold is refused
/// in [`from_node`], by key path, rather than by the parser with no path.
#[derive(Debug, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer beyond `i64`, which is what TOML (and so every setting) holds.
    BigInt,
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
    /// A value with a YAML tag (`!name value`), which serde hands over as an enum variant.
    Tagged(String),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::BigInt, Node::Int))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::BigInt, Node::Int))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::BigInt, Node::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Node, A::Error> {
        let (tag, value): (String, _) = data.variant()?;
        value.newtype_variant::<Node>()?;
        Ok(Node::Tagged(tag))
    }
}

/// The table a parsed YAML or JSON file stands for, with its components' order, or every
/// value in it that TOML cannot hold.
fn from_node(
    node: Node,
    format: Format,
    file: &Path,
) -> Result<(toml::Table, ComponentOrder), Vec<ConfigError>> {
    let entries = match node {
        Node::Map(entries) => entries,
        Node::Null => Vec::new(),
        other => {
            return Err(vec![ConfigError::Document {
                message: format!(
                    "the top level must be a {} of settings (`sources`, `transforms`, `sinks`, …), not {}",
                    if format == Format::Json { "JSON object" } else { "YAML mapping" },
                    describe(&other)
                ),
            }
            .in_file(file)]);
        }
    };
    let order = node_component_order(&entries);
    let mut errors = Vec::new();
    let table = table_from_entries(entries, "", &mut errors);
    if errors.is_empty() {
        Ok((table, order))
    } else {
        Err(errors.into_iter().map(|e| e.in_file(file)).collect())
    }
}

fn node_component_order(entries: &[(Node, Node)]) -> ComponentOrder {
    let mut order = HashMap::new();
    for (key, value) in entries {
        let Node::Str(key) = key else { continue };
        let Some(kind) = ComponentKind::ALL
            .into_iter()
            .find(|k| k.table_name() == key)
        else {
            continue;
        };
        if let Node::Map(components) = value {
            for (i, (id, _)) in components.iter().enumerate() {
                if let Node::Str(id) = id {
                    order.entry((kind, id.clone())).or_insert(i);
                }
            }
        }
    }
    order
}

fn table_from_entries(
    entries: Vec<(Node, Node)>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> toml::Table {
    let mut table = toml::Table::new();
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    };
    for (key, value) in entries {
        let key = match key {
            Node::Str(key) => key,
            // Scalars are shown: a key is a name, never a secret (keys are not interpolated).
            Node::Int(n) => {
                errors.push(invalid(format!(
                    "key {n} is not a string: quote it (\"{n}\")"
                )));
                continue;
            }
            Node::Bool(b) => {
                errors.push(invalid(format!(
                    "key {b} is not a string: quote it (\"{b}\")"
                )));
                continue;
            }
            Node::Null => {
                errors.push(invalid(
                    "a key is null (`~`, `null` or nothing): keys must be strings".into(),
                ));
                continue;
            }
            other => {
                errors.push(invalid(format!(
                    "a key is {}: keys must be strings",
                    describe(&other)
                )));
                continue;
            }
        };
        let key_path = join_key(path, &key);
        if table.contains_key(&key) {
            errors.push(ConfigError::Invalid {
                path: key_path,
                message: "is set twice in this mapping".into(),
            });
            continue;
        }
        if let Some(value) = value_from_node(value, &key_path, errors) {
            table.insert(key, value);
        }
    }
    table
}

fn value_from_node(node: Node, path: &str, errors: &mut Vec<ConfigError>) -> Option<toml::Value> {
    let invalid = |message: &str| ConfigError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    };
    Some(match node {
        Node::Null => {
            errors.push(invalid(
                "null is not a value: write \"\" for an empty string, or leave the key out",
            ));
            return None;
        }
        Node::BigInt => {
            errors.push(invalid(
                "integer out of range (settings hold 64-bit signed integers)",
            ));
            return None;
        }
        Node::Tagged(tag) => {
            errors.push(ConfigError::Invalid {
                path: path.to_owned(),
                message: format!("YAML tags such as `!{tag}` are not supported"),
            });
            return None;
        }
        Node::Bool(b) => toml::Value::Boolean(b),
        Node::Int(n) => toml::Value::Integer(n),
        Node::Float(x) => toml::Value::Float(x),
        Node::Str(s) => toml::Value::String(s),
        Node::Seq(items) => toml::Value::Array(
            items
                .into_iter()
                .enumerate()
                .filter_map(|(i, item)| value_from_node(item, &format!("{path}[{i}]"), errors))
                .collect(),
        ),
        Node::Map(entries) => toml::Value::Table(table_from_entries(entries, path, errors)),
    })
}

/// What kind of value `node` is, for messages; never the value itself.
fn describe(node: &Node) -> &'static str {
    match node {
        Node::Null => "null",
        Node::Bool(_) => "a boolean",
        Node::Int(_) | Node::BigInt => "an integer",
        Node::Float(_) => "a number",
        Node::Str(_) => "a string",
        Node::Seq(_) => "a list",
        Node::Map(_) => "a mapping",
        Node::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_the_last_extension_that_names_one() {
        for (name, format) in [
            ("vector.toml", Format::Toml),
            ("vector.yaml", Format::Yaml),
            ("conf.d/10-sinks.yml", Format::Yaml),
            ("vector.JSON", Format::Json),
            ("vector.yaml.example", Format::Yaml),
            ("vector.json.bak", Format::Json),
            ("sinks.yaml.toml", Format::Toml),
            ("vector.toml.example", Format::Toml),
            ("my.config", Format::Toml),
            ("pipeline", Format::Toml),
            ("yaml", Format::Toml),
        ] {
            assert_eq!(Format::of(Path::new(name)), format, "{name}");
        }
    }

    #[test]
    fn positions_are_taken_out_of_parser_messages_and_nothing_else() {
        assert_eq!(
            without_positions(
                "did not find expected key at line 4 column 4, while parsing a block mapping at line 2 column 5"
            ),
            "did not find expected key, while parsing a block mapping"
        );
        assert_eq!(
            without_positions("EOF while parsing an object at line 2 column 0"),
            "EOF while parsing an object"
        );
        assert_eq!(
            without_positions("unknown anchor at position 12"),
            "unknown anchor"
        );
        assert_eq!(
            without_positions("a problem at the start at line x"),
            "a problem at the start at line x"
        );
    }

    #[test]
    fn char_column_counts_characters_of_the_line() {
        assert_eq!(char_column("ab\n\"é€\": 1,}", 2, 11), 8);
        assert_eq!(char_column("abc", 1, 99), 4);
        assert_eq!(char_column("abc", 7, 3), 3);
    }
}
