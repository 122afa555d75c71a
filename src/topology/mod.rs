//! Builds the components a configuration names and runs them.
//!
//! [`validate`] checks every component's settings once, purely; [`Validated::build`] builds
//! them from those settings ([`build`]); [`Pieces::start`] wires the channels and runs one task
//! per component ([`run`]). The topology knows components only through the contracts of
//! [`crate::component`] and the table in [`crate::components`].
//!
//! Shutdown flows with the data: when the sources stop (end of input or a
//! signal), their outputs close, each transform drains its input and
//! closes its own output, and each sink drains and finishes. A component
//! still running when the grace period ends is cancelled; the events it
//! held fail their acknowledgements, so their senders retry.

mod build;
mod run;

pub use self::build::{BuildErrors, Pieces, Validated, validate};
pub use self::run::{Report, Running};
