//! The metadata answers both front ends give (`GET /v2` and
//! `GET /v2/models/{name}`, gRPC's ServerMetadata and ModelMetadata): what
//! the server implements and what the model takes and answers.

use serde::Serialize;

use super::protocol::{Geometry, LABEL, MODEL_NAME, PROBABILITIES};
use crate::export::{INPUT_NAME, OUTPUT_NAME};

/// `GET /v2`'s answer (and gRPC's ServerMetadata).
#[derive(Debug, Serialize)]
pub struct ServerMetadata {
    pub name: &'static str,
    pub version: &'static str,
    pub extensions: Vec<&'static str>,
}

pub fn server_metadata() -> ServerMetadata {
    ServerMetadata {
        name: "trainerd",
        version: env!("CARGO_PKG_VERSION"),
        extensions: vec!["binary_tensor_data"],
    }
}

/// One tensor in the model metadata.
#[derive(Debug, Serialize)]
pub struct TensorMetadata {
    pub name: &'static str,
    pub datatype: &'static str,
    /// -1: any size (the batch).
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{name}`'s answer (and gRPC's ModelMetadata). The class
/// names (label `i` is entry `i`) are in the optional `parameters` object,
/// as `class_names`: one string holding a JSON list, since the protocol's
/// parameter values are strings, numbers or booleans only.
#[derive(Debug, Serialize)]
pub struct ModelMetadata {
    pub name: &'static str,
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
}

pub fn model_metadata(
    geo: Geometry,
    version: u64,
    class_names: &[String],
    platform: &'static str,
) -> ModelMetadata {
    let [c, h, w] = geo.input;
    let k = geo.classes;
    let tensor = |name, datatype, shape| TensorMetadata {
        name,
        datatype,
        shape,
    };
    let parameters = (!class_names.is_empty()).then(|| {
        let list = serde_json::to_string(class_names).unwrap_or_default();
        serde_json::json!({ "class_names": list })
    });
    ModelMetadata {
        name: MODEL_NAME,
        versions: vec![version.to_string()],
        platform,
        inputs: vec![tensor(INPUT_NAME, "FP32", vec![-1, c, h, w])],
        outputs: vec![
            tensor(OUTPUT_NAME, "FP32", vec![-1, k]),
            tensor(PROBABILITIES, "FP32", vec![-1, k]),
            tensor(LABEL, "INT64", vec![-1]),
        ],
        parameters,
    }
}
