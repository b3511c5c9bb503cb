//! A Triton / KServe model repository: `repository/<name>/config.pbtxt` and
//! `repository/<name>/1/model.onnx`, served by the ONNX Runtime backend,
//! and `repository/<name>/labels.txt` when the card has class names (one a
//! line, label `i` on line `i`; the output's `label_filename`, which Triton's
//! classification extension reports).
//! `tritonserver --model-repository=<dir>/repository` serves it as is.

use std::path::Path;

use super::{manifest, ExportError, INPUT_NAME, ONNX_FILE, OUTPUT_NAME, REPOSITORY_DIR};
use crate::model::card::ModelCard;

/// The model's name in the repository (and in `/v2/models/<name>`): fixed,
/// so clients keep their URL when a new champion is promoted.
pub const MODEL_NAME: &str = "trainerd";
/// The class names file beside `config.pbtxt`.
pub const LABELS_FILE: &str = "labels.txt";
/// Largest batch Triton may form (predict's batch size).
pub const MAX_BATCH_SIZE: usize = crate::model::limits::INFERENCE_BATCH;

/// `config.pbtxt` for the card's model (dims without the batch dimension,
/// which `max_batch_size` > 0 makes implicit).
pub fn config_pbtxt(card: &ModelCard) -> String {
    let [c, h, w] = card.input_shape;
    let labels = if card.class_names.is_empty() {
        String::new()
    } else {
        format!("\n    label_filename: \"{LABELS_FILE}\"")
    };
    format!(
        "# Written by trainerd: trial {trial} ({preset}) of study {study}.\n\
         name: \"{MODEL_NAME}\"\n\
         platform: \"onnxruntime_onnx\"\n\
         max_batch_size: {MAX_BATCH_SIZE}\n\
         input [\n  {{\n    name: \"{INPUT_NAME}\"\n    data_type: TYPE_FP32\n    \
         dims: [ {c}, {h}, {w} ]\n  }}\n]\n\
         output [\n  {{\n    name: \"{OUTPUT_NAME}\"\n    data_type: TYPE_FP32\n    \
         dims: [ {classes} ]{labels}\n  }}\n]\n\
         version_policy: {{ latest: {{ num_versions: 1 }} }}\n\
         dynamic_batching {{ }}\n",
        trial = card.trial,
        preset = card.preset,
        study = card.study,
        classes = card.classes,
    )
}

/// `labels.txt`: one class name a line (names with a line break or
/// carriage return would shift the lines: they are written with spaces).
pub fn labels_txt(card: &ModelCard) -> String {
    card.class_names
        .iter()
        .map(|n| format!("{}\n", n.replace(['\n', '\r'], " ")))
        .collect()
}

/// Writes the repository under `dir`; returns the paths written, relative to `dir`.
pub fn write(dir: &Path, card: &ModelCard, onnx: &[u8]) -> Result<Vec<String>, ExportError> {
    let config = format!("{REPOSITORY_DIR}/{MODEL_NAME}/config.pbtxt");
    let model = format!("{REPOSITORY_DIR}/{MODEL_NAME}/1/{ONNX_FILE}");
    manifest::write_file(dir, &model, onnx)?;
    manifest::write_file(dir, &config, config_pbtxt(card).as_bytes())?;
    let mut written = vec![config, model];
    if !card.class_names.is_empty() {
        let labels = format!("{REPOSITORY_DIR}/{MODEL_NAME}/{LABELS_FILE}");
        manifest::write_file(dir, &labels, labels_txt(card).as_bytes())?;
        written.push(labels);
    }
    Ok(written)
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
        assert!(!text.contains("label_filename"), "no names, no labels file");
    }

    #[test]
    fn class_names_go_to_the_labels_file() {
        let mut card = crate::export::card::tests::sample_card();
        card.class_names = vec!["cat".into(), "dog\nx".into()];
        let text = config_pbtxt(&card);
        assert!(
            text.contains("dims: [ 10 ]\n    label_filename: \"labels.txt\"\n  }"),
            "{text}"
        );
        assert_eq!(labels_txt(&card), "cat\ndog x\n");
    }
}
