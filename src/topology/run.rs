//! Running the graph: one task per component, bounded channels between them, acknowledgements
//! back to the sources, and an orderly shutdown.
//!
//! The topology keeps, per component of the configuration in force, what wires it ([`Live`]):
//! the handle its output sends through (re-pointed whole by [`Running::install`], see
//! [`OutputHandle`]), the sender of its input channel (cloned into the lists of the components
//! it reads), a source's own stop trigger, and what resolves when its task has ended. Starting
//! a pipeline installs every component; a reload installs those it adds or changes and retires
//! those it removes, in one step with no await, so no event is sent to a half-wired graph.
//! A replacement task waits for the one it replaces: a sink or transform that no list names any
//! more sees its input end once the sends in flight are done, drains and finishes, and only
//! then does its successor start reading the channel that has been filling meanwhile (bounded,
//! so its writers wait rather than lose anything).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::build::{NewComponent, PendingBuffer, Pieces, SinkBuffer, Start, info};
use super::diff::Identity;
use super::task::{Finished, Outcome, TaskEnv, Wiring, component_task};
use crate::component::{
    Backlog, BufferConfig, BufferType, CHANNEL_CAPACITY, OutputHandle, Reader, ShutdownTrigger,
    Taps, WhenFull, shutdown_pair,
};
use crate::config::ComponentConfig;
use crate::event::EventArray;
use crate::state::Permissions;
use crate::telemetry::{BufferMetrics, ComponentInfo, ComponentMetrics};

/// A running pipeline.
pub struct Running {
    sources: JoinSet<Outcome>,
    downstream: JoinSet<Outcome>,
    /// Every task not yet joined: whom it runs, and the queue in front of it.
    tasks: HashMap<tokio::task::Id, (ComponentInfo, Backlog)>,
    /// The components of the configuration in force, by id.
    pub(super) live: HashMap<String, Live>,
    /// Sources a reload changed whose new listener could not be bound: configured, not
    /// running, so the next reload retries them.
    pub(super) not_running: Arc<Mutex<HashSet<String>>>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) permissions: Permissions,
}

/// How the topology holds one component of the configuration in force.
pub(super) struct Live {
    pub path: String,
    pub identity: Identity,
    /// Sources and transforms: where their output points.
    output: Option<OutputHandle>,
    /// Transforms and sinks: their input channel, as upstream lists hold it.
    input: Option<Reader>,
    /// Sources: stops this one alone.
    stop: Option<ShutdownTrigger>,
    finished: Finished,
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
        for n in &mut self.components {
            if let Start::Sink { healthcheck, .. } = &mut n.start
                && let Some(check) = healthcheck.take()
            {
                check
                    .await
                    .map_err(|e| format!("{}: healthcheck failed: {e}", n.config.path()))?;
            }
        }
        Ok(())
    }

    /// Wire the channels and start every component. Healthchecks run in the
    /// background; a failing one is logged, not fatal (as in Vector).
    pub fn start(self) -> Running {
        let mut running = Running {
            sources: JoinSet::new(),
            downstream: JoinSet::new(),
            tasks: HashMap::new(),
            live: HashMap::new(),
            not_running: Arc::default(),
            data_dir: self.data_dir,
            permissions: self.permissions,
        };
        running.install(self.components, &[]);
        running
    }
}

/// A reader's channel: a queue that discards when full is bounded by its events only (its
/// channel must not fill first, or one-event batches would be dropped at 16); a memory buffer's
/// `max_events` bounds the backlog.
fn channel(
    c: &ComponentConfig,
    memory: Option<&BufferConfig>,
) -> (Reader, mpsc::Receiver<EventArray>) {
    let capacity = match memory {
        Some(b) if b.when_full == WhenFull::DropNewest => b.max_events.max(CHANNEL_CAPACITY),
        _ => CHANNEL_CAPACITY,
    };
    let (tx, rx) = mpsc::channel(capacity);
    let backlog = match memory {
        Some(b) => Backlog::bounded(
            b.max_events,
            (b.when_full == WhenFull::DropNewest)
                .then(|| BufferMetrics::new(&ComponentMetrics::new(info(c)))),
        ),
        None => Backlog::default(),
    };
    ((tx, backlog), rx)
}

/// The memory buffer settings of a sink's buffer, if it is one.
fn memory(buffer: &PendingBuffer) -> Option<&BufferConfig> {
    match buffer {
        PendingBuffer::Opened(SinkBuffer::Memory(b)) => Some(b),
        PendingBuffer::Reopen(b) if b.kind == BufferType::Memory => Some(b),
        _ => None,
    }
}

impl Running {
    /// Retire the components of `removed` and those `new` replaces, install `new`, re-point
    /// every output, and start the new tasks (each replacement once its predecessor is done).
    /// Nothing here awaits: the graph is rewired in one step.
    pub(super) fn install(&mut self, new: Vec<NewComponent>, removed: &[String]) {
        for id in removed {
            if let Some(old) = self.live.remove(id) {
                old.retire(false);
            }
        }
        // Old instances still sending while they drain: pointed at the new readers of their id.
        let mut draining = Vec::new();
        let mut predecessors = HashMap::new();
        for n in &new {
            if let Some(old) = self.live.remove(&n.config.id) {
                predecessors.insert(n.config.id.clone(), old.finished.clone());
                let outputs = matches!(n.start, Start::Source { .. } | Start::Transform(_));
                if let Some(handle) = old.retire(outputs) {
                    draining.push((n.config.id.clone(), handle));
                }
            }
        }
        let mut starts = Vec::new();
        for n in new {
            let (done, finished) = watch::channel(());
            let finished = Finished(finished);
            let mut live = Live {
                path: n.config.path(),
                identity: n.identity,
                output: None,
                input: None,
                stop: None,
                finished,
            };
            let mut rx = None;
            let mut signal = None;
            match &n.start {
                Start::Source { .. } => {
                    let (trigger, s) = shutdown_pair();
                    live.stop = Some(trigger);
                    signal = Some(s);
                    live.output = Some(OutputHandle::new(Vec::new()));
                }
                Start::Transform(_) => {
                    let (reader, r) = channel(&n.config, None);
                    live.input = Some(reader);
                    rx = Some(r);
                    live.output = Some(OutputHandle::new(Vec::new()));
                }
                Start::Sink { buffer, .. } => {
                    let (reader, r) = channel(&n.config, memory(buffer));
                    live.input = Some(reader);
                    rx = Some(r);
                }
            }
            let wiring = Wiring {
                // Taps outlive a topology (a reload re-points outputs); see `crate::component::Taps`.
                output: live.output.as_ref().map(|handle| {
                    handle
                        .output()
                        .with_tap(Taps::global().point(info(&n.config)))
                }),
                backlog: live
                    .input
                    .as_ref()
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default(),
                rx,
                signal,
                done,
                predecessor: predecessors.remove(&n.config.id),
            };
            self.live.insert(n.config.id.clone(), live);
            starts.push((n.config, n.start, wiring));
        }
        self.rewire(&draining);
        for (config, start, wiring) in starts {
            self.spawn(config, start, wiring);
        }
    }

    fn spawn(&mut self, c: ComponentConfig, start: Start, w: Wiring) {
        let info = info(&c);
        let backlog = w.backlog.clone();
        let source = matches!(start, Start::Source { .. });
        let env = TaskEnv {
            not_running: self.not_running.clone(),
            data_dir: self.data_dir.clone(),
            permissions: self.permissions,
        };
        let task = component_task(c, start, w, env);
        let handle = if source {
            self.sources.spawn(task)
        } else {
            self.downstream.spawn(task)
        };
        self.tasks.insert(handle.id(), (info, backlog));
    }

    /// Point every output, and those of the old instances still draining, at the readers the
    /// configuration in force gives their id.
    fn rewire(&self, draining: &[(String, OutputHandle)]) {
        let readers_of = |id: &str| -> Vec<Reader> {
            self.live
                .values()
                .filter(|l| l.identity.inputs.iter().any(|i| i == id))
                .filter_map(|l| l.input.clone())
                .collect()
        };
        for (id, live) in &self.live {
            if let Some(handle) = &live.output {
                handle.set(readers_of(id));
            }
        }
        for (id, handle) in draining {
            handle.set(readers_of(id));
        }
    }
}

impl Live {
    /// Let go of a component a reload removes or replaces: a source is told to stop; the
    /// topology's sender of its input is dropped (it drains once no list names it). Returns its
    /// output handle when `keep_output` (its successor sends under the same id), else closes
    /// it: what a removed component still sends fails, so its senders retry.
    fn retire(self, keep_output: bool) -> Option<OutputHandle> {
        if let Some(stop) = &self.stop {
            stop.trigger();
        }
        match self.output {
            Some(handle) if keep_output => Some(handle),
            Some(handle) => {
                handle.close();
                None
            }
            None => None,
        }
    }
}

impl Running {
    /// Resolves when every source has finished by itself (stdin at end of
    /// input) or any component has failed; returns the failure, if any.
    /// Cancel-safe: a reload may interrupt it and call it again.
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
            Ok((id, (info, result))) => {
                self.tasks.remove(&id);
                (info, result.map_err(|e| e.to_string()))
            }
            Err(e) => {
                let (info, _) = self.tasks.remove(&e.id())?;
                if e.is_cancelled() {
                    return None;
                }
                (info, Err("the component panicked".to_owned()))
            }
        };
        tracing::debug!(component = %info.id, "finished");
        result.err().map(|e| (info, e))
    }

    /// Stop the sources, let everything drain, and cancel what is still
    /// running when `deadline` resolves (the end of the grace period).
    pub async fn stop(
        mut self,
        deadline: impl std::future::Future<Output = ()>,
        first_failure: Option<(ComponentInfo, String)>,
    ) -> Report {
        for live in self.live.values() {
            if let Some(stop) = &live.stop {
                stop.trigger();
            }
        }
        // The topology lets go of every output and input it holds, so each channel ends when
        // its last writer does: shutdown flows with the data.
        self.live.clear();
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
        for (info, backlog) in self.tasks.values() {
            if info.kind != "source" {
                report.cancelled.push((info.clone(), backlog.get()));
            }
        }
        self.downstream.abort_all();
        while let Some(joined) = self.downstream.join_next_with_id().await {
            self.finished(joined);
        }
        let answered = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(joined) = self.sources.join_next_with_id().await {
                self.finished(joined);
            }
        })
        .await;
        if answered.is_err() {
            self.sources.abort_all();
        }
        for (info, _) in self.tasks.values() {
            if info.kind == "source" {
                report.cancelled.push((info.clone(), 0));
            }
        }
        report
    }
}

type Joined = Result<(tokio::task::Id, Outcome), tokio::task::JoinError>;
