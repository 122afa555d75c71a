//! Where events leave the pipeline.

pub mod facebook_pixel;
