"""Whether pyproject.toml and the lock files agree.

``python requirements/check.py`` exits 1, naming each disagreement, when a dependency of
pyproject.toml has no pin in a lock, a pin falls outside its range, a lock holds a pin without
hashes, the two locks pin one package differently, or pyproject's dependency tables changed
since the locks were resolved (their recorded digest). ``python requirements/check.py digest``
prints that digest (requirements/update.sh records it).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DIGEST_LINE = "# pyproject-dependencies-sha256: "
# What each lock must satisfy: the runtime lock the services' dependencies, the dev lock
# those plus the extras tests/run.sh installs (and the build backend).
LOCK_EXTRAS: dict[str, tuple[str, ...] | None] = {
    "runtime.lock": (),
    "build.lock": None,  # the build backend only
    "dev.lock": ("test", "bench"),
}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def dependency_tables(pyproject: Path) -> dict[str, object]:
    """The parts of pyproject.toml a resolution depends on."""
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    return {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "build-system": data.get("build-system", {}).get("requires", []),
    }


def digest(pyproject: Path) -> str:
    canonical = json.dumps(dependency_tables(pyproject), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def read_lock(path: Path) -> tuple[str | None, dict[str, str], list[str]]:
    """The lock's recorded digest, its pins by canonical name, and pins without a hash."""
    recorded = None
    pins: dict[str, str] = {}
    unhashed: list[str] = []
    # A requirement spans its continuation lines ("\" then "--hash=..." lines).
    entries: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith(DIGEST_LINE):
            recorded = line.removeprefix(DIGEST_LINE).strip()
        elif line and not line.startswith("#"):
            if line[0].isspace() and entries:
                entries[-1] += line
            else:
                entries.append(line)
    for entry in entries:
        match = _PIN.match(entry)
        if match is None:
            continue
        name = canonicalize_name(match.group(1))
        pins[name] = match.group(2)
        if "--hash=sha256:" not in entry:
            unhashed.append(name)
    return recorded, pins, unhashed


def wanted_by(tables: dict[str, object], extras: tuple[str, ...] | None) -> list[str]:
    """The requirements a lock must satisfy (``None``: the build backend's alone)."""
    build = tables["build-system"]
    assert isinstance(build, list)
    if extras is None:
        return list(build)
    wanted = tables["dependencies"]
    optional = tables["optional-dependencies"]
    assert isinstance(wanted, list)
    assert isinstance(optional, dict)
    wanted = list(wanted)
    for extra in extras:
        wanted += optional.get(extra, [])
    return wanted + list(build) if extras else wanted


def problems(root: Path = ROOT) -> list[str]:
    pyproject = root / "pyproject.toml"
    tables = dependency_tables(pyproject)
    expected = digest(pyproject)
    found: list[str] = []
    locks: dict[str, dict[str, str]] = {}
    for lock_name, extras in LOCK_EXTRAS.items():
        path = root / "requirements" / lock_name
        if not path.exists():
            found.append(f"requirements/{lock_name} is missing")
            continue
        recorded, pins, unhashed = read_lock(path)
        locks[lock_name] = pins
        if recorded != expected:
            found.append(
                f"requirements/{lock_name} was resolved from other pyproject.toml dependencies "
                "(run: bash requirements/update.sh)"
            )
        found.extend(f"requirements/{lock_name}: {name} has no hash" for name in unhashed)
        wanted = wanted_by(tables, extras)
        for text in wanted:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            version = pins.get(name)
            if version is None:
                found.append(f"requirements/{lock_name}: {requirement.name} is not locked")
            elif not requirement.specifier.contains(version, prereleases=True):
                found.append(
                    f"requirements/{lock_name}: {requirement.name}=={version} is outside "
                    f"pyproject.toml's {requirement.specifier}"
                )
    dev = locks.get("dev.lock", {})
    for lock_name, pins in locks.items():
        found.extend(
            f"the locks disagree on {name}: {version} ({lock_name}) and {dev[name]} (dev.lock)"
            for name, version in sorted(pins.items())
            if name in dev and dev[name] != version
        )
    return found


def main(argv: list[str]) -> int:
    if argv[1:] == ["digest"]:
        print(digest(ROOT / "pyproject.toml"))
        return 0
    found = problems()
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
