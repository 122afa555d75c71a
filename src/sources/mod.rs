//! Where events enter the pipeline: one module per source type.

pub mod decode;
pub mod http_input;
pub mod http_server;
pub mod nats;
pub mod segment;
pub mod stdin;
