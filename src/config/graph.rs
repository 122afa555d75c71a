//! Checks over the merged component list: ids, inputs and cycles.

use std::collections::HashMap;

use super::{ComponentConfig, ComponentKind, ConfigError};

/// Check ids (non-empty, no `.`, unique across kinds and files), inputs
/// (each matches a source or transform, none names a sink or the component
/// itself) and that transforms do not feed each other in a loop.
pub(super) fn check(components: &[ComponentConfig], errors: &mut Vec<ConfigError>) {
    check_ids(components, errors);
    for c in components {
        check_inputs(components, c, errors);
    }
    check_cycles(components, errors);
}

fn check_ids(components: &[ComponentConfig], errors: &mut Vec<ConfigError>) {
    let mut seen: HashMap<&str, &ComponentConfig> = HashMap::new();
    for c in components {
        let reason = if c.id.is_empty() {
            Some("ids must not be empty")
        } else if c.id.contains('.') {
            Some("ids must not contain `.`")
        } else {
            None
        };
        if let Some(reason) = reason {
            errors.push(
                ConfigError::InvalidId {
                    kind: c.kind,
                    id: c.id.clone(),
                    reason,
                }
                .in_file(&c.file),
            );
        }
        if let Some(first) = seen.get(c.id.as_str()) {
            errors.push(ConfigError::DuplicateId {
                id: c.id.clone(),
                first_kind: first.kind,
                first_file: first.file.clone(),
                second_kind: c.kind,
                second_file: c.file.clone(),
            });
        } else {
            seen.insert(&c.id, c);
        }
    }
}

fn check_inputs(
    components: &[ComponentConfig],
    c: &ComponentConfig,
    errors: &mut Vec<ConfigError>,
) {
    for input in &c.inputs {
        let error = if *input == c.id {
            Some(ConfigError::SelfInput { path: c.path() })
        } else if input.contains('*') {
            upstreams(components, c, input)
                .next()
                .is_none()
                .then(|| ConfigError::UnknownInput {
                    path: c.path(),
                    input: input.clone(),
                })
        } else {
            match components.iter().find(|u| u.id == *input) {
                None => Some(ConfigError::UnknownInput {
                    path: c.path(),
                    input: input.clone(),
                }),
                Some(u) if u.kind == ComponentKind::Sink => Some(ConfigError::SinkInput {
                    path: c.path(),
                    input: input.clone(),
                }),
                Some(_) => None,
            }
        };
        errors.extend(error.map(|e| e.in_file(&c.file)));
    }
}

/// Sources and transforms other than `c` whose id matches `pattern`.
/// A glob never matches `c` itself, so `*` means "everything else".
fn upstreams<'a, 'b>(
    components: &'a [ComponentConfig],
    c: &'b ComponentConfig,
    pattern: &'b str,
) -> impl Iterator<Item = &'a ComponentConfig> + use<'a, 'b> {
    components.iter().filter(move |u| {
        u.kind != ComponentKind::Sink && u.id != c.id && glob_match(pattern, &u.id)
    })
}

/// The concrete upstream ids of `c`, deduplicated, in pattern then component order.
pub(super) fn resolve_inputs<'a>(
    components: &'a [ComponentConfig],
    c: &ComponentConfig,
) -> Vec<&'a str> {
    let mut ids: Vec<&str> = Vec::new();
    for pattern in &c.inputs {
        for u in upstreams(components, c, pattern) {
            if !ids.contains(&u.id.as_str()) {
                ids.push(&u.id);
            }
        }
    }
    ids
}

/// Match `text` against `pattern`, where `*` stands for any run of characters.
pub(super) fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    // split always yields at least one part.
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*` at all: an exact match.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    // Greedy leftmost matching of the middle parts is safe; the last part
    // must sit at the very end.
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Report each loop among transforms once, found by depth-first search.
fn check_cycles(components: &[ComponentConfig], errors: &mut Vec<ConfigError>) {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        OnPath,
        Done,
    }

    fn visit(
        node: usize,
        components: &[ComponentConfig],
        transforms: &[usize],
        state: &mut [State],
        path: &mut Vec<usize>,
        errors: &mut Vec<ConfigError>,
    ) {
        state[node] = State::OnPath;
        path.push(node);
        let c = &components[transforms[node]];
        for id in resolve_inputs(components, c) {
            let Some(next) = transforms.iter().position(|&t| components[t].id == id) else {
                continue;
            };
            match state[next] {
                State::New => visit(next, components, transforms, state, path, errors),
                State::OnPath => {
                    let start = path.iter().position(|&p| p == next).unwrap_or(0);
                    let mut cycle: Vec<String> = path[start..]
                        .iter()
                        .map(|&p| components[transforms[p]].id.clone())
                        .collect();
                    cycle.push(components[transforms[next]].id.clone());
                    errors.push(ConfigError::Cycle { cycle });
                }
                State::Done => {}
            }
        }
        path.pop();
        state[node] = State::Done;
    }

    let transforms: Vec<usize> = (0..components.len())
        .filter(|&i| components[i].kind == ComponentKind::Transform)
        .collect();
    let mut state = vec![State::New; transforms.len()];
    let mut path = Vec::new();
    for node in 0..transforms.len() {
        if state[node] == State::New {
            visit(node, components, &transforms, &mut state, &mut path, errors);
        }
    }
}

/// Warnings for sources and transforms that nothing reads from.
pub(super) fn unused_warnings(components: &[ComponentConfig]) -> Vec<String> {
    let used: Vec<&str> = components
        .iter()
        .flat_map(|c| resolve_inputs(components, c))
        .collect();
    components
        .iter()
        .filter(|c| c.kind != ComponentKind::Sink && !used.contains(&c.id.as_str()))
        .map(|c| {
            format!(
                "{}: not used as an input by any transform or sink",
                c.path()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn comp(kind: ComponentKind, id: &str, inputs: &[&str], file: &str) -> ComponentConfig {
        ComponentConfig {
            id: id.into(),
            kind,
            type_name: "t".into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            options: toml::Table::new(),
            file: PathBuf::from(file),
        }
    }

    fn errors_of(components: &[ComponentConfig]) -> Vec<String> {
        let mut errors = Vec::new();
        check(components, &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    use ComponentKind::{Sink, Source, Transform};

    #[test]
    fn glob_match_cases() {
        assert!(glob_match("web*", "web"));
        assert!(glob_match("web*", "web_eu"));
        assert!(!glob_match("web*", "aweb"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("*_eu", "web_eu"));
        assert!(glob_match("a*b*c", "abxbc"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(!glob_match("ab*ba", "aba"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn glob_inputs_resolve_to_matching_sources_and_transforms_only() {
        let cs = [
            comp(Source, "web_eu", &[], "a"),
            comp(Source, "web_us", &[], "a"),
            comp(Source, "other", &[], "a"),
            comp(Sink, "web_sink", &["web*"], "a"),
        ];
        assert!(errors_of(&cs).is_empty());
        assert_eq!(resolve_inputs(&cs, &cs[3]), ["web_eu", "web_us"]);
    }

    #[test]
    fn resolved_inputs_are_deduplicated() {
        let cs = [
            comp(Source, "web", &[], "a"),
            comp(Sink, "s", &["web", "w*", "*"], "a"),
        ];
        assert_eq!(resolve_inputs(&cs, &cs[1]), ["web"]);
    }

    #[test]
    fn glob_matching_nothing_is_an_unknown_input() {
        let cs = [
            comp(Source, "web", &[], "a"),
            comp(Sink, "s", &["api*"], "a"),
        ];
        assert_eq!(
            errors_of(&cs),
            ["a: sinks.s: input `api*` does not match any source or transform"]
        );
    }

    #[test]
    fn sink_cannot_be_an_input() {
        let cs = [
            comp(Source, "web", &[], "a"),
            comp(Sink, "one", &["web"], "a"),
            comp(Sink, "two", &["one"], "a"),
        ];
        assert_eq!(
            errors_of(&cs),
            ["a: sinks.two: input `one` is a sink, and sinks cannot be inputs"]
        );
    }

    #[test]
    fn self_input_is_an_error() {
        let cs = [
            comp(Source, "web", &[], "a"),
            comp(Transform, "t", &["web", "t"], "a"),
        ];
        assert_eq!(
            errors_of(&cs),
            ["a: transforms.t: lists itself as an input"]
        );
    }

    #[test]
    fn transform_cycle_is_reported_once() {
        let cs = [
            comp(Source, "web", &[], "a"),
            comp(Transform, "a", &["web", "c"], "a"),
            comp(Transform, "b", &["a"], "a"),
            comp(Transform, "c", &["b*"], "a"),
            comp(Sink, "s", &["c"], "a"),
        ];
        assert_eq!(
            errors_of(&cs),
            ["transforms form a cycle: a -> c -> b -> a"]
        );
    }

    #[test]
    fn duplicate_ids_across_kinds_name_both_files() {
        let cs = [
            comp(Source, "web", &[], "one.toml"),
            comp(Sink, "web", &["x"], "two.toml"),
        ];
        let errors = errors_of(&cs);
        assert_eq!(
            errors[0],
            "duplicate component id `web`: sources.web in one.toml and sinks.web in two.toml"
        );
    }

    #[test]
    fn empty_and_dotted_ids_are_invalid() {
        let cs = [comp(Source, "", &[], "a"), comp(Source, "x.y", &[], "a")];
        assert_eq!(
            errors_of(&cs),
            [
                "a: sources: invalid component id ``: ids must not be empty",
                "a: sources: invalid component id `x.y`: ids must not contain `.`",
            ]
        );
    }

    #[test]
    fn unused_sources_and_transforms_are_warned_about() {
        let cs = [
            comp(Source, "web", &[], "a"),
            comp(Source, "idle", &[], "a"),
            comp(Transform, "t", &["web"], "a"),
            comp(Sink, "s", &["web"], "a"),
        ];
        assert_eq!(
            unused_warnings(&cs),
            [
                "sources.idle: not used as an input by any transform or sink",
                "transforms.t: not used as an input by any transform or sink",
            ]
        );
    }
}
