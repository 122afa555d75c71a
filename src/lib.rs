//! `fbpixel`: Segment-spec events to Meta's Conversions API.
//!
//! The data path is the module tree: [`config`] reads a Vector-style pipeline
//! file; [`topology`] builds and runs it; [`sources`] turn requests and lines
//! into [`event::Event`]s; [`transforms`] run VRL on them; [`sinks`] deliver
//! them, [`sinks::facebook_pixel`] to Meta's Conversions API; [`acks`] carry
//! each event's fate back to its source. The `fbpixel` binary is a thin shell
//! over [`cli`].

pub mod acks;
pub mod api;
pub mod backoff;
pub mod buffers;
pub mod cli;
pub mod component;
pub mod components;
pub mod config;
pub mod event;
pub mod http;
pub mod json;
pub mod nats;
pub mod sinks;
pub mod sources;
pub mod state;
pub mod telemetry;
pub mod topology;
pub mod transforms;
