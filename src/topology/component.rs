//! What every component type provides, in Vector's shape: a config that
//! builds the running component.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;

use super::{EventStream, Output, ShutdownSignal};
use crate::buffers::BufferConfig;
use crate::event::EventArray;
use crate::state::Permissions;
use crate::telemetry::ComponentMetrics;

/// A component could not be built from its settings; the message says what
/// to change. The topology prefixes it with the component's path.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

/// A running component failed and cannot go on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ComponentError(pub String);

/// A sink's check that its destination is reachable and accepts its credentials.
pub type Healthcheck = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// What every component gets when it is built.
#[derive(Clone)]
pub struct BuildContext {
    /// Its counters (and its id and type, for log lines).
    pub metrics: ComponentMetrics,
    /// The `data_dir` setting, for components that keep state.
    pub data_dir: Option<PathBuf>,
    /// What to do with a state file other users can open (`fbpixel run --strict-permissions`).
    pub permissions: Permissions,
}

/// A source's settings.
#[async_trait]
pub trait SourceConfig: Send + Sync {
    /// Check the settings without touching the outside world (no port is
    /// bound), so `validate` reports what `build` would refuse.
    fn check(&self) -> Result<(), BuildError> {
        Ok(())
    }

    /// Prepare the source: bind its listener, open its input. Called after
    /// [`SourceConfig::check`] passed.
    async fn build(&self, cx: BuildContext) -> Result<Box<dyn Source>, BuildError>;

    /// Whether the source can answer its sender after delivery, and whether
    /// its own settings ask it to.
    fn acknowledgements(&self) -> Acknowledgements {
        Acknowledgements::Unsupported
    }
}

/// A source's support for end-to-end acknowledgements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acknowledgements {
    /// It has no one to answer (stdin).
    Unsupported,
    /// It can wait for delivery; `true` when its own settings enable it.
    Supported(bool),
}

/// What a running source gets.
pub struct SourceContext {
    /// Where its events go.
    pub out: Output,
    /// Resolves when it must stop accepting input.
    pub shutdown: ShutdownSignal,
    /// Whether to wait for delivery before answering the sender.
    pub acknowledgements: bool,
    /// Its counters.
    pub metrics: ComponentMetrics,
}

/// A running source: reads from the outside world until its input ends or
/// shutdown begins, then returns after answering everyone it accepted.
#[async_trait]
pub trait Source: Send {
    /// Run to completion.
    async fn run(self: Box<Self>, cx: SourceContext) -> Result<(), ComponentError>;
}

/// A transform's settings.
pub trait TransformConfig: Send + Sync {
    /// Compile the transform (pure: no I/O), so `validate` can build it too.
    fn build(&self, cx: BuildContext) -> Result<Box<dyn Transform>, BuildError>;
}

/// A running transform: synchronous, batch in, batch out. Every event taken
/// in either goes to `out` or is finalized by the transform.
pub trait Transform: Send {
    /// Transform one batch.
    fn transform(&mut self, events: EventArray, out: &mut EventArray);
}

/// A sink's settings.
#[async_trait]
pub trait SinkConfig: Send + Sync {
    /// Prepare the sink and its healthcheck.
    async fn build(&self, cx: BuildContext) -> Result<(Box<dyn Sink>, Healthcheck), BuildError>;

    /// Whether its sources must wait for its deliveries before answering.
    fn acknowledgements(&self) -> bool {
        false
    }

    /// Its `buffer` settings; `None`: the channel's batch capacity is the
    /// only bound.
    fn buffer(&self) -> Option<&BufferConfig> {
        None
    }
}

/// A running sink: delivers events until its input ends, finalizing each.
#[async_trait]
pub trait Sink: Send {
    /// Run to completion.
    async fn run(self: Box<Self>, input: EventStream) -> Result<(), ComponentError>;
}

/// A healthcheck that always passes, for sinks with nothing to check.
pub fn healthy() -> Healthcheck {
    Box::pin(async { Ok(()) })
}
