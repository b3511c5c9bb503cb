#!/usr/bin/env python3
"""Writes a small, learnable MNIST-layout data set (gzip IDX files) for
scripts that need training data without downloading MNIST.

    tiny-mnist.py DIR [N_TRAIN] [N_TEST] [SEED]

Class k is a bright bar placed by k, shifted and noised per image (half
the images also hold a fainter bar of another class), so a small network
learns it to high but imperfect accuracy in an epoch or two.
"""
import gzip
import os
import random
import struct
import sys


def images(n, rng):
    pixels = bytearray()
    labels = bytearray()
    for _ in range(n):
        k = rng.randrange(10)
        img = [[rng.randrange(40) for _ in range(28)] for _ in range(28)]
        dy, dx = rng.randrange(-2, 3), rng.randrange(-2, 3)
        # Half the images carry a fainter bar of another class: a few are
        # ambiguous, so accuracies stay below 100% and the plots say something.
        bars = [(k, 150 + rng.randrange(106))]
        if rng.random() < 0.5:
            bars.insert(0, ((k + 1 + rng.randrange(9)) % 10, 60 + rng.randrange(120)))
        for c, level in bars:
            row = 4 + (c // 5) * 12 + dy      # top or bottom half
            col = 2 + (c % 5) * 5 + dx        # one of five columns
            for y in range(row, row + 8):
                for x in range(col, col + 3):
                    if 0 <= y < 28 and 0 <= x < 28:
                        img[y][x] = level
        for r in img:
            pixels.extend(r)
        labels.append(k)
    return pixels, labels


def write(path, magic_type, dims, payload):
    header = bytes([0, 0, magic_type, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    tmp = path + ".tmp"
    with gzip.open(tmp, "wb", compresslevel=1) as f:
        f.write(header + bytes(payload))
    os.replace(tmp, path)


def main():
    out = sys.argv[1]
    n_train = int(sys.argv[2]) if len(sys.argv) > 2 else 6000
    n_test = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 7)
    os.makedirs(out, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        px, lb = images(n, rng)
        write(os.path.join(out, f"{prefix}-images-idx3-ubyte.gz"), 0x08, [n, 28, 28], px)
        write(os.path.join(out, f"{prefix}-labels-idx1-ubyte.gz"), 0x08, [n], lb)


if __name__ == "__main__":
    main()
