//! The data keys of the options (`val_size`, `memory_budget`, `classes`,
//! `data_format`, `image_size`, ...) -> the loader's options.

use super::{invalid, ConfigError, Options};

/// The loader's options from the data keys of `o` alone: the data set as
/// `train` would read it (for `presets --data-dir`).
pub fn load_options(o: &Options) -> Result<crate::data::LoadOptions, ConfigError> {
    Ok(crate::data::LoadOptions {
        val_size: o.val_size,
        target: o.target_accuracy.unwrap_or(crate::data::DEFAULT_TARGET),
        seed: o.seed.unwrap_or(1),
        memory_budget: memory_budget(o)?,
        classes: classes(o)?,
        source: data_source(o)?,
    })
}

pub(super) fn memory_budget(o: &Options) -> Result<u64, ConfigError> {
    crate::data::budget::resolve(o.memory_budget.as_deref())
        .map_err(|w| invalid("memory_budget", w))
}

pub(super) fn classes(o: &Options) -> Result<Option<usize>, ConfigError> {
    o.classes
        .map(|k| crate::data::dataset::check_classes_option(k).map_err(|w| invalid("classes", w)))
        .transpose()
}

/// `data_format` and `image_size`, parsed.
pub(super) fn data_source(o: &Options) -> Result<crate::data::source::SourceOptions, ConfigError> {
    use crate::data::source::{DataFormat, ImageSize, SourceOptions};
    let format = match o.data_format.as_deref() {
        Some(s) => DataFormat::parse(s).map_err(|w| invalid("data_format", w))?,
        None => DataFormat::Auto,
    };
    let image_size = match o.image_size.as_deref() {
        Some(s) => Some(ImageSize::parse(s).map_err(|w| invalid("image_size", w))?),
        None => None,
    };
    Ok(SourceOptions { format, image_size })
}
