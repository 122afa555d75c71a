//! Builds the components a configuration names and runs them, and applies a new configuration
//! to the running pipeline.
//!
//! [`validate`] checks every component's settings once, purely; [`Validated::build`] builds
//! them from those settings ([`build`]); [`Pieces::start`] wires the channels and runs one task
//! per component ([`run`], [`task`]); [`Running::reload`] applies a new configuration by difference
//! ([`reload`], comparing components with [`diff`]). The topology knows components only
//! through the contracts of [`crate::component`] and the table in [`crate::components`].
//!
//! Shutdown flows with the data: when the sources stop (end of input or a
//! signal), their outputs close, each transform drains its input and
//! closes its own output, and each sink drains and finishes. A component
//! still running when the grace period ends is cancelled; the events it
//! held fail their acknowledgements, so their senders retry.
//!
//! A reload works the same way, one component at a time: each output sends through a handle
//! the topology re-points whole (no lock on the hot path); a reader no list names any more sees
//! its input end, drains, and finishes before its replacement starts reading.

mod build;
mod diff;
mod reload;
mod run;
mod task;

pub use self::build::{BuildErrors, Pieces, Validated, validate};
pub use self::diff::Changes;
pub use self::run::{Report, Running};
