#!/usr/bin/env python3
"""check-layers: the include rules of docs/architecture.md ("Layers").

    scripts/check-layers.py [ROOT]        (make check-layers; ROOT: the repository)

Reads every `#include "..."` line of common/, proto/, master/, worker/ and
cli/ and fails (exit 1) on any of:
  - a directory including one above it. From the bottom: include/ (the
    plugin ABI) and common/, then proto/, then the programs master/,
    worker/, cli/. A program directory never includes another's.
  - a module including a module of a higher layer in master/ (MASTER_LAYERS
    below: the loop calls down, nothing below the loop calls up into it).
    A master/ module missing from the table fails too, so a new one is
    placed on purpose.
  - two modules (x.c + x.h; PART_OF names the files that are half of
    another module) of one directory including each other, directly or
    through others (a cycle).
  - a quoted include that names no file of the tree.
One line per violation, "file:line: what is wrong; what to do", then a count.
"""
import os
import re
import sys

# Directory layers, lowest first. A directory may include its own files and
# those of lower layers; programs (same layer) never include each other.
DIR_LAYER = {"include": 0, "common": 0, "proto": 1, "master": 2, "worker": 2, "cli": 2}
SCANNED = ["common", "proto", "master", "worker", "cli"]

# master/: main -> master (the loop) -> api / tasks -> journal / jobs /
# waiters / sched / registry -> store / writer / auth. A module may include
# its own layer or any below; a cycle inside a layer is caught as a cycle.
MASTER_LAYERS = [
    ("main", "flags and signals; starts the loop"),
    ("master", "the loop: sockets, timers, acknowledges committed submits"),
    ("api tasks alloc dash why", "requests; the life of a task (dispatch, claim, result, lease); "
     "worker allocation queues (Slurm); the HTTP requests; why queued tasks wait"),
    ("journal jobs deps waiters sched registry idem conns", "grouped commits; jobs and "
     "retention; dependencies between jobs; held requests; the ready queue; workers; submit "
     "keys; replies and parked requests per API connection"),
    ("store writer auth claim gate metrics web resources", "SQLite; the commit thread; the ZAP "
     "allowlist; claim tokens; unauthenticated connections shed; counters; the HTTP threads; what fits on "
     "a worker (pure)"),
]
MASTER_RANK = {m: i for i, (names, _) in enumerate(MASTER_LAYERS) for m in names.split()}

# Files that are one half of another module rather than a module of their
# own. worker/exec_child is the child side of exec, split out because code
# that runs between fork and exec may only make async-signal-safe calls; it
# uses exec's types and exec calls it, as one module's halves do.
PART_OF = {"worker/exec_child": "exec"}

INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_name(rank):
    return " / ".join(MASTER_LAYERS[rank][0].split())


def module_of(path):
    """'master/api.c' -> ('master', 'api')."""
    d, f = path.split("/", 1)
    m = os.path.splitext(f)[0]
    return d, PART_OF.get(f"{d}/{m}", m)


def resolve(root, src, target):
    """The tree path an include names (relative to the including file, then
    include/, as -Iinclude does), or None."""
    for base in (os.path.dirname(src), "include"):
        p = os.path.normpath(os.path.join(base, target))
        if not p.startswith("..") and os.path.isfile(os.path.join(root, p)):
            return p
    return None


def read_includes(root):
    """[(src, line, target_path_or_None, raw)] for every scanned file."""
    out = []
    for d in SCANNED:
        full = os.path.join(root, d)
        if not os.path.isdir(full):
            continue
        for f in sorted(os.listdir(full)):
            if not f.endswith((".c", ".h")):
                continue
            src = f"{d}/{f}"
            with open(os.path.join(root, src), encoding="utf-8", errors="replace") as fh:
                for n, text in enumerate(fh, 1):
                    m = INCLUDE_RE.match(text)
                    if m:
                        out.append((src, n, resolve(root, src, m.group(1)), m.group(1)))
    return out


def check_dirs(includes, bad):
    for src, n, tgt, raw in includes:
        if tgt is None:
            bad.append(f'{src}:{n}: #include "{raw}" names no file of the tree (looked beside '
                       f'{src} and in include/); include a header of common/, proto/ or this '
                       f"directory, or add the file")
            continue
        sd, td = src.split("/")[0], tgt.split("/")[0]
        if sd == td:
            continue
        if td not in DIR_LAYER:
            bad.append(f"{src}:{n}: includes {tgt}, outside the product's directories; "
                       f"product code includes only common/, proto/, include/ and its own")
        elif DIR_LAYER[td] == DIR_LAYER[sd] == 2:
            bad.append(f"{src}:{n}: {sd}/ includes {tgt}: one program never includes another's "
                       f"code; move what both need to common/ (or proto/ if it is wire format)")
        elif DIR_LAYER[td] > DIR_LAYER[sd]:
            bad.append(f"{src}:{n}: {sd}/ includes {tgt}, a layer above it "
                       f"({sd}/ is below {td}/); move the code down, or pass it in")


def check_master(includes, bad):
    unknown = {}
    for src, n, tgt, _ in includes:
        if not src.startswith("master/"):
            continue
        _, sm = module_of(src)
        if sm not in MASTER_RANK:
            unknown.setdefault(sm, (src, n))
        if tgt is None or not tgt.startswith("master/"):
            continue
        _, tm = module_of(tgt)
        if tm not in MASTER_RANK:
            unknown.setdefault(tm, (src, n))
        if sm == tm or sm not in MASTER_RANK or tm not in MASTER_RANK:
            continue
        if MASTER_RANK[tm] < MASTER_RANK[sm]:
            bad.append(f"{src}:{n}: {sm} ({layer_name(MASTER_RANK[sm])}) includes {tgt} "
                       f"({layer_name(MASTER_RANK[tm])}), a layer above it: nothing calls up; "
                       f"hand the result back (a return value, a queue the caller drains)")
    for m, (src, n) in sorted(unknown.items()):
        bad.append(f"{src}:{n}: master/{m} is in no layer of scripts/check-layers.py: add it to "
                   f"MASTER_LAYERS (and docs/architecture.md, Layers) where it belongs")


def check_cycles(includes, bad):
    """Cycles in each directory's module graph (Tarjan's strongly connected
    components); one line per cycle, naming each include on it."""
    edges = {}      # (dir, module) -> {(dir, module): (src, line)}
    for src, n, tgt, _ in includes:
        if tgt is None or tgt.split("/")[0] != src.split("/")[0]:
            continue
        a, b = module_of(src), module_of(tgt)
        if a != b:
            edges.setdefault(a, {}).setdefault(b, (src, n))
            edges.setdefault(b, {})
    index, low, stack, on, sccs = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                strong(w)
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
                sccs.append(set(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    for comp in sccs:
        # One cycle through the component: walk from its smallest module,
        # always to the smallest next module inside it, until one repeats.
        path, v = [], min(comp)
        while v not in path:
            path.append(v)
            v = min(w for w in edges[v] if w in comp)
        path = path[path.index(v):] + [v]
        sites = [edges[a][b] for a, b in zip(path, path[1:])]
        names = " -> ".join(m for _, m in path)
        where = ", ".join(f"{s}:{n}" for s, n in sites)
        d = path[0][0]
        bad.append(f"{sites[0][0]}:{sites[0][1]}: {d}/ modules include each other: {names} "
                   f"({where}); one of them must not know the other: move the shared type "
                   f"or function down into its own header, or pass a callback")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    includes = read_includes(root)
    if not includes:
        print(f"check-layers: no #include lines under {root}: run it from the repository root")
        return 2
    bad = []
    check_dirs(includes, bad)
    check_master(includes, bad)
    check_cycles(includes, bad)
    for line in bad:
        print(line)
    nfiles = len({s for s, *_ in includes})
    if bad:
        print(f"check-layers: {len(bad)} violation(s) in {nfiles} files "
              f"(rules: docs/architecture.md, Layers)")
        return 1
    print(f"check-layers: ok ({nfiles} files, {len(includes)} includes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
