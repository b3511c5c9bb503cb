//! Models as data: [`ArchSpec`]/[`Recipe`] values, presets, their
//! validation (`validate`, ranges in [`limits`]), the builder and the memory
//! layout, the input [`norm`]alisation, and the champion's [`card`].

mod build;
pub mod card;
mod layout;
pub mod limits;
pub mod norm;
mod presets;
mod spec;
mod validate;

pub use build::{build, parameter_count, validate, InputShape};
pub use layout::{channels_last, use_channels_last};
pub use norm::Normalisation;
pub(crate) use presets::read_bounded;
pub use presets::{parse_ladder, parse_spec, preset, resolve_preset, MAX_SPEC_BYTES, PRESET_NAMES};
pub use spec::*;
pub use validate::{Footprint, SpecError};
