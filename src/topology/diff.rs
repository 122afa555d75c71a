//! What a configuration reload changes: each component compared with the one of the same id
//! that runs now, by everything that decides how it behaves and where it reads from.

use std::collections::{HashMap, HashSet};

use crate::config::{ComponentConfig, ComponentKind};

/// Everything that makes a running component what it is. Two equal identities run alike, so a
/// reload leaves the running one untouched.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Identity {
    pub kind: ComponentKind,
    pub type_name: String,
    /// Its table, interpolated (a sink's `buffer`, `acknowledgements` and `healthcheck`
    /// included); `type` and `inputs` are kept apart.
    pub options: toml::Table,
    /// The upstream ids its `inputs` resolve to, sorted: a glob that matches one more
    /// component changes what it reads.
    pub inputs: Vec<String>,
    /// For a source, whether it waits for delivery: a new sink that asks for
    /// acknowledgements downstream changes how it answers.
    pub acknowledgements: bool,
}

impl Identity {
    pub fn new(c: &ComponentConfig, inputs: &[String], acknowledgements: bool) -> Self {
        let mut inputs = inputs.to_vec();
        inputs.sort();
        Self {
            kind: c.kind,
            type_name: c.type_name.clone(),
            options: c.options.clone(),
            inputs,
            acknowledgements,
        }
    }
}

/// What a reload does, by component path (`sinks.out`), each list in config order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// In the new configuration only: started.
    pub added: Vec<String>,
    /// In the old one only: stopped (a reader drains first).
    pub removed: Vec<String>,
    /// In both, differently: the old one stops or drains, then the new one starts.
    pub changed: Vec<String>,
    /// How many keep running untouched.
    pub unchanged: usize,
}

/// The ids of a reload's changes, as [`diff`] finds them.
pub(super) struct Diff {
    pub added: HashSet<String>,
    pub changed: HashSet<String>,
    pub removed: Vec<String>,
    pub changes: Changes,
}

/// Compare the running components (`old`, by id, with their paths) with the new
/// configuration's (`new`, in config order). `not_running` are ids whose component is not
/// running although configured (its start after an earlier reload failed): they count as
/// changed, so the same configuration retries them.
pub(super) fn diff(
    old: &HashMap<String, (String, Identity)>,
    new: &[(String, String, Identity)],
    not_running: &HashSet<String>,
) -> Diff {
    let mut d = Diff {
        added: HashSet::new(),
        changed: HashSet::new(),
        removed: Vec::new(),
        changes: Changes::default(),
    };
    let mut kept = HashSet::new();
    for (id, path, identity) in new {
        kept.insert(id.as_str());
        match old.get(id) {
            None => {
                d.added.insert(id.clone());
                d.changes.added.push(path.clone());
            }
            Some((_, running)) if running != identity || not_running.contains(id) => {
                d.changed.insert(id.clone());
                d.changes.changed.push(path.clone());
            }
            Some(_) => d.changes.unchanged += 1,
        }
    }
    let mut removed: Vec<(&String, &String)> = old
        .iter()
        .filter(|(id, _)| !kept.contains(id.as_str()))
        .map(|(id, (path, _))| (path, id))
        .collect();
    removed.sort();
    for (path, id) in removed {
        d.removed.push(id.clone());
        d.changes.removed.push(path.clone());
    }
    d
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{LoadOptions, MissingVars, PipelineConfig, load_str};

    fn load(text: &str) -> PipelineConfig {
        let env = |_: &str| None;
        let options = LoadOptions {
            env: &env,
            missing_vars: MissingVars::Error,
        };
        load_str(text, Path::new("test.toml"), &options).unwrap_or_else(|e| panic!("{e}"))
    }

    fn identities(config: &PipelineConfig) -> Vec<(String, String, Identity)> {
        config
            .components
            .iter()
            .map(|c| {
                let inputs: Vec<String> = config
                    .resolved_inputs(c)
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                (c.id.clone(), c.path(), Identity::new(c, &inputs, false))
            })
            .collect()
    }

    fn changes(old: &str, new: &str, not_running: &[&str]) -> Changes {
        let old: HashMap<_, _> = identities(&load(old))
            .into_iter()
            .map(|(id, path, identity)| (id, (path, identity)))
            .collect();
        let not_running = not_running.iter().map(|s| s.to_string()).collect();
        diff(&old, &identities(&load(new)), &not_running).changes
    }

    const BASE: &str = r#"
[sources.web]
type = "http_server"
address = "127.0.0.1:9000"

[transforms.keep]
type = "filter"
inputs = ["web"]
condition = "true"

[sinks.out]
type = "console"
inputs = ["keep"]
"#;

    #[test]
    fn the_same_configuration_changes_nothing_even_reordered_or_reformatted() {
        let c = changes(BASE, BASE, &[]);
        assert_eq!(
            c,
            Changes {
                unchanged: 3,
                ..Changes::default()
            }
        );
        let reordered = r#"
[sinks.out]
inputs = ["keep"]
type = "console"

[transforms.keep]
condition = "true"
inputs = ["web"]
type = "filter"

[sources.web]
address = "127.0.0.1:9000"
type = "http_server"
"#;
        assert_eq!(changes(BASE, reordered, &[]).unchanged, 3);
    }

    #[test]
    fn a_new_sink_is_added_and_the_rest_is_unchanged() {
        let new =
            format!("{BASE}\n[sinks.copy]\ntype = \"file\"\ninputs = [\"web\"]\npath = \"x\"\n");
        let c = changes(BASE, &new, &[]);
        assert_eq!(c.added, ["sinks.copy"]);
        assert!(c.removed.is_empty() && c.changed.is_empty());
        assert_eq!(c.unchanged, 3);
    }

    #[test]
    fn a_changed_setting_shared_sink_option_or_input_makes_the_component_changed() {
        let setting = BASE.replace("condition = \"true\"", "condition = \"false\"");
        assert_eq!(changes(BASE, &setting, &[]).changed, ["transforms.keep"]);

        let buffer = format!("{BASE}buffer.max_events = 10\n");
        assert_eq!(changes(BASE, &buffer, &[]).changed, ["sinks.out"]);

        let inputs = BASE.replace("inputs = [\"keep\"]", "inputs = [\"web\"]");
        let c = changes(BASE, &inputs, &[]);
        assert_eq!(c.changed, ["sinks.out"]);
        assert_eq!(c.unchanged, 2);
    }

    #[test]
    fn a_glob_matching_one_more_component_changes_its_reader() {
        let glob = BASE.replace("inputs = [\"keep\"]", "inputs = [\"we*\"]");
        let more = format!(
            "{glob}\n[sources.web2]\ntype = \"http_server\"\naddress = \"127.0.0.1:9001\"\n"
        );
        let c = changes(&glob, &more, &[]);
        assert_eq!(c.added, ["sources.web2"]);
        assert_eq!(c.changed, ["sinks.out"]);
    }

    #[test]
    fn a_component_left_out_is_removed_and_one_not_running_is_retried() {
        let without = r#"
[sources.web]
type = "http_server"
address = "127.0.0.1:9000"

[sinks.out]
type = "console"
inputs = ["web"]
"#;
        let c = changes(BASE, without, &[]);
        assert_eq!(c.removed, ["transforms.keep"]);
        assert_eq!(c.changed, ["sinks.out"]);
        assert_eq!(c.unchanged, 1);

        let c = changes(BASE, BASE, &["web"]);
        assert_eq!(c.changed, ["sources.web"]);
        assert_eq!(c.unchanged, 2);
    }
}
