//! One task per component: what each runs, and, for one that replaces another after a reload,
//! the wait for its predecessor to be done (a sink or transform drained, a source's listener
//! closed) before it starts.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, watch};

use super::build::{PendingBuffer, SinkBuffer, Start, info, open_buffer};
use crate::component::{
    Backlog, ComponentError, EventStream, Healthcheck, Output, ShutdownSignal, Sink, SourceContext,
    Transform,
};
use crate::config::ComponentConfig;
use crate::event::EventArray;
use crate::state::Permissions;
use crate::telemetry::{BufferMetrics, ComponentInfo, ComponentMetrics};

/// How a component's task ended.
pub(super) type Outcome = (ComponentInfo, Result<(), ComponentError>);

/// Resolves once a component's task has ended, however it ended (its sender lives in the task).
#[derive(Clone)]
pub(super) struct Finished(pub watch::Receiver<()>);

impl Finished {
    pub async fn wait(mut self) {
        // Nothing is ever sent: this returns when the task drops the sender.
        let _ = self.0.changed().await;
    }
}

/// What every task may need from the topology.
pub(super) struct TaskEnv {
    /// Sources whose start after a reload failed (see `Running::not_running`).
    pub not_running: Arc<Mutex<HashSet<String>>>,
    pub data_dir: Option<PathBuf>,
    pub permissions: Permissions,
}

/// The task that runs component `c`.
pub(super) fn component_task(
    c: ComponentConfig,
    start: Start,
    w: Wiring,
    env: TaskEnv,
) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
    let info = info(&c);
    let task = info.clone();
    let path = c.path();
    let Wiring {
        output,
        backlog,
        rx,
        signal,
        done,
        predecessor,
    } = w;
    match start {
        Start::Source {
            build,
            acknowledgements,
        } => {
            let signal = signal.expect("a source has its stop signal");
            let not_running = env.not_running;
            let cx = SourceContext {
                out: output.expect("a source has an output"),
                shutdown: signal.clone(),
                acknowledgements,
                metrics: ComponentMetrics::new(info.clone()),
            };
            Box::pin(async move {
                let _done = done;
                let replacing = predecessor.is_some();
                if let Some(p) = predecessor {
                    p.wait().await;
                }
                // Stopped (a later reload, or shutdown) before it could start.
                if signal.is_triggered() {
                    return (task, Ok(()));
                }
                let result = match build.await {
                    Ok(source) => {
                        if replacing {
                            tracing::info!(component = %path, "the old source stopped; its replacement runs");
                        }
                        not_running
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&c.id);
                        source.run(cx).await
                    }
                    Err(e) if replacing => {
                        tracing::error!(component = %path, "cannot start after the reload: {e}; it is not running (fix the config and reload)");
                        not_running
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(c.id.clone());
                        Ok(())
                    }
                    Err(e) => Err(ComponentError(e.to_string())),
                };
                (task, result)
            })
        }
        Start::Transform(transform) => {
            let metrics = ComponentMetrics::new(info.clone());
            let rx = rx.expect("a transform has an input");
            let stream = EventStream::new(rx, backlog.clone(), metrics.clone());
            let out = output.expect("a transform has an output");
            Box::pin(async move {
                let _done = done;
                if let Some(p) = predecessor {
                    p.wait().await;
                    tracing::info!(component = %path, "the old transform drained; its replacement runs");
                }
                run_transform(transform, stream, out, metrics).await;
                (task, Ok(()))
            })
        }
        Start::Sink {
            sink,
            healthcheck,
            buffer,
        } => {
            let input = SinkInput {
                rx: rx.expect("a sink has an input"),
                backlog: backlog.clone(),
                buffer,
                data_dir: env.data_dir,
                permissions: env.permissions,
            };
            Box::pin(async move {
                let _done = done;
                if let Some(p) = predecessor {
                    p.wait().await;
                    tracing::info!(component = %path, "the old sink drained; its replacement runs");
                }
                let result = run_sink(c, sink, healthcheck, input).await;
                (task, result)
            })
        }
    }
}

/// What a new component's task is handed when it is installed.
pub(super) struct Wiring {
    pub output: Option<Output>,
    pub backlog: Backlog,
    pub rx: Option<mpsc::Receiver<EventArray>>,
    pub signal: Option<ShutdownSignal>,
    /// Dropped when the task ends: resolves its [`Finished`].
    pub done: watch::Sender<()>,
    /// The task it replaces, which must be done first.
    pub predecessor: Option<Finished>,
}

/// A sink's input channel and its buffer, opened (or reopened) when the sink starts.
struct SinkInput {
    rx: mpsc::Receiver<EventArray>,
    backlog: Backlog,
    buffer: PendingBuffer,
    data_dir: Option<PathBuf>,
    permissions: Permissions,
}

async fn run_sink(
    c: ComponentConfig,
    sink: Box<dyn Sink>,
    healthcheck: Option<Healthcheck>,
    input: SinkInput,
) -> Result<(), ComponentError> {
    let path = c.path();
    let metrics = ComponentMetrics::new(info(&c));
    let buffer = match input.buffer {
        PendingBuffer::Opened(b) => b,
        PendingBuffer::Reopen(b) => {
            open_buffer(&input.data_dir, &c, b, input.permissions).map_err(ComponentError)?
        }
    };
    let (stream, closing) = match buffer {
        SinkBuffer::Disk(disk) => {
            let (rx, closing) = disk.start(input.rx, input.backlog, BufferMetrics::new(&metrics));
            // What waits on disk is not lost at a forced stop, so the sink's own queue is
            // what a shutdown report counts.
            (
                EventStream::new(rx, Backlog::default(), metrics),
                Some(closing),
            )
        }
        SinkBuffer::Memory(_) => (EventStream::new(input.rx, input.backlog, metrics), None),
    };
    // `healthcheck.enabled = false`, or already run by --require-healthy.
    if let Some(check) = healthcheck {
        tokio::spawn(async move {
            match check.await {
                Ok(()) => tracing::info!(component = %path, "healthcheck passed"),
                Err(e) => tracing::error!(component = %path, "healthcheck failed: {e}"),
            }
        });
    }
    let mut result = sink.run(stream).await;
    // A sink that finished cleanly has reported every event: wait until the disk buffer has
    // recorded that, so a restart (or its replacement) does not send them again. (After a
    // failure the sources are still running, and the buffer ends with them.) A buffer whose
    // file failed fails the sink, so the pipeline stops.
    if let (Ok(()), Some(closing)) = (&result, closing) {
        result = closing.wait().await.map_err(ComponentError);
    }
    result
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
