"""The package's layering: no import cycles between pps modules, and a worker process that
imports only what a worker needs.

The import graph is bench/import_graph.py's (every module parsed with `ast`, imports inside
functions included; `import pps.x` of a package is an edge to pps/x/__init__.py, and
`from pps.x import y` of a submodule an edge to pps.x.y). `python3 bench/import_graph.py`
prints the same graph, with each stage's imports of the others.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# What a worker process must not pull in: each costs tens of milliseconds and megabytes in
# every worker, and none of it is for the C loop (tables, reports and the lab are the
# orchestrator's).
HEAVY = ("pandas", "pyarrow", "matplotlib", "rich", "scipy", "pyroute2")


def _import_graph():
    spec = importlib.util.spec_from_file_location("pps_import_graph",
                                                  REPO / "bench" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ig = _import_graph()


def test_no_import_cycles():
    graph = ig.build_graph(REPO / "pps")
    assert "pps.run.worker" in graph and "pps.cli.main" in graph  # the right tree was read
    found = ig.cycles(graph)
    assert not found, (f"{len(found)} import cycle(s) in pps/ (strongly connected components "
                       "of the import graph):\n" +
                       "\n".join(ig.describe_cycle(c, graph) for c in found))


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for rel, text in files.items():
        path = tmp_path / "pps" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return ig.build_graph(tmp_path / "pps")


def test_graph_edges_follow_the_rules(tmp_path):
    graph = _tree(tmp_path, {
        "__init__.py": "",
        "a/__init__.py": "from pps.a.base import X\n",
        "a/base.py": "X = 1\n",
        "a/sub.py": "from pps.a import base, X\nfrom . import other\n",
        "a/other.py": "def f():\n    import pps.b\n    from ..b.leaf import y\n",
        "b/__init__.py": "from pps import a\nfrom pps._native import lib\n",
        "b/leaf.py": "import os\nimport pps.a.base as base\ny = 2\n",
    })
    assert graph["pps.a"] == {"pps.a.base"}
    # a submodule named in `from pps.a import ...` is an edge to it; a name, to the package
    assert graph["pps.a.sub"] == {"pps.a.base", "pps.a", "pps.a.other"}
    # imports inside functions count; relative imports resolve against the package
    assert graph["pps.a.other"] == {"pps.b", "pps.b.leaf"}
    assert graph["pps.b"] == {"pps.a", "pps._native"}
    assert graph["pps.b.leaf"] == {"pps.a.base"}
    assert graph["pps._native"] == set()
    assert ig.cycles(graph) == []


def test_cycles_are_found_and_named(tmp_path):
    graph = _tree(tmp_path, {
        "__init__.py": "",
        "p/__init__.py": "from pps.p.m import thing\n",
        "p/m.py": "from pps.p import helper\nthing = 1\n",
        "x.py": "def f():\n    from pps import y\n",
        "y.py": "from pps.z import w\n",
        "z.py": "import pps.x\nw = 0\n",
        "alone.py": "import pps.alone\n",  # importing itself is no cycle
    })
    found = ig.cycles(graph)
    assert found == [["pps.p", "pps.p.m"], ["pps.x", "pps.y", "pps.z"]]
    text = ig.describe_cycle(found[1], graph)
    assert "pps.x -> pps.y" in text and "pps.z -> pps.x" in text


def test_the_graph_reads_every_module_it_lists():
    # Every module parses, and every module named as a target is one of the tree's own.
    graph = ig.build_graph(REPO / "pps")
    for module, targets in graph.items():
        assert targets <= graph.keys(), (module, targets - graph.keys())
    for path in (REPO / "pps").rglob("*.py"):
        ast.parse(path.read_text(encoding="utf-8"))


def test_worker_imports_nothing_heavy():
    code = "import pps.run.worker, sys, json; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, (f"importing pps.run.worker loads {', '.join(heavy)}; find the chain "
                       "with python3 -X importtime -c 'import pps.run.worker'")
