#!/usr/bin/env python3
"""Import graph of src/ (run from the repository root, or pass the src folder):
edges between top-level modules, with the files of scaling/ and webhooks/ as
nodes of their own (`scaling::record`, `webhooks::event`), from every
`crate::a::b` path outside comments and test modules; reports the circles."""
import os, re, sys, itertools
args = [a for a in sys.argv[1:] if a != "--whole"]
root = args[0] if args else "src"
TOP = set()
# Folders whose files are nodes of their own; `--whole` makes every top-level
# module one node.
SPLIT = () if "--whole" in sys.argv else ("scaling", "webhooks")
for f in os.listdir(root):
    if f.endswith(".rs") and f not in ("lib.rs", "main.rs") and not f.endswith("_tests.rs"): TOP.add(f[:-3])
    elif os.path.isdir(os.path.join(root, f)) and f != "bin": TOP.add(f)
def node_of_file(path):
    rel = os.path.relpath(path, root)
    parts = rel[:-3].split(os.sep)
    if parts[0] in ("lib", "main", "bin") or parts[-1].endswith("_tests"): return None
    top = parts[0]
    if top in SPLIT and len(parts) > 1 and parts[1] not in ("mod",):
        if parts[1] == "tests": return None  # test modules
        return f"{top}::{parts[1]}"
    return top
def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return text
def split_cfg_test(text):
    # drop `#[cfg(test)] mod tests { ... }` blocks crudely: everything after it
    m = re.search(r"#\[cfg\(test\)\]\s*mod tests\s*\{", text)
    return text[:m.start()] if m else text
edges = {}
for dp, dn, fn in os.walk(root):
    for f in fn:
        if not f.endswith(".rs"): continue
        p = os.path.join(dp, f)
        src = node_of_file(p)
        if src is None: continue
        text = split_cfg_test(strip_comments(open(p).read()))
        # expand `use crate::{a, b::c}` groups
        paths = []
        for m in re.finditer(r"crate::\{([^;]*?)\};", text, re.S):
            for item in re.split(r",\s*(?![^{]*\})", m.group(1)):
                paths.append(item.strip())
        for m in re.finditer(r"crate::([A-Za-z_][A-Za-z0-9_]*)(?:::([A-Za-z_][A-Za-z0-9_]*))?", text):
            paths.append(m.group(1) + ("::" + m.group(2) if m.group(2) else ""))
        for pth in paths:
            segs = [s for s in re.split(r"::", pth) if s]
            if not segs: continue
            top = segs[0]
            if top not in TOP: continue
            if top in SPLIT:
                if len(segs) > 1 and os.path.exists(os.path.join(root, top, segs[1] + ".rs")):
                    dst = top + "::" + segs[1]
                else: dst = top
            else: dst = top
            if dst == src: continue
            # scaling submodule to scaling parent: internal, but keep
            edges.setdefault(src, set()).add(dst)
# super:: inside scaling submodules refers to scaling
for dp, dn, fn in os.walk(os.path.join(root, "scaling")):
    for f in fn:
        if f.endswith(".rs") and f not in ("mod.rs",) and "tests" not in f:
            t = split_cfg_test(strip_comments(open(os.path.join(dp, f)).read()))
            if re.search(r"(?m)^use super::", t):
                edges.setdefault("scaling::" + f[:-3], set()).add("scaling")
# a split folder's mod.rs uses its files as `x::`: parent -> child edges
for top in SPLIT:
    mod = os.path.join(root, top, "mod.rs")
    if not os.path.exists(mod): continue
    mt = split_cfg_test(strip_comments(open(mod).read()))
    subs = [f[:-3] for f in os.listdir(os.path.join(root, top)) if f.endswith(".rs") and f != "mod.rs"]
    for sub in subs:
        if re.search(r"(?<!::)\b" + sub + r"::", mt):
            edges.setdefault(top, set()).add(f"{top}::{sub}")
# cycles: strongly connected components, then elementary 2-cycles and more
nodes = sorted(set(edges) | {d for v in edges.values() for d in v})
index = {}; low = {}; stack = []; on = set(); sccs = []; i = [0]
def strong(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in index: strong(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
sys.setrecursionlimit(10000)
for v in nodes:
    if v not in index: strong(v)
def is_internal_scaling(a, b):
    return a.split("::")[0] == b.split("::")[0]
two = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in edges.get(b, ()) and a != b})
print("edges:")
for a in sorted(edges): print(f"  {a} -> {', '.join(sorted(edges[a]))}")
print("mutual pairs (a <-> b):")
for a, b in two: print(f"  {a} <-> {b}" + ("   (inside scaling)" if is_internal_scaling(a, b) else ""))
print("strongly connected groups (any circle, however long):")
for c in sccs: print("  " + " , ".join(c))
print(f"circles between different top-level modules: "
      f"{sum(1 for a,b in two if not is_internal_scaling(a,b))} mutual pairs, "
      f"{sum(1 for c in sccs if len({x.split('::')[0] for x in c}) > 1)} groups")
