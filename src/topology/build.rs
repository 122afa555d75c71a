//! Building the graph: every component's settings validated once ([`validate`], pure, what
//! `fbpixel validate` runs), then built from those validated settings ([`Validated::build`]:
//! buffers opened, listeners bound), all of them at start, or those a reload adds or changes.
//! Every problem is collected, each naming its component.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use super::diff::Identity;
use crate::buffers::disk::DiskBuffer;
use crate::component::{
    Acknowledgements, BufferConfig, BufferType, BuildContext, BuildError, Healthcheck, Sink,
    SinkOptions, Source, Transform, ValidSink, ValidSource, ValidTransform, ValidateContext,
};
use crate::components;
use crate::config::{ComponentConfig, ComponentKind, PipelineConfig};
use crate::state::Permissions;
use crate::telemetry::{ComponentInfo, ComponentMetrics};

/// Every problem found, each naming its component.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct BuildErrors(pub Vec<String>);

/// A configuration whose every component passed its checks: ready to build.
pub struct Validated {
    data_dir: Option<PathBuf>,
    sources: Vec<(ComponentConfig, Box<dyn ValidSource>, bool)>,
    transforms: Vec<(ComponentConfig, Box<dyn ValidTransform>)>,
    sinks: Vec<ValidatedSink>,
    /// Every component's path and identity, in config order.
    identities: Vec<(String, String, Identity)>,
}

struct ValidatedSink {
    component: ComponentConfig,
    options: SinkOptions,
    sink: Box<dyn ValidSink>,
}

/// Where a sink's events wait (its `buffer` settings, opened).
pub(super) enum SinkBuffer {
    Memory(BufferConfig),
    Disk(DiskBuffer),
}

/// Every component of a configuration, built and ready to run.
pub struct Pieces {
    pub(super) components: Vec<NewComponent>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) permissions: Permissions,
}

/// A built component, with what starts it.
pub(super) struct NewComponent {
    pub config: ComponentConfig,
    pub identity: Identity,
    pub start: Start,
}

/// A source still to bind: built at once for a new one, or, for one a reload changed, only
/// once the old one has closed its listener (they may share the address).
pub(super) type SourceBuild =
    Pin<Box<dyn Future<Output = Result<Box<dyn Source>, BuildError>> + Send>>;

/// What starts a built component.
pub(super) enum Start {
    Source {
        build: SourceBuild,
        acknowledgements: bool,
    },
    Transform(Box<dyn Transform>),
    /// With its healthcheck, unless `healthcheck.enabled = false` (or already run).
    Sink {
        sink: Box<dyn Sink>,
        healthcheck: Option<Healthcheck>,
        buffer: PendingBuffer,
    },
}

/// A sink's buffer: opened, or (for a sink a reload changed) opened once the old sink has
/// drained and closed it, since a disk buffer's file is locked by whoever has it open.
pub(super) enum PendingBuffer {
    Opened(SinkBuffer),
    Reopen(BufferConfig),
}

pub(super) fn info(c: &ComponentConfig) -> ComponentInfo {
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

fn validate_context(data_dir: &Option<PathBuf>, c: &ComponentConfig) -> ValidateContext {
    ValidateContext {
        id: c.id.clone(),
        data_dir: data_dir.clone(),
    }
}

pub(super) fn build_context(
    data_dir: &Option<PathBuf>,
    c: &ComponentConfig,
    permissions: Permissions,
) -> BuildContext {
    BuildContext {
        metrics: ComponentMetrics::new(info(c)),
        data_dir: data_dir.clone(),
        permissions,
    }
}

/// An error message naming the file and the component.
pub(super) fn located(c: &ComponentConfig, e: &dyn std::fmt::Display) -> String {
    if c.file.as_os_str().is_empty() {
        format!("{}: {e}", c.path())
    } else {
        format!("{}: {}: {e}", c.file.display(), c.path())
    }
}

/// Check every component's settings without touching the outside world: options parsed and
/// checked (no port bound, no server reached, no state opened), VRL compiled, buffers checked.
pub fn validate(config: &PipelineConfig) -> Result<Validated, BuildErrors> {
    let mut problems = Vec::new();
    let data_dir = &config.data_dir;
    let mut inputs = HashMap::new();
    for c in &config.components {
        let resolved = config.resolved_inputs(c);
        inputs.insert(
            c.id.clone(),
            resolved.into_iter().map(str::to_owned).collect(),
        );
    }

    let mut sinks = Vec::new();
    for c in config.sinks() {
        let (options, sink, errors) = components::sink(c);
        problems.extend(errors.iter().map(ToString::to_string));
        let buffer = options.buffer.problems();
        if !buffer.is_empty() {
            problems.push(located(c, &buffer.join("; ")));
        } else if options.buffer.kind == BufferType::Disk
            && let Err(e) = crate::buffers::disk_dir(data_dir.as_deref(), &c.id)
        {
            problems.push(located(c, &e));
        }
        // What parsed is checked too, so one run reports every problem.
        let Some(sink) = sink else { continue };
        match sink.validate(&validate_context(data_dir, c)) {
            Ok(valid) => sinks.push((c, options, valid, sink.acknowledgements_by_default())),
            Err(e) => problems.push(located(c, &e)),
        }
    }

    let mut transforms = Vec::new();
    for c in config.transforms() {
        let (t, errors) = components::transform(c);
        problems.extend(errors.iter().map(ToString::to_string));
        if let Some(t) = t {
            match t.validate(&validate_context(data_dir, c)) {
                Ok(valid) => transforms.push((c.clone(), valid)),
                Err(e) => problems.push(located(c, &e)),
            }
        }
    }

    // A source waits for delivery when its own settings say so, or when a sink it feeds
    // asks for acknowledgements.
    let acknowledging: Vec<&str> = sinks
        .iter()
        .filter(|(_, options, _, by_default)| options.acknowledgements(*by_default))
        .map(|(c, ..)| c.id.as_str())
        .collect();
    let mut sources = Vec::new();
    for c in config.sources() {
        let (s, errors) = components::source(c);
        problems.extend(errors.iter().map(ToString::to_string));
        let Some(s) = s else { continue };
        let acks = match s.acknowledgements() {
            Acknowledgements::Unsupported => false,
            Acknowledgements::Supported(own) => {
                own || acknowledging
                    .iter()
                    .any(|sink| reaches(&inputs, &c.id, sink))
            }
        };
        match s.validate(&validate_context(data_dir, c)) {
            Ok(valid) => sources.push((c.clone(), valid, acks)),
            Err(e) => problems.push(located(c, &e)),
        }
    }

    if !problems.is_empty() {
        return Err(BuildErrors(problems));
    }
    let identities = config
        .components
        .iter()
        .map(|c| {
            let acks = sources.iter().any(|(s, _, acks)| s.id == c.id && *acks);
            (
                c.id.clone(),
                c.path(),
                Identity::new(c, &inputs[&c.id], acks),
            )
        })
        .collect();
    let sinks = sinks
        .into_iter()
        .map(|(c, options, sink, _)| ValidatedSink {
            component: c.clone(),
            options,
            sink,
        })
        .collect();
    Ok(Validated {
        data_dir: data_dir.clone(),
        sources,
        transforms,
        sinks,
        identities,
    })
}

impl Validated {
    /// Build the sinks alone and return their healthchecks (those `healthcheck.enabled`
    /// leaves on), for `validate`: nothing is bound or opened.
    pub async fn healthchecks(self) -> Result<Vec<(String, Healthcheck)>, BuildErrors> {
        let mut checks = Vec::new();
        let mut problems = Vec::new();
        for s in self.sinks {
            let path = s.component.path();
            let enabled = s.options.healthcheck.enabled;
            match s
                .sink
                .build(build_context(
                    &self.data_dir,
                    &s.component,
                    Permissions::Warn,
                ))
                .await
            {
                Ok((_, check)) if enabled => checks.push((path, check)),
                Ok(_) => {}
                Err(e) => problems.push(located(&s.component, &e)),
            }
        }
        if problems.is_empty() {
            Ok(checks)
        } else {
            Err(BuildErrors(problems))
        }
    }

    /// Every component's id, path and identity, in config order.
    pub(super) fn identities(&self) -> &[(String, String, Identity)] {
        &self.identities
    }

    /// The `data_dir` the components were checked against.
    pub(super) fn data_dir(&self) -> &Option<PathBuf> {
        &self.data_dir
    }

    /// Build every component from its validated settings: open disk buffers, prepare sinks,
    /// bind the sources' listeners (last, once everything else is ready). `permissions` says
    /// what to do with a state file (under `data_dir`, or a dead letter) that other users can
    /// open: report it, or refuse to build (`fbpixel run --strict-permissions`).
    pub async fn build(self, permissions: Permissions) -> Result<Pieces, BuildErrors> {
        let all: HashSet<String> = self.identities.iter().map(|(id, ..)| id.clone()).collect();
        let data_dir = self.data_dir.clone();
        let components = self.build_some(&all, &HashSet::new(), permissions).await?;
        Ok(Pieces {
            components,
            data_dir,
            permissions,
        })
    }

    /// Build the components of `added` at once and those of `changed` so that they can start
    /// once the ones they replace are done: a changed sink's buffer and a changed source's
    /// listener wait for that (see [`Start`]). The rest is dropped unbuilt. Sources are bound
    /// last, only when everything else was built.
    pub(super) async fn build_some(
        self,
        added: &HashSet<String>,
        changed: &HashSet<String>,
        permissions: Permissions,
    ) -> Result<Vec<NewComponent>, BuildErrors> {
        let Validated {
            data_dir,
            sources: valid_sources,
            transforms: valid_transforms,
            sinks: valid_sinks,
            identities,
        } = self;
        let wanted = |id: &str| added.contains(id) || changed.contains(id);
        let mut identities: HashMap<String, Identity> = identities
            .into_iter()
            .filter(|(id, ..)| wanted(id))
            .map(|(id, _, identity)| (id, identity))
            .collect();
        let mut new = |config: ComponentConfig, start: Start| NewComponent {
            identity: identities
                .remove(&config.id)
                .expect("an identity per component"),
            config,
            start,
        };
        let mut problems = Vec::new();
        let mut built = Vec::new();
        for s in valid_sinks.into_iter().filter(|s| wanted(&s.component.id)) {
            let c = s.component;
            let buffer = if changed.contains(&c.id) {
                PendingBuffer::Reopen(s.options.buffer)
            } else {
                match open_buffer(&data_dir, &c, s.options.buffer, permissions) {
                    Ok(opened) => PendingBuffer::Opened(opened),
                    Err(e) => {
                        problems.push(e);
                        continue;
                    }
                }
            };
            match s
                .sink
                .build(build_context(&data_dir, &c, permissions))
                .await
            {
                Ok((sink, check)) => {
                    let healthcheck = s.options.healthcheck.enabled.then_some(check);
                    let start = Start::Sink {
                        sink,
                        healthcheck,
                        buffer,
                    };
                    built.push(new(c, start));
                }
                Err(e) => problems.push(located(&c, &e)),
            }
        }
        for (c, t) in valid_transforms.into_iter().filter(|(c, _)| wanted(&c.id)) {
            let transform = t.build(build_context(&data_dir, &c, permissions));
            built.push(new(c, Start::Transform(transform)));
        }
        if problems.is_empty() {
            for (c, s, acknowledgements) in
                valid_sources.into_iter().filter(|(c, ..)| wanted(&c.id))
            {
                let cx = build_context(&data_dir, &c, permissions);
                let build: SourceBuild = if changed.contains(&c.id) {
                    s.build(cx)
                } else {
                    match s.build(cx).await {
                        Ok(source) => Box::pin(std::future::ready(Ok(source))),
                        Err(e) => {
                            problems.push(located(&c, &e));
                            continue;
                        }
                    }
                };
                let start = Start::Source {
                    build,
                    acknowledgements,
                };
                built.push(new(c, start));
            }
        }
        if problems.is_empty() {
            Ok(built)
        } else {
            Err(BuildErrors(problems))
        }
    }
}

/// Open a sink's buffer: nothing to open for memory, the file under `data_dir` for disk.
pub(super) fn open_buffer(
    data_dir: &Option<PathBuf>,
    c: &ComponentConfig,
    buffer: BufferConfig,
    permissions: Permissions,
) -> Result<SinkBuffer, String> {
    match buffer.kind {
        BufferType::Memory => Ok(SinkBuffer::Memory(buffer)),
        BufferType::Disk => crate::buffers::disk_dir(data_dir.as_deref(), &c.id)
            .and_then(|dir| DiskBuffer::open(&dir, buffer.max_size, buffer.when_full, permissions))
            .map(SinkBuffer::Disk)
            .map_err(|e| located(c, &e)),
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
