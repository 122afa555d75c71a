//! The `remap` transform: a VRL program run on every event, as Vector's.
//!
//! On a runtime error the event goes on unchanged (or is dropped with
//! `drop_on_error = true`); on `abort` it is dropped (or goes on unchanged
//! with `drop_on_abort = false`).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use vrl::compiler::runtime::Terminate;
use vrl::value::Value;

use super::vrl::{Vrl, compile, loggable, program_text};
use crate::acks::EventStatus;
use crate::component::{
    BuildContext, BuildError, Transform, TransformConfig, ValidTransform, ValidateContext,
};
use crate::event::{Event, EventArray};
use crate::telemetry::{ComponentMetrics, Stage};

/// Settings of the `remap` transform.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemapConfig {
    /// The VRL program.
    pub source: Option<String>,
    /// A file holding the VRL program.
    pub file: Option<PathBuf>,
    /// Drop events the program fails on (default: pass them on unchanged).
    #[serde(default)]
    pub drop_on_error: bool,
    /// Drop events the program aborts (default: true).
    #[serde(default = "default_true")]
    pub drop_on_abort: bool,
}

/// Every setting, at its default, for `fbpixel generate`: a comment line before each; one
/// unset by default is commented out. `tests/generate.rs` fails when a setting is missing.
pub const EXAMPLE: &str = r#"
# The VRL program; this one or `file` is required.
source = '.properties.fbp = .context.cookies._fbp || .properties.fbp'
# A file holding the VRL program, instead of `source`.
# file = "/etc/fbpixel/remap.vrl"
# Drop events the program fails on; false: pass them on unchanged.
drop_on_error = false
# Drop events the program aborts.
drop_on_abort = true
"#;

fn default_true() -> bool {
    true
}

impl TransformConfig for RemapConfig {
    fn validate(&self, _cx: &ValidateContext) -> Result<Box<dyn ValidTransform>, BuildError> {
        let text =
            program_text(self.source.as_deref(), self.file.as_deref()).map_err(BuildError)?;
        let program =
            compile(&text, false).map_err(|d| BuildError(format!("invalid VRL program:\n{d}")))?;
        let info = program.info();
        // The original is kept only when the program can fail or abort and
        // the event must then go on unchanged.
        let keep_original =
            (info.fallible && !self.drop_on_error) || (info.abortable && !self.drop_on_abort);
        Ok(Box::new(CompiledRemap {
            program: Arc::new(program),
            drop_on_error: self.drop_on_error,
            drop_on_abort: self.drop_on_abort,
            keep_original,
        }))
    }
}

/// A program that compiled, with what its settings make of failures.
struct CompiledRemap {
    program: Arc<vrl::compiler::Program>,
    drop_on_error: bool,
    drop_on_abort: bool,
    keep_original: bool,
}

impl ValidTransform for CompiledRemap {
    fn build(self: Box<Self>, cx: BuildContext) -> Box<dyn Transform> {
        Box::new(Remap {
            vrl: Vrl::new(self.program),
            drop_on_error: self.drop_on_error,
            drop_on_abort: self.drop_on_abort,
            keep_original: self.keep_original,
            metrics: cx.metrics,
        })
    }
}

struct Remap {
    vrl: Vrl,
    drop_on_error: bool,
    drop_on_abort: bool,
    keep_original: bool,
    metrics: ComponentMetrics,
}

impl Transform for Remap {
    fn transform(&mut self, events: EventArray, out: &mut EventArray) {
        out.reserve(events.len());
        for mut event in events {
            let value = match event.value_mut() {
                Ok(value) => value,
                Err(e) => {
                    // Sources validate JSON, so this is a bug, not bad input.
                    self.metrics.error("conversion_failed", Stage::Processing);
                    tracing::error!(component = %self.metrics.info().id, "{e}; event passed on unchanged");
                    out.push(event);
                    continue;
                }
            };
            let original = self.keep_original.then(|| value.clone());
            match self.vrl.run(value) {
                Ok(_) if matches!(value, Value::Object(_)) => out.push(event),
                Ok(_) => {
                    // As Vector does for log events: a non-object root is
                    // kept under `message`, so the event stays an object.
                    let root = std::mem::replace(value, Value::Null);
                    let mut wrapped = vrl::value::ObjectMap::new();
                    wrapped.insert("message".into(), root);
                    *value = Value::Object(wrapped);
                    out.push(event);
                }
                Err(Terminate::Abort(_)) => {
                    self.fail(event, original, self.drop_on_abort, out);
                }
                Err(error) => {
                    self.metrics.error("program_failed", Stage::Processing);
                    tracing::warn!(component = %self.metrics.info().id, "VRL runtime error: {}", loggable(&error));
                    self.fail(event, original, self.drop_on_error, out);
                }
            }
        }
    }
}

impl Remap {
    fn fail(&self, mut event: Event, original: Option<Value>, drop: bool, out: &mut EventArray) {
        if drop {
            self.metrics.discarded(1, true);
            event.finalize(EventStatus::Dropped);
        } else {
            if let Some(original) = original {
                event.set_value(original);
            }
            out.push(event);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::telemetry::ComponentInfo;
    use bytes::Bytes;

    fn remap(source: &str, drop_on_error: bool, drop_on_abort: bool) -> Box<dyn Transform> {
        let config = RemapConfig {
            source: Some(source.into()),
            file: None,
            drop_on_error,
            drop_on_abort,
        };
        config
            .validate(&validate_cx())
            .map_err(|e| e.0)
            .unwrap()
            .build(cx())
    }

    pub(crate) fn validate_cx() -> ValidateContext {
        ValidateContext {
            id: "t".into(),
            data_dir: None,
        }
    }

    pub(crate) fn cx() -> BuildContext {
        BuildContext {
            metrics: ComponentMetrics::new(ComponentInfo {
                id: "t".into(),
                kind: "transform",
                type_name: "remap".into(),
            }),
            data_dir: None,
            permissions: Default::default(),
        }
    }

    fn run(t: &mut Box<dyn Transform>, inputs: &[&str]) -> Vec<String> {
        let events = inputs
            .iter()
            .map(|s| Event::from_json(Bytes::from(s.to_string())))
            .collect();
        let mut out = Vec::new();
        t.transform(events, &mut out);
        out.iter()
            .map(|e| String::from_utf8(e.to_json().into_owned()).unwrap())
            .collect()
    }

    #[test]
    fn the_program_changes_each_event() {
        let mut t = remap(
            ".properties.fbp = .context.cookies._fbp || .properties.fbp",
            false,
            true,
        );
        let out = run(
            &mut t,
            &[r#"{"context":{"cookies":{"_fbp":"fb.1"}},"properties":{}}"#],
        );
        assert_eq!(
            out,
            [r#"{"context":{"cookies":{"_fbp":"fb.1"}},"properties":{"fbp":"fb.1"}}"#]
        );
    }

    #[test]
    fn a_failing_event_passes_unchanged_or_is_dropped_with_drop_on_error() {
        let program = ".a = 1\n.n = parse_int!(.s)";
        let mut t = remap(program, false, true);
        let out = run(&mut t, &[r#"{"s":"x"}"#, r#"{"s":"7"}"#]);
        assert_eq!(out, [r#"{"s":"x"}"#, r#"{"a":1,"n":7,"s":"7"}"#]);
        let mut t = remap(program, true, true);
        assert_eq!(run(&mut t, &[r#"{"s":"x"}"#]), Vec::<String>::new());
    }

    #[test]
    fn abort_drops_unless_drop_on_abort_is_false() {
        let program = "if .type != \"track\" { abort }\n.seen = true";
        let mut t = remap(program, false, true);
        assert_eq!(
            run(&mut t, &[r#"{"type":"page"}"#, r#"{"type":"track"}"#]),
            [r#"{"seen":true,"type":"track"}"#]
        );
        let mut t = remap(program, false, false);
        assert_eq!(run(&mut t, &[r#"{"type":"page"}"#]), [r#"{"type":"page"}"#]);
    }

    #[test]
    fn a_non_object_result_is_kept_under_message() {
        let mut t = remap(". = 5", false, true);
        assert_eq!(run(&mut t, &[r#"{"a":1}"#]), [r#"{"message":5}"#]);
    }

    #[test]
    fn source_and_file_are_exclusive() {
        let config = RemapConfig {
            source: Some(".".into()),
            file: Some("x.vrl".into()),
            drop_on_error: false,
            drop_on_abort: true,
        };
        let err = config.validate(&validate_cx()).err().unwrap();
        assert_eq!(err.0, "set either `source` or `file`, not both");
    }
}
