//! Models as data: [`ArchSpec`]/[`Recipe`] values, presets, and the builder.

mod build;
mod spec;

pub use build::{build, parameter_count, validate, InputShape};
pub use spec::*;
