#!/usr/bin/env bash
# Image folders against IDX on Fashion-MNIST: writes the IDX files of the
# Debian package dataset-fashion-mnist out as PNG folders
# (train/<class>/*.png, test/<class>/*.png), then for each format reports
# the load time (the loader's own "data set loaded" log line) and the peak
# RSS of a one-epoch linear trial, and finally the test accuracy the default
# study reaches on the folders (target >= 0.92).
#
# usage: bench/folders.sh
# Env: LIMIT (images per split written, default all: a tiny run is LIMIT=300),
#      THREADS (default 2), TARGET (default 0.92: the test accuracy to reach),
#      STUDY_TARGET (the study's --target-accuracy, which trainerd checks on the
#      validation split; default TARGET), OUT (default bench/out/folders),
#      FASHION (the IDX dir, default /usr/share/datasets/fashion-mnist),
#      STUDY_FLAGS (extra flags for the study, e.g. "--max-trials 1 --epochs 1").
set -euo pipefail
cd "$(dirname "$0")/.."
fashion=${FASHION:-/usr/share/datasets/fashion-mnist}
limit=${LIMIT:-0}
threads=${THREADS:-2}
target=${TARGET:-0.92}
out=${OUT:-bench/out/folders}

if [ ! -f "$fashion/train-images-idx3-ubyte.gz" ]; then
    echo "no Fashion-MNIST in $fashion: apt-get install dataset-fashion-mnist" >&2
    exit 1
fi
cargo build --release --quiet --bin trainerd
bin=${CARGO_TARGET_DIR:-target}/release/trainerd
rm -rf "$out"
mkdir -p "$out/idx"

# The IDX copy (LIMIT images per split) and the same images as PNG folders.
python3 - "$fashion" "$out" "$limit" <<'PY'
import gzip, os, struct, sys, zlib
src, out, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = ["t-shirt_top", "trouser", "pullover", "dress", "coat",
         "sandal", "shirt", "sneaker", "bag", "ankle_boot"]

def read(name):
    with gzip.open(os.path.join(src, name)) as f:
        data = f.read()
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return dims, data[4 + 4 * rank:]

def png(path, w, h, pixels):
    rows = b"".join(b"\0" + pixels[y * w:(y + 1) * w] for y in range(h))
    def chunk(kind, body):
        c = struct.pack(">I", len(body)) + kind + body
        return c + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))

for split, prefix in (("train", "train"), ("test", "t10k")):
    (n, h, w), pixels = read(f"{prefix}-images-idx3-ubyte.gz")
    (_,), labels = read(f"{prefix}-labels-idx1-ubyte.gz")
    n = min(n, limit) if limit > 0 else n
    for c in names:
        os.makedirs(os.path.join(out, "folders", split, c), exist_ok=True)
    for i in range(n):
        png(os.path.join(out, "folders", split, names[labels[i]], f"{i:05}.png"),
            w, h, pixels[i * h * w:(i + 1) * h * w])
    for part, dims, body in (("images-idx3", (n, h, w), pixels[:n * h * w]),
                             ("labels-idx1", (n,), labels[:n])):
        with gzip.open(os.path.join(out, "idx", f"{prefix}-{part}-ubyte.gz"), "wb", 1) as f:
            f.write(bytes([0, 0, 8, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims) + body)
    print(f"{split}: {n} images of {h}x{w} written")
PY

# One short trial per format: the loader's time and the process's peak RSS.
for fmt in idx folders; do
    RUST_LOG=trainerd=debug /usr/bin/time -v -o "$out/$fmt.time" \
        "$bin" trial --data-dir "$out/$fmt" --state-dir "$out/state-$fmt" --arch linear \
        --epochs 1 --threads "$threads" --log-format json > /dev/null 2> "$out/$fmt.log"
done

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) (nproc $(nproc))"
start=$(date +%s.%N)
set +e
# shellcheck disable=SC2086 # STUDY_FLAGS is a list of flags
"$bin" train --data-dir "$out/folders" --state-dir "$out/state-study" \
    --target-accuracy "${STUDY_TARGET:-$target}" --threads "$threads" --log-format json ${STUDY_FLAGS:-} \
    2> "$out/study.log"
code=$?
set -e
end=$(date +%s.%N)

python3 - "$out" "$code" "$start" "$end" "$target" <<'PY'
import json, re, sys
out, code, start, end, target = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
for fmt in ("idx", "folders"):
    ms = None
    for line in open(f"{out}/{fmt}.log"):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        fields = rec.get("fields", rec)
        if fields.get("message") == "data set loaded":
            ms = fields.get("ms")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f"{out}/{fmt}.time").read())
    rss = int(rss.group(1)) / 1024 if rss else float("nan")
    print(f"{fmt:<8} load {ms} ms, peak RSS {rss:.0f} MiB (one-epoch linear trial)")
card = json.load(open(f"{out}/state-study/best/model.json"))
print(f"study    exit {code}, {end - start:.0f} s wall, champion {card['preset']}: "
      f"val {card['val_accuracy']:.4f}, test {card['test_accuracy']:.4f}")
print("RESULT", "pass" if card["test_accuracy"] >= target else "miss", f"test>={target}")
PY
echo "machine: $(nproc) cores, $(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed "s/^ *//"), threads=$threads"
