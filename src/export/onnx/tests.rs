//! Tests of `onnx`.

use std::collections::HashMap;

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{Message, ModelProto, NodeProto};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

use super::*;
use crate::export::{card::tests::sample_card, weight_map};
use crate::model::{ArchSpec, ConvBlock, InputShape};
use crate::onnx_graph::{INPUT_NAME, OPSET, OUTPUT_NAME};

/// Every architecture kind: the presets, plus pooling after the ReLU
/// with batch norm, unpadded kernels and a head with dropout.
fn archs() -> Vec<ArchSpec> {
    let mut out: Vec<ArchSpec> = crate::model::PRESET_NAMES
        .iter()
        .map(|(n, _)| crate::model::preset(n).unwrap().arch)
        .collect();
    out.push(ArchSpec::Cnn {
        blocks: vec![
            ConvBlock {
                channels: 4,
                kernel: 5,
                padding: Some(1),
                convs: 2,
                batch_norm: true,
                pool: true,
                pool_first: false,
                dropout: 0.2,
            },
            ConvBlock {
                channels: 6,
                kernel: 3,
                padding: None,
                convs: 1,
                batch_norm: false,
                pool: false,
                pool_first: true,
                dropout: 0.0,
            },
        ],
        head: vec![12, 8],
        head_dropout: 0.3,
    });
    out
}

fn attr_ints(node: &NodeProto, name: &str) -> Vec<i64> {
    let a = node.attribute.iter().find(|a| a.name == name).unwrap();
    match a.type_.enum_value().unwrap() {
        AttributeType::INT => vec![a.i],
        AttributeType::INTS => a.ints.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

/// Runs the parsed ONNX graph with tch ops, as the ONNX spec defines them.
fn evaluate(model: &ModelProto, pixels: &Tensor) -> Tensor {
    let graph = model.graph.as_ref().unwrap();
    let mut values: HashMap<String, Tensor> = HashMap::new();
    for init in &graph.initializer {
        let data: Vec<f32> = init
            .raw_data
            .chunks(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        values.insert(
            init.name.clone(),
            Tensor::from_slice(&data).view(&init.dims[..]),
        );
    }
    values.insert(INPUT_NAME.into(), pixels.shallow_clone());
    for node in &graph.node {
        let i: Vec<&Tensor> = node.input.iter().map(|n| &values[n]).collect();
        let out = match node.op_type.as_str() {
            "Sub" => i[0] - i[1],
            "Div" => i[0] / i[1],
            "Relu" => i[0].relu(),
            "Flatten" => i[0].flatten(attr_ints(node, "axis")[0], -1),
            "Gemm" => i[0].matmul(&i[1].tr()) + i[2],
            "MaxPool" => i[0].max_pool2d(
                attr_ints(node, "kernel_shape"),
                attr_ints(node, "strides"),
                [0, 0],
                [1, 1],
                false,
            ),
            "Conv" => {
                let pads = attr_ints(node, "pads");
                i[0].conv2d(i[1], i.get(2).copied(), [1, 1], &pads[..2], [1, 1], 1)
            }
            "BatchNormalization" => i[0].batch_norm(
                Some(i[1]),
                Some(i[2]),
                Some(i[3]),
                Some(i[4]),
                false,
                0.1,
                1e-5,
                false,
            ),
            op => panic!("unexpected op {op}"),
        };
        values.insert(node.output[0].clone(), out);
    }
    values.remove(OUTPUT_NAME).unwrap()
}

/// Random weights (running statistics too) in the names `model::build` uses.
fn random_weights(arch: &ArchSpec, shape: InputShape) -> Vec<(String, Tensor)> {
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let _net = crate::model::build(&vs.root(), arch, shape);
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in &mut named {
        let fresh = if name.ends_with("running_var") {
            Tensor::rand(t.size(), (Kind::Float, Device::Cpu)) + 0.5
        } else {
            Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * 0.3
        };
        *t = fresh;
    }
    named
}

#[test]
fn the_graph_computes_what_the_tch_module_computes_for_every_layer_kind() {
    tch::manual_seed(7);
    for arch in archs() {
        let mut card = sample_card();
        card.arch = arch.clone();
        card.classes = 5;
        let weights = random_weights(&arch, crate::export::input_shape(&card));
        let (_vs, net, by_name) = weight_map(&card, &weights).unwrap();
        let bytes = model_bytes(&card, &by_name).unwrap();
        let parsed = ModelProto::parse_from_bytes(&bytes).unwrap();
        assert_eq!(parsed.opset_import[0].version, OPSET);
        let used: usize = parsed.graph.initializer.len() - 2;
        assert_eq!(
            used,
            weights.len(),
            "{arch:?}: every weight is in the graph"
        );
        let pixels = Tensor::rand([3, 1, 28, 28], (Kind::Float, Device::Cpu));
        let normalised = card.normalisation.apply01(&pixels).unwrap();
        let want = tch::no_grad(|| net.forward_t(&normalised, false));
        let got = tch::no_grad(|| evaluate(&parsed, &pixels));
        assert_eq!(got.size(), [3, 5]);
        let diff = (got - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "{arch:?}: max difference {diff}");
    }
}

#[test]
fn missing_or_misshapen_weights_are_named() {
    let card = sample_card();
    let mut weights = random_weights(&card.arch, crate::export::input_shape(&card));
    let (name, _) = weights.pop().unwrap();
    let err = weight_map(&card, &weights).err().unwrap().to_string();
    assert!(err.contains(&name) && err.contains("missing"), "{err}");
    weights.push((name.clone(), Tensor::zeros([3], (Kind::Float, Device::Cpu))));
    let err = weight_map(&card, &weights).err().unwrap().to_string();
    assert!(err.contains(&name) && err.contains("shape"), "{err}");
}
