//! Training's evaluation passes on onnxruntime: the network's current
//! weights as an ONNX graph without the normalisation nodes (the splits in
//! memory are normalised already), one session per pass with libtorch's
//! thread count, batches of [`BATCH`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use tch::{Kind, Tensor};

use super::Network;
use crate::data::Split;
use crate::onnx_graph;
use crate::onnxruntime::{self, OrtModel};

/// Records a pass sends to onnxruntime at once.
const BATCH: i64 = 512;

/// Flat confusion counts (`[true * k + predicted]`) and the summed
/// cross-entropy of `net` over `split`, or why onnxruntime cannot run it.
pub(super) fn pass(net: &Network, split: &Split, k: i64) -> Result<(Vec<i64>, f64), String> {
    let rt = onnxruntime::runtime().map_err(|e| e.to_string())?;
    let shape = [net.input.channels, net.input.height, net.input.width];
    let weights: HashMap<&str, &Tensor> = net.named.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let spec = onnx_graph::Net {
        arch: net.arch,
        input_shape: shape,
        classes: k,
        normalisation: None,
    };
    let bytes = onnx_graph::graph(&spec, &weights)
        .and_then(onnx_graph::model_bytes)
        .map_err(|e| format!("cannot build the evaluation graph: {e}"))?;
    let threads = tch::get_num_threads().max(1) as usize;
    let place = Path::new("(the evaluation graph)");
    let mut model = OrtModel::new(rt, &bytes, place, shape, threads).map_err(|e| e.to_string())?;
    let n = split.len() as i64;
    let per_image = (shape[0] * shape[1] * shape[2]) as usize;
    let mut pixels = vec![0f32; BATCH as usize * per_image];
    let mut labels = vec![0i64; BATCH as usize];
    let mut confusion = vec![0i64; (k * k) as usize];
    let mut loss_sum = 0f64;
    let mut start = 0;
    while start < n {
        let len = BATCH.min(n - start);
        let x = &mut pixels[..len as usize * per_image];
        let y = &mut labels[..len as usize];
        let images = split
            .images
            .narrow(0, start, len)
            .to_kind(Kind::Float)
            .contiguous();
        if images.numel() != x.len() {
            return Err(format!(
                "images of {:?}, the graph takes {shape:?}",
                images.size()
            ));
        }
        images.copy_data(x, x.len());
        split
            .labels
            .narrow(0, start, len)
            .to_kind(Kind::Int64)
            .copy_data(y, y.len());
        let logits = model.logits01(x, y.len()).map_err(|e| e.to_string())?;
        loss_sum += tally_batch(&logits, y, k, &mut confusion)?;
        start += len;
    }
    Ok((confusion, loss_sum))
}

/// Adds one batch's predictions to `confusion`; returns its summed cross-entropy.
fn tally_batch(
    logits: &[f32],
    labels: &[i64],
    k: i64,
    confusion: &mut [i64],
) -> Result<f64, String> {
    let k = k as usize;
    if k == 0 || logits.len() != labels.len() * k {
        return Err(format!(
            "onnxruntime gave {} logits for {} images of {k} classes",
            logits.len(),
            labels.len()
        ));
    }
    let mut loss = 0f64;
    for (row, &y) in logits.chunks(k).zip(labels) {
        let y = usize::try_from(y)
            .ok()
            .filter(|&y| y < k)
            .ok_or_else(|| format!("label {y} is not one of the {k} classes"))?;
        let (mut best, mut max) = (0, f32::NEG_INFINITY);
        for (i, &v) in row.iter().enumerate() {
            // The first maximum, as libtorch's argmax.
            if v > max {
                (best, max) = (i, v);
            }
        }
        let m = f64::from(max);
        let log_sum = row
            .iter()
            .map(|&v| (f64::from(v) - m).exp())
            .sum::<f64>()
            .ln()
            + m;
        loss += log_sum - f64::from(row[y]);
        confusion[y * k + best] += 1;
    }
    Ok(loss)
}

/// Logs why onnxruntime could not run an evaluation pass, once per reason.
pub(super) fn warn_once(why: &str) {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if !seen.iter().any(|s| s == why) && seen.len() < 16 {
        seen.push(why.to_string());
        tracing::warn!("evaluating with libtorch: {why}");
    }
}

#[cfg(test)]
mod tests;
