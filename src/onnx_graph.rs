//! An ONNX graph (IR 8, opset 17) of a network, generated from its
//! `ArchSpec` and weights layer for layer as `model::build` builds the tch
//! module: Flatten, Gemm (linear), Conv, BatchNormalization (running
//! statistics), Relu, MaxPool 2x2; dropout is the identity and has no node.
//! With a normalisation, `(pixels - mean) / std` is the graph's first two
//! nodes, so the model takes pixels in [0, 1]; without one it takes inputs
//! already normalised (training's evaluation passes). `export::onnx` adds the
//! model card's metadata for `model.onnx`.

use std::collections::HashMap;

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use protobuf::{EnumOrUnknown, MessageField};
use tch::{Device, Kind, Tensor};

use crate::model::{ArchSpec, Normalisation};

/// The input and output names of every graph (and every exported model).
pub const INPUT_NAME: &str = "pixels";
pub const OUTPUT_NAME: &str = "logits";

/// Why a graph could not be built: a weight missing or unreadable, a
/// layer that cannot be expressed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct GraphError(pub String);

/// The ONNX IR version and default-domain opset written.
pub const IR_VERSION: i64 = 8;
pub const OPSET: i64 = 17;
/// tch's batch-norm epsilon (`BatchNormConfig::default()`).
const BN_EPS: f32 = 1e-5;

/// One layer of the network, in the order `model::build` adds them.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    Flatten,
    /// `name.weight` `[out, in]`, `name.bias` `[out]`.
    Linear {
        name: String,
    },
    /// `name.weight` `[out, in, k, k]`, `name.bias` when there is no batch norm.
    Conv {
        name: String,
        kernel: i64,
        pad: i64,
        bias: bool,
    },
    /// `name.{weight,bias,running_mean,running_var}`, eval mode.
    BatchNorm {
        name: String,
    },
    Relu,
    /// 2x2, stride 2, floor.
    MaxPool,
}

/// The layers of `arch`, mirroring `model::build` (dropout omitted).
pub fn layers(arch: &ArchSpec) -> Vec<Layer> {
    let linear = |name: String| Layer::Linear { name };
    match arch {
        ArchSpec::Mlp { hidden, .. } => {
            let mut out = vec![Layer::Flatten];
            for i in 0..hidden.len() {
                out.extend([linear(format!("fc{i}")), Layer::Relu]);
            }
            out.push(linear("out".into()));
            out
        }
        ArchSpec::Cnn { blocks, head, .. } => {
            let mut out = Vec::new();
            for (b, block) in blocks.iter().enumerate() {
                for k in 0..block.convs {
                    let name = format!("b{b}c{k}");
                    out.push(Layer::Conv {
                        name: name.clone(),
                        kernel: block.kernel,
                        pad: block.padding.unwrap_or(block.kernel / 2),
                        bias: !block.batch_norm,
                    });
                    let pool_here = block.pool && k + 1 == block.convs;
                    if pool_here && block.pool_first {
                        out.push(Layer::MaxPool);
                    }
                    if block.batch_norm {
                        out.push(Layer::BatchNorm {
                            name: format!("{name}bn"),
                        });
                    }
                    out.push(Layer::Relu);
                    if pool_here && !block.pool_first {
                        out.push(Layer::MaxPool);
                    }
                }
            }
            out.push(Layer::Flatten);
            for i in 0..head.len() {
                out.extend([linear(format!("fc{i}")), Layer::Relu]);
            }
            out.push(linear("out".into()));
            out
        }
    }
}

/// Accumulates nodes and initializers, naming the values between them.
struct Graph<'w> {
    weights: &'w HashMap<&'w str, &'w Tensor>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    current: String,
}

impl Graph<'_> {
    /// Adds `op` on the current value plus `extra` inputs; its output becomes current.
    fn node(&mut self, op: &str, name: &str, extra: &[String], attrs: Vec<AttributeProto>) {
        let index = self.nodes.len();
        let output = format!("t{index}");
        let mut input = vec![std::mem::take(&mut self.current)];
        input.extend(extra.iter().cloned());
        self.nodes.push(NodeProto {
            op_type: op.into(),
            // Unique, as onnxruntime requires.
            name: format!("{name}/{op}_{index}"),
            input,
            output: vec![output.clone()],
            attribute: attrs,
            ..Default::default()
        });
        self.current = output;
    }

    /// Adds the weight `name` as an initializer; returns its value name.
    fn weight(&mut self, name: &str) -> Result<String, GraphError> {
        let t = self
            .weights
            .get(name)
            .ok_or_else(|| GraphError(format!("weight {name} missing")))?;
        self.initializers.push(tensor_proto(name, t)?);
        Ok(name.to_string())
    }

    fn layer(&mut self, layer: &Layer) -> Result<(), GraphError> {
        match layer {
            Layer::Flatten => self.node("Flatten", "flatten", &[], vec![int("axis", 1)]),
            Layer::Relu => self.node("Relu", "relu", &[], vec![]),
            Layer::MaxPool => self.node(
                "MaxPool",
                "pool",
                &[],
                vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
            ),
            Layer::Linear { name } => {
                let inputs = [
                    self.weight(&format!("{name}.weight"))?,
                    self.weight(&format!("{name}.bias"))?,
                ];
                self.node("Gemm", name, &inputs, vec![int("transB", 1)]);
            }
            Layer::Conv {
                name,
                kernel,
                pad,
                bias,
            } => {
                if *pad < 0 {
                    return Err(GraphError(format!("{name}: negative padding {pad}")));
                }
                let mut inputs = vec![self.weight(&format!("{name}.weight"))?];
                if *bias {
                    inputs.push(self.weight(&format!("{name}.bias"))?);
                }
                let attrs = vec![
                    ints("kernel_shape", &[*kernel, *kernel]),
                    ints("pads", &[*pad; 4]),
                    ints("strides", &[1, 1]),
                ];
                self.node("Conv", name, &inputs, attrs);
            }
            Layer::BatchNorm { name } => {
                let inputs = ["weight", "bias", "running_mean", "running_var"]
                    .iter()
                    .map(|p| self.weight(&format!("{name}.{p}")))
                    .collect::<Result<Vec<_>, _>>()?;
                self.node(
                    "BatchNormalization",
                    name,
                    &inputs,
                    vec![float("epsilon", BN_EPS)],
                );
            }
        }
        Ok(())
    }
}

/// What a graph is built from: the architecture, the input `[C, H, W]`,
/// the class count, and the normalisation the graph applies first (`None`:
/// its input is already normalised).
pub struct Net<'a> {
    pub arch: &'a ArchSpec,
    pub input_shape: [i64; 3],
    pub classes: i64,
    pub normalisation: Option<Normalisation>,
}

/// The graph of `net` with `weights` (named as in the VarStore).
pub fn graph(net: &Net, weights: &HashMap<&str, &Tensor>) -> Result<GraphProto, GraphError> {
    let [c, h, w] = net.input_shape;
    let mut g = Graph {
        weights,
        nodes: Vec::new(),
        initializers: Vec::new(),
        current: INPUT_NAME.into(),
    };
    let input_doc = match net.normalisation {
        Some(norm) => {
            g.initializers = normalisation_initializers(norm, c);
            g.node("Sub", "normalise", &["norm_mean".into()], vec![]);
            g.node("Div", "normalise", &["norm_std".into()], vec![]);
            format!(
                "in [0, 1] (byte / 255); normalised inside as {} per channel",
                norm.formula("x")
            )
        }
        None => "already normalised".to_string(),
    };
    for layer in layers(net.arch) {
        g.layer(&layer)?;
    }
    if let Some(last) = g.nodes.last_mut() {
        last.output = vec![OUTPUT_NAME.into()];
    }
    Ok(GraphProto {
        name: "trainerd".into(),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![value_info(INPUT_NAME, &[None, Some(c), Some(h), Some(w)])],
        output: vec![value_info(OUTPUT_NAME, &[None, Some(net.classes)])],
        doc_string: format!(
            "{INPUT_NAME}: float32 [N, {c}, {h}, {w}] {input_doc}. {OUTPUT_NAME}: float32 [N, {}].",
            net.classes
        ),
        ..Default::default()
    })
}

/// A model holding `graph`, at this IR version and opset, produced by trainerd.
pub fn model(graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
            ..Default::default()
        }],
        producer_name: "trainerd".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: MessageField::some(graph),
        ..Default::default()
    }
}

/// `model(graph)` serialised.
pub fn model_bytes(graph: GraphProto) -> Result<Vec<u8>, GraphError> {
    model(graph)
        .write_to_bytes()
        .map_err(|e| GraphError(format!("cannot encode the ONNX model: {e}")))
}

/// A float32 tensor value: `None` dims are the dynamic batch `N`.
fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v),
                None => dimension::Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: DataType::FLOAT as i32,
        shape: MessageField::some(TensorShapeProto {
            dim,
            ..Default::default()
        }),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        type_: MessageField::some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An initializer holding `t` as float32 (contiguous, little-endian raw data).
fn tensor_proto(name: &str, t: &Tensor) -> Result<TensorProto, GraphError> {
    let flat = t
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
        .view([-1]);
    let values =
        Vec::<f32>::try_from(&flat).map_err(|e| GraphError(format!("weight {name}: {e}")))?;
    Ok(TensorProto {
        name: name.into(),
        dims: t.size(),
        data_type: DataType::FLOAT as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    })
}

/// `norm_mean` and `norm_std`: scalars when every channel has the same
/// values (every one-channel model), else `[1, C, 1, 1]` (broadcast over `N, H, W`).
fn normalisation_initializers(norm: Normalisation, channels: i64) -> Vec<TensorProto> {
    if norm.is_uniform() {
        let (mean, std) = norm.of(0);
        return vec![
            scalar("norm_mean", mean as f32),
            scalar("norm_std", std as f32),
        ];
    }
    let (mean, std) = norm.expanded(channels);
    let per_channel = |name: &str, v: &[f64]| TensorProto {
        name: name.into(),
        dims: vec![1, v.len() as i64, 1, 1],
        data_type: DataType::FLOAT as i32,
        raw_data: v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
        ..Default::default()
    };
    vec![
        per_channel("norm_mean", &mean),
        per_channel("norm_std", &std),
    ]
}

fn scalar(name: &str, v: f32) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type: DataType::FLOAT as i32,
        raw_data: v.to_le_bytes().to_vec(),
        ..Default::default()
    }
}

fn attr(name: &str, kind: AttributeType) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: EnumOrUnknown::new(kind),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        i: v,
        ..attr(name, AttributeType::INT)
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: v.to_vec(),
        ..attr(name, AttributeType::INTS)
    }
}

fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        f: v,
        ..attr(name, AttributeType::FLOAT)
    }
}
