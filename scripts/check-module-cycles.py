#!/usr/bin/env python3
"""Fails when code under src/ imports code that imports it back, at two levels.

Modules: one node per top-level module (src/X.rs or src/X/): an edge X -> Y
for every `crate::Y` path (in `use` lines, grouped `use crate::{..}` or
inline paths) and every `super::` path that climbs out of X into Y.

Files inside one module: each folder under src/X/ is looked at on its own,
its direct children being the nodes: a file, or a subfolder counted as one
node (named by its root file, `mod.rs` or the `b.rs` beside `b/`) that
stands for every file under it. An edge f -> g comes from a `super::`,
`self::` or `crate::X::` path, or one through a module f declares
(`runner::Msg`), in a `use` line (grouped or not) or inline.
- A folder's root file is no node of its own folder. It is the folder's
  face: its `mod child;`, its re-exports and its code that uses the children
  are edges down, which cannot close a circle; what the children take from
  it (the folder's error type, say) is the floor they stand on.
- A name is counted against the file that defines it, imports followed (a
  `use a::*` too): a child's `super::Y`, where the root file only says
  `pub use b::Y`, is an edge to b. So re-exporting never hides a circle,
  and never makes one up.

Code under `#[cfg(test)]` (and files declared by a `#[cfg(test)] mod`,
`#[path]` ones included) is left out unless --with-tests is given. Comments
are ignored (for files, string literals too). Prints every cycle (one
strongly connected component a line, then a concrete loop with the file and
line of each edge) and exits 1; exits 0 with a one-line summary when none.

KNOWN_FILE_CIRCLES: file circles known and being broken on another branch,
each as the set of its nodes as printed. They are printed as "known, being
fixed" and do not fail; any other circle fails, and so does a known one that
grew (its nodes are no longer exactly the entry). An entry no longer found
is printed as stale without failing, so that either branch may land first;
empty the list once the fix has landed.

Usage: scripts/check-module-cycles.py [--with-tests] [SRC_DIR]
       scripts/check-module-cycles.py --self-test   (fixture trees; exits 1 on a failure)
"""

import contextlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT_FILES = {"lib.rs", "main.rs"}

# See the docstring. pipeline and train are being untangled on the branch
# that breaks these two; the lead empties this list after merging it.
KNOWN_FILE_CIRCLES = []


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
MOD_DECL = re.compile(r"((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?\bmod\s+(\w+)\s*;")
PATH_ATTR = re.compile(r'#\[\s*path\s*=\s*"([^"]+)"\s*\]')


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


def declared_modules(f, text):
    """(name, the files it may be, test only, #[path] file or None) per `mod name;` in f."""
    base = f.parent if f.name in ("mod.rs", "lib.rs", "main.rs") else f.with_suffix("")
    out = []
    for m in MOD_DECL.finditer(text):
        attrs, name = m.group(1), m.group(2)
        at = PATH_ATTR.search(attrs)
        if at:
            path = Path(os.path.normpath(f.parent / at.group(1)))
            paths = [path]
        else:
            path, paths = None, [base / f"{name}.rs", base / name]
        out.append((name, paths, "cfg(test)" in attrs.replace(" ", ""), path))
    return out


def test_only_files(src, files):
    """Files declared by `#[cfg(test)] mod x;` (and everything under them)."""
    skip = set()
    for f in files:
        for _, paths, test_only, _ in declared_modules(f, strip_comments(f.read_text())):
            if test_only:
                skip.update(paths)
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


# ---- files inside one module -------------------------------------------------

RAW_STRING = re.compile(r'b?r(#*)"')
STRING = re.compile(r'b?"(?:\\.|[^"\\])*"', re.S)
CHAR = re.compile(r"b?'(?:\\.[^'\n]*?|[^\\'\n])'")


def code_only(text):
    """Blanks comments (nested ones too) and string and char literals, keeping line breaks."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        after_word = i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")
        m = None
        if c in "br\"'" and not after_word:
            m = RAW_STRING.match(text, i) or STRING.match(text, i) or CHAR.match(text, i)
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                step = text[j : j + 2]
                depth += (step == "/*") - (step == "*/")
                j += 2 if step in ("/*", "*/") else 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif m:
            end = m.end()
            if m.re is RAW_STRING:
                close = text.find('"' + m.group(1), end)
                end = n if close < 0 else close + 1 + len(m.group(1))
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


def use_tree(body):
    """(segments, alias, is_glob) for each path of a `use` tree: `a::{self, b as c, d::*}`."""
    toks, at = re.findall(r"::|[{},*]|\w+", body), [0]

    def peek():
        return toks[at[0]] if at[0] < len(toks) else None

    def take():
        at[0] += 1
        return toks[at[0] - 1] if at[0] <= len(toks) else None

    def alias():
        if peek() == "as":
            take()
            return take()
        return None

    def tree(path):
        while True:
            t = take()
            if t in (None, "}", ","):
                return []
            if t == "::":
                continue
            if t == "*":
                return [(path, None, True)]
            if t == "{":
                out = []
                while peek() not in (None, "}"):
                    out += tree(path)
                    if peek() == ",":
                        take()
                take()
                return out
            if t == "self" and path:
                return [(path, alias(), False)]
            path = path + [t]
            if peek() == "::":
                take()
                continue
            return [(path, alias(), False)]

    return tree([])


USE_STMT = re.compile(r"(?<![\w:])use\s+")
DEFINITION = re.compile(
    r"\b(?:fn|struct|enum|trait|type|const|static|union|mod)\s+(\w+)|macro_rules!\s*(\w+)"
)
INLINE_MOD = re.compile(r"\bmod\s+(\w+)\s*\{")


def statement_end(text, start):
    """The position after the `;` that ends the statement at `start` (braces skipped)."""
    depth = 0
    for k in range(start, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
        elif text[k] == ";" and depth <= 0:
            return k + 1
    return len(text)


def absolute(segs, base, children):
    """A path written in module `base` -> its crate-absolute segments (None: another crate)."""
    if not segs:
        return None
    if segs[0] == "crate":
        return segs[1:]
    if segs[0] not in ("self", "super") and segs[0] not in children:
        return None
    if segs[0] == "self":
        segs = segs[1:]
    ups = next((k for k, s in enumerate(segs) if s != "super"), len(segs))
    return base[: len(base) - ups] + segs[ups:] if ups <= len(base) else None


class Source:
    """One file's references (line, crate-absolute path, is_glob) and what it defines."""

    def __init__(self, modpath, text, with_tests):
        text = code_only(text)
        if not with_tests:
            text = drop_test_code(text)
        self.modpath = modpath
        self.defined = {a or b for a, b in DEFINITION.findall(text)}
        declared = {m.group(2) for m in MOD_DECL.finditer(text)}
        inline = [
            (m.end() - 1, item_end(text, m.end() - 1), m.group(1))
            for m in INLINE_MOD.finditer(text)
        ]
        line_of = lambda pos: text.count("\n", 0, pos) + 1

        def base_at(pos):
            inner = [name for a, b, name in inline if a < pos < b]
            children = set() if inner else declared | {n for *_, n in inline}
            return modpath + inner, children

        self.refs, self.imports, blanked, pos = [], [], [], 0
        for m in USE_STMT.finditer(text):
            if m.start() < pos:
                continue
            end = statement_end(text, m.end())
            base, children = base_at(m.start())
            for segs, alias, glob in use_tree(text[m.end() : end - 1]):
                target = absolute(segs, base, children)
                if not target:
                    continue
                self.refs.append((line_of(m.start()), target, glob))
                if base == modpath:
                    self.imports.append((target, alias, glob))
            blanked.append(text[pos : m.start()] + "\n" * text.count("\n", m.start(), end))
            pos = end
        rest = "".join(blanked) + text[pos:]
        heads = "|".join(["crate", "super", "self"] + sorted(declared | {n for *_, n in inline}))
        for m in re.finditer(rf"(?<![\w:])(?:{heads})(?:\s*::\s*\w+)+", rest):
            base, children = base_at(m.start())
            segs = re.findall(r"\w+", m.group(0))
            target = absolute(segs, base, children)
            if target:
                self.refs.append((line_of(m.start()), target, False))


class Tree:
    """The crate's files by module path, and where each name is defined."""

    def __init__(self, src, files, skip, with_tests):
        self.src, self.sources, self.by_mod = src, {}, {}
        moved = {}
        for f in files:
            base = [] if f.parent == src and f.name in ROOT_FILES else module_path(src, f)
            for name, _, _, path in declared_modules(f, strip_comments(f.read_text())):
                if path is not None:
                    moved[path] = base + [name]
        for f in files:
            if f in skip or (f.parent == src and f.name in ROOT_FILES):
                continue
            modpath = moved.get(f, module_path(src, f))
            self.sources[f] = Source(modpath, f.read_text(), with_tests)
            self.by_mod[tuple(modpath)] = f

    def locate(self, path, depth=0):
        """The file that defines what `path` names, imports followed; None outside the crate."""
        k = next((k for k in range(len(path), 0, -1) if tuple(path[:k]) in self.by_mod), 0)
        if k == 0:
            return None
        f = self.by_mod[tuple(path[:k])]
        rest, source = path[k:], self.sources[f]
        if not rest or depth > 20 or rest[0] in source.defined:
            return f
        name = rest[0]
        for target, alias, glob in source.imports:
            if not glob and (alias or target[-1]) == name:
                return self.locate(target + rest[1:], depth + 1) or f
        for target, _, glob in source.imports:
            g = self.by_mod.get(tuple(target)) if glob else None
            if g and g != f:
                there = self.sources[g]
                names = there.defined | {a or t[-1] for t, a, gl in there.imports if not gl}
                if name in names:
                    return self.locate(target + rest, depth + 1) or f
        return f

    def name(self, modpath):
        """A node's name: its file, or its folder's root file."""
        f = self.by_mod.get(tuple(modpath))
        if f is None:  # a folder without a root file (only #[path] makes one)
            return str(self.src.relative_to(self.src.parent).joinpath(*modpath)) + "/"
        return str(f.relative_to(self.src.parent))

    def graph(self):
        """Edges between sibling nodes (see the docstring), with the file:line of each."""
        edges, evidence = {}, {}
        for f, source in self.sources.items():
            mf = source.modpath
            for line, path, _ in source.refs:
                g = self.locate(path)
                if g is None or g == f:
                    continue
                mg = self.sources[g].modpath
                common = 0
                while common < min(len(mf), len(mg)) and mf[common] == mg[common]:
                    common += 1
                if common == 0 or common == len(mf) or common == len(mg):
                    continue  # another top-level module, or a file and its own folder
                a, b = tuple(mf[: common + 1]), tuple(mg[: common + 1])
                edges.setdefault(a, set()).add(b)
                evidence.setdefault((a, b), f"{f.relative_to(self.src.parent)}:{line}")
        return edges, evidence


def print_circle(comp, edges, evidence, name, indent):
    """One strongly connected component: each two-way pair, then a loop through the rest."""
    print(indent + ", ".join(name(v) for v in comp))
    covered = set()
    for a in comp:
        for b in comp:
            if a < b and b in edges.get(a, ()) and a in edges.get(b, ()):
                covered |= {a, b}
                both = f"{evidence[(a, b)]}; {evidence[(b, a)]}"
                print(f"{indent}  {name(a)} <-> {name(b)}  ({both})")
    for v in comp:
        if v in covered:
            continue
        walk = a_loop([v] + [w for w in comp if w != v], edges)
        covered |= set(walk)
        print(indent + "  " + " -> ".join(name(w) for w in walk))
        for a, b in zip(walk, walk[1:]):
            print(f"{indent}    {name(a)} -> {name(b)}  ({evidence[(a, b)]})")


def check_files(src, files, skip, with_tests, known):
    """The file-level check: prints its findings, returns the exit status."""
    tree = Tree(src, files, skip, with_tests)
    edges, evidence = tree.graph()
    nodes = set(edges) | {b for bs in edges.values() for b in bs}
    circles = [c for c in sccs(nodes, edges) if len(c) > 1]
    named = [(c, {tree.name(v) for v in c}) for c in circles]
    known_now = [(c, n) for c, n in named if n in known]
    new = [(c, n) for c, n in named if n not in known]
    for c, _ in known_now:
        print("file circle known, being fixed (KNOWN_FILE_CIRCLES; not failing):")
        print_circle(c, edges, evidence, tree.name, "  ")
    for entry in known:
        if entry not in [n for _, n in named]:
            stale = ", ".join(sorted(entry))
            print(f"KNOWN_FILE_CIRCLES entry no longer found, remove it: {stale}")
    n_edges = sum(len(v) for v in edges.values())
    if not new:
        besides = f" besides the {len(known_now)} known" if known_now else ""
        print(f"file graph: {len(tree.sources)} files, {n_edges} edges, no circles{besides}")
        return 0
    print(f"file circles inside a module ({len(new)} groups of files that import each other):")
    for c, _ in new:
        print_circle(c, edges, evidence, tree.name, "  ")
    print("fix: move what both files need into the lower one (or a new file both import)")
    return 1


def check_modules(src, files, skip, with_tests):
    """The top-level check: prints its findings, returns the exit status."""
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
        print_circle(comp, edges, evidence, str, "  ")
    print("fix: move what both sides need into the lower module (or a new leaf module)")
    return 1


def run(src, with_tests=False, known=()):
    files = sorted(src.rglob("*.rs"))
    skip = set() if with_tests else test_only_files(src, files)
    status = check_modules(src, files, skip, with_tests)
    return max(status, check_files(src, files, skip, with_tests, list(known)))


# ---- self-test -------------------------------------------------------------

# Each case: (what it shows, files under src/, extra args, known circles,
# expected exit status, strings the output must hold).
SELF_TEST_CASES = [
    (
        "two files importing each other fail, with file:line of both edges",
        {
            "lib.rs": "pub mod m;\n",
            "m/mod.rs": "mod a;\nmod b;\npub use a::A;\n",
            "m/a.rs": "use super::b::B;\npub struct A(B);\n",
            "m/b.rs": "pub struct B;\n\npub fn f() -> crate::m::a::A {\n    todo!()\n}\n",
        },
        [],
        [],
        1,
        ["src/m/a.rs <-> src/m/b.rs", "src/m/a.rs:1", "src/m/b.rs:3"],
    ),
    (
        "a circle through the root file's re-export fails (edge to the defining file)",
        {
            "lib.rs": "pub mod m;\n",
            "m/mod.rs": "mod a;\nmod b;\npub use b::B;\n",
            "m/a.rs": "use super::B;\npub struct A;\n",
            "m/b.rs": "use super::{a::A};\npub struct B(A);\n",
        },
        [],
        [],
        1,
        ["src/m/a.rs <-> src/m/b.rs", "src/m/a.rs:1", "src/m/b.rs:1"],
    ),
    (
        "children using the root file's items and re-exports, and the root using them, pass",
        {
            "lib.rs": "pub mod m;\n",
            "m/mod.rs": "mod a;\nmod b;\npub use a::A;\npub struct Error;\n"
            "pub fn make() -> a::A {\n    b::build()\n}\n",
            "m/a.rs": "use super::Error;\npub struct A(pub Error);\n"
            '// use super::b::build;\nconst S: &str = "use super::b::build;";\n',
            "m/b.rs": "use super::{Error, A};\npub fn build() -> A {\n    A(Error)\n}\n",
        },
        [],
        [],
        0,
        ["edges, no circles\n"],
    ),
    (
        "a subfolder is one node: a circle through two of its files fails",
        {
            "lib.rs": "pub mod m;\n",
            "m/mod.rs": "mod a;\nmod sub;\n",
            "m/a.rs": "use super::sub::X;\npub struct A(X);\n",
            "m/sub/mod.rs": "mod x;\nmod y;\npub use x::X;\n",
            "m/sub/x.rs": "pub struct X;\n",
            "m/sub/y.rs": "pub fn f(_: crate::m::a::A) {}\n",
        },
        [],
        [],
        1,
        ["src/m/a.rs <-> src/m/sub/mod.rs", "src/m/a.rs:1", "src/m/sub/y.rs:1"],
    ),
    (
        "a known circle is reported and passes",
        {
            "lib.rs": "pub mod m;\n",
            "m/mod.rs": "mod a;\nmod b;\n",
            "m/a.rs": "use super::b::B;\npub struct A;\n",
            "m/b.rs": "use super::a::A;\npub struct B;\n",
        },
        [],
        [{"src/m/a.rs", "src/m/b.rs"}],
        0,
        ["known, being fixed", "src/m/a.rs <-> src/m/b.rs"],
    ),
    (
        "a known circle that grew fails",
        {
            "lib.rs": "pub mod m;\n",
            "m/mod.rs": "mod a;\nmod b;\nmod c;\n",
            "m/a.rs": "use super::b::B;\npub struct A;\n",
            "m/b.rs": "use super::c::C;\npub struct B;\n",
            "m/c.rs": "use self::super::a::A;\npub struct C;\n",
        },
        [],
        [{"src/m/a.rs", "src/m/b.rs"}],
        1,
        ["src/m/a.rs -> src/m/b.rs -> src/m/c.rs -> src/m/a.rs", "src/m/c.rs:1"],
    ),
    (
        "cfg(test) code and #[cfg(test)] #[path] files are left out",
        {
            "lib.rs": "pub mod m;\n",
            "m/mod.rs": "mod a;\nmod b;\n#[cfg(test)]\n#[path = \"t.rs\"]\nmod t;\n",
            "m/a.rs": "use super::b::B;\npub struct A;\n",
            "m/b.rs": "pub struct B;\n#[cfg(test)]\nmod tests {\n    use crate::m::a::A;\n}\n",
            "m/t.rs": "use super::a::A;\nuse super::b::B;\n",
        },
        [],
        [],
        0,
        ["file graph: 3 files, 1 edges"],
    ),
    (
        "with --with-tests, test code counts",
        {
            "lib.rs": "pub mod m;\n",
            "m/mod.rs": "mod a;\nmod b;\n",
            "m/a.rs": "use super::b::B;\npub struct A;\n",
            "m/b.rs": "pub struct B;\n#[cfg(test)]\nmod tests {\n    use crate::m::a::A;\n}\n",
        },
        ["--with-tests"],
        [],
        1,
        ["src/m/b.rs:4"],
    ),
    (
        "top-level modules importing each other still fail as before",
        {
            "lib.rs": "mod p;\nmod q;\n",
            "p.rs": "use crate::q::Q;\npub struct P;\n",
            "q.rs": "pub struct Q;\npub fn f(_: crate::p::P) {}\n",
        },
        [],
        [],
        1,
        ["module cycles (1 groups", "p <-> q  (src/p.rs:1; src/q.rs:2)"],
    ),
]


def self_test():
    """Runs the checks on each fixture tree; exits 1 when any answer is wrong."""
    failed = 0
    for what, files, args, known, want_status, want_text in SELF_TEST_CASES:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "src"
            for rel, text in files.items():
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                (src / rel).write_text(text)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                status = run(src, "--with-tests" in args, known)
        missing = [t for t in want_text if t not in out.getvalue()]
        ok = status == want_status and not missing
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            print(f"     exit {status}, expected {want_status}; missing {missing}; output:")
            print("     " + out.getvalue().replace("\n", "\n     "))
    print(f"self-test: {len(SELF_TEST_CASES) - failed} of {len(SELF_TEST_CASES)} cases pass")
    return 1 if failed else 0


def main(argv):
    if "--self-test" in argv:
        return self_test()
    with_tests = "--with-tests" in argv
    args = [a for a in argv if not a.startswith("--")]
    src = Path(args[0] if args else Path(__file__).resolve().parent.parent / "src")
    return run(src, with_tests, KNOWN_FILE_CIRCLES)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
