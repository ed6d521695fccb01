"""The dependency direction: shared is the leaf; gateway and worker never import each other."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FORBIDDEN: dict[str, set[str]] = {
    "shared": {"gateway", "worker", "playground", "tests", "bench"},
    "gateway": {"worker", "playground", "tests", "bench"},
    "worker": {"gateway", "playground", "tests", "bench"},
}


def imported_top_levels(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_direction(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & FORBIDDEN[package])
        for path in files
        if imported_top_levels(path) & FORBIDDEN[package]
    }
    assert offenders == {}


def test_the_walker_sees_imports() -> None:
    sample = ROOT / "tests" / "test_imports.py"
    assert {"ast", "pathlib", "pytest"} <= imported_top_levels(sample)
