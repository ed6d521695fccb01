"""The lock files and pyproject.toml agree, and the check notices when they stop agreeing."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys
import typing

import pytest

ROOT: typing.Final = pathlib.Path(__file__).resolve().parents[2]
CHECK: typing.Final = ROOT / "requirements" / "check.py"


def check(root: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "requirements" / "check.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def copy(tmp_path: pathlib.Path) -> pathlib.Path:
    """pyproject.toml and the locks, in a tree of their own to spoil."""
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    return tmp_path


def test_the_locks_agree_with_pyproject() -> None:
    done = check(ROOT)
    assert done.returncode == 0, done.stderr


def test_a_changed_range_is_reported_until_the_locks_are_resolved_again(
    copy: pathlib.Path,
) -> None:
    pyproject = copy / "pyproject.toml"
    text = pyproject.read_text()
    assert '"orjson>=3.13,<4"' in text
    pyproject.write_text(text.replace('"orjson>=3.13,<4"', '"orjson>=4"'))
    done = check(copy)
    assert done.returncode == 1
    assert "resolved from other pyproject.toml dependencies" in done.stderr
    assert re.search(r"runtime\.lock: orjson==\S+ is outside pyproject.toml's >=4", done.stderr)


def test_a_new_dependency_without_a_pin_is_reported(copy: pathlib.Path) -> None:
    pyproject = copy / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('"pytest>=9.2,<10",', '"pytest>=9.2,<10", "tomli-w",'))
    done = check(copy)
    assert done.returncode == 1
    assert "dev.lock: tomli-w is not locked" in done.stderr
    assert "runtime.lock: tomli-w" not in done.stderr  # a test extra is not the image's


def test_a_pin_without_hashes_or_two_locks_disagreeing_is_reported(copy: pathlib.Path) -> None:
    runtime = copy / "requirements" / "runtime.lock"
    text = runtime.read_text()
    pin = re.search(r"^orjson==(\S+) \\\n((?:    --hash=\S+(?: \\)?\n)+)", text, re.MULTILINE)
    assert pin is not None
    runtime.write_text(text.replace(pin.group(0), "orjson==3.999.0\n"))
    done = check(copy)
    assert done.returncode == 1
    assert "runtime.lock: orjson has no hash" in done.stderr
    assert f"the locks disagree on orjson: 3.999.0 (runtime.lock) and {pin.group(1)}" in done.stderr


def test_every_installer_takes_the_locks_with_hashes() -> None:
    run_sh = (ROOT / "tests" / "run.sh").read_text()
    assert "--require-hashes \\\n    -r requirements/dev.lock" in run_sh
    assert "--no-deps \\\n      --no-build-isolation -e ." in run_sh
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements/build.lock" in dockerfile
    assert "pip install --require-hashes -r /tmp/runtime.lock" in dockerfile
    assert "pip wheel --no-deps --no-build-isolation" in dockerfile
    assert "pip install --no-deps /wheels/*.whl" in dockerfile
    # Nothing else installs a range: every pip line reads a lock or names no requirement.
    for line in (run_sh + dockerfile).splitlines():
        if "pip install" in line and "-r" not in line:
            assert "--no-deps" in line or line.rstrip().endswith("\\"), line
