//! `ModelInferRequest` as the REST path's [`InferRequest`] (so one
//! validation, [`protocol::validate`], checks both), and the REST path's
//! answer as a `ModelInferResponse` with every output in
//! `raw_output_contents`, as Triton answers. Values come either all in
//! `raw_input_contents` (one entry per input, checked against its shape
//! and datatype) or typed in each input's `contents` (`fp32_contents` for
//! FP32, `uint_contents` for UINT8).

use super::pb::model_infer_request::InferInputTensor;
use super::pb::model_infer_response::InferOutputTensor;
use super::pb::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::serve::binary;
use crate::serve::protocol::{
    self, Data, InferRequest, InferResponse, InputTensor, RequestedOutput, MAX_ELEMENTS,
};

/// Where raw values come from, in error messages.
const RAW: &str = "raw_input_contents";

/// The request in the REST path's form, its values decoded.
pub fn request_of(req: ModelInferRequest) -> Result<InferRequest, String> {
    let raw = req.raw_input_contents;
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(format!(
            "{RAW} holds {} entries for {} inputs; send one per input, in their order",
            raw.len(),
            req.inputs.len()
        ));
    }
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (i, input) in req.inputs.into_iter().enumerate() {
        inputs.push(input_of(input, raw.get(i).map(|b| &b[..]))?);
    }
    let outputs = req
        .outputs
        .into_iter()
        .map(|o| RequestedOutput {
            name: o.name,
            parameters: None,
        })
        .collect();
    Ok(InferRequest {
        id: Some(req.id).filter(|id| !id.is_empty()),
        inputs,
        outputs: Some(outputs),
        parameters: None,
    })
}

fn input_of(input: InferInputTensor, raw: Option<&[u8]>) -> Result<InputTensor, String> {
    let mut tensor = InputTensor {
        name: input.name,
        shape: input.shape,
        datatype: input.datatype,
        data: None,
        parameters: None,
    };
    let data = match (raw, input.contents) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "input {:?} has both `contents` and {RAW}; send one",
                tensor.name
            ))
        }
        (Some(bytes), None) => binary::decode(&tensor, bytes, RAW)?,
        (None, Some(contents)) => typed(&tensor, contents)?,
        (None, None) => {
            return Err(format!(
                "input {:?} has no values; send them in {RAW} or in `contents` \
                 (fp32_contents for FP32, uint_contents for UINT8)",
                tensor.name
            ))
        }
    };
    tensor.data = Some(data);
    Ok(tensor)
}

/// An input's typed `contents`, as its datatype has them.
fn typed(input: &InputTensor, c: InferTensorContents) -> Result<Data, String> {
    let name = &input.name;
    let values: Vec<f32> = match input.datatype.as_str() {
        "FP32" => c.fp32_contents,
        "UINT8" => {
            if let Some(v) = c.uint_contents.iter().find(|&&v| v > 255) {
                return Err(format!("input {name:?}: UINT8 value {v} is over 255"));
            }
            c.uint_contents.into_iter().map(|v| v as f32).collect()
        }
        other => {
            return Err(format!(
                "input {name:?}: datatype {other:?}; expected FP32 (grey values in [0, 1]) or \
                 UINT8 (0..255)"
            ))
        }
    };
    if values.len() > MAX_ELEMENTS {
        return Err(format!(
            "more than {MAX_ELEMENTS} values in one request; send fewer images per request"
        ));
    }
    if let Some(i) = protocol::first_non_finite(&values) {
        return Err(format!(
            "input {name:?}: value {i} is NaN or infinite; pixels are finite grey values"
        ));
    }
    Ok(Data {
        values,
        integral_bytes: input.datatype == "UINT8",
    })
}

/// The answer with each output's values as raw little-endian bytes.
pub fn response_of(resp: InferResponse) -> ModelInferResponse {
    let mut outputs = Vec::with_capacity(resp.outputs.len());
    let mut raw = Vec::with_capacity(resp.outputs.len());
    for out in resp.outputs {
        let mut bytes = Vec::new();
        if let Some(data) = &out.data {
            binary::append_bytes(data, &mut bytes);
        }
        raw.push(bytes.into());
        outputs.push(InferOutputTensor {
            name: out.name,
            datatype: out.datatype,
            shape: out.shape,
            parameters: Default::default(),
            contents: None,
        });
    }
    ModelInferResponse {
        model_name: resp.model_name,
        model_version: resp.model_version,
        id: resp.id.unwrap_or_default(),
        parameters: Default::default(),
        outputs,
        raw_output_contents: raw,
    }
}

/// Bytes of values a request carries (to decide whether to decode it off the async threads).
pub fn payload_bytes(req: &ModelInferRequest) -> usize {
    let raw: usize = req.raw_input_contents.iter().map(|b| b.len()).sum();
    let typed: usize = req
        .inputs
        .iter()
        .filter_map(|i| i.contents.as_ref())
        .map(|c| 4 * (c.fp32_contents.len() + c.uint_contents.len()))
        .sum();
    raw + typed
}

/// Checks `req` against the model; the error is the INVALID_ARGUMENT's message.
pub fn validate(
    req: ModelInferRequest,
    geo: protocol::Geometry,
) -> Result<protocol::Validated, String> {
    protocol::validate(request_of(req)?, geo)
}

#[cfg(test)]
mod tests;
