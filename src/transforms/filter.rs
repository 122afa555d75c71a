//! The `filter` transform: keeps the events a VRL condition is true for.
//!
//! The condition only reads the event, so an event that is still raw JSON is
//! parsed into a temporary value and passed on as the same raw bytes.

use std::sync::Arc;

use serde::Deserialize;
use vrl::value::Value;

use super::vrl::{Vrl, compile, loggable};
use crate::acks::EventStatus;
use crate::component::{
    BuildContext, BuildError, Transform, TransformConfig, ValidTransform, ValidateContext,
};
use crate::event::EventArray;
use crate::telemetry::{ComponentMetrics, Stage};

/// Settings of the `filter` transform.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// A VRL expression returning a boolean; events it is false for (or
    /// fails on) are dropped.
    pub condition: String,
}

/// Every setting, at its default, for `fbpixel generate`: a comment line before each; one
/// unset by default is commented out. `tests/generate.rs` fails when a setting is missing.
pub const EXAMPLE: &str = r#"
# A VRL expression returning a boolean (required); events it is false for, or fails on, are dropped.
condition = '.type != "identify"'
"#;

impl TransformConfig for FilterConfig {
    fn validate(&self, _cx: &ValidateContext) -> Result<Box<dyn ValidTransform>, BuildError> {
        let program = compile(&self.condition, true)
            .map_err(|d| BuildError(format!("invalid VRL condition:\n{d}")))?;
        let result = program.final_type_info().result;
        if !result.is_boolean() {
            return Err(BuildError(format!(
                "the condition must return a boolean, but it returns {}; compare with `==`, or wrap it in `to_bool`",
                result.kind()
            )));
        }
        Ok(Box::new(CompiledFilter(Arc::new(program))))
    }
}

/// A condition that compiled and returns a boolean.
struct CompiledFilter(Arc<vrl::compiler::Program>);

impl ValidTransform for CompiledFilter {
    fn build(self: Box<Self>, cx: BuildContext) -> Box<dyn Transform> {
        Box::new(Filter {
            vrl: Vrl::new(self.0),
            metrics: cx.metrics,
        })
    }
}

struct Filter {
    vrl: Vrl,
    metrics: ComponentMetrics,
}

impl Transform for Filter {
    fn transform(&mut self, events: EventArray, out: &mut EventArray) {
        for mut event in events {
            let vrl = &mut self.vrl;
            let keep = match event.read_value(|value| vrl.run(value)) {
                Ok(Ok(Value::Boolean(keep))) => keep,
                Ok(Ok(_)) => false,
                Ok(Err(error)) => {
                    self.metrics.error("condition_failed", Stage::Processing);
                    tracing::warn!(component = %self.metrics.info().id, "VRL condition failed, event dropped: {}", loggable(&error));
                    false
                }
                Err(e) => {
                    // Valid JSON the sources let through that vrl cannot hold
                    // (a number beyond f64, nesting too deep): not a decision
                    // of the condition, so the sender is told it was refused.
                    self.metrics.error("conversion_failed", Stage::Processing);
                    self.metrics.discarded(1, false);
                    tracing::warn!(component = %self.metrics.info().id, "{e}; event refused");
                    event.finalize(EventStatus::Rejected);
                    continue;
                }
            };
            if keep {
                out.push(event);
            } else {
                self.metrics.discarded(1, true);
                event.finalize(EventStatus::Dropped);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::transforms::remap::tests::cx;
    use bytes::Bytes;

    fn filter(condition: &str) -> Result<Box<dyn Transform>, String> {
        FilterConfig {
            condition: condition.into(),
        }
        .validate(&crate::transforms::remap::tests::validate_cx())
        .map(|valid| valid.build(cx()))
        .map_err(|e| e.0)
    }

    #[test]
    fn keeps_matching_events_as_their_original_bytes() {
        let mut f = filter(r#".type == "track""#).unwrap();
        let events = vec![
            Event::from_json(Bytes::from_static(br#"{"type": "track" , "x":1}"#)),
            Event::from_json(Bytes::from_static(br#"{"type":"page"}"#)),
        ];
        let mut out = Vec::new();
        f.transform(events, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to_json().as_ref(), br#"{"type": "track" , "x":1}"#);
    }

    #[tokio::test]
    async fn json_vrl_cannot_hold_is_refused_not_silently_dropped() {
        let mut f = filter(r#".type == "track""#).unwrap();
        let mut events = vec![Event::from_json(Bytes::from_static(
            br#"{"type":"track","x":1e400}"#,
        ))];
        let status = crate::event::track(&mut events);
        let mut out = Vec::new();
        f.transform(events, &mut out);
        assert!(out.is_empty());
        assert_eq!(status.wait().await, crate::acks::BatchStatus::Rejected);
    }

    #[test]
    fn a_condition_must_return_a_boolean_and_may_not_assign() {
        let err = filter(".type").err().unwrap();
        assert!(err.contains("must return a boolean"), "{err}");
        assert!(filter(r#".x = 1; true"#).is_err());
    }
}
