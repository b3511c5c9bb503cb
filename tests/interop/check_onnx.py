#!/usr/bin/env python3
"""Checks a trainerd export with the ecosystem's own software (run by tests/export.rs).

    check_onnx.py EXPORT_DIR IMAGES_IDX LABELS_IDX PREDICTIONS_JSONL

EXPORT_DIR holds model.json, model.onnx, model.pt and repository/ as
`trainerd export --format all` writes them; IMAGES_IDX / LABELS_IDX are the
test set (optionally gzipped); PREDICTIONS_JSONL is `trainerd predict --json
--logits IMAGES_IDX` on the same images. IMAGES_IDX may instead be a `.u8`
file of raw channels-first bytes ([N, C, H, W] of the model's shape: images
predict read from PNG/JPEG files), and LABELS_IDX `-` when there are no
labels (the accuracy check is then skipped). Checks, failing with one line each:

- every file in model.json's `files` has the listed SHA-256 and size;
- onnx.checker.check_model(full_check=True), opset >= 17, input `pixels`
  [N, C, H, W] with a symbolic N, output `logits` [N, classes];
- onnxruntime's logits equal trainerd's within 1e-4 (relative beyond 1), at batch 1, 64 and all;
- onnxruntime's test accuracy equals model.json's test_accuracy exactly;
- the graph's norm_mean / norm_std are model.json's per-channel normalisation,
  and metadata_props' class_names and repository/<name>/labels.txt are its
  class names;
- torch.jit.load("model.pt") gives trainerd's labels (and logits within the same);
- repository/<name>/1/model.onnx is model.onnx, and config.pbtxt's dims
  match the ONNX input and output.

Prints one JSON line of what it measured.
"""
import gzip
import hashlib
import json
import os
import re
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import torch

TOLERANCE = 1e-4


def fail(msg):
    print(f"check_onnx: {msg}", file=sys.stderr)
    sys.exit(1)


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        fail(f"{path}: not an unsigned-byte IDX file")
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data[4 + 4 * rank :], dtype=np.uint8).reshape(dims)


def check_manifest(export_dir, card):
    if not card.get("files"):
        fail("model.json lists no files")
    for entry in card["files"]:
        path = os.path.join(export_dir, entry["path"])
        with open(path, "rb") as f:
            content = f.read()
        if len(content) != entry["bytes"]:
            fail(f"{path}: {len(content)} bytes, model.json says {entry['bytes']}")
        if hashlib.sha256(content).hexdigest() != entry["sha256"]:
            fail(f"{path}: SHA-256 differs from model.json")


def dims_of(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check_model_proto(path, card):
    onnx.checker.check_model(path, full_check=True)
    model = onnx.load(path)
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 17:
        fail(f"{path}: opset {opset} < 17")
    c, h, w = card["input_shape"]
    (inp,), (out,) = model.graph.input, model.graph.output
    if inp.name != "pixels" or dims_of(inp) != ["N", c, h, w]:
        fail(f"{path}: input {inp.name} {dims_of(inp)}, want pixels [N, {c}, {h}, {w}]")
    if out.name != "logits" or dims_of(out) != ["N", card["classes"]]:
        fail(f"{path}: output {out.name} {dims_of(out)}, want logits [N, {card['classes']}]")
    return opset


def card_normalisation(card):
    """Per-channel (mean, std) of model.json, an older [mean, std] pair for every channel."""
    norm = card["normalisation"]
    c = card["input_shape"][0]
    if isinstance(norm, list):
        return [norm[0]] * c, [norm[1]] * c
    mean, std = norm["mean"], norm["std"]
    return (mean * c if len(mean) == 1 else mean), (std * c if len(std) == 1 else std)


def check_normalisation_and_names(path, export_dir, card):
    model = onnx.load(path)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    c = card["input_shape"][0]
    for name, want in zip(("norm_mean", "norm_std"), card_normalisation(card)):
        got = np.broadcast_to(inits[name], (1, c, 1, 1)).reshape(c)
        if np.abs(got - np.array(want, dtype=np.float32)).max() > 1e-6:
            fail(f"{path}: {name} {got.tolist()} is not model.json's {want}")
    names = card.get("class_names") or []
    props = {p.key: p.value for p in model.metadata_props}
    if names and json.loads(props.get("class_names", "null")) != names:
        fail(f"{path}: metadata class_names {props.get('class_names')} != model.json's")
    labels = os.path.join(export_dir, "repository", "trainerd", "labels.txt")
    if names:
        with open(labels) as f:
            if f.read().splitlines() != names:
                fail(f"{labels}: not model.json's class names")


def read_images(path, card):
    if path.endswith(".u8"):
        c, h, w = card["input_shape"]
        raw = np.fromfile(path, dtype=np.uint8).reshape(-1, c, h, w)
        return raw.astype(np.float32) / np.float32(255.0)
    images = read_idx(path)
    return (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]


def check_repository(export_dir, card):
    repo = os.path.join(export_dir, "repository")
    (name,) = os.listdir(repo)
    with open(os.path.join(repo, name, "1", "model.onnx"), "rb") as f:
        served = f.read()
    with open(os.path.join(export_dir, "model.onnx"), "rb") as f:
        if f.read() != served:
            fail("repository model.onnx differs from model.onnx")
    with open(os.path.join(repo, name, "config.pbtxt")) as f:
        config = f.read()
    found = [list(map(int, d.split(","))) for d in re.findall(r"dims: \[([\d, ]+)\]", config)]
    if found != [list(card["input_shape"]), [card["classes"]]]:
        fail(f"config.pbtxt dims {found} do not match the model")
    if f'name: "{name}"' not in config or 'platform: "onnxruntime_onnx"' not in config:
        fail("config.pbtxt lacks the model name or the onnxruntime platform")


def main():
    if len(sys.argv) != 5:
        fail(__doc__.strip().splitlines()[2].strip())
    export_dir, images_path, labels_path, preds_path = sys.argv[1:]
    with open(os.path.join(export_dir, "model.json")) as f:
        card = json.load(f)
    check_manifest(export_dir, card)
    onnx_path = os.path.join(export_dir, "model.onnx")
    opset = check_model_proto(onnx_path, card)
    check_repository(export_dir, card)
    check_normalisation_and_names(onnx_path, export_dir, card)

    x = read_images(images_path, card)
    with open(preds_path) as f:
        preds = [json.loads(line) for line in f if line.strip()]
    if len(preds) != len(x):
        fail(f"{len(preds)} predictions for {len(x)} images")
    ref = np.array([p["logits"] for p in preds], dtype=np.float32)
    ref_labels = np.array([p["label"] for p in preds])
    # 1e-4, relative once logits exceed 1 in size: float32 carries ~7
    # significant digits, so logits in the hundreds (a deep model trained on
    # tiny data) differ by an ulp or two, ~1e-4, between two summation orders.
    tol = TOLERANCE * max(1.0, float(np.abs(ref).max()))

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    ort_logits = session.run(["logits"], {"pixels": x})[0]
    worst = float(np.abs(ort_logits - ref).max())
    if worst > tol:
        fail(f"onnxruntime logits differ from trainerd's by up to {worst}")
    for batch in (1, 64):
        part = session.run(["logits"], {"pixels": x[:batch]})[0]
        if part.shape != (min(batch, len(x)), card["classes"]):
            fail(f"batch {batch}: onnxruntime output shape {part.shape}")
        if float(np.abs(part - ref[:batch]).max()) > tol:
            fail(f"batch {batch}: onnxruntime logits differ from trainerd's")
    correct = None
    if labels_path != "-":
        labels = read_idx(labels_path).astype(np.int64)
        correct = int((ort_logits.argmax(1) == labels).sum())
        if correct / len(labels) != card["test_accuracy"]:
            fail(f"onnxruntime test accuracy {correct}/{len(labels)} != model.json {card['test_accuracy']}")

    torch.set_num_threads(1)
    module = torch.jit.load(os.path.join(export_dir, "model.pt")).eval()
    with torch.no_grad():
        pt_logits = module(torch.from_numpy(x)).numpy()
    pt_worst = float(np.abs(pt_logits - ref).max())
    if pt_worst > tol or not (pt_logits.argmax(1) == ref_labels).all():
        fail(f"TorchScript labels or logits differ from trainerd's (logits by up to {pt_worst}, "
             f"allowed {tol})")

    print(json.dumps({
        "images": len(x), "opset": opset, "max_abs_diff_onnxruntime": worst,
        "max_abs_diff_torchscript": pt_worst, "tolerance": tol, "onnxruntime_correct": correct,
        "test_accuracy": card["test_accuracy"],
    }))


if __name__ == "__main__":
    main()
