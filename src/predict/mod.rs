//! `trainerd predict FILE...`: classify images with the champion in `best/`.
//!
//! Every file `best/model.json` lists (weights and exports) is checked
//! against its SHA-256 and size first: a damaged one is exit 65 naming it.
//! The network is rebuilt from the card's architecture, loaded with
//! `best/model.safetensors`, and fed images normalised exactly as in
//! training: `(pixel/255 - mean[c]) / std[c]` with the card's per-channel
//! mean and std. Inputs are IDX image files (rank 3, unsigned bytes,
//! optionally gzipped), PNGs or JPEGs; images must have the model's input
//! size (no resizing: a silently rescaled image would be classified with
//! confidence it does not deserve). For a gray model, colour PNGs are
//! converted to grey (ITU-R BT.601 luma); for an RGB model (trained on image
//! folders) PNGs and JPEGs are decoded as in training
//! ([`crate::data::decode::decode_for_model`]: alpha on black, gray copied
//! into all three channels). Each prediction carries the class's name when
//! the card has class names.
//!
//! Memory is flat in the number of images: an IDX file is first checked to
//! its end in pieces (its length, and for gzip its checksum), so a damaged
//! one prints nothing, then classified [`BATCH`] images at a time. A PNG's
//! size is read from its header (IHDR) and must be the model's before any
//! pixel is decoded.
//!
//! `champion` loads `best/` and runs the network (also for `serve`);
//! `png` reads PNG input; this module routes each file and prints.

mod champion;
mod png;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::data::{idx, DataError};
use crate::model::card as promote;

use champion::Output;
pub use champion::{load_champion, load_champion_within, load_from, Champion};
pub use png::read_png;
use png::{JPEG_MAGIC, PNG_MAGIC};

/// Images classified per forward pass: the activations of a large model stay
/// in the tens of megabytes whatever the file holds.
pub const BATCH: usize = crate::model::limits::INFERENCE_BATCH;

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// No `best/model.json`: nothing to predict with (exit 66).
    #[error("no champion model in {0} (train one first: trainerd train)")]
    NoModel(PathBuf),
    /// An input file that cannot be opened or read (exit 66). The OS error
    /// is in the message, not a `source`, so it is printed once.
    #[error("{}: cannot read: {error}", path.display())]
    Open { path: PathBuf, error: io::Error },
    /// The champion's files do not make a model (exit 1).
    #[error("{path}: {what}")]
    Model { path: PathBuf, what: String },
    /// An input that is not images of the model's size (exit 65).
    #[error("{path}: {what}")]
    Input { path: PathBuf, what: String },
    /// An input IDX file that is malformed (exit 65); its message names it.
    #[error(transparent)]
    Data(DataError),
    /// A champion file that fails its checksum in `model.json` (exit 65).
    #[error(transparent)]
    Corrupt(crate::export::ExportError),
    /// `best/` holds a champion whose card cannot be used (exit 65).
    #[error(transparent)]
    Card(#[from] promote::CardError),
}

impl crate::exit::ExitStatus for PredictError {
    fn exit_code(&self) -> u8 {
        match self {
            PredictError::NoModel(_) | PredictError::Open { .. } => crate::exit::NO_INPUT,
            PredictError::Model { .. } => crate::exit::INTERNAL,
            PredictError::Input { .. } | PredictError::Card(_) => crate::exit::DATA,
            PredictError::Data(e) => e.exit_code(),
            PredictError::Corrupt(e) => e.exit_code(),
        }
    }
}

impl From<DataError> for PredictError {
    fn from(e: DataError) -> Self {
        match e {
            DataError::Read { path, error } => PredictError::Open { path, error },
            other => PredictError::Data(other),
        }
    }
}

/// One classified image.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub file: String,
    /// Image index within the file (0 for PNG).
    pub index: usize,
    pub label: i64,
    /// The label's class name (the card's `class_names`), when it has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub probability: f64,
    /// The raw logits (`--logits`), to compare exported models with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logits: Option<Vec<f32>>,
}

fn input_err(path: &Path, what: impl Into<String>) -> PredictError {
    PredictError::Input {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

fn open_err(path: &Path) -> impl Fn(io::Error) -> PredictError + '_ {
    move |error| PredictError::Open {
        path: path.to_path_buf(),
        error,
    }
}

/// Where predictions go: `(index in the file, label, probability, logits)`.
type Emit<'a> = dyn FnMut(usize, i64, f64, &[f32]) -> io::Result<()> + 'a;

impl Champion {
    /// Emits each image of a forward pass; `first` is the first one's index in its file.
    fn emit_all(&self, out: Output, first: usize, emit: &mut Emit<'_>) -> io::Result<()> {
        let k = (self.card.classes.max(1)) as usize;
        let rows = out.logits.chunks(k);
        for (i, ((label, p), logits)) in out.labels.into_iter().zip(out.probs).zip(rows).enumerate()
        {
            emit(first + i, label, p, logits)?;
        }
        Ok(())
    }

    /// Classifies the images of one file (IDX, PNG or JPEG, told by content).
    fn classify(&self, path: &Path, emit: &mut Emit<'_>) -> anyhow::Result<()> {
        let file = File::open(path).map_err(open_err(path))?;
        if file.metadata().map_err(open_err(path))?.is_dir() {
            return Err(input_err(path, "is a directory, not an image file").into());
        }
        let mut reader = BufReader::new(file);
        let head = reader.fill_buf().map_err(open_err(path))?;
        let (is_png, is_jpeg) = (head.starts_with(&PNG_MAGIC), head.starts_with(&JPEG_MAGIC));
        let [c, _, _] = self.card.input_shape;
        if is_png && c == 1 {
            let pixels = read_png(path, reader, self.image_size())?;
            self.emit_all(self.forward(path, &pixels, 1)?, 0, emit)?;
            return Ok(());
        }
        drop(reader);
        if is_png || is_jpeg {
            let pixels = self.read_image(path)?;
            self.emit_all(self.forward(path, &pixels, 1)?, 0, emit)?;
            return Ok(());
        }
        self.classify_idx(path, emit)
    }

    /// A PNG or JPEG of the model's size as channels-first bytes, decoded as in training.
    fn read_image(&self, path: &Path) -> Result<Vec<u8>, PredictError> {
        let [c, h, w] = self.card.input_shape;
        if c != 1 && c != 3 {
            return Err(input_err(
                path,
                format!(
                    "the champion takes {c}x{h}x{w} inputs ({c} channels); predict decodes PNG \
                     and JPEG images for grey (1) or RGB (3) models only; pass IDX files"
                ),
            ));
        }
        let target = crate::data::decode::Target {
            channels: c as usize,
            height: u32::try_from(h).unwrap_or(0),
            width: u32::try_from(w).unwrap_or(0),
            resize: false,
        };
        Ok(crate::data::decode::decode_for_model(path, &target)?)
    }

    /// Checks an IDX file to its end, then classifies it batch by batch.
    fn classify_idx(&self, path: &Path, emit: &mut Emit<'_>) -> anyhow::Result<()> {
        let check = idx::open(path).map_err(PredictError::from)?;
        self.check_geometry(path, check.header())?;
        let header = check.header().clone();
        check.finish().map_err(PredictError::from)?;
        let mut stream = idx::open(path).map_err(PredictError::from)?;
        if stream.header() != &header {
            return Err(input_err(path, "changed while it was being read; try again").into());
        }
        let (rows, cols) = self.image_size();
        let per_image = rows * cols;
        let count = header.dims[0];
        let mut buf = vec![0u8; BATCH.min(count) * per_image];
        let mut done = 0;
        while done < count {
            let n = BATCH.min(count - done);
            let pixels = &mut buf[..n * per_image];
            stream.read_data(pixels).map_err(PredictError::from)?;
            self.emit_all(self.forward(path, pixels, n)?, done, emit)?;
            done += n;
        }
        stream.finish().map_err(PredictError::from)?;
        Ok(())
    }

    /// Images of the model's size, one channel, or an error saying what is expected.
    fn check_geometry(&self, path: &Path, header: &idx::Header) -> Result<(), PredictError> {
        let [c, h, w] = self.card.input_shape;
        let (rows, cols) = match header.dims[..] {
            [_, rows, cols] => (rows, cols),
            _ => {
                return Err(input_err(
                    path,
                    format!(
                        "has {} dimension(s) ({}); predict takes IDX images (count × rows × \
                         columns) or PNG files",
                        header.dims.len(),
                        header.shape()
                    ),
                ))
            }
        };
        if c != 1 || (rows, cols) != self.image_size() {
            return Err(input_err(
                path,
                format!(
                    "images are {cols}x{rows} grey; the model takes {w}x{h} with {c} channel(s) \
                     (no resizing)"
                ),
            ));
        }
        Ok(())
    }
}

/// What `trainerd predict` classifies, and how it prints.
#[derive(Debug, Clone)]
pub struct PredictRequest {
    pub state_dir: PathBuf,
    /// Most bytes the champion's weights may take.
    pub memory_budget: u64,
    /// IDX image files (optionally gzipped), PNG or JPEG images.
    pub files: Vec<PathBuf>,
    /// One JSON object per image instead of a table.
    pub json: bool,
    /// With `json`: each image's raw logits too.
    pub logits: bool,
}

/// `trainerd predict`: one line per image (`--json`: one JSON object per line).
pub fn run(args: &PredictRequest) -> anyhow::Result<()> {
    let champion = load_champion_within(&args.state_dir, args.memory_budget)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    for file in &args.files {
        let name = file.display().to_string();
        let mut emit = |index: usize, label: i64, probability: f64, logits: &[f32]| {
            if args.json {
                let p = Prediction {
                    file: name.clone(),
                    index,
                    label,
                    class: champion.class_name(label).map(String::from),
                    probability,
                    logits: args.logits.then(|| logits.to_vec()),
                };
                writeln!(out, "{}", serde_json::to_string(&p)?)
            } else {
                // The name as a fourth column, unless it is the label's number (IDX sets).
                match champion.class_name(label) {
                    Some(class) if class != label.to_string() => {
                        writeln!(out, "{name}[{index}]\t{label}\t{probability:.4}\t{class}")
                    }
                    _ => writeln!(out, "{name}[{index}]\t{label}\t{probability:.4}"),
                }
            }
        };
        champion.classify(file, &mut emit)?;
    }
    out.flush()?;
    Ok(())
}
