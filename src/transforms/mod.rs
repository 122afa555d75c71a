//! Transforms between sources and sinks: VRL programs over each event.

pub mod filter;
pub mod remap;
pub mod vrl;
