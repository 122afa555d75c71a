//! Building the graph: every component's settings validated once ([`validate`], pure, what
//! `fbpixel validate` runs), then built from those validated settings ([`Validated::build`]:
//! buffers opened, listeners bound). Every problem is collected, each naming its component.

use std::collections::HashMap;

use crate::buffers::disk::DiskBuffer;
use crate::component::{
    Acknowledgements, BufferConfig, BufferType, BuildContext, Healthcheck, Sink, SinkOptions,
    Source, Transform, ValidSink, ValidSource, ValidTransform, ValidateContext,
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
    data_dir: Option<std::path::PathBuf>,
    sources: Vec<(ComponentConfig, Box<dyn ValidSource>, bool)>,
    transforms: Vec<(ComponentConfig, Box<dyn ValidTransform>)>,
    sinks: Vec<ValidatedSink>,
    inputs: HashMap<String, Vec<String>>,
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
    pub(super) sources: Vec<(ComponentConfig, Box<dyn Source>, bool)>,
    pub(super) transforms: Vec<(ComponentConfig, Box<dyn Transform>)>,
    /// Each sink with its healthcheck, unless `healthcheck.enabled = false`.
    pub(super) sinks: Vec<(ComponentConfig, Box<dyn Sink>, Option<Healthcheck>)>,
    pub(super) inputs: HashMap<String, Vec<String>>,
    pub(super) buffers: HashMap<String, SinkBuffer>,
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

fn validate_context(data_dir: &Option<std::path::PathBuf>, c: &ComponentConfig) -> ValidateContext {
    ValidateContext {
        id: c.id.clone(),
        data_dir: data_dir.clone(),
    }
}

fn build_context(
    data_dir: &Option<std::path::PathBuf>,
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
fn located(c: &ComponentConfig, e: &dyn std::fmt::Display) -> String {
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
        inputs,
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

    /// Build every component from its validated settings: open disk buffers, prepare sinks,
    /// bind the sources' listeners (last, once everything else is ready). `permissions` says
    /// what to do with a state file (under `data_dir`, or a dead letter) that other users can
    /// open: report it, or refuse to build (`fbpixel run --strict-permissions`).
    pub async fn build(self, permissions: Permissions) -> Result<Pieces, BuildErrors> {
        let Validated {
            data_dir,
            sources: valid_sources,
            transforms: valid_transforms,
            sinks: valid_sinks,
            inputs,
        } = self;
        let mut problems = Vec::new();
        let mut sinks = Vec::new();
        let mut buffers = HashMap::new();
        for s in valid_sinks {
            let c = s.component;
            let buffer = s.options.buffer;
            let opened = match buffer.kind {
                BufferType::Memory => Ok(SinkBuffer::Memory(buffer)),
                BufferType::Disk => crate::buffers::disk_dir(data_dir.as_deref(), &c.id)
                    .and_then(|dir| {
                        DiskBuffer::open(&dir, buffer.max_size, buffer.when_full, permissions)
                    })
                    .map(SinkBuffer::Disk),
            };
            match opened {
                Ok(opened) => {
                    buffers.insert(c.id.clone(), opened);
                }
                Err(e) => problems.push(located(&c, &e)),
            }
            match s
                .sink
                .build(build_context(&data_dir, &c, permissions))
                .await
            {
                Ok((sink, check)) => {
                    let check = s.options.healthcheck.enabled.then_some(check);
                    sinks.push((c, sink, check));
                }
                Err(e) => problems.push(located(&c, &e)),
            }
        }
        let transforms = valid_transforms
            .into_iter()
            .map(|(c, t)| {
                let built = t.build(build_context(&data_dir, &c, permissions));
                (c, built)
            })
            .collect();
        let mut sources = Vec::new();
        if problems.is_empty() {
            for (c, s, acks) in valid_sources {
                match s.build(build_context(&data_dir, &c, permissions)).await {
                    Ok(source) => sources.push((c, source, acks)),
                    Err(e) => problems.push(located(&c, &e)),
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
