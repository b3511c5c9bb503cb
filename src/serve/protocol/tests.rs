use super::*;

const GEO: Geometry = Geometry {
    input: [1, 2, 2],
    classes: 3,
};

fn parse(body: &str) -> Result<Validated, String> {
    let req: InferRequest = serde_json::from_str(body).map_err(|e| e.to_string())?;
    validate(req, GEO)
}

#[test]
fn nested_and_flat_data_and_both_shapes() {
    let a = parse(r#"{"inputs":[{"name":"pixels","shape":[1,1,2,2],"datatype":"FP32","data":[[[[0,0.5],[1,0.25]]]]}]}"#).unwrap();
    assert_eq!(a.pixels, vec![0.0, 0.5, 1.0, 0.25]);
    let b = parse(r#"{"inputs":[{"name":"pixels","shape":[2,4],"datatype":"UINT8","data":[0,255,51,0,1,2,3,4]}]}"#).unwrap();
    assert_eq!((b.n, b.pixels[1], b.pixels[2]), (2, 1.0, 0.2));
    assert_eq!(b.outputs, vec![OUTPUT_NAME, LABEL]);
}

#[test]
fn bad_requests_say_what_is_expected() {
    let cases = [
        (
            r#"{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[0,0,0,0]}]}"#,
            "unknown input",
        ),
        (
            r#"{"inputs":[{"name":"pixels","shape":[1,5],"datatype":"FP32","data":[0,0,0,0,0]}]}"#,
            "expected one input",
        ),
        (
            r#"{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP64","data":[0,0,0,0]}]}"#,
            "datatype",
        ),
        (
            r#"{"inputs":[{"name":"pixels","shape":[2,4],"datatype":"FP32","data":[0,0,0,0]}]}"#,
            "needs 8 values",
        ),
        (
            r#"{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"UINT8","data":[0,0,0,256]}]}"#,
            "0..=255",
        ),
        (
            r#"{"inputs":[{"name":"pixels","shape":[0,4],"datatype":"FP32","data":[]}]}"#,
            "at least 1",
        ),
        (
            r#"{"inputs":[{"name":"pixels","shape":[4611686018427387904,4],"datatype":"FP32","data":[0]}]}"#,
            "too many",
        ),
        (
            r#"{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP32","data":[0,0,0,"a"]}]}"#,
            "numbers",
        ),
        (
            r#"{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP32","data":[0,0,0,0]}],"outputs":[{"name":"z"}]}"#,
            "unknown output",
        ),
        (r#"{"inputs":[]}"#, "0 inputs"),
    ];
    for (body, want) in cases {
        let err = parse(body).expect_err(body);
        assert!(err.contains(want), "{body}: {err}");
    }
}

#[test]
fn labels_and_probabilities() {
    let v = parse(r#"{"inputs":[{"name":"pixels","shape":[1,4],"datatype":"FP32","data":[0,0,0,0]}],"outputs":[{"name":"probabilities"},{"name":"label"}]}"#).unwrap();
    let r = respond(&v, vec![1.0, 3.0, 2.0], 3, 7);
    assert_eq!(r.model_version, "7");
    match r.outputs[1].data.as_ref().unwrap() {
        OutputData::Int(l) => assert_eq!(l, &vec![1]),
        other => panic!("{other:?}"),
    }
    match r.outputs[0].data.as_ref().unwrap() {
        OutputData::Float(p) => assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_first_non_finite_value_is_found_wherever_it_is() {
    let mut v = vec![0.5f32; 1000];
    assert_eq!(first_non_finite(&v), None);
    assert_eq!(first_non_finite(&[]), None);
    for (i, bad) in [
        (0, f32::NAN),
        (517, f32::INFINITY),
        (999, f32::NEG_INFINITY),
    ] {
        v[i] = bad;
        assert_eq!(first_non_finite(&v), Some(i));
        v[i] = 0.5;
    }
    v[3] = f32::NAN;
    v[7] = f32::NAN;
    assert_eq!(first_non_finite(&v), Some(3));
}
