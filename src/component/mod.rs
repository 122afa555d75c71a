//! The component contract: what every source, transform and sink provides, and what the
//! topology hands them, in Vector's shape (`vector-core` holds `SinkConfig`/`StreamSink`): a
//! config that checks its settings and builds the running component, the channels between
//! components ([`Output`], [`EventStream`]), the buffer settings every sink takes, the
//! shutdown signal, and the taps that copy a sample of what leaves a component ([`Taps`]).
//!
//! This folder sits below everything that implements or runs it: it imports no component, no
//! topology and no transport.

mod buffer;
mod fanout;
mod shutdown;
mod sink_options;
mod stream;
mod tap;

pub use self::buffer::{BufferConfig, BufferType, MIN_DISK_SIZE, WhenFull};
pub use self::fanout::{Closed, Output, OutputHandle, Reader};
pub use self::shutdown::{ShutdownSignal, ShutdownTrigger, shutdown_pair};
pub use self::sink_options::{HealthcheckConfig, SinkOptions};
pub use self::stream::{Backlog, CHANNEL_CAPACITY, EventStream};
pub use self::tap::{Subscription, TapPoint, TapRequest, Tapped, Taps};
/// What a component does with a state file other users can open; [`BuildContext`] carries it.
pub use crate::state::Permissions;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;

use crate::event::EventArray;
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

/// What a component's settings are checked against: nothing of the outside world, only where
/// it would keep state and what it is called.
#[derive(Clone, Debug)]
pub struct ValidateContext {
    /// Its id: the table key in the config.
    pub id: String,
    /// The `data_dir` setting, for components that keep state.
    pub data_dir: Option<PathBuf>,
}

/// What every component gets when it is built from validated settings.
#[derive(Clone)]
pub struct BuildContext {
    /// Its counters (and its id and type, for log lines).
    pub metrics: ComponentMetrics,
    /// The `data_dir` setting, for components that keep state.
    pub data_dir: Option<PathBuf>,
    /// What to do with a state file other users can open (`fbpixel run --strict-permissions`).
    pub permissions: Permissions,
}

/// A source's settings, as parsed from its table.
pub trait SourceConfig: Send + Sync {
    /// Check every setting without touching the outside world (no port is bound, no server
    /// reached; only files the settings name as input, such as TLS certificates, are read),
    /// and return the validated settings that build the source. `validate` runs only this.
    fn validate(&self, cx: &ValidateContext) -> Result<Box<dyn ValidSource>, BuildError>;

    /// Whether the source can answer its sender after delivery, and whether
    /// its own settings ask it to.
    fn acknowledgements(&self) -> Acknowledgements {
        Acknowledgements::Unsupported
    }
}

/// A source's validated settings.
#[async_trait]
pub trait ValidSource: Send {
    /// Prepare the source: bind its listener, open its input. Nothing is checked again.
    async fn build(self: Box<Self>, cx: BuildContext) -> Result<Box<dyn Source>, BuildError>;
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

/// A transform's settings, as parsed from its table.
pub trait TransformConfig: Send + Sync {
    /// Check the settings and compile the program (pure: the only file read is a program the
    /// settings name), returning what builds the transform.
    fn validate(&self, cx: &ValidateContext) -> Result<Box<dyn ValidTransform>, BuildError>;
}

/// A transform's validated settings (its compiled program).
pub trait ValidTransform: Send {
    /// The running transform.
    fn build(self: Box<Self>, cx: BuildContext) -> Box<dyn Transform>;
}

/// A running transform: synchronous, batch in, batch out. Every event taken
/// in either goes to `out` or is finalized by the transform.
pub trait Transform: Send {
    /// Transform one batch.
    fn transform(&mut self, events: EventArray, out: &mut EventArray);
}

/// A sink's own settings, as parsed from its table; the settings every sink shares
/// (`acknowledgements`, `buffer`, `healthcheck`) are [`SinkOptions`], read by the topology.
pub trait SinkConfig: Send + Sync {
    /// Check every setting without touching the outside world, and return the validated
    /// settings that build the sink. `validate` runs only this.
    fn validate(&self, cx: &ValidateContext) -> Result<Box<dyn ValidSink>, BuildError>;

    /// Whether its sources wait for its deliveries when `acknowledgements` is not set.
    fn acknowledgements_by_default(&self) -> bool {
        false
    }
}

/// A sink's validated settings.
#[async_trait]
pub trait ValidSink: Send {
    /// Prepare the sink and its healthcheck (which runs later, if at all). Nothing is checked
    /// again; no event flows yet.
    async fn build(
        self: Box<Self>,
        cx: BuildContext,
    ) -> Result<(Box<dyn Sink>, Healthcheck), BuildError>;
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
