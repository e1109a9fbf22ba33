"""The package's shape: one subpackage per workflow stage, imports only from earlier stages, no cycles.

Read from the source (every `import`, at module level or inside a function), so a
function-level import cannot hide a cycle or a reach into a later stage.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tiledup"
# Workflow order. A stage may import its own modules, earlier stages and the base.
STAGES = ("run", "tiles", "pairs", "model", "scoring", "discovery", "evaluate", "report")
BASE = ("grid", "dup_truth", "__init__")  # the seed's vocabulary: tile grid, overlap tags, dup_truth lines


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """tiledup modules imported anywhere in the file (package imports resolved to the module when one)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("tiledup")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("tiledup"):
                continue
            for a in node.names:  # `from tiledup.run import io` imports the module tiledup.run.io
                sub = f"{base}.{a.name}"
                out.add(sub if (SRC.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                        or (SRC.parent / sub.replace(".", "/") / "__init__.py").exists() else base)
    return out


GRAPH = {module_name(p): imports(p) for p in sorted(SRC.rglob("*.py"))}


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_is_in_a_stage_or_the_base():
    allowed = {*STAGES, *BASE, "cli", "demo"}
    assert {stage(m) for m in GRAPH} <= allowed, sorted({stage(m) for m in GRAPH} - allowed)


def test_no_import_cycle():
    state: dict[str, int] = {}
    cycles = []

    def visit(m, path):
        state[m] = 1
        for n in sorted(GRAPH.get(m, ())):
            if n not in GRAPH or n == m or m.startswith(n + "."):  # a module importing its own package
                continue
            if state.get(n) == 1:
                cycles.append(path[path.index(n):] + [n] if n in path else path + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in GRAPH:
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_only_earlier_stages(module):
    here = stage(module)
    for target in GRAPH[module]:
        there = stage(target)
        assert there != "cli", f"{module} imports the command line"
        if here == "cli" or there in BASE or there == here:
            continue
        assert there != "report", f"{module} imports the report (only the command line may)"
        if here in BASE or here == "demo":
            assert there == "run", f"{module} ({here}) may import only tiledup.run, imports {target}"
            continue
        assert there in STAGES, f"{module} imports {target}"
        assert STAGES.index(there) < STAGES.index(here), f"{module} ({here}) imports {target}, a later stage"


def test_the_graph_is_read():
    """The parser sees the imports it must (a check that cannot pass on an empty graph)."""
    assert "tiledup.run.errors" in GRAPH["tiledup.cli"]
    assert "tiledup.scoring.overlaps" in GRAPH["tiledup.discovery.verify"]
