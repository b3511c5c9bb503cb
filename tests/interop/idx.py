"""An IDX image file (gzipped or not) as a uint8 array [N, 1, rows, cols],
for the interop checks that send test images to `trainerd serve`."""

import gzip

import numpy as np


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(raw[16:], np.uint8).reshape(n, 1, rows, cols)
