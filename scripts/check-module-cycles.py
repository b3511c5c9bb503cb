#!/usr/bin/env python3
"""Fails when a top-level module under src/ imports one that imports it back.

The graph has one node per top-level module (src/X.rs or src/X/): an edge
X -> Y for every `crate::Y` path (in `use` lines, grouped `use crate::{..}`
or inline paths) and every `super::` path that climbs out of X into Y. Code
under `#[cfg(test)]` (and files declared by a `#[cfg(test)] mod`) is left out
unless --with-tests is given. Comments are ignored. Prints every cycle (one
strongly connected component a line, then a concrete loop with the file and
line of each edge) and exits 1; exits 0 with a one-line summary when none.

Usage: scripts/check-module-cycles.py [--with-tests] [SRC_DIR]
"""

import re
import sys
from pathlib import Path

ROOT_FILES = {"lib.rs", "main.rs"}


def strip_comments(text):
    """Removes // and /* */ comments, keeping line breaks (line numbers hold)."""
    out, i, n = [], 0, len(text)
    in_str = False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_str = False
            i += 1
        elif c == '"':
            in_str = True
            out.append(c)
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def item_end(text, start):
    """The end of the item starting at `start`: its matching `}` or first `;`."""
    depth = 0
    for k in range(start, len(text)):
        ch = text[k]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return k + 1
        elif ch == ";" and depth == 0:
            return k + 1
    return len(text)


CFG_TEST = re.compile(r"#\[cfg\(test\)\]")
TEST_MOD_DECL = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;")


def drop_test_code(text):
    """Blanks every item under #[cfg(test)], keeping line breaks."""
    out, pos = [], 0
    for m in CFG_TEST.finditer(text):
        if m.start() < pos:
            continue
        end = item_end(text, m.end())
        out.append(text[pos : m.start()])
        out.append("\n" * text.count("\n", m.start(), end))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def module_path(src, path):
    """The module path of a file: src/a/b.rs and src/a/b/mod.rs -> [a, b]."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return parts


def test_only_files(src, files):
    """Files declared by `#[cfg(test)] mod x;` (and everything under them)."""
    skip = set()
    for f in files:
        text = strip_comments(f.read_text())
        base = f.parent if f.name in ("mod.rs", "lib.rs", "main.rs") else f.with_suffix("")
        for m in TEST_MOD_DECL.finditer(text):
            skip.add(base / f"{m.group(1)}.rs")
            skip.add(base / m.group(1))
    return {f for f in files if f in skip or any(p in skip for p in f.parents)}


USE_GROUP = re.compile(r"\buse\s+crate\s*::\s*\{")
CRATE_PATH = re.compile(r"\bcrate\s*::\s*(\w+)")
SUPER_PATH = re.compile(r"\b((?:super\s*::\s*)+)(\w+)")


def group_heads(text, open_brace):
    """First names of the top-level entries of a `{a, b::c, d::{..}}` group."""
    end = item_end(text, open_brace)
    body, depth, cur, heads = text[open_brace + 1 : end - 1], 0, "", []
    for ch in body + ",":
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            name = re.match(r"\s*(\w+)", cur)
            if name:
                heads.append(name.group(1))
            cur = ""
        else:
            cur += ch
    return heads


def references(text, mod):
    """(line, target top-level module) for each reference out of `mod`."""
    refs = []
    line_of = lambda pos: text.count("\n", 0, pos) + 1
    for m in USE_GROUP.finditer(text):
        for head in group_heads(text, m.end() - 1):
            refs.append((line_of(m.start()), head))
    for m in CRATE_PATH.finditer(text):
        refs.append((line_of(m.start()), m.group(1)))
    for m in SUPER_PATH.finditer(text):
        ups = m.group(1).count("super")
        if ups > len(mod) - 1 and len(mod) >= 1:
            # Climbs to the crate root: `super::...::Y` names top-level Y.
            if ups == len(mod):
                refs.append((line_of(m.start()), m.group(2)))
    return refs


def sccs(nodes, edges):
    """Tarjan's strongly connected components."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def a_loop(comp, edges):
    """One closed walk through `comp` starting at its first node (BFS back to it)."""
    start, members = comp[0], set(comp)
    prev, queue = {start: None}, [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(edges.get(v, ())):
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w in members and w not in prev:
                prev[w] = v
                queue.append(w)
    return comp


def main(argv):
    with_tests = "--with-tests" in argv
    args = [a for a in argv if not a.startswith("--")]
    src = Path(args[0] if args else Path(__file__).resolve().parent.parent / "src")
    files = sorted(src.rglob("*.rs"))
    skip = set() if with_tests else test_only_files(src, files)
    tops = {module_path(src, f)[0] for f in files if f.name not in ROOT_FILES or f.parent != src}
    edges, evidence = {}, {}
    for f in files:
        if f in skip or (f.parent == src and f.name in ROOT_FILES):
            continue
        mod = module_path(src, f)
        text = strip_comments(f.read_text())
        if not with_tests:
            text = drop_test_code(text)
        for line, target in references(text, mod):
            if target in tops and target != mod[0]:
                edges.setdefault(mod[0], set()).add(target)
                evidence.setdefault((mod[0], target), f"{f.relative_to(src.parent)}:{line}")
    cycles = [c for c in sccs(tops, edges) if len(c) > 1]
    n_edges = sum(len(v) for v in edges.values())
    if not cycles:
        print(f"module graph: {len(tops)} top-level modules, {n_edges} edges, no cycles")
        return 0
    print(f"module cycles ({len(cycles)} groups of modules that import each other):")
    for comp in cycles:
        print("  " + ", ".join(comp))
        covered = set()
        for a in comp:
            for b in comp:
                if a < b and b in edges.get(a, ()) and a in edges.get(b, ()):
                    covered |= {a, b}
                    print(f"    {a} <-> {b}  ({evidence[(a, b)]}; {evidence[(b, a)]})")
        for v in comp:
            if v in covered:
                continue
            walk = a_loop([v] + [w for w in comp if w != v], edges)
            covered |= set(walk)
            steps = " -> ".join(walk)
            print(f"    {steps}")
            for a, b in zip(walk, walk[1:]):
                print(f"      {a} -> {b}  ({evidence[(a, b)]})")
    print("fix: move what both sides need into the lower module (or a new leaf module)")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
