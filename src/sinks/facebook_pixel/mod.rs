//! The `facebook_pixel_server_side` sink: Segment events → Meta's Conversions API.
//!
//! - [`config`]: the settings, mirroring Segment's "Facebook Pixel Server-Side" destination.
//! - [`mapping`]: pure Segment message → [`capi::ServerEvent`] (SPEC §1–6).
//! - [`normalize`]: Meta's normalization and SHA-256 of customer information.
//! - [`capi`]: the typed Conversions API structs.
//! - [`quality`]: Meta's Dataset Quality API, polled into gauges and reported by `fbpixel quality`.

pub(crate) mod batch;
pub(crate) mod capi;
pub(crate) mod concurrency;
pub(crate) mod config;
pub(crate) mod dead_letter;
pub mod enrichment;
pub(crate) mod flow;
pub mod ledger;
pub(crate) mod mapping;
pub(crate) mod normalize;
pub(crate) mod quality;
pub(crate) mod retry;
pub(crate) mod service;
mod shards;
pub(crate) mod shared_budget;
mod sink;
#[cfg(test)]
mod tests;
pub(crate) mod usage;
mod worker;

pub use capi::ServerEvent;
pub use config::FacebookPixelConfig;
pub(crate) use config::{EXAMPLE, SINK_TYPE};
pub use mapping::{Mapper, Mapping, MappingSettings, Notes, Outcome, Rejection, SkipReason};
