//! Applying a new configuration to a running pipeline, by difference: it is validated exactly
//! as at start, the components it adds or changes are built (listeners of new sources bound,
//! new sinks prepared) before anything running is touched, and only then is the graph rewired
//! ([`Running::install`]). A configuration that fails any of this is refused whole and the
//! pipeline runs on as it was.

use super::build::{BuildErrors, validate};
use super::diff::{Changes, diff};
use super::run::Running;
use crate::config::PipelineConfig;

impl Running {
    /// Apply `config`: unchanged components keep running untouched, added ones start, removed
    /// ones stop, changed ones are replaced (a sink or transform drains first; a source closes
    /// its listener, then its replacement binds). Its `data_dir` must be the one the pipeline
    /// started with (the caller keeps global settings as they were). On error nothing changed.
    pub async fn reload(&mut self, config: &PipelineConfig) -> Result<Changes, BuildErrors> {
        let validated = validate(config)?;
        let running = self
            .live
            .iter()
            .map(|(id, live)| (id.clone(), (live.path.clone(), live.identity.clone())))
            .collect();
        let not_running = self
            .not_running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let d = diff(&running, validated.identities(), &not_running);
        debug_assert_eq!(validated.data_dir(), &self.data_dir);
        let new = validated
            .build_some(&d.added, &d.changed, self.permissions)
            .await?;
        self.install(new, &d.removed);
        Ok(d.changes)
    }
}
