#!/usr/bin/env python3
"""Checks a Kubernetes Job's podFailurePolicy against trainerd's exit codes.

The exit codes are read from their one definition, src/exit.rs
(`pub const NAME: u8 = N;`), and, where README.md has an exit-code section,
checked against it too. For every Job in the given manifests:

- every exit code named in onExitCodes is a documented trainerd code, the
  list is sorted and unique, and 0 is never used with operator In;
- FailJob covers the configuration errors (USAGE, DATA, CONFIG) and never a
  code that means "restart me" (OK, IO, STALLED, STOPPED);
- onExitCodes.containerName names a container of the pod template;
- a rule ignores disruptions (DisruptionTarget), and restartPolicy is Never.

Standard library only, so it runs anywhere python3 does: it reads the block
YAML subset that Kubernetes manifests use (mappings, block and flow
sequences, plain and quoted scalars, comments, `---`) and rejects the rest.

Usage: exit_codes.py [--repo DIR] MANIFEST...
       exit_codes.py --compare-pyyaml MANIFEST...   (self-test; needs PyYAML)
Exit 0 when every Job passes, 1 otherwise.
"""

import argparse
import json
import os
import re
import sys

# Names in src/exit.rs whose meaning fixes what the Job controller must do.
MUST_FAIL_JOB = ("USAGE", "DATA", "CONFIG")
MUST_NOT_FAIL_JOB = ("OK", "IO", "STALLED", "STOPPED")


class YamlSubsetError(Exception):
    pass


def _strip_comment(text):
    """Drops a trailing comment: a '#' at the start or after a space, outside quotes."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


def _scalar(text, where):
    text = text.strip()
    if text == "" or text in ("~", "null", "Null", "NULL"):
        return None
    if text[0] in "|>&*!%@`":
        raise YamlSubsetError(f"{where}: unsupported YAML ({text[:20]!r})")
    if text.startswith('"'):
        if not text.endswith('"') or len(text) < 2:
            raise YamlSubsetError(f"{where}: unterminated string")
        return json.loads(text)
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise YamlSubsetError(f"{where}: unterminated string")
        return text[1:-1].replace("''", "'")
    if text.startswith("["):
        if not text.endswith("]"):
            raise YamlSubsetError(f"{where}: flow sequence must end on its line")
        inner = text[1:-1].strip()
        if not inner:
            return []
        if any(c in inner for c in "[]{}"):
            raise YamlSubsetError(f"{where}: nested flow collections are not supported")
        return [_scalar(part, where) for part in _split_flow(inner, where)]
    if text == "{}":
        return {}
    if text.startswith("{"):
        raise YamlSubsetError(f"{where}: flow mappings are not supported")
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if re.fullmatch(r"[-+]?[0-9]+", text):
        return int(text)
    if re.fullmatch(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?", text):
        return float(text)
    return text


def _split_flow(inner, where):
    parts, quote, start = [], None, 0
    for i, ch in enumerate(inner):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == ",":
            parts.append(inner[start:i])
            start = i + 1
    if quote:
        raise YamlSubsetError(f"{where}: unterminated string in flow sequence")
    parts.append(inner[start:])
    return parts


def _key_value(content, where):
    """Splits 'key: value' / 'key:'; None when content is not a mapping entry."""
    m = re.match(r'^("(?:[^"\\]|\\.)*"|\'[^\']*\'|[^\s"\'#][^:#]*?)\s*:(?:\s+(.*))?$', content)
    if not m:
        return None
    key = _scalar(m.group(1), where)
    return str(key), (m.group(2) or "")


def _parse_block(lines, i, indent):
    """Parses the block node whose lines start at lines[i] with this indent."""
    if lines[i][2].startswith("- ") or lines[i][2] == "-":
        return _parse_sequence(lines, i, indent)
    return _parse_mapping(lines, i, indent)


def _child(lines, i, indent, where):
    """The value of a key or item with nothing after it: a nested block, or null."""
    if i < len(lines):
        n_indent, _, n_content = lines[i]
        if n_indent > indent or (n_indent == indent and (n_content.startswith("- ") or n_content == "-")):
            return _parse_block(lines, i, n_indent)
    return None, i


def _parse_mapping(lines, i, indent):
    result = {}
    while i < len(lines) and lines[i][0] == indent:
        lineno, content = lines[i][1], lines[i][2]
        where = f"line {lineno}"
        if content.startswith("- ") or content == "-":
            break
        kv = _key_value(content, where)
        if kv is None:
            raise YamlSubsetError(f"{where}: expected 'key: value', found {content!r}")
        key, rest = kv
        if key in result:
            raise YamlSubsetError(f"{where}: duplicate key {key!r}")
        i += 1
        if rest.strip():
            result[key] = _scalar(rest, where)
        else:
            result[key], i = _child(lines, i, indent, where)
    if i < len(lines) and lines[i][0] > indent:
        raise YamlSubsetError(f"line {lines[i][1]}: unexpected indentation")
    return result, i


def _parse_sequence(lines, i, indent):
    result = []
    while i < len(lines) and lines[i][0] == indent and (lines[i][2].startswith("- ") or lines[i][2] == "-"):
        lineno, content = lines[i][1], lines[i][2]
        where = f"line {lineno}"
        rest = content[1:].lstrip(" ")
        if not rest:
            value, i = _child(lines, i + 1, indent + 1, where)
            result.append(value)
            continue
        item_indent = indent + (len(content) - len(rest))
        if _key_value(rest, where) is not None:
            # "- key: value" opens a mapping whose keys sit at item_indent.
            lines[i] = (item_indent, lineno, rest)
            value, i = _parse_mapping(lines, i, item_indent)
        else:
            value, i = _scalar(rest, where), i + 1
        result.append(value)
    return result, i


def load_yaml_subset(text):
    """All documents of a manifest, as Python values."""
    docs, current = [], []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise YamlSubsetError(f"line {lineno}: tab in indentation")
        if raw.rstrip() == "---" or raw.startswith("--- "):
            docs.append(current)
            current = []
            continue
        content = _strip_comment(raw)
        if content.strip():
            indent = len(content) - len(content.lstrip(" "))
            current.append((indent, lineno, content.strip()))
    docs.append(current)
    values = []
    for lines in docs:
        if not lines:
            continue
        value, end = _parse_block(lines, 0, lines[0][0])
        if end != len(lines):
            raise YamlSubsetError(f"line {lines[end][1]}: unexpected content")
        values.append(value)
    return values


def documented_codes(repo):
    """{NAME: code} from src/exit.rs."""
    path = os.path.join(repo, "src", "exit.rs")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    codes = {name: int(value) for name, value in
             re.findall(r"pub\s+const\s+([A-Z_][A-Z0-9_]*)\s*:\s*u8\s*=\s*(\d+)\s*;", text)}
    if not codes:
        raise ValueError(f"{path}: no `pub const NAME: u8 = N;` exit codes found")
    return codes


def readme_codes(repo):
    """Exit codes listed in README.md's exit-code section, or None without one."""
    path = os.path.join(repo, "README.md")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    m = re.search(r"^(#+)\s*Exit (codes|status)[^\n]*\n(.*?)(?=^#{1,%d}\s|\Z)" % 6, text,
                  re.IGNORECASE | re.MULTILINE | re.DOTALL)
    if not m:
        return None
    level = len(m.group(1))
    body = re.split(r"^#{1,%d}\s" % level, m.group(3), flags=re.MULTILINE)[0]
    return {int(n) for n in re.findall(r"(?<![\w.])(\d{1,3})(?![\w.])", body)}


def check_job(job, where, codes, readme):
    problems = []
    by_value = {v: k for k, v in codes.items()}
    spec = job.get("spec") or {}
    pod = ((spec.get("template") or {}).get("spec")) or {}
    containers = {c.get("name") for c in pod.get("containers") or [] if isinstance(c, dict)}
    policy = spec.get("podFailurePolicy")
    if not isinstance(policy, dict) or not policy.get("rules"):
        return [f"{where}: no podFailurePolicy rules"]
    if pod.get("restartPolicy") != "Never":
        problems.append(f"{where}: restartPolicy must be Never with a podFailurePolicy")
    fail_job, ignores_disruption = set(), False
    for n, rule in enumerate(policy["rules"]):
        rw = f"{where}: podFailurePolicy.rules[{n}]"
        action = rule.get("action")
        for cond in rule.get("onPodConditions") or []:
            if cond.get("type") == "DisruptionTarget" and str(cond.get("status", "True")) == "True" \
                    and action == "Ignore":
                ignores_disruption = True
        on_codes = rule.get("onExitCodes")
        if on_codes is None:
            continue
        name = on_codes.get("containerName")
        if name is not None and name not in containers:
            problems.append(f"{rw}: containerName {name!r} is not a container of the pod "
                            f"({', '.join(sorted(map(str, containers)))})")
        values = on_codes.get("values") or []
        operator = on_codes.get("operator")
        if operator not in ("In", "NotIn"):
            problems.append(f"{rw}: operator {operator!r} must be In or NotIn")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            problems.append(f"{rw}: exit codes must be integers, found {values!r}")
            continue
        if values != sorted(set(values)):
            problems.append(f"{rw}: exit codes must be sorted and unique, found {values}")
        if operator == "In" and 0 in values:
            problems.append(f"{rw}: 0 cannot be used with operator In")
        for v in values:
            if v not in by_value:
                problems.append(f"{rw}: exit code {v} is not a trainerd exit code "
                                f"(src/exit.rs: {', '.join(str(c) for c in sorted(by_value))})")
            elif readme is not None and v not in readme:
                problems.append(f"{rw}: exit code {v} ({by_value[v]}) is missing from README.md's exit codes")
        if action == "FailJob":
            if operator == "In":
                fail_job |= set(values)
            else:
                fail_job |= set(range(1, 256)) - set(values)
    if not ignores_disruption:
        problems.append(f"{where}: no rule ignores disruptions (onPodConditions DisruptionTarget, action Ignore)")
    for name in MUST_FAIL_JOB:
        if name in codes and codes[name] not in fail_job:
            problems.append(f"{where}: exit code {codes[name]} ({name}) must fail the Job at once (FailJob)")
    for name in MUST_NOT_FAIL_JOB:
        if name in codes and codes[name] in fail_job:
            problems.append(f"{where}: exit code {codes[name]} ({name}) means retry, but FailJob catches it")
    return problems


def compare_pyyaml(paths):
    import yaml  # only for the self-test
    bad = 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            ours = load_yaml_subset(text)
        except YamlSubsetError as err:
            print(f"ERROR {path}: {err}")
            bad += 1
            continue
        theirs = [d for d in yaml.safe_load_all(text) if d is not None]
        if ours != theirs:
            print(f"ERROR {path}: the stdlib YAML reader disagrees with PyYAML")
            bad += 1
        else:
            print(f"INFO {path}: stdlib YAML reader agrees with PyYAML")
    return 1 if bad else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--repo", default=os.path.dirname(os.path.dirname(here)),
                        help="repository root holding src/exit.rs and README.md")
    parser.add_argument("--compare-pyyaml", action="store_true",
                        help="self-test: parse each file with this reader and PyYAML and compare")
    parser.add_argument("manifests", nargs="+")
    args = parser.parse_args()
    if args.compare_pyyaml:
        return compare_pyyaml(args.manifests)
    try:
        codes = documented_codes(args.repo)
    except (OSError, ValueError) as err:
        print(f"ERROR {err}")
        return 1
    readme = readme_codes(args.repo)
    if readme is None:
        print("NOTE README.md has no exit-code section yet; checking against src/exit.rs only")
    problems, jobs = [], 0
    for path in args.manifests:
        try:
            with open(path, encoding="utf-8") as f:
                docs = load_yaml_subset(f.read())
        except (OSError, YamlSubsetError, ValueError) as err:
            problems.append(f"{path}: {err}")
            continue
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "Job":
                jobs += 1
                name = (doc.get("metadata") or {}).get("name")
                problems += check_job(doc, f"{path} job/{name}", codes, readme)
    if jobs == 0 and not problems:
        problems.append("no Job found in " + ", ".join(args.manifests))
    for line in problems:
        print(f"ERROR {line}")
    if problems:
        return 1
    print(f"INFO {jobs} Job(s): podFailurePolicy exit codes match src/exit.rs "
          f"({', '.join(f'{v} {k}' for k, v in sorted(codes.items(), key=lambda kv: kv[1]))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
