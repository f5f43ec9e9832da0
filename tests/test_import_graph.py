"""The package's import graph (read from the source with ``ast``, every import, lazy ones included):
no cycle between modules, and no import that runs upward through the stages of the data flow."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "llmrec"

# Lowest first; a module may import its own layer and those below it, never above. Entry points
# (``__main__`` modules) are exempt: they sit on top of everything.
LAYERS = [
    {"errors", "config", "metrics", "text_safety"},
    {"data"},
    {"store", "encoders"},
    {"ingest", "retrieval", "llm", "rank", "projector", "prepare"},
    {"recommender"},
    {"agent"},
    {"eval", "serve"},
    {"cli"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _resolve(name: str, mods: dict) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the llmrec modules it imports (``from pkg import submodule`` counts the submodule)."""
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
                    base = ".".join(pkg[:len(pkg) - node.level + 1] + ([node.module] if node.module else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for n in names:
                t = _resolve(n, mods) if n.startswith("llmrec") else None
                if t and t != m:
                    edges[m].add(t)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package's __init__: re-exports only
    for n, layer in enumerate(LAYERS):
        if parts[1] in layer:
            return n
    raise AssertionError(f"{module} is in no layer of tests/test_import_graph.py: add its stage to LAYERS")


def test_the_graph_is_read():
    edges = import_graph()
    assert "llmrec.store.items" in edges["llmrec.ingest.run"] or "llmrec.store" in edges["llmrec.ingest.run"]
    assert "llmrec.metrics" in edges["llmrec.eval.report"]
    assert edges["llmrec.eval.runner"] >= {"llmrec.eval.systems", "llmrec.eval.llm_systems"}  # lazy imports count


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_a_cycle_is_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_upward_imports():
    upward = []
    for m, targets in import_graph().items():
        if m.endswith("__main__") or _layer(m) is None:
            continue
        upward += [f"{m} -> {t}" for t in sorted(targets) if (_layer(t) or 0) > _layer(m)]
    assert upward == []


def test_every_package_is_installed():
    """pyproject.toml lists the packages explicitly: a new stage folder missing there would import from a
    checkout (an editable install) but not from a built wheel."""
    import tomllib

    listed = set(tomllib.loads((PKG.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(PKG.parent).parts) for p in PKG.rglob("__init__.py")}
    assert found - listed == set()
