//! The settings that take one of a few names (`device`, `engine`,
//! `log_format`): their enums, and [`choice`], which reads any such setting.

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    pub(super) const NAMES: &[(&str, DeviceChoice)] = &[
        ("auto", DeviceChoice::Auto),
        ("cpu", DeviceChoice::Cpu),
        ("cuda", DeviceChoice::Cuda),
    ];
}

/// Which engine runs the served champion's forward pass and training's
/// evaluation passes on the CPU (`engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    /// onnxruntime when its library loads, else libtorch.
    Auto,
    Onnxruntime,
    Libtorch,
}

impl EngineChoice {
    /// `auto` (the default when unset), `onnxruntime` or `libtorch`.
    pub fn parse(value: Option<&str>) -> Result<EngineChoice, ConfigError> {
        choice(value, "engine", EngineChoice::NAMES)
    }

    pub(super) const NAMES: &[(&str, EngineChoice)] = &[
        ("auto", EngineChoice::Auto),
        ("onnxruntime", EngineChoice::Onnxruntime),
        ("libtorch", EngineChoice::Libtorch),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Human,
    Json,
}

impl LogFormat {
    /// `auto` (the default when unset), `human` or `json`.
    pub fn parse(value: Option<&str>) -> Result<LogFormat, ConfigError> {
        choice(value, "log_format", LogFormat::NAMES)
    }

    pub(super) const NAMES: &[(&str, LogFormat)] = &[
        ("auto", LogFormat::Auto),
        ("human", LogFormat::Human),
        ("json", LogFormat::Json),
    ];
}

/// One of `names` (the first is the default when unset).
pub(super) fn choice<T: Copy>(
    value: Option<&str>,
    key: &str,
    names: &[(&str, T)],
) -> Result<T, ConfigError> {
    let wanted = value.unwrap_or(names[0].0);
    match names.iter().find(|(name, _)| *name == wanted) {
        Some((_, v)) => Ok(*v),
        None => {
            let list: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
            Err(invalid(
                key,
                format!("{wanted:?} is not one of {}", list.join(", ")),
            ))
        }
    }
}
