//! `model.onnx`: the champion's ONNX graph (`crate::onnx_graph`, with the
//! card's input normalisation as its first two nodes, so the model takes
//! pixels in [0, 1]) and the card's identity as `metadata_props`.

use std::collections::HashMap;

use onnx_protobuf::{Message, ModelProto, StringStringEntryProto};
use tch::Tensor;

use super::ExportError;
use crate::model::card::ModelCard;
use crate::onnx_graph::{self, GraphError};

/// The serialised `ModelProto` of the card's model with `weights`.
pub fn model_bytes(
    card: &ModelCard,
    weights: &HashMap<&str, &Tensor>,
) -> Result<Vec<u8>, ExportError> {
    let model = model_proto(card, weights)?;
    model.write_to_bytes().map_err(|e| ExportError::Weights {
        what: format!("cannot encode the ONNX model: {e}"),
    })
}

/// The `ModelProto` of the card's model with `weights`.
pub fn model_proto(
    card: &ModelCard,
    weights: &HashMap<&str, &Tensor>,
) -> Result<ModelProto, ExportError> {
    let net = onnx_graph::Net {
        arch: &card.arch,
        input_shape: card.input_shape,
        classes: card.classes,
        normalisation: Some(card.normalisation),
    };
    let graph = onnx_graph::graph(&net, weights)
        .map_err(|GraphError(what)| ExportError::Weights { what })?;
    Ok(ModelProto {
        model_version: i64::from(card.trial),
        doc_string: format!("trainerd {} trial {}", card.preset, card.trial),
        metadata_props: metadata(card),
        ..onnx_graph::model(graph)
    })
}

/// `metadata_props`: the card's identity, the normalisation (one number
/// when every channel shares it, else a JSON list per channel) and the class
/// names (a JSON list, label `i` is entry `i`).
fn metadata(card: &ModelCard) -> Vec<StringStringEntryProto> {
    let (norm, c) = (card.normalisation, card.input_shape[0]);
    let mut props = vec![
        ("preset", card.preset.clone()),
        ("study", card.study.clone()),
        ("trial", card.trial.to_string()),
        ("data_fingerprint", card.data_fingerprint.clone()),
        ("test_accuracy", card.test_accuracy.to_string()),
        (
            "normalisation_mean",
            numbers(&norm.expanded(c).0, norm.is_uniform()),
        ),
        (
            "normalisation_std",
            numbers(&norm.expanded(c).1, norm.is_uniform()),
        ),
    ];
    if !card.class_names.is_empty() {
        props.push(("class_names", json_list(card.class_names.clone())));
    }
    if let Some(commit) = &card.commit {
        props.push(("commit", commit.clone()));
    }
    props
        .into_iter()
        .map(|(k, v)| StringStringEntryProto {
            key: k.into(),
            value: v,
            ..Default::default()
        })
        .collect()
}

/// The first of `v` when `one`, else all of `v` as a JSON list.
fn numbers(v: &[f64], one: bool) -> String {
    match v.first() {
        Some(x) if one => x.to_string(),
        _ => json_list(v.to_vec()),
    }
}

/// A JSON list, as metadata values that hold several.
fn json_list<T: serde::Serialize>(v: Vec<T>) -> String {
    serde_json::to_string(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests;
