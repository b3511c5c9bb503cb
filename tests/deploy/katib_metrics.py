#!/usr/bin/env python3
"""Checks trainerd trial output the way Katib's metrics collectors read it.

--stdout FILE ('-' for stdin): the StdOut collector (and the File collector in
TEXT format). Katib splits the log on newlines and, for each line that
contains a metric name, takes the text before the first space as the
timestamp if it parses as RFC3339 (otherwise the value gets the zero time),
then applies its default filter

    ([\\w|-]+)\\s*=\\s*([+-]?\\d*(\\.\\d+)?([Ee][+-]?\\d+)?)

and records each (group 1, group 2) whose name is a wanted metric. Without
one value for the objective, Katib records it as unavailable and the trial
fails. This check requires that the objective and every --metric are found,
that every recorded value is a finite number, and that every line that
yields a value starts with an RFC3339 timestamp.

--jsonl FILE ('-' for stdin): the File collector in JSON format. Every
non-empty line must be a JSON object (one bad line fails Katib's whole
parse); Katib only reads metric values that are strings. trainerd's contract
is stricter: every value is a string, and each line has a "timestamp" in
RFC3339. The objective (when given) must occur at least once.

Standard library only. Exit 0 when the output passes, 1 otherwise, 2 on
usage errors; the messages say what Katib would do with what it found.

Examples:
    trainerd trial ... | python3 tests/deploy/katib_metrics.py --stdout - --objective accuracy --metric loss
    python3 tests/deploy/katib_metrics.py --jsonl state/metrics.katib.jsonl --objective accuracy
"""

import argparse
import datetime
import json
import math
import re
import sys

# Katib's DefaultFilter (pkg/metricscollector/v1beta1/common/const.go), a Go
# RE2 pattern. Go's \w, \d and \s are ASCII-only, and Go's \s is [\t\n\f\r ]
# (no \v): spell that out so Python matches exactly what Go matches.
KATIB_DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
_GO_FILTER = re.compile(KATIB_DEFAULT_FILTER.replace(r"\s", r"[\t\n\f\r ]"), re.ASCII)

# Go's time.Parse(time.RFC3339Nano, s): four-digit year, 'T', optional
# fraction, 'Z' or a +hh:mm offset; the fields must be in range.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-](\d{2}):(\d{2}))", re.ASCII)


def is_rfc3339(text):
    m = _RFC3339.fullmatch(text)
    if not m:
        return False
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if m.group(8) != "Z" and (int(m.group(9)) > 23 or int(m.group(10)) > 59):
        return False
    try:
        datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return True


def _number(value):
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def check_stdout(text, objective, metrics):
    """Returns (problems, notes, observations {name: [values]})."""
    wanted = [objective] + [m for m in metrics if m != objective]
    problems, notes = [], []
    observed = {name: [] for name in wanted}
    for lineno, line in enumerate(text.split("\n"), start=1):
        # Katib skips lines without any metric name, before looking further.
        if not any(name in line for name in wanted):
            continue
        first = line.split(" ", 1)
        stamped = len(first) == 2 and is_rfc3339(first[0])
        found = []
        for m in _GO_FILTER.finditer(line):
            name, value = m.group(1).strip(), m.group(2).strip()
            if name in wanted:
                found.append((name, value))
        if not found:
            if objective in line:
                notes.append(f"line {lineno}: mentions {objective!r} but yields no value: {line.strip()[:80]!r}")
            continue
        if not stamped:
            problems.append(f"line {lineno}: metric line does not start with an RFC3339 timestamp and a space "
                            f"(Katib would record the zero time): {line.strip()[:80]!r}")
        for name, value in found:
            if _number(value) is None:
                problems.append(f"line {lineno}: {name}={value!r} is not a finite number "
                                f"(the default filter captured {value!r})")
            else:
                observed[name].append(value)
    if not observed[objective]:
        problems.append(f"objective metric {objective!r} not found: Katib would report it unavailable "
                        "and the trial would fail")
    for name in wanted[1:]:
        if not observed[name]:
            problems.append(f"metric {name!r} not found")
    return problems, notes, observed


def check_jsonl(text, objective, metrics):
    problems, notes = [], []
    wanted = ([objective] if objective else []) + [m for m in metrics if m != objective]
    observed = {name: [] for name in wanted}
    lines = 0
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        lines += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"line {lineno}: not JSON ({err.msg}); Katib would reject the whole file")
            continue
        if not isinstance(obj, dict):
            problems.append(f"line {lineno}: a JSON {type(obj).__name__}, not an object; "
                            "Katib would reject the whole file")
            continue
        for key, value in obj.items():
            if not isinstance(value, str):
                problems.append(f"line {lineno}: {key!r} is {json.dumps(value)}, not a string "
                                "(Katib ignores metric values that are not strings)")
        stamp = obj.get("timestamp")
        if stamp is None:
            problems.append(f"line {lineno}: no \"timestamp\" (Katib would record the zero time)")
        elif isinstance(stamp, str) and not is_rfc3339(stamp):
            problems.append(f"line {lineno}: timestamp {stamp!r} is not RFC3339")
        for name in wanted:
            value = obj.get(name)
            if isinstance(value, str):
                if _number(value) is None:
                    problems.append(f"line {lineno}: {name}={value!r} is not a finite number")
                else:
                    observed[name].append(value)
    if lines == 0:
        problems.append("no JSON lines")
    for name in wanted:
        if not observed[name]:
            what = "objective metric" if name == objective else "metric"
            problems.append(f"{what} {name!r} not found as a string value")
    return problems, notes, observed


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Check trainerd trial output against Katib's metrics collectors.",
        epilog="Exit 0: Katib reads it; 1: it does not (the messages say why); 2: usage.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stdout", metavar="FILE", help="trial stdout ('-' = stdin), read as Katib's StdOut collector")
    source.add_argument("--jsonl", metavar="FILE", help="metrics JSON-lines file ('-' = stdin), Katib's JSON format")
    parser.add_argument("--objective", help="objective metric name (required with --stdout)")
    parser.add_argument("--metric", action="append", default=[], help="additional metric that must be found")
    args = parser.parse_args(argv)
    if args.stdout is not None and not args.objective:
        parser.error("--stdout needs --objective")
    path = args.stdout if args.stdout is not None else args.jsonl
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        print(f"katib_metrics: cannot read {path}: {err}", file=sys.stderr)
        return 2
    if args.stdout is not None:
        problems, notes, observed = check_stdout(text, args.objective, args.metric)
        kind = "StdOut"
    else:
        problems, notes, observed = check_jsonl(text, args.objective, args.metric)
        kind = "File/JSON"
    for note in notes:
        print(f"note: {note}")
    for problem in problems:
        print(f"FAIL {path}: {problem}")
    if problems:
        return 1
    summary = ", ".join(f"{name}: {len(vals)} values, last {vals[-1]}" for name, vals in observed.items())
    print(f"OK {path}: Katib's {kind} collector finds {summary or 'well-formed lines'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
