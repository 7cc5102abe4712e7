"""The layout's rules that no linter checks: short product functions (docs/architecture.md)."""

from __future__ import annotations

import ast

from tests.conftest import REPO

PACKAGES = ("edge_runtime", "lsp_server", "export", "oss_edge")
MAX_FUNCTION_LINES = 60


def test_no_product_function_is_longer_than_sixty_lines() -> None:
    long = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these functions:\n" + "\n".join(long)
