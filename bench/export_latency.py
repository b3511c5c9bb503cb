#!/usr/bin/env python3
"""Latency of one export: onnxruntime (model.onnx) vs libtorch (model.pt, the
kernels trainerd itself runs), single image and batch 64, on THREADS threads.

    export_latency.py PRESET EXPORT_DIR THREADS

Prints one line: the median of 200 (single) / 50 (batch) runs after warm-up.
"""
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
import torch


def median_ms(fn, runs):
    for _ in range(10):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def main():
    preset, export_dir, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(os.path.join(export_dir, "model.json")) as f:
        c, h, w = json.load(f)["input_shape"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(os.path.join(export_dir, "model.onnx"), opts,
                                   providers=["CPUExecutionProvider"])
    torch.set_num_threads(threads)
    module = torch.jit.load(os.path.join(export_dir, "model.pt")).eval()
    rng = np.random.default_rng(0)
    row = [preset]
    for n, runs in ((1, 200), (64, 50)):
        x = rng.random((n, c, h, w), dtype=np.float32)
        xt = torch.from_numpy(x)
        ort_ms = median_ms(lambda: session.run(["logits"], {"pixels": x}), runs)
        with torch.no_grad():
            pt_ms = median_ms(lambda: module(xt), runs)
        row += [f"batch {n}: onnxruntime {ort_ms:.3f} ms, libtorch {pt_ms:.3f} ms"]
    print(" | ".join(row))


if __name__ == "__main__":
    main()
