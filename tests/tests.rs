//! The integration tests, one binary (`cargo test --test integration`) with a module per
//! subject, sharing `support` (helpers, the Graph API stand-in, a nats-server); one binary links
//! the crate once instead of once per file. Run one subject with
//! `cargo test --test integration golden::`.

mod support;

mod app_events;
mod config_formats;
mod connections;
mod delivery;
mod durability;
mod enrichment;
mod examples;
mod flow_control;
mod generate;
mod golden;
mod ledger;
mod map_command;
mod mapping_properties;
mod nats;
mod permissions;
mod quality;
mod reload;
mod runtime;
mod segment;
mod top_tap;
