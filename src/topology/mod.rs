//! Builds the components a configuration names and runs them: one task per
//! component, bounded channels between them, acknowledgements back to the
//! sources, and an orderly shutdown.
//!
//! Shutdown flows with the data: when the sources stop (end of input or a
//! signal), their outputs close, each transform drains its input and
//! closes its own output, and each sink drains and finishes. A component
//! still running when the grace period ends is cancelled; the events it
//! held fail their acknowledgements, so their senders retry.

mod component;
mod fanout;
pub mod registry;
mod shutdown;
mod stream;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

pub use self::component::{
    Acknowledgements, BuildContext, BuildError, ComponentError, Healthcheck, Sink, SinkConfig,
    Source, SourceConfig, SourceContext, Transform, TransformConfig, healthy,
};
pub use self::fanout::{Closed, Output};
pub use self::shutdown::{ShutdownSignal, ShutdownTrigger, shutdown_pair};
pub use self::stream::{Backlog, EventStream};
use crate::buffers::disk::DiskBuffer;
use crate::buffers::{BufferConfig, BufferType, WhenFull};
use crate::config::{ComponentConfig, ComponentKind, PipelineConfig};
use crate::telemetry::{BufferMetrics, ComponentInfo, ComponentMetrics};

/// Batches (not events) each channel holds before its writer waits. A
/// batch is at most one request body or one read of stdin, so memory per
/// edge is bounded by this many of them.
pub const CHANNEL_CAPACITY: usize = 16;

/// Every component of a configuration, built and ready to run.
pub struct Pieces {
    sources: Vec<(ComponentConfig, Box<dyn Source>, bool)>,
    transforms: Vec<(ComponentConfig, Box<dyn Transform>)>,
    sinks: Vec<(ComponentConfig, Box<dyn Sink>, Healthcheck)>,
    inputs: HashMap<String, Vec<String>>,
    buffers: HashMap<String, SinkBuffer>,
}

/// Where a sink's events wait (its `buffer` settings, opened).
enum SinkBuffer {
    Memory(BufferConfig),
    Disk(DiskBuffer),
}

/// Check a sink's `buffer` settings, and that a disk buffer has a `data_dir`.
fn check_buffer(
    config: &PipelineConfig,
    c: &ComponentConfig,
    buffer: &BufferConfig,
) -> Result<Option<PathBuf>, String> {
    let problems = buffer.problems();
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    match buffer.kind {
        BufferType::Memory => Ok(None),
        BufferType::Disk => BufferConfig::disk_dir(config.data_dir.as_deref(), &c.id).map(Some),
    }
}

/// Every problem found while building, each naming its component.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct BuildErrors(pub Vec<String>);

fn info(c: &ComponentConfig) -> ComponentInfo {
    ComponentInfo {
        id: c.id.clone(),
        kind: match c.kind {
            ComponentKind::Source => "source",
            ComponentKind::Transform => "transform",
            ComponentKind::Sink => "sink",
        },
        type_name: c.type_name.clone(),
    }
}

fn context(config: &PipelineConfig, c: &ComponentConfig) -> BuildContext {
    BuildContext {
        metrics: ComponentMetrics::new(info(c)),
        data_dir: config.data_dir.clone(),
    }
}

/// An error message naming the file and the component.
fn located(c: &ComponentConfig, e: &dyn std::fmt::Display) -> String {
    if c.file.as_os_str().is_empty() {
        format!("{}: {e}", c.path())
    } else {
        format!("{}: {}: {e}", c.file.display(), c.path())
    }
}

/// Check the sources' and transforms' settings without touching the outside
/// world: options parsed and checked (no port bound), VRL compiled. Sinks are
/// checked by [`build_sinks`], which builds them without starting them.
pub fn check(config: &PipelineConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let show = |errors: Vec<crate::config::ConfigError>| errors.into_iter().map(|e| e.to_string());
    for c in config.sources() {
        let (s, errors) = registry::source_salvaged(c);
        problems.extend(show(errors));
        if let Some(Err(e)) = s.map(|s| s.check()) {
            problems.push(located(c, &e));
        }
    }
    for c in config.transforms() {
        let (t, errors) = registry::transform_salvaged(c);
        problems.extend(show(errors));
        if let Some(Err(e)) = t.map(|t| t.build(context(config, c)).map(drop)) {
            problems.push(located(c, &e));
        }
    }
    problems
}

/// Build every sink with its healthcheck, for `validate`; the healthchecks
/// are returned only when nothing is wrong.
pub async fn build_sinks(
    config: &PipelineConfig,
) -> Result<Vec<(String, Healthcheck)>, BuildErrors> {
    let mut built = Vec::new();
    let mut problems = Vec::new();
    for c in config.sinks() {
        let (s, errors) = registry::sink_salvaged(c);
        problems.extend(errors.into_iter().map(|e| e.to_string()));
        let Some(s) = s else { continue };
        // The disk buffer itself is not opened: a running instance
        // holds its lock.
        if let Some(Err(e)) = s.buffer().map(|b| check_buffer(config, c, b)) {
            problems.push(located(c, &e));
        }
        match s.build(context(config, c)).await {
            Ok((_, healthcheck)) => built.push((c.path(), healthcheck)),
            Err(e) => problems.push(located(c, &e)),
        }
    }
    if problems.is_empty() {
        Ok(built)
    } else {
        Err(BuildErrors(problems))
    }
}

/// Build every component: parse settings, compile VRL, bind listeners.
pub async fn build(config: &PipelineConfig) -> Result<Pieces, BuildErrors> {
    let mut problems = Vec::new();
    let mut inputs = HashMap::new();
    for c in &config.components {
        let resolved = config.resolved_inputs(c);
        inputs.insert(
            c.id.clone(),
            resolved.into_iter().map(str::to_owned).collect(),
        );
    }

    let mut sinks = Vec::new();
    let mut sink_acks = Vec::new();
    let mut buffers = HashMap::new();
    for c in config.sinks() {
        match registry::sink(c) {
            Ok(s) => {
                if s.acknowledgements() {
                    sink_acks.push(c.id.clone());
                }
                if let Some(buffer) = s.buffer() {
                    let opened = check_buffer(config, c, buffer).and_then(|dir| match dir {
                        None => Ok(SinkBuffer::Memory(buffer.clone())),
                        Some(dir) => DiskBuffer::open(&dir, buffer.max_size, buffer.when_full)
                            .map(SinkBuffer::Disk),
                    });
                    match opened {
                        Ok(opened) => {
                            buffers.insert(c.id.clone(), opened);
                        }
                        Err(e) => problems.push(located(c, &e)),
                    }
                }
                match s.build(context(config, c)).await {
                    Ok((sink, healthcheck)) => sinks.push((c.clone(), sink, healthcheck)),
                    Err(e) => problems.push(located(c, &e)),
                }
            }
            Err(e) => problems.extend(e.0.iter().map(ToString::to_string)),
        }
    }

    let mut transforms = Vec::new();
    for c in config.transforms() {
        match registry::transform(c) {
            Ok(t) => match t.build(context(config, c)) {
                Ok(t) => transforms.push((c.clone(), t)),
                Err(e) => problems.push(located(c, &e)),
            },
            Err(e) => problems.extend(e.0.iter().map(ToString::to_string)),
        }
    }

    let mut sources = Vec::new();
    if problems.is_empty() {
        for c in config.sources() {
            match registry::source(c) {
                Ok(s) => {
                    let acks = match s.acknowledgements() {
                        Acknowledgements::Unsupported => false,
                        Acknowledgements::Supported(own) => {
                            own || sink_acks.iter().any(|sink| reaches(&inputs, &c.id, sink))
                        }
                    };
                    let built = match s.check() {
                        Ok(()) => s.build(context(config, c)).await,
                        Err(e) => Err(e),
                    };
                    match built {
                        Ok(source) => sources.push((c.clone(), source, acks)),
                        Err(e) => problems.push(located(c, &e)),
                    }
                }
                Err(e) => problems.extend(e.0.iter().map(ToString::to_string)),
            }
        }
    }

    if problems.is_empty() {
        Ok(Pieces {
            sources,
            transforms,
            sinks,
            inputs,
            buffers,
        })
    } else {
        Err(BuildErrors(problems))
    }
}

/// Whether events from `source` can reach `target` (following `inputs` backwards).
fn reaches(inputs: &HashMap<String, Vec<String>>, source: &str, target: &str) -> bool {
    let mut stack = vec![target];
    let mut seen = Vec::new();
    while let Some(id) = stack.pop() {
        if id == source {
            return true;
        }
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        if let Some(ups) = inputs.get(id) {
            stack.extend(ups.iter().map(String::as_str));
        }
    }
    false
}

/// A running pipeline.
pub struct Running {
    trigger: ShutdownTrigger,
    sources: JoinSet<Outcome>,
    downstream: JoinSet<Outcome>,
    backlogs: Vec<(ComponentInfo, Backlog)>,
    tasks: HashMap<tokio::task::Id, ComponentInfo>,
    done: Vec<String>,
}

/// How a pipeline ended.
#[derive(Debug, Default)]
pub struct Report {
    /// Components that failed, with their errors.
    pub failed: Vec<(ComponentInfo, String)>,
    /// Components cancelled at the end of the grace period, with the events
    /// still queued for them.
    pub cancelled: Vec<(ComponentInfo, u64)>,
}

impl Report {
    /// Whether every component finished cleanly.
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.cancelled.is_empty()
    }
}

impl Pieces {
    /// Run every sink's healthcheck now and fail on the first that does not
    /// pass (`--require-healthy`); they are not run again at start.
    pub async fn require_healthy(&mut self) -> Result<(), String> {
        for (c, _, healthcheck) in &mut self.sinks {
            std::mem::replace(healthcheck, healthy())
                .await
                .map_err(|e| format!("{}: healthcheck failed: {e}", c.path()))?;
        }
        Ok(())
    }

    /// Wire the channels and start every component. Healthchecks run in the
    /// background; a failing one is logged, not fatal (as in Vector).
    pub fn start(self) -> Running {
        let Pieces {
            sources,
            transforms,
            sinks,
            inputs,
            mut buffers,
        } = self;
        let (trigger, signal) = shutdown_pair();

        // One channel per reading component; its sender is cloned into
        // every upstream output.
        let mut senders: HashMap<String, Vec<(mpsc::Sender<_>, Backlog)>> = HashMap::new();
        let mut receivers = HashMap::new();
        let mut backlogs = Vec::new();
        let readers = transforms
            .iter()
            .map(|(c, _)| c)
            .chain(sinks.iter().map(|(c, _, _)| c));
        for c in readers {
            // A queue that discards when full is bounded by its events only:
            // its channel must not fill first (one-event batches would then be
            // dropped at 16).
            let capacity = match buffers.get(&c.id) {
                Some(SinkBuffer::Memory(b)) if b.when_full == WhenFull::DropNewest => {
                    b.max_events.max(CHANNEL_CAPACITY)
                }
                _ => CHANNEL_CAPACITY,
            };
            let (tx, rx) = mpsc::channel(capacity);
            let backlog = match buffers.get(&c.id) {
                Some(SinkBuffer::Memory(b)) => Backlog::bounded(
                    b.max_events,
                    (b.when_full == WhenFull::DropNewest)
                        .then(|| BufferMetrics::new(&ComponentMetrics::new(info(c)))),
                ),
                _ => Backlog::default(),
            };
            backlogs.push((info(c), backlog.clone()));
            receivers.insert(c.id.clone(), (rx, backlog.clone()));
            for up in &inputs[&c.id] {
                senders
                    .entry(up.clone())
                    .or_default()
                    .push((tx.clone(), backlog.clone()));
            }
        }
        let mut output = |id: &str| Output::new(senders.remove(id).unwrap_or_default());

        let mut tasks = HashMap::new();
        let mut downstream = JoinSet::new();
        for (c, sink, healthcheck) in sinks {
            let info = info(&c);
            let (rx, backlog) = receivers.remove(&c.id).expect("a channel per sink");
            let metrics = ComponentMetrics::new(info.clone());
            let (stream, closing) = match buffers.remove(&c.id) {
                Some(SinkBuffer::Disk(disk)) => {
                    let (rx, closing) = disk.start(rx, backlog, BufferMetrics::new(&metrics));
                    // What waits on disk is not lost at a forced stop, so the
                    // sink's own queue is what a shutdown report counts.
                    (
                        EventStream::new(rx, Backlog::default(), metrics),
                        Some(closing),
                    )
                }
                _ => (EventStream::new(rx, backlog, metrics), None),
            };
            let path = c.path();
            tokio::spawn(async move {
                match healthcheck.await {
                    Ok(()) => tracing::info!(component = %path, "healthcheck passed"),
                    Err(e) => tracing::error!(component = %path, "healthcheck failed: {e}"),
                }
            });
            let task = info.clone();
            let handle = downstream.spawn(async move {
                let mut result = sink.run(stream).await;
                // A sink that finished cleanly has reported every event: wait
                // until the disk buffer has recorded that, so a restart does
                // not send them again. (After a failure the sources are still
                // running, and the buffer ends with them.) A buffer whose file
                // failed fails the sink, so the pipeline stops.
                if let (Ok(()), Some(closing)) = (&result, closing) {
                    result = closing.wait().await.map_err(ComponentError);
                }
                (task, result)
            });
            tasks.insert(handle.id(), info);
        }
        for (c, transform) in transforms {
            let info = info(&c);
            let (rx, backlog) = receivers.remove(&c.id).expect("a channel per transform");
            let metrics = ComponentMetrics::new(info.clone());
            let stream = EventStream::new(rx, backlog, metrics.clone());
            let out = output(&c.id);
            let task = info.clone();
            let handle = downstream.spawn(async move {
                run_transform(transform, stream, out, metrics).await;
                (task, Ok(()))
            });
            tasks.insert(handle.id(), info);
        }
        let mut source_set = JoinSet::new();
        for (c, source, acknowledgements) in sources {
            let info = info(&c);
            let cx = SourceContext {
                out: output(&c.id),
                shutdown: signal.clone(),
                acknowledgements,
                metrics: ComponentMetrics::new(info.clone()),
            };
            let task = info.clone();
            let handle = source_set.spawn(async move { (task, source.run(cx).await) });
            tasks.insert(handle.id(), info);
        }
        Running {
            trigger,
            sources: source_set,
            downstream,
            backlogs,
            tasks,
            done: Vec::new(),
        }
    }
}

async fn run_transform(
    mut transform: Box<dyn Transform>,
    mut input: EventStream,
    mut out: Output,
    metrics: ComponentMetrics,
) {
    let mut buffer = Vec::new();
    while let Some(events) = input.next().await {
        transform.transform(events, &mut buffer);
        let batch = std::mem::take(&mut buffer);
        let (n, bytes) = (batch.len(), batch.iter().map(|e| e.size_hint()).sum());
        if out.send(batch).await.is_err() {
            // Nothing reads this transform any more; what it receives from
            // now on fails its acknowledgements as it is dropped.
            tracing::warn!(component = %metrics.info().id, "every downstream component has stopped");
        } else {
            metrics.sent(n, bytes);
        }
    }
}

impl Running {
    /// Resolves when every source has finished by itself (stdin at end of
    /// input) or any component has failed; returns the failure, if any.
    pub async fn wait(&mut self) -> Option<(ComponentInfo, String)> {
        while !self.sources.is_empty() {
            let joined = tokio::select! {
                Some(joined) = self.sources.join_next_with_id() => joined,
                Some(joined) = self.downstream.join_next_with_id() => joined,
            };
            if let Some(failure) = self.finished(joined) {
                return Some(failure);
            }
        }
        None
    }

    fn finished(&mut self, joined: Joined) -> Option<(ComponentInfo, String)> {
        let (info, result) = match joined {
            Ok((_, (info, result))) => (info, result.map_err(|e| e.to_string())),
            Err(e) => {
                let info = self.tasks.get(&e.id()).cloned()?;
                if e.is_cancelled() {
                    return None;
                }
                (info, Err("the component panicked".to_owned()))
            }
        };
        tracing::debug!(component = %info.id, "finished");
        self.done.push(info.id.clone());
        result.err().map(|e| (info, e))
    }

    /// Stop the sources, let everything drain, and cancel what is still
    /// running when `deadline` resolves (the end of the grace period).
    pub async fn stop(
        mut self,
        deadline: impl std::future::Future<Output = ()>,
        first_failure: Option<(ComponentInfo, String)>,
    ) -> Report {
        self.trigger.trigger();
        let mut report = Report::default();
        report.failed.extend(first_failure);
        tokio::pin!(deadline);
        while !(self.sources.is_empty() && self.downstream.is_empty()) {
            let joined = tokio::select! {
                Some(joined) = self.sources.join_next_with_id() => joined,
                Some(joined) = self.downstream.join_next_with_id() => joined,
                () = &mut deadline => break,
                else => break,
            };
            report.failed.extend(self.finished(joined));
        }
        if self.sources.is_empty() && self.downstream.is_empty() {
            return report;
        }
        // Cancel transforms and sinks first: the events they hold fail their
        // acknowledgements, so sources still waiting on them answer 5xx.
        for (info, backlog) in &self.backlogs {
            if !self.done.contains(&info.id) {
                report.cancelled.push((info.clone(), backlog.get()));
            }
        }
        self.downstream.abort_all();
        while self.downstream.join_next().await.is_some() {}
        let answered = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(joined) = self.sources.join_next_with_id().await {
                self.finished(joined);
            }
        })
        .await;
        if answered.is_err() {
            self.sources.abort_all();
        }
        for info in self.tasks.values() {
            if info.kind == "source" && !self.done.contains(&info.id) {
                report.cancelled.push((info.clone(), 0));
            }
        }
        report
    }

    /// The trigger that stops the sources (a signal handler holds a clone).
    pub fn trigger(&self) -> ShutdownTrigger {
        self.trigger.clone()
    }
}

type Outcome = (ComponentInfo, Result<(), ComponentError>);
type Joined = Result<(tokio::task::Id, Outcome), tokio::task::JoinError>;
