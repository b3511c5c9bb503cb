//! Models as data: [`ArchSpec`]/[`Recipe`] values, presets, and the builder.

mod build;
mod layout;
mod spec;

pub use build::{build, parameter_count, validate, InputShape};
pub use layout::{channels_last, use_channels_last};
pub use spec::*;
