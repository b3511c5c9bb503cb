"""trainerd's TensorBoard event files through TensorBoard's own reader
(`tensorboard` from PyPI, its EventAccumulator): every trial folder under
the given root loads, has the expected scalar tags, and each tag's steps
strictly increase (no duplicates).

Usage: check_tensorboard.py TENSORBOARD_ROOT TAG...
Prints one JSON line: {trial folder: {tag: [steps]}}.
"""

import json
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    root, tags = sys.argv[1], sys.argv[2:]
    seen = {}
    for dirpath, _, files in sorted(os.walk(root)):
        if not any(f.startswith("events.out.tfevents.") for f in files):
            continue
        acc = EventAccumulator(dirpath, size_guidance={"scalars": 0})
        acc.Reload()
        have = acc.Tags()["scalars"]
        missing = [t for t in tags if t not in have]
        if missing:
            sys.exit(f"{dirpath}: tags {missing} missing (has {have})")
        steps = {}
        for tag in have:
            s = [e.step for e in acc.Scalars(tag)]
            if any(b <= a for a, b in zip(s, s[1:])):
                sys.exit(f"{dirpath}: {tag} steps not strictly increasing: {s}")
            steps[tag] = s
        seen[os.path.relpath(dirpath, root)] = steps
    if not seen:
        sys.exit(f"no event files under {root}")
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
