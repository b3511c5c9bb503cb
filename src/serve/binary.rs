//! Triton's binary tensor data extension over HTTP: a body that is a JSON
//! header of `Inference-Header-Content-Length` bytes followed by the
//! tensors' raw little-endian bytes (each input says how many in
//! `parameters.binary_data_size`, in the order the inputs are listed), and
//! answers in the same form for the outputs asked for as binary
//! (`parameters.binary_data` per output, `binary_data_output` for the whole
//! request). Every length is checked against the bytes actually received
//! before anything is decoded; nothing is allocated from a declared size.

use super::protocol::{
    first_non_finite, Data, InferResponse, InputTensor, OutputData, MAX_ELEMENTS,
};

/// The request and response header naming the JSON part's length.
pub const HEADER_LENGTH: &str = "inference-header-content-length";
/// The parameter giving one tensor's byte count in the binary part.
pub const DATA_SIZE: &str = "binary_data_size";

/// The JSON header and the binary tail of `body`, whose header is
/// `declared` bytes long (the header's value, as sent).
pub fn split<'a>(body: &'a [u8], declared: &str) -> Result<(&'a [u8], &'a [u8]), String> {
    let len: usize = declared.trim().parse().map_err(|_| {
        format!(
            "{HEADER_LENGTH}: {declared:?} is not a byte count; it must be the length of the \
             JSON part of the body"
        )
    })?;
    if len > body.len() {
        return Err(format!(
            "{HEADER_LENGTH}: {len} exceeds the body's {} bytes",
            body.len()
        ));
    }
    Ok(body.split_at(len))
}

/// A tensor's `binary_data_size`, if it has one.
fn declared_size(
    parameters: Option<&serde_json::Value>,
    name: &str,
) -> Result<Option<u64>, String> {
    match parameters.and_then(|p| p.get(DATA_SIZE)) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("input {name:?}: {DATA_SIZE} {v} is not a byte count")),
    }
}

/// Fills each input that declares a `binary_data_size` from `tail`, in
/// order; the sizes must agree with the shapes and datatypes and add up to
/// the tail exactly. `binary` says whether the body had a binary part.
pub fn attach(inputs: &mut [InputTensor], tail: &[u8], binary: bool) -> Result<(), String> {
    let mut at = 0usize;
    for input in inputs.iter_mut() {
        let Some(size) = declared_size(input.parameters.as_ref(), &input.name)? else {
            continue;
        };
        if !binary {
            return Err(format!(
                "input {:?} declares {DATA_SIZE} but the request has no \
                 {HEADER_LENGTH} header; send the header, or the values as JSON `data`",
                input.name
            ));
        }
        if input.data.is_some() {
            return Err(format!(
                "input {:?} has both JSON `data` and {DATA_SIZE}; send one",
                input.name
            ));
        }
        let left = tail.len() - at;
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s <= left)
            .ok_or_else(|| {
                format!(
                    "input {:?}: {DATA_SIZE} {size} exceeds the {left} bytes left in the body",
                    input.name
                )
            })?;
        let bytes = &tail[at..at + size];
        at += size;
        input.data = Some(decode(input, bytes, DATA_SIZE)?);
    }
    if at != tail.len() {
        return Err(format!(
            "the binary part holds {} bytes but the inputs' {DATA_SIZE} add up to {at}",
            tail.len()
        ));
    }
    Ok(())
}

/// Bytes per value of a datatype the model takes.
fn element_size(datatype: &str) -> Option<usize> {
    match datatype {
        "FP32" => Some(4),
        "UINT8" => Some(1),
        _ => None,
    }
}

/// One input's values from its raw little-endian bytes; `field` names
/// where the bytes came from in errors (`binary_data_size`, gRPC's
/// `raw_input_contents`).
pub fn decode(input: &InputTensor, bytes: &[u8], field: &str) -> Result<Data, String> {
    let name = &input.name;
    let size = element_size(&input.datatype).ok_or_else(|| {
        format!(
            "input {name:?}: datatype {:?} in binary form; expected FP32 (4 bytes a value, \
             little-endian) or UINT8",
            input.datatype
        )
    })?;
    let values = input.shape.iter().try_fold(1u64, |acc, &d| {
        u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    });
    let want = values.and_then(|v| v.checked_mul(size as u64));
    if want != Some(bytes.len() as u64) {
        return Err(format!(
            "input {name:?}: {field} {} disagrees with shape {:?} as {} ({} bytes)",
            bytes.len(),
            input.shape,
            input.datatype,
            want.map_or("more than any body holds".into(), |w| w.to_string()),
        ));
    }
    if bytes.len() / size > MAX_ELEMENTS {
        return Err(format!(
            "more than {MAX_ELEMENTS} values in one request; send fewer images per request"
        ));
    }
    let values: Vec<f32> = match size {
        1 => bytes.iter().map(|&b| f32::from(b)).collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    };
    // Bytes are always finite; only FP32 needs the check.
    if let Some(i) = (size == 4).then(|| first_non_finite(&values)).flatten() {
        return Err(format!(
            "input {name:?}: value {i} is NaN or infinite; pixels are finite grey values"
        ));
    }
    Ok(Data {
        values,
        integral_bytes: size == 1,
    })
}

/// Moves the data of the outputs marked in `binary` (parallel to
/// `resp.outputs`) into the binary part, each output then naming its
/// `binary_data_size`; returns that part (empty when none is binary).
pub fn take_binary(resp: &mut InferResponse, binary: &[bool]) -> Vec<u8> {
    let mut tail = Vec::new();
    for (out, _) in resp.outputs.iter_mut().zip(binary).filter(|(_, &b)| b) {
        let start = tail.len();
        if let Some(data) = out.data.take() {
            append_bytes(&data, &mut tail);
        }
        out.parameters = Some(serde_json::json!({ DATA_SIZE: tail.len() - start }));
    }
    tail
}

/// Appends an output's values to `out` as raw little-endian bytes.
pub fn append_bytes(data: &OutputData, out: &mut Vec<u8>) {
    match data {
        OutputData::Float(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        OutputData::Int(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(shape: Vec<i64>, datatype: &str, size: serde_json::Value) -> InputTensor {
        InputTensor {
            name: "pixels".into(),
            shape,
            datatype: datatype.into(),
            data: None,
            parameters: Some(serde_json::json!({ DATA_SIZE: size })),
        }
    }

    #[test]
    fn split_checks_the_header_length() {
        assert_eq!(split(b"{}abc", "2").unwrap(), (&b"{}"[..], &b"abc"[..]));
        for (bad, want) in [
            ("-1", "not a byte count"),
            ("x", "not a byte count"),
            ("9", "exceeds"),
        ] {
            let err = split(b"{}abc", bad).unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn fp32_and_uint8_decode_little_endian() {
        let mut tail: Vec<u8> = [0.5f32, 1.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        tail.extend([0u8, 255]);
        let mut inputs = vec![
            input(vec![1, 2], "FP32", 8.into()),
            input(vec![1, 2], "UINT8", 2.into()),
        ];
        attach(&mut inputs, &tail, true).unwrap();
        assert_eq!(inputs[0].data.as_ref().unwrap().values, vec![0.5, 1.0]);
        let u = inputs[1].data.as_ref().unwrap();
        assert_eq!(
            (u.values.clone(), u.integral_bytes),
            (vec![0.0, 255.0], true)
        );
    }

    #[test]
    fn sizes_that_disagree_are_refused() {
        let nan: Vec<u8> = f32::NAN.to_le_bytes().to_vec();
        let cases = [
            (
                input(vec![1, 2], "FP32", 4.into()),
                vec![0u8; 4],
                "disagrees with shape",
            ),
            (
                input(vec![1, 2], "FP32", 16.into()),
                vec![0u8; 8],
                "exceeds the 8 bytes",
            ),
            (
                input(vec![1, 1], "FP32", 4.into()),
                vec![0u8; 8],
                "add up to 4",
            ),
            (
                input(vec![1, 2], "FP64", 16.into()),
                vec![0u8; 16],
                "datatype \"FP64\"",
            ),
            (
                input(vec![1, 2], "FP32", (-4).into()),
                vec![0u8; 8],
                "not a byte count",
            ),
            (
                input(vec![1, -2], "UINT8", 2.into()),
                vec![0u8; 2],
                "disagrees",
            ),
            (input(vec![1, 1], "FP32", 4.into()), nan, "NaN or infinite"),
        ];
        for (inp, tail, want) in cases {
            let err = attach(&mut [inp], &tail, true).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
        let err = attach(&mut [input(vec![1, 1], "UINT8", 1.into())], b"", false).unwrap_err();
        assert!(err.contains("no inference-header-content-length"), "{err}");
    }

    #[test]
    fn binary_outputs_move_to_the_tail() {
        use super::super::protocol::OutputTensor;
        let mut resp = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: None,
            outputs: vec![
                OutputTensor {
                    name: "logits".into(),
                    datatype: "FP32".into(),
                    shape: vec![1, 1],
                    data: Some(OutputData::Float(vec![2.0])),
                    parameters: None,
                },
                OutputTensor {
                    name: "label".into(),
                    datatype: "INT64".into(),
                    shape: vec![1],
                    data: Some(OutputData::Int(vec![3])),
                    parameters: None,
                },
            ],
        };
        let tail = take_binary(&mut resp, &[false, true]);
        assert_eq!(tail, 3i64.to_le_bytes());
        assert!(resp.outputs[0].data.is_some());
        assert_eq!(resp.outputs[1].parameters.as_ref().unwrap()[DATA_SIZE], 8);
    }
}
