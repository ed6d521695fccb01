"""The dependency direction: shared is the leaf; gateway and worker never import each other;
commands and voice depend on worker.traits, never on the Bot that assembles them."""

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
#: Modules the Bot imports, which therefore must not import it back (see worker/traits.py).
BELOW_THE_BOT: tuple[pathlib.Path, ...] = (
    *sorted((ROOT / "worker" / "commands").rglob("*.py")),
    ROOT / "worker" / "voice.py",
)


def imported_top_levels(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def imported_modules(source: str, module: str) -> set[str]:
    """The dotted names every ``import`` and ``from`` in ``source`` (the text of ``module``,
    ``pkg.__init__`` for a package) names, relative ones resolved; those under
    ``if TYPE_CHECKING:`` too, since they close a cycle for the type checker."""
    package = module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*parts, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def names_the_bot(modules: set[str]) -> set[str]:
    return {name for name in modules if name == "worker.bot" or name.startswith("worker.bot.")}


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


@pytest.mark.parametrize("path", BELOW_THE_BOT, ids=lambda path: path.name)
def test_commands_and_voice_do_not_import_the_bot(path: pathlib.Path) -> None:
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    assert names_the_bot(imported_modules(path.read_text(), module)) == set()


@pytest.mark.parametrize(
    "line",
    [
        "import worker.bot",
        "from worker import bot as bot_module",
        "from worker.bot import Bot",
        "from .. import bot",
        "from ..bot import Bot",
        "if typing.TYPE_CHECKING:\n    from worker import bot",
    ],
)
def test_the_module_walker_sees_the_bot_imported(line: str) -> None:
    assert names_the_bot(imported_modules(line, "worker.commands.router"))


def test_the_module_walker_sees_traits_are_not_the_bot() -> None:
    assert not names_the_bot(imported_modules("from worker import traits", "worker.voice"))
