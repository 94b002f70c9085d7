"""The dependency rule between the packages, read from the source's import statements."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nilemetrics"

#: Package → the packages it must never import (DESIGN.md "Layout", README "Layout").
FORBIDDEN = {
    "server": {"cli", "tui", "demo"},
    "tui": {"server", "cli", "demo"},
    "demo": {"cli", "tui"},
    "": {"server", "tui", "cli", "demo"},  # the shared modules beside the packages
}


def _imported(path: Path) -> set[str]:
    """The nilemetrics subpackages a module imports (at module level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "nilemetrics" and len(parts) > 1:
                found.add(parts[1])
    return found


def _modules(package: str) -> list[Path]:
    if package:
        return sorted((PACKAGE / package).rglob("*.py"))
    # __main__ is the entry point: it starts the CLI.
    return sorted(p for p in PACKAGE.glob("*.py") if p.name != "__main__.py")


@pytest.mark.parametrize("package", sorted(FORBIDDEN), ids=lambda p: p or "shared")
def test_package_imports_only_what_the_layout_allows(package: str) -> None:
    """No module of a package imports a package the layout forbids it (e.g. server → cli)."""
    modules = _modules(package)
    assert modules, f"no modules found for {package!r}"
    broken = {
        str(path.relative_to(PACKAGE)): sorted(_imported(path) & FORBIDDEN[package])
        for path in modules
        if _imported(path) & FORBIDDEN[package]
    }
    assert broken == {}
