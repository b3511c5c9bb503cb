//! `trainerd predict FILE...`: classify images with the champion in `best/`.
//!
//! The network is rebuilt from the card's architecture, loaded with
//! `best/model.safetensors`, and fed images normalised exactly as in
//! training: `(pixel/255 - mean) / std` with the card's mean and std.
//! Inputs are IDX image files (rank 3, unsigned bytes, optionally gzipped)
//! or 8-bit PNGs; images must have the model's input size (no resizing: a
//! silently rescaled image would be classified with confidence it does not
//! deserve). Colour PNGs are converted to grey (ITU-R BT.601 luma).

use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use crate::config::PredictArgs;
use crate::model::{self, InputShape};
use crate::pipeline::promote::{self, ModelCard};

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("no champion model in {0} (train one first: trainerd train)")]
    NoModel(PathBuf),
    #[error("{path}: {what}")]
    Model { path: PathBuf, what: String },
    #[error("{path}: {what}")]
    Input { path: PathBuf, what: String },
    /// `best/` holds a champion whose card cannot be used (exit 65).
    #[error(transparent)]
    Card(#[from] promote::CardError),
}

impl crate::exit::ExitStatus for PredictError {
    fn exit_code(&self) -> u8 {
        match self {
            PredictError::NoModel(_) | PredictError::Model { .. } => 1,
            PredictError::Input { .. } | PredictError::Card(_) => crate::exit::DATA,
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
    pub probability: f64,
}

/// Images of one file: count, rows, cols, pixels (row-major, image after image).
struct Images {
    count: usize,
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
}

fn input_err(path: &Path, what: impl Into<String>) -> PredictError {
    PredictError::Input {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

fn read_png(path: &Path) -> Result<Images, PredictError> {
    let file = std::fs::File::open(path).map_err(|e| input_err(path, e.to_string()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    // Expand palettes and low bit depths to 8-bit; strip 16-bit to 8.
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| input_err(path, format!("not a readable PNG: {e}")))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| input_err(path, format!("not a readable PNG: {e}")))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let bytes = &buf[..info.buffer_size()];
    let pixels: Vec<u8> = match channels {
        1 | 2 => bytes.chunks(channels).map(|p| p[0]).collect(),
        3 | 4 => bytes
            .chunks(channels)
            .map(|p| {
                let luma =
                    0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]);
                luma.round().clamp(0.0, 255.0) as u8
            })
            .collect(),
        n => {
            return Err(input_err(
                path,
                format!("unsupported PNG with {n} channels"),
            ))
        }
    };
    Ok(Images {
        count: 1,
        rows: h,
        cols: w,
        pixels,
    })
}

fn read_images(path: &Path) -> Result<Images, PredictError> {
    let mut magic = [0u8; 8];
    let head = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut magic))
        .map_err(|e| input_err(path, e.to_string()))?;
    if head >= 8 && magic == *b"\x89PNG\r\n\x1a\n" {
        return read_png(path);
    }
    let idx = crate::data::idx::read_images(path).map_err(|e| input_err(path, e.to_string()))?;
    Ok(Images {
        count: idx.count,
        rows: idx.rows,
        cols: idx.cols,
        pixels: idx.pixels().to_vec(),
    })
}

/// The champion, ready to classify.
pub struct Champion {
    pub card: ModelCard,
    _vs: nn::VarStore,
    net: nn::SequentialT,
}

/// Rebuilds the champion from `best/` (card + weights).
pub fn load_champion(state_dir: &Path) -> Result<Champion, PredictError> {
    let best = state_dir.join("best");
    let card = promote::load_card(state_dir)?.ok_or_else(|| PredictError::NoModel(best.clone()))?;
    if card.diverged() {
        return Err(promote::CardError::Diverged {
            path: best.join(promote::CARD),
        }
        .into());
    }
    let model_err = |what: String| PredictError::Model {
        path: best.join("model.safetensors"),
        what,
    };
    let [channels, height, width] = card.input_shape;
    let shape = InputShape {
        channels,
        height,
        width,
        classes: card.classes,
    };
    model::validate(&card.arch, shape).map_err(|w| model_err(format!("card architecture: {w}")))?;
    let vs = nn::VarStore::new(Device::Cpu);
    let net = model::build(&vs.root(), &card.arch, shape);
    let saved = Tensor::read_safetensors(best.join("model.safetensors"))
        .map_err(|e| model_err(e.to_string()))?;
    let saved: std::collections::HashMap<String, Tensor> = saved.into_iter().collect();
    for (name, mut var) in vs.variables() {
        let src = saved
            .get(&name)
            .ok_or_else(|| model_err(format!("weight {name} missing")))?;
        if src.size() != var.size() {
            return Err(model_err(format!(
                "weight {name} has shape {:?}, the card's architecture needs {:?}",
                src.size(),
                var.size()
            )));
        }
        tch::no_grad(|| var.copy_(src));
    }
    Ok(Champion { card, _vs: vs, net })
}

impl Champion {
    /// Classifies the images of one file.
    fn classify(&self, path: &Path) -> Result<Vec<Prediction>, PredictError> {
        let img = read_images(path)?;
        let [c, h, w] = self.card.input_shape;
        if c != 1 || img.rows as i64 != h || img.cols as i64 != w {
            return Err(input_err(
                path,
                format!(
                    "images are {}x{} grey; the model takes {h}x{w} with {c} channel(s)",
                    img.rows, img.cols
                ),
            ));
        }
        if img.count == 0 {
            return Ok(vec![]);
        }
        let [mean, std] = self.card.normalisation;
        let x =
            Tensor::from_slice(&img.pixels)
                .to_kind(Kind::Float)
                .view([img.count as i64, 1, h, w]);
        let x = (x / 255.0 - mean) / std;
        let probs = tch::no_grad(|| self.net.forward_t(&x, false).softmax(-1, Kind::Float));
        let (p, label) = probs.max_dim(1, false);
        let p: Vec<f64> = Vec::try_from(p.to_kind(Kind::Double)).unwrap_or_default();
        let label: Vec<i64> = Vec::try_from(label).unwrap_or_default();
        let file = path.display().to_string();
        Ok(label
            .into_iter()
            .zip(p)
            .enumerate()
            .map(|(index, (label, probability))| Prediction {
                file: file.clone(),
                index,
                label,
                probability,
            })
            .collect())
    }
}

/// `trainerd predict`: one line per image (`--json`: one JSON object per line).
pub fn run(args: &PredictArgs) -> anyhow::Result<u8> {
    let champion = load_champion(&args.state_dir)?;
    for file in &args.files {
        for p in champion.classify(file)? {
            if args.json {
                println!("{}", serde_json::to_string(&p)?);
            } else {
                println!("{}[{}]\t{}\t{:.4}", p.file, p.index, p.label, p.probability);
            }
        }
    }
    Ok(crate::exit::OK)
}
