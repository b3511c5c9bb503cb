//! Models as data: [`ArchSpec`]/[`Recipe`] values, presets, the builder
//! and the memory layout.

mod build;
mod layout;
mod presets;
mod spec;

pub use build::{build, parameter_count, validate, InputShape};
pub use layout::{channels_last, use_channels_last};
pub use presets::{preset, resolve_preset, PRESET_NAMES};
pub use spec::*;
