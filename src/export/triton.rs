//! A Triton / KServe model repository: `repository/<name>/config.pbtxt` and
//! `repository/<name>/1/model.onnx`, served by the ONNX Runtime backend.
//! `tritonserver --model-repository=<dir>/repository` serves it as is.

use std::path::Path;

use super::{manifest, ExportError, INPUT_NAME, ONNX_FILE, OUTPUT_NAME, REPOSITORY_DIR};
use crate::model::card::ModelCard;

/// The model's name in the repository (and in `/v2/models/<name>`): fixed,
/// so clients keep their URL when a new champion is promoted.
pub const MODEL_NAME: &str = "trainerd";
/// Largest batch Triton may form (predict's batch size).
pub const MAX_BATCH_SIZE: usize = crate::model::limits::INFERENCE_BATCH;

/// `config.pbtxt` for the card's model (dims without the batch dimension,
/// which `max_batch_size` > 0 makes implicit).
pub fn config_pbtxt(card: &ModelCard) -> String {
    let [c, h, w] = card.input_shape;
    format!(
        "# Written by trainerd: trial {trial} ({preset}) of study {study}.\n\
         name: \"{MODEL_NAME}\"\n\
         platform: \"onnxruntime_onnx\"\n\
         max_batch_size: {MAX_BATCH_SIZE}\n\
         input [\n  {{\n    name: \"{INPUT_NAME}\"\n    data_type: TYPE_FP32\n    \
         dims: [ {c}, {h}, {w} ]\n  }}\n]\n\
         output [\n  {{\n    name: \"{OUTPUT_NAME}\"\n    data_type: TYPE_FP32\n    \
         dims: [ {classes} ]\n  }}\n]\n\
         version_policy: {{ latest: {{ num_versions: 1 }} }}\n\
         dynamic_batching {{ }}\n",
        trial = card.trial,
        preset = card.preset,
        study = card.study,
        classes = card.classes,
    )
}

/// Writes the repository under `dir`; returns the paths written, relative to `dir`.
pub fn write(dir: &Path, card: &ModelCard, onnx: &[u8]) -> Result<Vec<String>, ExportError> {
    let config = format!("{REPOSITORY_DIR}/{MODEL_NAME}/config.pbtxt");
    let model = format!("{REPOSITORY_DIR}/{MODEL_NAME}/1/{ONNX_FILE}");
    manifest::write_file(dir, &model, onnx)?;
    manifest::write_file(dir, &config, config_pbtxt(card).as_bytes())?;
    Ok(vec![config, model])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_tensors_and_the_batch_dims() {
        let card = crate::export::card::tests::sample_card();
        let text = config_pbtxt(&card);
        for want in [
            "name: \"trainerd\"",
            "platform: \"onnxruntime_onnx\"",
            "max_batch_size: 256",
            "name: \"pixels\"",
            "dims: [ 1, 28, 28 ]",
            "name: \"logits\"",
            "dims: [ 10 ]",
            "TYPE_FP32",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
