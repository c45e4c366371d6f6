"""The import graph of pps/: its cycles (there should be none) and what each stage imports.

Every module under pps/ is parsed with `ast`, not imported, so imports inside functions
count as much as those at the top. An edge goes from a module to each pps module it imports:

- `import pps.x` or `from pps import x` where pps/x/ is a package: to pps.x (its __init__.py);
- `from pps.x import y` where pps/x/y.py (or pps/x/y/) exists: to pps.x.y; otherwise y is a
  name defined in pps.x, and the edge goes to pps.x;
- relative imports (`from . import y`, `from ..x import y`) the same, resolved against the
  importing module's package.

Parent packages a dotted import runs implicitly (`import pps.x.y` runs pps/x/__init__.py
first) are not edges: they would put every package's __init__ in a cycle with the
submodules it names, which Python handles (the submodule is loaded by then).

A cycle is a strongly connected component of more than one module. Stages are the
subpackages of pps named after the data flow in DESIGN.md (config, host, lab, plan, run,
counters, results, experiments, report, cli); pps's top-level modules (native, errors) are
shown on their own.

Run from the repository:  python3 bench/import_graph.py [--modules]
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = "pps"
# Modules with no Python source: the C core (csrc/, built by cffi). Leaves of the graph.
EXTENSIONS = ("pps._native",)

Graph = dict[str, set[str]]


def find_modules(package_dir: Path, name: str = ROOT,
                 extensions: Iterable[str] = EXTENSIONS) -> dict[str, Path | None]:
    """Dotted module name -> file, for every .py file under package_dir (a package is its
    __init__.py, under the package's own name), and None for each extension module."""
    out: dict[str, Path | None] = dict.fromkeys(extensions)
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join([name, *parts])] = path
    return out


def _is_package(module: str, modules: Mapping[str, Path | None]) -> bool:
    path = modules[module]
    return path is not None and path.name == "__init__.py"


def _existing(dotted: str, modules: Mapping[str, Path | None]) -> str | None:
    """The longest prefix of `dotted` that is a module of the tree (None: not ours)."""
    parts = dotted.split(".")
    while parts:
        name = ".".join(parts)
        if name in modules:
            return name
        parts.pop()
    return None


def _relative_base(module: str, level: int, modules: Mapping[str, Path | None]) -> str:
    """The package a `from .{level}` import in `module` starts from."""
    package = module if _is_package(module, modules) else module.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return package


def imports_of(module: str, tree: ast.AST, modules: Mapping[str, Path | None]) -> set[str]:
    """The modules of the tree that `module` (parsed as `tree`) imports, anywhere in it."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _existing(alias.name, modules)
                if target:
                    out.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _relative_base(module, node.level, modules)
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            if source != ROOT and not source.startswith(ROOT + "."):
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in modules:  # a submodule: the edge goes to it
                    out.add(sub)
                else:  # a name defined in the module (or `*`)
                    target = _existing(source, modules)
                    if target:
                        out.add(target)
    out.discard(module)
    return out


def build_graph(package_dir: Path = REPO / ROOT, name: str = ROOT) -> Graph:
    """module -> the modules it imports, for every module under package_dir."""
    modules = find_modules(package_dir, name)
    graph: Graph = {}
    for module, path in modules.items():
        if path is None:  # an extension module: imports nothing of ours
            graph[module] = set()
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[module] = imports_of(module, tree, modules)
    return graph


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterable[str]]] = []
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        work.append((start, iter(sorted(graph.get(start, ())))))
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, ())))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module, sorted."""
    return sorted(c for c in strongly_connected(graph) if len(c) > 1)


def describe_cycle(component: list[str], graph: Mapping[str, Iterable[str]]) -> str:
    """A component's modules on one line, then its edges inside itself, one a line."""
    members = set(component)
    edges = [f"    {m} -> {t}" for m in component for t in sorted(graph[m]) if t in members]
    return "\n".join([f"{len(component)} modules: {', '.join(component)}", *edges])


def stage_of(module: str) -> str:
    """pps.run.worker -> run; pps.native -> native; pps (its __init__) -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def stage_edges(graph: Mapping[str, Iterable[str]]) -> dict[str, dict[str, set[tuple[str, str]]]]:
    """stage -> stage it imports -> the (module, module) edges that do it."""
    out: dict[str, dict[str, set[tuple[str, str]]]] = {}
    for module, targets in graph.items():
        src = stage_of(module)
        out.setdefault(src, {})
        for target in targets:
            dst = stage_of(target)
            if dst != src:
                out[src].setdefault(dst, set()).add((module, target))
    return out


def report(graph: Graph, show_modules: bool = False) -> str:
    lines = []
    found = cycles(graph)
    lines.append(f"{len(graph)} modules, {sum(len(t) for t in graph.values())} imports")
    if found:
        lines.append(f"import cycles: {len(found)}")
        lines.extend(f"  {describe_cycle(c, graph)}" for c in found)
    else:
        lines.append("import cycles: none")
    stages = stage_edges(graph)
    stage_cycles = cycles({s: set(d) for s, d in stages.items()})
    lines.append("")
    lines.append("stage imports (stage -> the stages it imports, with how many module imports):")
    width = max(len(s) for s in stages)
    for stage in sorted(stages):
        deps = stages[stage]
        listed = "  ".join(f"{d}({len(deps[d])})" for d in sorted(deps)) or "-"
        lines.append(f"  {stage:<{width}} -> {listed}")
        if show_modules:
            for dst in sorted(deps):
                for src_mod, dst_mod in sorted(deps[dst]):
                    lines.append(f"  {'':<{width}}      {src_mod} -> {dst_mod}")
    if stage_cycles:
        lines.append("")
        lines.append("stages that import each other (not module cycles; --modules shows "
                     "which imports):")
        lines.extend(f"  {', '.join(c)}" for c in stage_cycles)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modules", action="store_true",
                    help="under each stage, list the module imports behind its arrows")
    args = ap.parse_args(argv)
    graph = build_graph()
    print(report(graph, args.modules))
    return 1 if cycles(graph) else 0


if __name__ == "__main__":
    sys.exit(main())
