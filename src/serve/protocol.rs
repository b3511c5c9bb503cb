//! The Open Inference Protocol v2 (KServe / Triton REST) as JSON types, and
//! the validation that turns an inference request into pixels for the
//! batcher, or a 400 saying what was expected.
//!
//! A tensor's `data` may be flat or nested (row-major) arrays; it is read
//! straight into `f32`s by [`Data`]'s visitor, at most [`MAX_ELEMENTS`] of
//! them, so a request never holds more than that whatever its shape claims.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::export::{INPUT_NAME, OUTPUT_NAME};

/// The model's name in `/v2/models/{name}` (the exported Triton repository's).
pub const MODEL_NAME: &str = crate::export::triton::MODEL_NAME;
/// The optional output with the softmax of the logits.
pub const PROBABILITIES: &str = "probabilities";
/// The predicted class of each image (INT64).
pub const LABEL: &str = "label";
/// Values one request may carry: 5,350 MNIST images (16 MiB of `f32`).
pub const MAX_ELEMENTS: usize = 1 << 22;

/// `POST /v2/models/{name}/infer`'s body.
#[derive(Debug, Deserialize)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    pub inputs: Vec<InputTensor>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct InputTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    /// The values as JSON; `None` when they come in the binary part
    /// ([`super::binary`]).
    #[serde(default)]
    pub data: Option<Data>,
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct RequestedOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
}

/// A tensor's values, flattened; `integral_bytes` says whether every one is
/// an integer in 0..=255 (what UINT8 needs).
#[derive(Debug, Default)]
pub struct Data {
    pub values: Vec<f32>,
    pub integral_bytes: bool,
}

struct DataVisitor<'a>(&'a mut Data);

impl<'de> de::DeserializeSeed<'de> for DataVisitor<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DataVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("numbers, in a flat or nested array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(DataVisitor(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        let d = self.0;
        if d.values.len() >= MAX_ELEMENTS {
            return Err(E::custom(format!(
                "more than {MAX_ELEMENTS} values in one request; send fewer images per request"
            )));
        }
        d.integral_bytes &= v.fract() == 0.0 && (0.0..=255.0).contains(&v);
        d.values.push(v as f32);
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Data, D::Error> {
        let mut data = Data {
            values: Vec::new(),
            integral_bytes: true,
        };
        d.deserialize_any(DataVisitor(&mut data))?;
        Ok(data)
    }
}

/// One output tensor of a response.
#[derive(Debug, Serialize, Deserialize)]
pub struct OutputTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    /// `None` when sent in the binary part (`parameters` then gives its size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<OutputData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OutputData {
    Int(Vec<i64>),
    Float(Vec<f32>),
}

/// `POST .../infer`'s answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<OutputTensor>,
}

/// What the model takes: `[C, H, W]` and the number of classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub input: [i64; 3],
    pub classes: i64,
}

impl Geometry {
    pub fn per_image(&self) -> usize {
        self.input.iter().map(|&d| d.max(0) as usize).product()
    }
}

/// A validated request: `n` images of grey values in [0, 1], and which outputs to send.
#[derive(Debug)]
pub struct Validated {
    pub pixels: Vec<f32>,
    pub n: usize,
    pub outputs: Vec<&'static str>,
    /// Whether each output goes in the binary part (parallel to `outputs`).
    pub binary: Vec<bool>,
    pub id: Option<String>,
}

/// The index of the first NaN or infinite value, if any. The common case
/// (every value finite) is one branch-free pass the compiler vectorises.
pub fn first_non_finite(values: &[f32]) -> Option<usize> {
    if values.iter().fold(true, |ok, v| ok & v.is_finite()) {
        return None;
    }
    values.iter().position(|v| !v.is_finite())
}

/// Checks a parsed request against the model; the error is the 400's message.
pub fn validate(req: InferRequest, geo: Geometry) -> Result<Validated, String> {
    let [c, h, w] = geo.input;
    let expected = format!(
        "one input named \"{INPUT_NAME}\", datatype FP32 (grey values in [0, 1]) or UINT8 \
         (0..255), shape [N, {c}, {h}, {w}] or [N, {}]",
        c * h * w
    );
    let all_binary = flag(req.parameters.as_ref(), "binary_data_output")?;
    let (outputs, binary) = requested_outputs(req.outputs.as_deref(), all_binary)?;
    let mut inputs = req.inputs;
    if inputs.len() != 1 {
        return Err(format!(
            "{} inputs given; expected {expected}",
            inputs.len()
        ));
    }
    let input = inputs.remove(0);
    if input.name != INPUT_NAME {
        return Err(format!(
            "unknown input {:?}; expected {expected}",
            input.name
        ));
    }
    let n = match input.shape[..] {
        [n, cc, hh, ww] if [cc, hh, ww] == [c, h, w] => n,
        [n, flat] if flat == c * h * w => n,
        _ => {
            return Err(format!(
                "input shape {:?}; expected {expected}",
                input.shape
            ))
        }
    };
    if n < 1 {
        return Err(format!(
            "input shape {:?}: N must be at least 1",
            input.shape
        ));
    }
    let n = n as usize;
    let Some(mut data) = input.data else {
        return Err(format!(
            "input \"{INPUT_NAME}\" has no `data`; send the values as JSON `data`, or as \
             binary with `parameters.binary_data_size` and the Inference-Header-Content-Length \
             header"
        ));
    };
    let want = n.checked_mul(geo.per_image());
    if want != Some(data.values.len()) {
        return Err(format!(
            "input shape {:?} needs {} values, data holds {}",
            input.shape,
            want.map_or("too many".into(), |w| w.to_string()),
            data.values.len()
        ));
    }
    match input.datatype.as_str() {
        "FP32" => {}
        "UINT8" if data.integral_bytes => data.values.iter_mut().for_each(|v| *v /= 255.0),
        "UINT8" => return Err("UINT8 data must be integers in 0..=255".into()),
        other => return Err(format!("datatype {other:?}; expected {expected}")),
    }
    Ok(Validated {
        pixels: data.values,
        n,
        outputs,
        binary,
        id: req.id,
    })
}

/// A boolean parameter (`binary_data`, `binary_data_output`); absent is false.
fn flag(parameters: Option<&serde_json::Value>, key: &str) -> Result<bool, String> {
    match parameters.and_then(|p| p.get(key)) {
        None => Ok(false),
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!(
            "parameter {key:?} is {other}; expected true or false"
        )),
    }
}

/// The outputs asked for (default: logits and label) and whether each is
/// binary (its own `binary_data`, else the request's `binary_data_output`),
/// or which names exist.
fn requested_outputs(
    asked: Option<&[RequestedOutput]>,
    all_binary: bool,
) -> Result<(Vec<&'static str>, Vec<bool>), String> {
    let Some(asked) = asked.filter(|a| !a.is_empty()) else {
        return Ok((vec![OUTPUT_NAME, LABEL], vec![all_binary; 2]));
    };
    let mut names = Vec::with_capacity(asked.len());
    let mut binary = Vec::with_capacity(asked.len());
    for o in asked {
        names.push(match o.name.as_str() {
            OUTPUT_NAME => OUTPUT_NAME,
            PROBABILITIES => PROBABILITIES,
            LABEL => LABEL,
            other => {
                return Err(format!(
                    "unknown output {other:?}; the model has \"{OUTPUT_NAME}\", \
                     \"{PROBABILITIES}\" and \"{LABEL}\""
                ))
            }
        });
        let own = o.parameters.as_ref().and_then(|p| p.get("binary_data"));
        binary.push(match own {
            None => all_binary,
            Some(_) => flag(o.parameters.as_ref(), "binary_data")?,
        });
    }
    Ok((names, binary))
}

/// The response for `n` images' logits (row-major `[n, classes]`).
pub fn respond(v: &Validated, logits: Vec<f32>, classes: usize, version: u64) -> InferResponse {
    let n = v.n as i64;
    let k = classes.max(1);
    let mut outputs = Vec::new();
    for &name in &v.outputs {
        let (datatype, shape, data) = match name {
            LABEL => ("INT64", vec![n], OutputData::Int(argmax(&logits, k))),
            PROBABILITIES => (
                "FP32",
                vec![n, k as i64],
                OutputData::Float(softmax(&logits, k)),
            ),
            _ => ("FP32", vec![n, k as i64], OutputData::Float(logits.clone())),
        };
        outputs.push(OutputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape,
            data: Some(data),
            parameters: None,
        });
    }
    InferResponse {
        model_name: MODEL_NAME.into(),
        model_version: version.to_string(),
        id: v.id.clone(),
        outputs,
    }
}

fn argmax(logits: &[f32], k: usize) -> Vec<i64> {
    let best =
        |row: &[f32]| (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b }) as i64;
    logits.chunks(k).map(best).collect()
}

fn softmax(logits: &[f32], k: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks(k) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = row.iter().map(|&x| (x - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        out.extend(exp.iter().map(|e| e / sum));
    }
    out
}

#[cfg(test)]
mod tests;
