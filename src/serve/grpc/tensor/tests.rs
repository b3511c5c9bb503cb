use super::*;
use crate::serve::grpc::pb::model_infer_request::InferRequestedOutputTensor;
use crate::serve::protocol::{Geometry, OutputData, OutputTensor};

const GEO: Geometry = Geometry {
    input: [1, 2, 2],
    classes: 3,
};

fn input(
    datatype: &str,
    shape: Vec<i64>,
    contents: Option<InferTensorContents>,
) -> InferInputTensor {
    InferInputTensor {
        name: "pixels".into(),
        datatype: datatype.into(),
        shape,
        parameters: Default::default(),
        contents,
    }
}

fn request(inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "trainerd".into(),
        inputs,
        raw_input_contents: raw.into_iter().map(Into::into).collect(),
        ..Default::default()
    }
}

#[test]
fn raw_fp32_and_uint8_and_typed_contents_decode() {
    let fp32: Vec<u8> = [0.0f32, 0.5, 1.0, 0.25]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let v = validate(
        request(vec![input("FP32", vec![1, 4], None)], vec![fp32]),
        GEO,
    )
    .unwrap();
    assert_eq!(v.pixels, vec![0.0, 0.5, 1.0, 0.25]);
    let raw = request(
        vec![input("UINT8", vec![1, 1, 2, 2], None)],
        vec![vec![0, 255, 51, 0]],
    );
    assert_eq!(validate(raw, GEO).unwrap().pixels, vec![0.0, 1.0, 0.2, 0.0]);
    let typed = InferTensorContents {
        uint_contents: vec![0, 255, 51, 0],
        ..Default::default()
    };
    let t = request(vec![input("UINT8", vec![1, 4], Some(typed))], vec![]);
    assert_eq!(validate(t, GEO).unwrap().pixels, vec![0.0, 1.0, 0.2, 0.0]);
}

#[test]
fn requested_outputs_and_id_carry_over() {
    let mut req = request(vec![input("UINT8", vec![1, 4], None)], vec![vec![0; 4]]);
    req.id = "abc".into();
    req.outputs = vec![InferRequestedOutputTensor {
        name: "probabilities".into(),
        parameters: Default::default(),
    }];
    let v = validate(req, GEO).unwrap();
    assert_eq!(
        (v.outputs, v.id.as_deref()),
        (vec!["probabilities"], Some("abc"))
    );
}

#[test]
fn bad_requests_say_what_is_expected() {
    let fp = |v: Vec<f32>| InferTensorContents {
        fp32_contents: v,
        ..Default::default()
    };
    let cases = [
        (
            request(vec![input("FP32", vec![1, 4], None)], vec![vec![0; 12]]),
            "disagrees with shape",
        ),
        (
            request(
                vec![input("FP32", vec![1, 4], None)],
                vec![vec![0; 16], vec![]],
            ),
            "2 entries for 1 inputs",
        ),
        (
            request(vec![input("FP64", vec![1, 4], None)], vec![vec![0; 32]]),
            "FP64",
        ),
        (
            request(
                vec![input("FP32", vec![1, 4], Some(fp(vec![0.0; 4])))],
                vec![vec![0; 16]],
            ),
            "both",
        ),
        (
            request(vec![input("FP32", vec![1, 4], None)], vec![]),
            "no values",
        ),
        (
            request(
                vec![input(
                    "FP32",
                    vec![1, 4],
                    Some(fp(vec![0.0, f32::NAN, 0.0, 0.0])),
                )],
                vec![],
            ),
            "NaN",
        ),
        (
            request(
                vec![input("FP32", vec![2, 4], Some(fp(vec![0.0; 4])))],
                vec![],
            ),
            "needs 8 values",
        ),
        (
            request(
                vec![input("INT64", vec![1, 4], Some(fp(vec![0.0; 4])))],
                vec![],
            ),
            "INT64",
        ),
        (
            request(
                vec![input(
                    "UINT8",
                    vec![1, 4],
                    Some(InferTensorContents {
                        uint_contents: vec![0, 0, 0, 256],
                        ..Default::default()
                    }),
                )],
                vec![],
            ),
            "over 255",
        ),
        (
            request(
                vec![input("FP32", vec![4611686018427387904, 4], None)],
                vec![vec![0; 16]],
            ),
            "disagrees",
        ),
        (request(vec![], vec![]), "0 inputs"),
    ];
    for (req, want) in cases {
        let err = validate(req, GEO).expect_err(want);
        assert!(err.contains(want), "{want}: {err}");
    }
}

#[test]
fn every_output_is_answered_raw_in_order() {
    let resp = InferResponse {
        model_name: "trainerd".into(),
        model_version: "3".into(),
        id: None,
        outputs: vec![
            OutputTensor {
                name: "logits".into(),
                datatype: "FP32".into(),
                shape: vec![1, 2],
                data: Some(OutputData::Float(vec![1.0, -2.0])),
                parameters: None,
            },
            OutputTensor {
                name: "label".into(),
                datatype: "INT64".into(),
                shape: vec![1],
                data: Some(OutputData::Int(vec![0])),
                parameters: None,
            },
        ],
    };
    let g = response_of(resp);
    assert_eq!(g.model_version, "3");
    assert_eq!(g.outputs[1].name, "label");
    let mut want = 1.0f32.to_le_bytes().to_vec();
    want.extend((-2.0f32).to_le_bytes());
    assert_eq!(
        g.raw_output_contents,
        vec![want, 0i64.to_le_bytes().to_vec()]
    );
    assert!(g.outputs.iter().all(|o| o.contents.is_none()));
}
