#!/usr/bin/env python3
"""The layering rule, checked: a folder imports only folders below it.

Derives the graph of `crate::`, `super::` and `self::` paths between the modules of `src/`
(each `use` tree expanded, each inline path read, re-exports followed to where the item is
defined) and fails when, inside any folder, its children import each other in a cycle.

    python3 .ci/layering.py          # check; prints each cycle and exits 1
    python3 .ci/layering.py --graph  # also prints every folder's edges
    python3 .ci/layering.py --self-test  # a made-up tree with a cycle must fail, one without pass
"""
import os
import re
import sys

SRC = os.environ.get("LAYERING_SRC") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "src"
)


def module_path(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return tuple(parts)


def strip(text):
    """Comments and string literals blanked, so only code is read."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    text = re.sub(r"'(?:\\.|[^'\\])'", "' '", text)
    return text


def expand(tree):
    """`a::{b, c::{d, e}}` → [a::b, a::c::d, a::c::e] (as lists of segments)."""
    tree = tree.strip()
    depth, brace = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                brace = i
            depth += 1
        elif ch == "}":
            depth -= 1
    if brace is None:
        tree = re.sub(r"\s+as\s+\w+$", "", tree)
        return [[s for s in tree.split("::") if s]]
    prefix = [s for s in tree[:brace].split("::") if s]
    inner = tree[brace + 1 : tree.rindex("}")]
    items, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(inner[start:i])
            start = i + 1
    items.append(inner[start:])
    out = []
    for item in items:
        if item.strip():
            for rest in expand(item):
                out.append(prefix + rest)
    return out


def read_modules():
    """module path → (uses: list of (segments, scope module, is_pub_use)), inline paths."""
    modules = {}
    for root, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs") or (root == SRC and f == "main.rs"):
                continue
            full = os.path.join(root, f)
            rel = os.path.relpath(full, SRC)
            base = module_path(rel)
            is_dir_module = f in ("mod.rs", "lib.rs")
            code = strip(open(full, encoding="utf-8").read())
            modules.setdefault(base, [])
            # Inline `mod x { ... }` blocks change what `self` and `super` mean.
            stack = []  # (name, depth at open)
            depth = 0
            pos = 0
            tokens = re.finditer(
                r"(?P<mod>\bmod\s+(?P<name>\w+)\s*\{)|(?P<use>\b(?P<pub>pub(?:\([^)]*\))?\s+)?use\s+(?P<tree>[^;]+);)|(?P<path>\b(?:crate|super|self)(?:::\w+)+)|(?P<open>\{)|(?P<close>\})",
                code,
            )
            for m in tokens:
                scope = base + tuple(n for n, _ in stack)
                if m.group("mod"):
                    depth += 1
                    stack.append((m.group("name"), depth))
                elif m.group("open"):
                    depth += 1
                elif m.group("close"):
                    if stack and stack[-1][1] == depth:
                        stack.pop()
                    depth -= 1
                elif m.group("use"):
                    for segs in expand(m.group("tree")):
                        modules[base].append((segs, scope, is_dir_module or bool(stack), bool(m.group("pub"))))
                elif m.group("path"):
                    segs = m.group("path").split("::")
                    modules[base].append((segs, scope, is_dir_module or bool(stack), False))
    return modules


def absolute(segs, scope, scope_is_dir):
    """A path as segments from the crate root, or None for an outside crate."""
    if not segs:
        return None
    head = segs[0]
    if head == "crate":
        return tuple(segs[1:])
    # `self`/`super` are relative to the module the code is in.
    here = list(scope)
    rest = list(segs)
    if head == "self":
        rest = rest[1:]
    elif head == "super":
        while rest and rest[0] == "super":
            here = here[:-1]
            rest = rest[1:]
    else:
        return None
    return tuple(here + rest)


def main():
    modules = read_modules()
    known = set(modules)
    # Re-exports: module → {name: absolute path it names}.
    reexports = {}
    for mod, uses in modules.items():
        for segs, scope, is_dir, is_pub in uses:
            if is_pub and segs and segs[-1] not in ("*", "self"):
                target = absolute(segs, scope, is_dir)
                if target is None and segs[0] not in ("crate", "self", "super"):
                    # `pub use config::X` inside a mod.rs: relative to the module.
                    target = scope + tuple(segs)
                if target:
                    reexports.setdefault(scope, {})[segs[-1]] = target

    def defining(path, seen=0):
        """The longest known module prefix of `path`, following re-exports."""
        path = tuple(p for p in path if p != "*")
        for cut in range(len(path), -1, -1):
            prefix = path[:cut]
            if prefix in known:
                if cut < len(path) and seen < 8:
                    name = path[cut]
                    target = reexports.get(prefix, {}).get(name)
                    if target and target != path[: cut + 1]:
                        return defining(target + path[cut + 1 :], seen + 1)
                return prefix
        return ()

    edges = set()
    for mod, uses in modules.items():
        for segs, scope, is_dir, is_pub in uses:
            target = absolute(segs, scope, is_dir)
            if target is None and segs[0] not in ("crate", "self", "super") and mod in known:
                # `use config::X` in a module that declares `mod config`.
                candidate = scope + tuple(segs)
                if candidate[: len(scope) + 1] in known:
                    target = candidate
            if target is None:
                continue
            edges.add((mod, defining(target)))

    failed = False
    folders = sorted({m[:-1] for m in known if m} | {()})
    for folder in folders:
        children = {m[len(folder)] for m in known if len(m) > len(folder) and m[: len(folder)] == folder}
        graph = {c: set() for c in children}
        for a, b in edges:
            if len(a) > len(folder) and len(b) > len(folder) and a[: len(folder)] == folder and b[: len(folder)] == folder:
                ca, cb = a[len(folder)], b[len(folder)]
                if ca != cb:
                    graph[ca].add(cb)
        name = "src/" + "/".join(folder)
        if "--graph" in sys.argv:
            for c in sorted(graph):
                if graph[c]:
                    print(f"{name}: {c} -> {', '.join(sorted(graph[c]))}")
        for members, cycle in cycles(graph):
            failed = True
            print(f"{name}: {', '.join(members)} import each other, e.g. {' -> '.join(cycle + [cycle[0]])}")
    if failed:
        print("layering: a folder imports only folders below it; move the shared contract down", file=sys.stderr)
        sys.exit(1)
    print(f"layering: no import cycle among {len(known)} modules")


def cycles(graph):
    """One cycle per strongly connected component of more than one node (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
            if len(comp) > 1:
                out.append((sorted(comp), path_in(graph, sorted(comp))))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def path_in(graph, comp):
    """A concrete cycle through the first node of a strongly connected component."""
    members = set(comp)
    start = comp[0]
    prev = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v]):
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path))
            if w in members and w not in prev:
                prev[w] = v
                queue.append(w)
    return comp


def self_test():
    """The check can fail: a tree whose `a` and `b` import each other (one through a re-export,
    one through an inline test module's `super::`) is refused; without the back edge it passes."""
    import subprocess
    import tempfile

    def run(files):
        with tempfile.TemporaryDirectory() as root:
            for path, text in files.items():
                full = os.path.join(root, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "w") as f:
                    f.write(text)
            env = dict(os.environ, LAYERING_SRC=root)
            return subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True)

    tree = {
        "lib.rs": "pub mod a;\npub mod b;\n",
        "a/mod.rs": "mod inner;\npub use inner::Thing;\n",
        "a/inner.rs": "pub struct Thing;\n",
        "b.rs": "use crate::a::Thing;\n",
    }
    ok = run(tree)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    tree["a/inner.rs"] += "#[cfg(test)]\nmod tests {\n    use super::super::super::b;\n}\n"
    tree["b.rs"] += "pub fn f() {}\n"
    bad = run(tree)
    assert bad.returncode == 1 and "a, b import each other" in bad.stdout, bad.stdout + bad.stderr
    print("layering: self-test passed")


if __name__ == "__main__":
    if "--self-test" in sys.argv:
        self_test()
    else:
        main()
