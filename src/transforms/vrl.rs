//! What `remap` and `filter` share: compiling VRL once and running it per event.
//!
//! vrl is built without the functions that read the environment or reach the
//! network (see Cargo.toml), so a program cannot exfiltrate events or secrets.

use std::path::Path;
use std::sync::Arc;

use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::{CompileConfig, Program, TargetValueRef, TimeZone, TypeState};
use vrl::diagnostic::Formatter;
use vrl::value::{Secrets, Value};

/// A compiled program with a runtime of its own (one per transform task).
pub struct Vrl {
    program: Arc<Program>,
    runtime: Runtime,
    timezone: TimeZone,
    metadata: Value,
    secrets: Secrets,
}

/// Compile `source`. Errors (and warnings, which Vector also refuses) are
/// rendered exactly as vrl renders them, with the offending code underlined.
pub fn compile(source: &str, read_only: bool) -> Result<Program, String> {
    let functions = vrl::stdlib::all();
    let state = TypeState::default();
    let mut config = CompileConfig::default();
    if read_only {
        config.set_read_only();
    }
    match vrl::compiler::compile_with_state(source, &functions, &state, config) {
        Ok(result) if result.warnings.is_empty() => Ok(result.program),
        Ok(result) => Err(Formatter::new(source, result.warnings).to_string()),
        Err(diagnostics) => Err(Formatter::new(source, diagnostics).to_string()),
    }
}

/// Read a program from the config: inline `source` or a `file`, exactly one.
pub fn program_text(source: Option<&str>, file: Option<&Path>) -> Result<String, String> {
    match (source, file) {
        (Some(s), None) => Ok(s.to_owned()),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read `file` {}: {e}", path.display())),
        (Some(_), Some(_)) => Err("set either `source` or `file`, not both".into()),
        (None, None) => Err("missing `source` (a VRL program) or `file` (a path to one)".into()),
    }
}

impl Vrl {
    /// A runner for a compiled program.
    pub fn new(program: Arc<Program>) -> Self {
        Self {
            program,
            runtime: Runtime::default(),
            timezone: TimeZone::default(),
            metadata: Value::Object(Default::default()),
            secrets: Secrets::new(),
        }
    }

    /// Run the program against `value`, which it may change in place.
    pub fn run(&mut self, value: &mut Value) -> Result<Value, Terminate> {
        if let Value::Object(m) = &mut self.metadata {
            m.clear();
        }
        let mut target = TargetValueRef {
            value,
            metadata: &mut self.metadata,
            secrets: &mut self.secrets,
        };
        let result = self
            .runtime
            .resolve(&mut target, &self.program, &self.timezone);
        self.runtime.clear();
        result
    }
}

/// A runtime error for a log line. VRL messages can quote the event's values
/// (`unable to parse "jane@example.com"`), so quoted text is replaced by `"…"`,
/// except the function name in `function call error for "parse_int"`.
pub fn loggable(error: &Terminate) -> String {
    const FUNCTION: &str = "function call error for \"";
    let message = error.to_string();
    let (kept, rest) = match message
        .strip_prefix(FUNCTION)
        .and_then(|r| r.split_once('"'))
    {
        Some((name, rest)) => (format!("{FUNCTION}{name}\""), rest),
        None => (String::new(), message.as_str()),
    };
    let mut out = kept;
    let mut quoted = false;
    let mut escaped = false;
    for c in rest.chars() {
        if quoted {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
                out.push_str("…\"");
            }
            continue;
        }
        out.push(c);
        if c == '"' {
            quoted = true;
        }
    }
    if quoted {
        out.push_str("…\"");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_are_rendered_as_vrl_renders_them() {
        let err = compile(".a = to_int(.b)", false).unwrap_err();
        assert!(
            err.contains("error[E103]: unhandled fallible assignment"),
            "{err}"
        );
        assert!(err.contains(".a = to_int(.b)"), "{err}");
        assert!(err.contains("^"), "{err}");
    }

    #[test]
    fn a_program_runs_and_changes_the_event() {
        let program = compile(".b = .a", false).unwrap();
        let mut vrl = Vrl::new(Arc::new(program));
        let mut value: Value = serde_json::from_str(r#"{"a":1}"#).unwrap();
        vrl.run(&mut value).unwrap();
        assert_eq!(serde_json::to_string(&value).unwrap(), r#"{"a":1,"b":1}"#);
    }

    #[test]
    fn network_and_environment_functions_are_not_available() {
        for program in [
            r#".x = get_env_var!("HOME")"#,
            r#".x = dns_lookup!("example.com")"#,
            r#".x = http_request!("http://x")"#,
        ] {
            let err = compile(program, false).unwrap_err();
            assert!(
                err.contains("call to undefined function"),
                "{program}: {err}"
            );
        }
    }

    #[test]
    fn logged_errors_hide_quoted_values() {
        let program = compile(
            r#".n = parse_int!(.email)
.m = to_int!(.email)"#,
            false,
        )
        .unwrap();
        let mut vrl = Vrl::new(Arc::new(program));
        let mut value: Value = serde_json::from_str(r#"{"email":"jane@example.com"}"#).unwrap();
        let err = vrl.run(&mut value).unwrap_err();
        let line = loggable(&err);
        assert!(!line.contains("jane"), "{line}");
        assert!(
            line.contains(r#"function call error for "parse_int""#),
            "{line}"
        );
        assert!(line.contains("could not parse integer"), "{line}");
    }
}
