//! `fbpixel`: Segment-spec events to Meta's Conversions API.
//!
//! The data path is the module tree: [`config`] reads a Vector-style pipeline
//! file; [`topology`] builds and runs it; sources turn requests and lines
//! into [`event::Event`]s; transforms run VRL on them; sinks deliver them,
//! [`sinks::facebook_pixel`] to Meta's Conversions API; [`acks`] carry each
//! event's fate back to its source. The `fbpixel` binary is a thin shell over
//! [`cli`].
//!
//! Public are what an embedding program needs: the mapping
//! ([`sinks::facebook_pixel::Mapper`]), loading a config ([`config`]), running a
//! pipeline ([`topology`], [`cli`]), and the contracts a component of its own
//! implements ([`component`], [`components`], [`event`], [`acks`],
//! [`telemetry::ComponentMetrics`]). The built-in sources, transforms and the
//! other sinks are internal.

#![warn(missing_docs)]

pub mod acks;
mod api;
mod backoff;
mod buffers;
pub mod cli;
pub mod component;
pub mod components;
pub mod config;
pub mod event;
mod http;
pub mod json;
mod nats;
pub mod sinks;
mod sources;
mod state;
pub mod telemetry;
pub mod topology;
mod transforms;
