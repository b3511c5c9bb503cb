//! The champion in the serving world's forms: ONNX, TorchScript, a Triton /
//! KServe model repository and a Hugging Face model card, every file listed
//! with its SHA-256 and size ([`Manifest`]) and verified before use
//! ([`verify`]).
//!
//! # Layout
//! - [`onnx`]: `model.onnx`, generated from the `ArchSpec` and the weights
//! - [`torchscript`]: `model.pt`, traced with libtorch
//! - [`triton`]: `repository/<name>/config.pbtxt` + `1/model.onnx`
//! - [`card`]: `README.md`, the model card
//! - [`manifest`]: checksums: writing the list, verifying files against it
//! - [`source`]: what `trainerd export` exports (the champion or a trial's checkpoint)
//! - [`command`]: `trainerd export`
//!
//! Every exported model takes `pixels`, float32 `[N, C, H, W]` in [0, 1]
//! (the byte value / 255), normalises them inside the graph with the data
//! set's mean and std, and returns `logits`, float32 `[N, classes]`; `N` is
//! dynamic. Eval mode throughout: batch norm uses its running statistics,
//! dropout is the identity.

pub mod card;
pub mod command;
pub mod manifest;
pub mod onnx;
pub mod source;
pub mod torchscript;
pub mod triton;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::nn::{self, VarStore};
use tch::{Device, Tensor};

use crate::model::card::ModelCard;
use crate::model::{self, InputShape};

pub use manifest::{verify, FileEntry, Manifest};

/// File names inside an export (or `best/`) directory.
pub const ONNX_FILE: &str = "model.onnx";
pub const TORCHSCRIPT_FILE: &str = "model.pt";
pub const CARD_FILE: &str = "README.md";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const REPOSITORY_DIR: &str = "repository";
/// The input and output names of every exported model.
pub use crate::onnx_graph::{INPUT_NAME, OUTPUT_NAME};

/// Why an export or a verification failed; every variant names its file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing or reading an export file failed (exit 74).
    #[error("{}: {what}", path.display())]
    Io { path: PathBuf, what: String },
    /// The weights do not fit the card's architecture (exit 65).
    #[error("{what} (the weights do not match the architecture in model.json)")]
    Weights { what: String },
    /// A listed file differs from its manifest entry (exit 65).
    #[error(
        "{}: {what}; the file is damaged: restore it (trainerd rollback, or re-run the \
         promotion) before using the model",
        path.display()
    )]
    Corrupt { path: PathBuf, what: String },
    /// libtorch failed to trace or save the TorchScript module (exit 1).
    #[error("{}: cannot write TorchScript: {what}", path.display())]
    Torch { path: PathBuf, what: String },
    /// Nothing to export: no champion, or no such trial or checkpoint (exit 66).
    #[error("{what}")]
    NotFound { what: String },
    /// The champion's card is unreadable (exit 65).
    #[error(transparent)]
    Card(#[from] crate::model::card::CardError),
    /// `--out` points into the state dir's champion (exit 64).
    #[error("{}: {what}", path.display())]
    Usage { path: PathBuf, what: String },
}

impl crate::exit::ExitStatus for ExportError {
    fn exit_code(&self) -> u8 {
        match self {
            ExportError::Io { .. } => crate::exit::IO,
            ExportError::Weights { .. } | ExportError::Corrupt { .. } | ExportError::Card(_) => {
                crate::exit::DATA
            }
            ExportError::Torch { .. } => crate::exit::INTERNAL,
            ExportError::NotFound { .. } => crate::exit::NO_INPUT,
            ExportError::Usage { .. } => crate::exit::USAGE,
        }
    }
}

pub(crate) fn io_err(path: &Path, e: impl std::fmt::Display) -> ExportError {
    ExportError::Io {
        path: path.to_path_buf(),
        what: e.to_string(),
    }
}

/// One of the forms `trainerd export --format` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `model.onnx`
    Onnx,
    /// `model.pt`
    Torchscript,
    /// `repository/<name>/config.pbtxt` and `repository/<name>/1/model.onnx`
    Repository,
    /// All of the above, and the weights (`model.safetensors`).
    All,
}

impl Format {
    fn includes(self, other: Format) -> bool {
        self == Format::All || self == other
    }
}

/// The card's input geometry.
pub fn input_shape(card: &ModelCard) -> InputShape {
    let [channels, height, width] = card.input_shape;
    InputShape {
        channels,
        height,
        width,
        classes: card.classes,
    }
}

/// Weights by name, checked against the names and shapes the card's
/// architecture needs.
pub(crate) fn weight_map<'a>(
    card: &ModelCard,
    weights: &'a [(String, Tensor)],
) -> Result<(VarStore, nn::SequentialT, HashMap<&'a str, &'a Tensor>), ExportError> {
    let shape = input_shape(card);
    model::validate(&card.arch, shape).map_err(|what| ExportError::Weights {
        what: format!("architecture: {what}"),
    })?;
    let mut vs = VarStore::new(Device::Cpu);
    let net = model::build(&vs.root(), &card.arch, shape);
    let by_name: HashMap<&str, &Tensor> = weights.iter().map(|(n, t)| (n.as_str(), t)).collect();
    for (name, mut var) in vs.variables() {
        let src = by_name
            .get(name.as_str())
            .ok_or_else(|| ExportError::Weights {
                what: format!("weight {name} missing"),
            })?;
        if src.size() != var.size() {
            return Err(ExportError::Weights {
                what: format!(
                    "weight {name} has shape {:?}, the architecture needs {:?}",
                    src.size(),
                    var.size()
                ),
            });
        }
        tch::no_grad(|| var.copy_(&src.to_device(Device::Cpu)));
    }
    vs.freeze();
    Ok((vs, net, by_name))
}

/// Writes every form (the weights as `model.safetensors`, ONNX,
/// TorchScript, the model repository, the model card) into `dir`, each file
/// atomically, and returns the manifest: those files with their SHA-256 and
/// size. The caller puts it into `model.json` (`card.files`), written last.
pub fn write_all(
    dir: &Path,
    card: &ModelCard,
    weights: &[(String, Tensor)],
) -> Result<Manifest, ExportError> {
    write_formats(dir, card, weights, Format::All)
}

/// [`write_all`] for the forms `format` names (the model card always; the
/// weights only with [`Format::All`]).
pub fn write_formats(
    dir: &Path,
    card: &ModelCard,
    weights: &[(String, Tensor)],
    format: Format,
) -> Result<Manifest, ExportError> {
    let (_vs, net, by_name) = weight_map(card, weights)?;
    let mut written: Vec<String> = Vec::new();
    if format.includes(Format::Onnx) || format.includes(Format::Repository) {
        let bytes = onnx::model_bytes(card, &by_name)?;
        if format.includes(Format::Onnx) {
            manifest::write_file(dir, ONNX_FILE, &bytes)?;
            written.push(ONNX_FILE.into());
            crate::store::fault::point("export.onnx");
        }
        if format.includes(Format::Repository) {
            written.extend(triton::write(dir, card, &bytes)?);
        }
    }
    if format.includes(Format::Torchscript) {
        torchscript::write(&dir.join(TORCHSCRIPT_FILE), card, &net)?;
        written.push(TORCHSCRIPT_FILE.into());
    }
    if format == Format::All {
        write_weights(&dir.join(WEIGHTS_FILE), weights)?;
        written.insert(0, WEIGHTS_FILE.into());
    }
    let mut files = Manifest::collect(dir, &written)?;
    let readme = card::render(card, &files);
    manifest::write_file(dir, CARD_FILE, readme.as_bytes())?;
    files.push(manifest::entry(dir, CARD_FILE)?);
    Ok(files)
}

/// `model.safetensors`, tensors sorted by name (as promotion writes them).
fn write_weights(path: &Path, weights: &[(String, Tensor)]) -> Result<(), ExportError> {
    let mut sorted: Vec<(&str, &Tensor)> = weights.iter().map(|(n, t)| (n.as_str(), t)).collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    crate::store::write_atomic(path, |tmp| {
        Tensor::write_safetensors(&sorted, tmp).map_err(std::io::Error::other)
    })
    .map_err(|e| io_err(&e.path, e.source))
}
