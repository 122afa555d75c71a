//! `fbpixel generate`, through the binary: the config it prints for every component type at once
//! validates, in each format, and holds every setting the config structs accept.
//!
//! The accepted settings are not listed here (a list would drift with the structs): they are
//! asked of `fbpixel validate` itself, which names every field a table takes when it meets an
//! unknown one (`unknown field `__nope__`, expected one of …`). Each table found that way is
//! probed again, so nested tables (`batch`, `request`, `buffer`, `enrichment.auth` …) are
//! covered too, and a setting added to a struct but not to its type's `EXAMPLE` fails here.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::{fbpixel, temp_file};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const KINDS: [&str; 3] = ["sources", "transforms", "sinks"];

/// The known types of each kind, read from the error for an unknown one (so a type added to
/// the table is generated here without editing this test).
fn known_types() -> Vec<Vec<String>> {
    let out = fbpixel(&["generate", "__nope__"], b"", &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unknown component type `__nope__`"),
        "{stderr}"
    );
    let known = stderr
        .split_once("(known types, ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .unwrap_or_else(|| panic!("no known types in: {stderr}"))
        .0;
    KINDS
        .iter()
        .map(|kind| {
            let list = known
                .split("; ")
                .find_map(|part| part.strip_prefix(&format!("{kind}: ")))
                .unwrap_or_else(|| panic!("no {kind} in: {known}"));
            list.split(", ").map(str::to_owned).collect()
        })
        .collect()
}

/// `SOURCES/TRANSFORMS/SINKS` with every known type.
fn every_type() -> String {
    known_types()
        .iter()
        .map(|types| types.join(","))
        .collect::<Vec<_>>()
        .join("/")
}

fn generate(args: &[&str]) -> String {
    let mut all = vec!["generate"];
    all.extend(args);
    let out = fbpixel(&all, b"", &[]);
    assert!(
        out.status.success(),
        "generate {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `fbpixel validate --no-environment` of `config`: whether it passed, and what it printed.
fn validate(name: &str, config: &str) -> (bool, String) {
    let path = temp_file(name, config);
    let out = fbpixel(
        &["validate", "--no-environment", path.to_str().unwrap()],
        b"",
        &[],
    );
    (out.status.success(), text(&out.stdout))
}

#[test]
fn the_config_for_every_type_at_once_validates_in_each_format() {
    let every = every_type();
    for (format, extension) in [("toml", "toml"), ("yaml", "yaml"), ("json", "json")] {
        let config = generate(&["--format", format, &every]);
        let (ok, report) = validate(&format!("generated.{extension}"), &config);
        assert!(ok, "{format}:\n{report}\n{config}");
        assert!(report.contains("√ Component configuration"), "{report}");
    }
    // The plain list in pipeline order is the same pipeline.
    let types = known_types();
    let plain: Vec<&str> = types
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|t| *t != "nats")
        .collect();
    let mut args = plain.clone();
    args.insert(0, "nats");
    args.push("nats");
    let config = generate(&args);
    let (ok, report) = validate("generated-plain.toml", &config);
    assert!(ok, "{report}\n{config}");
}

#[test]
fn components_are_wired_in_the_order_given() {
    let config: toml::Table =
        toml::from_str(&generate(&["in:stdin/remap,filter/console,file"])).unwrap();
    let inputs = |kind: &str, id: &str| config[kind][id]["inputs"].clone();
    assert_eq!(config["sources"]["in"]["type"].as_str(), Some("stdin"));
    assert_eq!(
        inputs("transforms", "transform0"),
        toml::Value::from(vec!["in"])
    );
    assert_eq!(
        inputs("transforms", "transform1"),
        toml::Value::from(vec!["transform0"])
    );
    for sink in ["sink0", "sink1"] {
        assert_eq!(inputs("sinks", sink), toml::Value::from(vec!["transform1"]));
    }
}

#[test]
fn an_unknown_type_lists_the_known_ones_with_a_near_miss() {
    let out = fbpixel(&["generate", "stdin", "remp", "console"], b"", &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unknown component type `remp`; did you mean `remap`?"),
        "{stderr}"
    );
    assert!(stderr.contains("transforms: remap, filter"), "{stderr}");
}

/// One generated component: where it is, its settings, and its commented-out ones, each as
/// the TOML of the line uncommented.
struct Generated {
    kind: String,
    id: String,
    type_name: String,
    options: toml::Table,
    commented: Vec<String>,
}

/// The components of a generated TOML config, and a check that every setting line of it comes
/// after a comment.
fn components(config: &str) -> Vec<Generated> {
    let table: toml::Table = toml::from_str(config).unwrap();
    let mut commented: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section: Option<(String, String)> = None;
    let mut previous = "";
    for line in config.lines() {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let (kind, id) = header.split_once('.').unwrap();
            section = Some((kind.to_owned(), id.to_owned()));
        } else if let Some(section) = &section {
            let setting = line.strip_prefix("# ").unwrap_or(line);
            let is_setting = setting.split_once(" = ").is_some_and(|(key, _)| {
                key.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
            });
            if is_setting && !["type", "inputs"].iter().any(|k| line.starts_with(k)) {
                assert!(
                    previous.starts_with('#'),
                    "{section:?}: `{line}` has no comment saying what it does"
                );
                if line.starts_with("# ") {
                    commented
                        .entry(section.clone())
                        .or_default()
                        .push(setting.to_owned());
                }
            }
        }
        previous = line;
    }
    let mut out = Vec::new();
    for kind in KINDS {
        let Some(toml::Value::Table(of_kind)) = table.get(kind) else {
            continue;
        };
        for (id, component) in of_kind {
            let mut options = component.as_table().unwrap().clone();
            let type_name = options.remove("type").unwrap().as_str().unwrap().to_owned();
            options.remove("inputs");
            out.push(Generated {
                kind: kind.to_owned(),
                id: id.clone(),
                type_name,
                options,
                commented: commented
                    .remove(&(kind.to_owned(), id.clone()))
                    .unwrap_or_default(),
            });
        }
    }
    out
}

/// The dotted paths of every leaf of `table` (an empty table is a leaf: an empty map setting).
fn leaves(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) if !inner.is_empty() => leaves(inner, &path, out),
            _ => {
                out.insert(path);
            }
        }
    }
}

/// `base` with `value` merged at `path`: a table's keys are added to a table there, anything
/// else replaces what is there.
fn with(base: &toml::Table, path: &[String], value: toml::Value) -> toml::Table {
    let mut table = base.clone();
    let mut at = &mut table;
    for key in path {
        let entry = at
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        at = entry.as_table_mut().unwrap();
    }
    if let toml::Value::Table(value) = value {
        at.extend(value);
    }
    table
}

fn nope(extra: &[(&str, &str)]) -> toml::Value {
    let mut t = toml::Table::new();
    t.insert("__nope__".into(), toml::Value::Integer(1));
    for (k, v) in extra {
        t.insert((*k).into(), toml::Value::from(*v));
    }
    toml::Value::Table(t)
}

/// What validate said about each probe component: (path below the component, message).
fn probe(components: &[Generated], probes: &[(usize, toml::Table)]) -> Vec<Vec<(String, String)>> {
    let mut config = toml::Table::new();
    // The generated components stay, so the probes' inputs exist.
    for c in components {
        let mut t = c.options.clone();
        t.insert("type".into(), c.type_name.clone().into());
        if c.kind != "sources" {
            t.insert("inputs".into(), toml::Value::from(vec!["source0"]));
        }
        config
            .entry(c.kind.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap()
            .insert(c.id.clone(), toml::Value::Table(t));
    }
    for (n, (i, options)) in probes.iter().enumerate() {
        let c = &components[*i];
        let mut t = options.clone();
        t.insert("type".into(), c.type_name.clone().into());
        if c.kind != "sources" {
            t.insert("inputs".into(), toml::Value::from(vec!["source0"]));
        }
        config[&c.kind]
            .as_table_mut()
            .unwrap()
            .insert(format!("probe{n}"), toml::Value::Table(t));
    }
    let (_, report) = validate("probe.toml", &toml::to_string(&config).unwrap());
    let mut said = vec![Vec::new(); probes.len()];
    for line in report.lines() {
        let Some(at) = line.find(".probe") else {
            continue;
        };
        let rest = &line[at + ".probe".len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(n) = digits.parse::<usize>() else {
            continue;
        };
        let rest = &rest[digits.len()..];
        let Some((path, message)) = rest.split_once(": ") else {
            continue;
        };
        said[n].push((path.trim_start_matches('.').to_owned(), message.to_owned()));
    }
    said
}

/// The backquoted names after "expected" in a serde message.
fn expected(message: &str) -> Vec<String> {
    let message = message.split("; did you mean").next().unwrap();
    let Some((_, list)) = message.split_once("expected") else {
        return Vec::new();
    };
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn join(path: &[String]) -> String {
    path.join(".")
}

/// Every setting path each generated component's type accepts, asked of `validate`.
fn accepted(components: &[Generated]) -> Vec<BTreeSet<String>> {
    enum Ask {
        /// What is at this path: a table (its fields), a tagged enum (its tag), or a leaf.
        What(Vec<String>),
        /// The variants of the enum tagged `tag` at this path.
        Variants(Vec<String>, String),
        /// The fields of one variant.
        Fields(Vec<String>, String, String),
    }
    let mut accepted = vec![BTreeSet::new(); components.len()];
    let mut asks: Vec<(usize, Ask)> = (0..components.len())
        .map(|i| (i, Ask::What(Vec::new())))
        .collect();
    while !asks.is_empty() {
        let probes: Vec<(usize, toml::Table)> = asks
            .iter()
            .map(|(i, ask)| {
                let base = &components[*i].options;
                let table = match ask {
                    Ask::What(path) => with(base, path, nope(&[])),
                    Ask::Variants(path, tag) => {
                        let mut t = base.clone();
                        let mut value = toml::Table::new();
                        value.insert(tag.clone(), "__nope__".into());
                        set(&mut t, path, toml::Value::Table(value));
                        t
                    }
                    Ask::Fields(path, tag, variant) => {
                        let mut t = base.clone();
                        set(&mut t, path, nope(&[(tag, variant)]));
                        t
                    }
                };
                (*i, table)
            })
            .collect();
        let said = probe(components, &probes);
        let mut next = Vec::new();
        for ((i, ask), said) in asks.into_iter().zip(said) {
            match ask {
                Ask::What(path) => {
                    let here = join(&path);
                    let fields = said
                        .iter()
                        .find(|(p, m)| *p == here && m.starts_with("unknown field `__nope__`"));
                    let tag = said.iter().find_map(|(p, m)| {
                        (*p == here)
                            .then(|| m.strip_prefix("missing field `")?.strip_suffix('`'))
                            .flatten()
                    });
                    match (fields, tag) {
                        (Some((_, message)), _) => {
                            let fields = expected(message);
                            assert!(!fields.is_empty(), "{here}: {message}");
                            for field in fields {
                                let mut path = path.clone();
                                path.push(field);
                                next.push((i, Ask::What(path)));
                            }
                        }
                        (None, Some(tag)) => {
                            next.push((i, Ask::Variants(path, tag.to_owned())));
                        }
                        (None, None) => {
                            assert!(!path.is_empty(), "{}: {said:?}", components[i].type_name);
                            accepted[i].insert(here);
                        }
                    }
                }
                Ask::Variants(path, tag) => {
                    let message = said
                        .iter()
                        .find(|(_, m)| m.starts_with("unknown variant `__nope__`"))
                        .map(|(_, m)| m.clone())
                        .unwrap_or_else(|| panic!("{}: no variants in {said:?}", join(&path)));
                    accepted[i].insert(format!("{}.{tag}", join(&path)));
                    for variant in expected(&message) {
                        next.push((i, Ask::Fields(path.clone(), tag.clone(), variant)));
                    }
                }
                Ask::Fields(path, _, variant) => {
                    let here = join(&path);
                    let (_, message) = said
                        .iter()
                        .find(|(p, m)| *p == here && m.starts_with("unknown field `__nope__`"))
                        .unwrap_or_else(|| panic!("{here} = {variant}: no fields in {said:?}"));
                    for field in expected(message) {
                        accepted[i].insert(format!("{here}.{field}"));
                    }
                }
            }
        }
        asks = next;
    }
    accepted
}

/// `value` at `path` in `table`, replacing what is there.
fn set(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (last, parents) = path.split_last().unwrap();
    let mut at = table;
    for key in parents {
        at = at
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap();
    }
    at.insert(last.clone(), value);
}

fn covers(paths: &BTreeSet<String>, path: &str) -> bool {
    paths.iter().any(|p| {
        p == path || path.starts_with(&format!("{p}.")) || p.starts_with(&format!("{path}."))
    })
}

#[test]
fn every_setting_the_config_structs_accept_is_generated_and_nothing_else() {
    let config = generate(&[&every_type()]);
    let components = components(&config);
    let accepted = accepted(&components);
    for (c, accepted) in components.iter().zip(&accepted) {
        let mut generated = BTreeSet::new();
        leaves(&c.options, "", &mut generated);
        for line in &c.commented {
            let table: toml::Table = toml::from_str(line)
                .unwrap_or_else(|e| panic!("{} {}: `# {line}`: {e}", c.kind, c.type_name));
            leaves(&table, "", &mut generated);
        }
        let missing: Vec<&String> = accepted.iter().filter(|p| !covers(&generated, p)).collect();
        assert!(
            missing.is_empty(),
            "{} `{}` accepts {missing:?}, which its EXAMPLE does not show (add each, with a \
             comment, to the EXAMPLE beside its config struct)",
            c.kind,
            c.type_name
        );
        let unknown: Vec<&String> = generated.iter().filter(|p| !covers(accepted, p)).collect();
        assert!(
            unknown.is_empty(),
            "{} `{}`: its EXAMPLE shows {unknown:?}, which it does not accept",
            c.kind,
            c.type_name
        );
        assert!(!accepted.is_empty(), "{}: {accepted:?}", c.type_name);
    }

    // Each commented-out setting, uncommented on its own, has a value of the right type.
    let mut probes = Vec::new();
    let mut lines = Vec::new();
    for (i, c) in components.iter().enumerate() {
        for line in &c.commented {
            let mut options = c.options.clone();
            let table: toml::Table = toml::from_str(line).unwrap();
            merge(&mut options, table);
            probes.push((i, options));
            lines.push(format!("{} `{}`: `{line}`", c.kind, c.type_name));
        }
    }
    for (said, line) in probe(&components, &probes).iter().zip(&lines) {
        let wrong: Vec<&(String, String)> = said
            .iter()
            .filter(|(_, m)| {
                [
                    "unknown field",
                    "invalid type",
                    "unknown variant",
                    "missing field",
                    "invalid value",
                ]
                .iter()
                .any(|e| m.starts_with(e))
            })
            .collect();
        assert!(wrong.is_empty(), "{line}, uncommented: {wrong:?}");
    }
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

#[test]
fn secrets_are_environment_references() {
    let config = generate(&[&every_type()]);
    for line in config.lines() {
        let line = line.strip_prefix("# ").unwrap_or(line);
        let Ok(table) = toml::from_str::<toml::Table>(line) else {
            continue;
        };
        let mut paths = BTreeSet::new();
        leaves(&table, "", &mut paths);
        let secret = paths.iter().any(|p| {
            ["token", "password", "secret", "seed", "write_keys"]
                .iter()
                .any(|s| p.ends_with(s))
        });
        if secret {
            assert!(line.contains("${"), "a literal secret: `{line}`");
        }
    }
}
