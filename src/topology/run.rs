//! Running the graph: one task per component, bounded channels between them, acknowledgements
//! back to the sources, and an orderly shutdown.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::build::{Pieces, SinkBuffer, info};
use crate::component::{
    Backlog, CHANNEL_CAPACITY, ComponentError, EventStream, Output, ShutdownTrigger, SourceContext,
    Taps, Transform, WhenFull, shutdown_pair,
};
use crate::config::ComponentConfig;
use crate::telemetry::{BufferMetrics, ComponentInfo, ComponentMetrics};

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
            if let Some(check) = healthcheck.take() {
                check
                    .await
                    .map_err(|e| format!("{}: healthcheck failed: {e}", c.path()))?;
            }
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
        // Taps outlive this topology (a reload builds another); see `crate::component::Taps`.
        let taps = Taps::global();
        let mut output = |c: &ComponentConfig| {
            Output::new(senders.remove(&c.id).unwrap_or_default()).with_tap(taps.point(info(c)))
        };

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
            // `healthcheck.enabled = false`, or already run by --require-healthy.
            if let Some(check) = healthcheck {
                tokio::spawn(async move {
                    match check.await {
                        Ok(()) => tracing::info!(component = %path, "healthcheck passed"),
                        Err(e) => tracing::error!(component = %path, "healthcheck failed: {e}"),
                    }
                });
            }
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
            let out = output(&c);
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
                out: output(&c),
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
