//! `README.md`: the model card, with Hugging Face front matter
//! (`pipeline_tag`, dataset, a `model-index` with the test accuracy), the
//! input contract, results, recipe, provenance, the files with their
//! checksums, and how to load each form in three lines.

use std::fmt::Write as _;

use super::manifest::Manifest;
use super::triton::MODEL_NAME;
use super::{INPUT_NAME, ONNX_FILE, OUTPUT_NAME, REPOSITORY_DIR, TORCHSCRIPT_FILE};
use crate::model::card::{Intervals, ModelCard};

/// A YAML scalar (a JSON string is a valid YAML double-quoted scalar).
fn yaml(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Whether the data has MNIST's geometry (the card then says `mnist`).
fn mnist_like(card: &ModelCard) -> bool {
    card.input_shape == [1, 28, 28] && card.classes == 10
}

/// Whether the card holds a test measurement: a trial's export (`export
/// --trial`) has none (only a model about to be promoted is measured on the
/// test split); older champions' cards have one without a size.
fn test_measured(card: &ModelCard) -> bool {
    card.intervals.test_size > 0 || !card.test_confusion.is_empty()
}

fn front_matter(card: &ModelCard) -> String {
    let fp = card
        .data_fingerprint
        .get(..12)
        .unwrap_or(&card.data_fingerprint);
    let (kind, dataset) = if mnist_like(card) {
        ("mnist", format!("MNIST-layout IDX data (fingerprint {fp})"))
    } else {
        ("idx", format!("IDX images (fingerprint {fp})"))
    };
    let datasets = if mnist_like(card) {
        "datasets:\n- mnist\n"
    } else {
        ""
    };
    let head = format!(
        "---\npipeline_tag: image-classification\nlibrary_name: onnx\n\
         tags:\n- image-classification\n- onnx\n- torchscript\n- triton\n- trainerd\n\
         {datasets}"
    );
    if !test_measured(card) {
        return head + "---\n";
    }
    format!(
        "{head}metrics:\n- accuracy\nmodel-index:\n- name: {name}\n  results:\n  \
         - task:\n      type: image-classification\n      name: Image Classification\n    \
         dataset:\n      name: {dataset}\n      type: {kind}\n      split: test\n    \
         metrics:\n    - type: accuracy\n      value: {acc}\n      name: Test accuracy\n---\n",
        name = yaml(&format!("trainerd-{}", card.preset)),
        dataset = yaml(&dataset),
        acc = card.test_accuracy,
    )
}

fn contract(card: &ModelCard) -> String {
    let [c, h, w] = card.input_shape;
    let formula = card.normalisation.formula("pixels");
    format!(
        "## Input and output\n\n\
         - `{INPUT_NAME}`: float32 `[N, {c}, {h}, {w}]`, values in [0, 1] (the byte value \
         / 255), row-major, no resizing; `N` is free.\n\
         - The normalisation is inside every file: `{formula}` (the training split's \
         mean and std, per channel).\n\
         - `{OUTPUT_NAME}`: float32 `[N, {k}]`; `argmax` is the label (0..{last}{names}), \
         `softmax` the probabilities.\n\
         - Eval mode: batch norm uses its running statistics, dropout is off.\n\n",
        k = card.classes,
        last = card.classes - 1,
        names = if card.class_names.is_empty() {
            ""
        } else {
            "; label `i` is `class_names[i]` of `model.json`, one a line in \
             `repository/trainerd/labels.txt`"
        },
    )
}

fn results_and_recipe(card: &ModelCard) -> String {
    let arch = serde_json::to_string(&card.arch).unwrap_or_default();
    let optim = serde_json::to_string(&card.recipe.optimizer).unwrap_or_default();
    let sched = serde_json::to_string(&card.recipe.schedule).unwrap_or_default();
    let r = &card.recipe;
    let measured = test_measured(card);
    format!(
        "## Results\n\n| split | accuracy | loss |\n| --- | --- | --- |\n\
         | validation ({val} images) | {va} | {vl:.4} |\n| test{tn} | {ta} | {tl} |\n\n\
         {conf}\
         ## Recipe\n\n- architecture: `{arch}` ({params} parameters)\n\
         - optimizer: `{optim}`\n- schedule: `{sched}`\n\
         - {epochs} epoch(s) planned, {trained} trained, batch size {batch}, label smoothing \
         {ls}, shift augmentation {shift} px\n- seed {seed}, {secs:.1} s of training\n\n",
        val = card.val_size,
        va = Intervals::shown(card.val_accuracy, card.intervals.val_interval),
        vl = card.val_loss,
        ta = if measured {
            Intervals::shown(card.test_accuracy, card.intervals.test_interval)
        } else {
            "not measured (only a model about to be promoted is evaluated on the test split)".into()
        },
        tl = if measured {
            format!("{:.4}", card.test_loss)
        } else {
            "-".into()
        },
        tn = match card.intervals.test_size {
            0 => String::new(),
            n => format!(" ({n} images)"),
        },
        conf = match card.intervals.confidence_level {
            Some(l) => format!(
                "Accuracies are given with their {}% Wilson score intervals; the \
                 study counts its target as reached on the validation interval's \
                 lower bound, and the test set is never used to choose.\n\n",
                l * 100.0
            ),
            None => String::new(),
        },
        params = card.parameters,
        epochs = r.epochs,
        trained = card.epochs_trained,
        batch = r.batch_size,
        ls = r.label_smoothing,
        shift = r.augment_shift,
        seed = card.seed,
        secs = card.train_seconds,
    )
}

fn provenance(card: &ModelCard, files: &Manifest) -> String {
    let mut s = format!(
        "## Provenance\n\n- preset `{}`, trial {} of study `{}`, created {}\n\
         - data fingerprint `{}`\n- commit `{}`\n\n## Files\n\n\
         Also listed, with the same checksums, in `model.json` (`files`); `trainerd predict` \
         verifies them before use.\n\n| file | bytes | SHA-256 |\n| --- | --- | --- |\n",
        card.preset,
        card.trial,
        card.study,
        card.created_at,
        card.data_fingerprint,
        card.commit.as_deref().unwrap_or("unknown"),
    );
    for f in &files.files {
        let _ = writeln!(s, "| `{}` | {} | `{}` |", f.path, f.bytes, f.sha256);
    }
    s.push('\n');
    s
}

fn loading(card: &ModelCard) -> String {
    let [c, h, w] = card.input_shape;
    let n = c * h * w;
    format!(
        "## Loading\n\nonnxruntime (`{ONNX_FILE}`):\n\n```python\n\
         import numpy as np, onnxruntime as ort\n\
         session = ort.InferenceSession(\"{ONNX_FILE}\")\n\
         logits = session.run([\"{OUTPUT_NAME}\"], {{\"{INPUT_NAME}\": np.zeros((1, {c}, {h}, \
         {w}), np.float32)}})[0]\n```\n\n\
         PyTorch (`{TORCHSCRIPT_FILE}`):\n\n```python\nimport torch\n\
         model = torch.jit.load(\"{TORCHSCRIPT_FILE}\").eval()\n\
         logits = model(torch.zeros(1, {c}, {h}, {w}))\n```\n\n\
         Triton (`{REPOSITORY_DIR}/`; KServe's ONNX runtime takes the same layout):\n\n```sh\n\
         tritonserver --model-repository=\"$PWD/{REPOSITORY_DIR}\" &\n\
         python3 -c 'import json; print(json.dumps({{\"inputs\": [{{\"name\": \"{INPUT_NAME}\", \
         \"shape\": [1, {c}, {h}, {w}], \"datatype\": \"FP32\", \"data\": [0.0] * {n}}}]}}))' \
         > request.json\n\
         curl -s localhost:8000/v2/models/{MODEL_NAME}/infer -d @request.json\n```\n"
    )
}

/// The model card for `card`; `files` are the other files of the export.
pub fn render(card: &ModelCard, files: &Manifest) -> String {
    format!(
        "{}\n# trainerd champion: {} (trial {})\n\n\
         An image classifier trained by trainerd, exported as ONNX, TorchScript and a Triton \
         model repository.\n\n{}{}{}{}",
        front_matter(card),
        card.preset,
        card.trial,
        contract(card),
        results_and_recipe(card),
        provenance(card, files),
        loading(card),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::card::{ModelCard, MODEL_CARD_FORMAT};

    /// A card for tests across the export modules (MNIST geometry, linear model).
    pub(crate) fn sample_card() -> ModelCard {
        let spec = crate::model::preset("linear").unwrap();
        ModelCard {
            format: MODEL_CARD_FORMAT,
            trial: 3,
            preset: spec.preset,
            arch: spec.arch,
            recipe: spec.recipe,
            val_accuracy: 0.91,
            test_accuracy: 0.9125,
            val_loss: 0.3,
            test_loss: 0.31,
            per_class_test_accuracy: vec![],
            test_confusion: vec![],
            parameters: 7850,
            epochs_trained: 2,
            train_seconds: 1.5,
            seed: 1,
            data_fingerprint: "0123456789abcdef".into(),
            input_shape: [1, 28, 28],
            classes: 10,
            normalisation: crate::model::Normalisation::MNIST,
            created_at: "2026-01-01T00:00:00Z".into(),
            study: "s1".into(),
            commit: Some("abc123".into()),
            val_size: 200,
            files: vec![],
            version: 0,
            class_names: Vec::new(),
            intervals: crate::model::card::Intervals::of(0.91, 200, 0.9125, 10_000),
        }
    }

    #[test]
    fn a_trial_export_says_its_test_accuracy_was_not_measured() {
        let mut card = sample_card();
        card.intervals = Default::default();
        card.test_accuracy = 0.0;
        let text = render(&card, &Manifest { files: vec![] });
        assert!(text.contains("| test | not measured"), "{text}");
        assert!(
            !text.contains("model-index:"),
            "no test result claimed:\n{text}"
        );
        assert!(
            render(&sample_card(), &Manifest { files: vec![] }).contains("| test (10000 images) |")
        );
    }

    #[test]
    fn cards_of_older_builds_read_their_normalisation() {
        let mut v = serde_json::to_value(sample_card()).unwrap();
        assert_eq!(
            v["normalisation"],
            serde_json::json!({"mean": [0.1307], "std": [0.3081]})
        );
        v["normalisation"] = serde_json::json!([0.2, 0.4]);
        let old: ModelCard = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(
            old.normalisation.of(2),
            (0.2, 0.4),
            "one pair for every channel"
        );
        v.as_object_mut().unwrap().remove("normalisation");
        let older: ModelCard = serde_json::from_value(v).unwrap();
        assert_eq!(older.normalisation, crate::model::Normalisation::MNIST);
    }

    #[test]
    fn card_has_front_matter_accuracy_contract_and_loaders() {
        let card = sample_card();
        let files = Manifest {
            files: vec![crate::export::FileEntry {
                path: "model.onnx".into(),
                sha256: "ab".repeat(32),
                bytes: 42,
            }],
        };
        let text = render(&card, &files);
        assert!(text.starts_with("---\npipeline_tag: image-classification\n"));
        for want in [
            "model-index:",
            "value: 0.9125",
            "- mnist",
            "`pixels`: float32 `[N, 1, 28, 28]`",
            "(pixels - 0.1307) / 0.3081",
            "data fingerprint `0123456789abcdef`",
            "commit `abc123`",
            &"ab".repeat(32),
            "ort.InferenceSession(\"model.onnx\")",
            "torch.jit.load(\"model.pt\")",
            "/v2/models/trainerd/infer",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        let end = text[4..].find("\n---\n").unwrap();
        assert!(
            !text[..end].contains("0.1307"),
            "front matter is YAML metadata only"
        );
    }
}
