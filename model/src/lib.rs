//! Brainformer's model library on tch (libtorch). This crate holds everything that needs
//! libtorch, so that the pipeline builds and tests without it.

pub mod device;
