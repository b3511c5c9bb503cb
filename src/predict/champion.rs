//! The champion in `best/`, loaded and ready to classify: its files checked
//! against `model.json`, the network rebuilt from its card and weights, and
//! the forward pass with the card's normalisation (for `predict` and `serve`).

use std::path::Path;

use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use super::{input_err, PredictError};
use crate::data::budget;
use crate::model::card::{self as promote, ModelCard};

/// The champion, ready to classify.
pub struct Champion {
    pub card: ModelCard,
    _vs: nn::VarStore,
    net: nn::SequentialT,
}

/// Rebuilds the champion from `best/` (card + weights), within the default
/// memory budget.
pub fn load_champion(state_dir: &Path) -> Result<Champion, PredictError> {
    load_champion_within(state_dir, budget::default_budget())
}

/// [`load_champion`]; weights that would take more than `memory_budget`
/// (read, then copied into the model) are refused unread.
pub fn load_champion_within(
    state_dir: &Path,
    memory_budget: u64,
) -> Result<Champion, PredictError> {
    let best = crate::state_dir::best(state_dir);
    let card =
        promote::load_champion(state_dir)?.ok_or_else(|| PredictError::NoModel(best.clone()))?;
    load_from(&best, card, memory_budget)
}

/// The model whose card is `card` from `best` (the champion's `best/`, or
/// a kept `versions/N/`): every file the card lists verified first, then
/// the weights, refused unread when they would take more than `memory_budget`.
pub fn load_from(
    best: &Path,
    card: ModelCard,
    memory_budget: u64,
) -> Result<Champion, PredictError> {
    if card.diverged() {
        return Err(promote::CardError::Diverged {
            path: best.join(promote::CARD),
        }
        .into());
    }
    let channels = card.input_shape[0];
    if !card.normalisation.fits(channels) {
        return Err(input_err(
            &best.join(promote::CARD),
            format!(
                "its normalisation has {} channel(s) but the model takes {channels}; \
                 `trainerd rollback` restores the previous champion",
                card.normalisation.mean().len()
            ),
        ));
    }
    crate::export::verify(best, &card).map_err(PredictError::Corrupt)?;
    let weights = best.join("model.safetensors");
    let model_err = |what: String| PredictError::Model {
        path: weights.clone(),
        what,
    };
    let len = std::fs::metadata(&weights)
        .map_err(|e| model_err(e.to_string()))?
        .len();
    if len.saturating_mul(2) > memory_budget {
        return Err(PredictError::Input {
            path: weights.clone(),
            what: format!(
                "the champion's weights ({}) need about {} to load, more than {}",
                budget::human(len),
                budget::human(len.saturating_mul(2)),
                budget::describe(memory_budget)
            ),
        });
    }
    let saved = Tensor::read_safetensors(&weights).map_err(|e| model_err(e.to_string()))?;
    let (vs, net, _) = crate::export::weight_map(&card, &saved).map_err(|e| match e {
        crate::export::ExportError::Weights { what } => model_err(what),
        other => model_err(other.to_string()),
    })?;
    Ok(Champion { card, _vs: vs, net })
}

/// What the network says about a batch of images.
pub(super) struct Output {
    pub(super) labels: Vec<i64>,
    pub(super) probs: Vec<f64>,
    /// Row-major `[n, classes]`.
    pub(super) logits: Vec<f32>,
}

impl Champion {
    /// `(rows, cols)` of the images the model takes.
    pub(super) fn image_size(&self) -> (usize, usize) {
        let [_, h, w] = self.card.input_shape;
        (h.max(0) as usize, w.max(0) as usize)
    }

    /// Logits, row-major `[n, classes]`, of `n` images given as values in
    /// [0, 1] (`n × C × H × W` of them), normalised as in training; for
    /// `trainerd serve`. `None` if the forward pass fails (the message is logged).
    pub fn logits01(&self, pixels: &[f32], n: usize) -> Option<Vec<f32>> {
        let [c, h, w] = self.card.input_shape;
        let run = || -> Result<Vec<f32>, tch::TchError> {
            let x = Tensor::f_from_slice(pixels)?.f_view([n as i64, c, h, w])?;
            let x = self.card.normalisation.apply01(&x)?;
            let logits = tch::no_grad(|| self.net.forward_t(&x, false));
            Vec::try_from(logits.contiguous().view([-1]))
        };
        run()
            .map_err(|e| tracing::error!("forward pass failed: {e}"))
            .ok()
    }

    /// Labels, probabilities and logits of `n` images of the model's size,
    /// read from `path`; pixels of another count are an input error.
    pub(super) fn forward(
        &self,
        path: &Path,
        pixels: &[u8],
        n: usize,
    ) -> Result<Output, PredictError> {
        let [c, h, w] = self.card.input_shape;
        let per_image: u64 = [c, h, w].iter().map(|&d| d.max(0).unsigned_abs()).product();
        if Some(pixels.len() as u64) != per_image.checked_mul(n as u64) {
            return Err(input_err(
                path,
                format!(
                    "decodes to {} values for {n} image(s); the champion takes {c}x{h}x{w} each",
                    pixels.len()
                ),
            ));
        }
        let x = Tensor::from_slice(pixels)
            .to_kind(Kind::Float)
            .view([n as i64, c, h, w]);
        let x = match self.card.normalisation.apply01(&(x / 255.0)) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("normalisation failed: {e}");
                return Ok(Output {
                    labels: Vec::new(),
                    probs: Vec::new(),
                    logits: Vec::new(),
                });
            }
        };
        let logits = tch::no_grad(|| self.net.forward_t(&x, false));
        let (p, label) = logits.softmax(-1, Kind::Float).max_dim(1, false);
        Ok(Output {
            labels: Vec::try_from(label).unwrap_or_default(),
            probs: Vec::try_from(p.to_kind(Kind::Double)).unwrap_or_default(),
            logits: Vec::try_from(logits.contiguous().view([-1])).unwrap_or_default(),
        })
    }

    /// The class name of `label`, when the card has class names.
    pub fn class_name(&self, label: i64) -> Option<&str> {
        usize::try_from(label)
            .ok()
            .and_then(|l| self.card.class_names.get(l))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use crate::pipeline::promote::{promote, tests as promoted};

    /// A champion whose card says `channels` channels (an edited
    /// `model.json`: a linear model's weights still fit any `[C, H, W]`).
    fn champion_taking(dir: &std::path::Path, channels: i64) -> super::Champion {
        let mut card = promoted::card(1);
        card.input_shape = [channels, 2, 2];
        promote(dir, &promoted::weights(&card), &card, &[], 10).unwrap();
        super::load_champion(dir).unwrap()
    }

    #[test]
    fn a_card_of_other_than_grey_or_rgb_makes_an_image_an_input_error_not_a_panic() {
        for channels in [2, 4] {
            let dir = tempfile::tempdir().unwrap();
            let champion = champion_taking(dir.path(), channels);
            let png = dir.path().join("rgb.png");
            image::RgbImage::new(2, 2).save(&png).unwrap();
            let mut emitted = 0;
            let err = champion
                .classify(&png, &mut |_, _, _, _| {
                    emitted += 1;
                    Ok(())
                })
                .unwrap_err();
            assert_eq!(emitted, 0);
            let msg = err.to_string();
            assert!(
                msg.contains("rgb.png") && msg.contains(&format!("{channels}x2x2")),
                "{msg}"
            );
            assert!(!msg.contains("frame #"), "no libtorch trace: {msg}");
            let code = err
                .downcast_ref::<super::PredictError>()
                .map(crate::exit::ExitStatus::exit_code);
            assert_eq!(code, Some(crate::exit::DATA), "{msg}");
        }
    }

    #[test]
    fn pixels_of_another_count_than_the_card_are_an_input_error() {
        let dir = tempfile::tempdir().unwrap();
        let champion = champion_taking(dir.path(), 1);
        let path = std::path::Path::new("x.idx");
        let err = champion
            .forward(path, &[0; 5], 1)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("x.idx") && err.contains("1x2x2"), "{err}");
        let out = champion.forward(path, &[0; 8], 2).ok().unwrap();
        assert_eq!(out.labels.len(), 2);
    }
}
