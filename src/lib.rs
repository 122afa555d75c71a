//! `fbpixel`: Segment-spec events to Meta's Conversions API.
//!
//! The data path is the module tree: [`config`] reads a Vector-style pipeline file, events are
//! read as borrowed [`json`] trees, and [`sinks::facebook_pixel`] maps them to Conversions API
//! server events ([`sinks::facebook_pixel::mapping`]) and ships them. The `fbpixel` binary is a
//! thin shell over [`cli`].

pub mod cli;
pub mod config;
pub mod json;
pub mod sinks;
