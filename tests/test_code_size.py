"""Small modules and functions (the architecture rule): no module of ``llmrec/`` over 400 lines and no
function over 60 lines of code (its docstring not counted), unless a reason is written beside it — a
``# size: <reason>`` comment in the module's first 40 lines, a ``# long: <reason>`` comment on the
``def`` line or the line above it."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "llmrec"
MAX_MODULE, MAX_FUNCTION = 400, 60


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0]
    doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    start = first.end_lineno + 1 if doc and len(node.body) > 1 else node.body[0].lineno
    return node.end_lineno - start + 1


def oversize(root: Path = PKG) -> list[str]:
    """``path: why`` for each module or function over its limit without a written reason."""
    out = []
    for p in sorted(root.rglob("*.py")):
        text = p.read_text(encoding="utf-8")
        lines = text.split("\n")
        rel = p.relative_to(root.parent)
        if text.count("\n") > MAX_MODULE and not any("# size:" in line for line in lines[:40]):
            out.append(f"{rel}: {text.count(chr(10))} lines (over {MAX_MODULE}; split it or write `# size: why`)")
        for node in ast.walk(ast.parse(text, str(p))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > MAX_FUNCTION:
                near = lines[node.lineno - 2:node.lineno]
                if not any("# long:" in line for line in near):
                    out.append(f"{rel}:{node.lineno} {node.name}: {_body_lines(node)} lines (over {MAX_FUNCTION})")
    return out


def test_modules_and_functions_are_small():
    assert oversize() == []


def test_a_long_function_and_module_are_found(tmp_path):
    pkg = tmp_path / "llmrec"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(70))
    (pkg / "a.py").write_text(f'def f():\n    """Doc."""\n{body}\n\n\n# long: a reason\ndef g():\n{body}\n')
    (pkg / "b.py").write_text("x = 1\n" * 401)
    found = oversize(pkg)
    assert len(found) == 2 and found[0].startswith("llmrec/a.py:1 f: 70 lines") and found[1].startswith("llmrec/b.py")
