//! The `facebook_pixel_server_side` sink: Segment events → Meta's Conversions API.
//!
//! - [`config`]: the settings, mirroring Segment's "Facebook Pixel Server-Side" destination.
//! - [`mapping`]: pure Segment message → [`capi::ServerEvent`] (SPEC §1–6).
//! - [`normalize`]: Meta's normalization and SHA-256 of customer information.
//! - [`capi`]: the typed Conversions API structs.

pub mod batch;
pub mod capi;
pub mod config;
pub mod dead_letter;
pub mod enrichment;
pub mod mapping;
pub mod normalize;
pub mod retry;
pub mod service;
mod sink;
#[cfg(test)]
mod tests;

pub use capi::ServerEvent;
pub use config::{FacebookPixelConfig, SINK_TYPE};
pub use mapping::{Mapper, Mapping, Notes, Outcome, Rejection, SkipReason};
