"""Every Lua script touches only keys it was given in ``KEYS`` (Redis Cluster routes a script
by its declared keys; a key built inside the script may live on another node).

Found by reading the sources: every ``register_script(NAME)`` and ``.eval(NAME`` of gateway/,
worker/ and shared/, and every ``redis.call`` in NAME's text, whose key must be ``KEYS[n]`` or
a local set only from ``KEYS[n]``. The dedupe script is the one documented exception
(``worker/dedupe.py``, ``shared/keys.py``): it builds ``stream:seq`` from a declared stream
of the same hash tag, which the cluster tests run (``test_dedupe_cluster.py``); and the cache
snapshot script, which takes its keys in one JSON argument on one server, and is not used on a
cluster (``shared/cache/snapshot.py`` reads with pipelines there).
"""

from __future__ import annotations

import importlib
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
_USE = re.compile(r"(?:register_script\(|\.eval\(\s*)(_[A-Z_]+)")
_CALL = re.compile(r"redis\.call\(\s*'(\w+)'\s*,\s*([^,)]+)")
_FROM_KEYS = re.compile(r"(?:local\s+)?(\w+)\s*=\s*KEYS\[\d+\]")
_ASSIGNED = re.compile(r"(?:local\s+)?(\w+(?:\s*,\s*\w+)*)\s*=(?!=)")
#: Commands whose first argument is not a key.
_KEYLESS = frozenset({"TIME", "PUBLISH", "INFO"})
#: (module, script) whose keys are built inside, on purpose, within a declared slot.
_EXCEPTIONS = frozenset({
    ("worker.dedupe", "_CLAIM_AND_MARK"),
    # Run on one server only; on a cluster the same reads go out as pipelines.
    ("shared.cache.snapshot", "_READ"),
})  # fmt: skip


def scripts() -> list[tuple[str, str, str]]:
    found = []
    for top in ("gateway", "worker", "shared"):
        for path in sorted((ROOT / top).rglob("*.py")):
            names = set(_USE.findall(path.read_text()))
            if not names:
                continue
            module_name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            module = importlib.import_module(module_name)
            found += [(module_name, name, getattr(module, name)) for name in sorted(names)]
    return found


def undeclared_keys(text: str) -> list[str]:
    """The key arguments of ``redis.call`` that are not ``KEYS[n]`` or a local set only from
    ``KEYS[n]`` (a local also set from anything else does not count)."""
    from_keys = set(_FROM_KEYS.findall(text))
    other = set()
    for line in text.splitlines():
        match = _ASSIGNED.search(line)
        if match and "KEYS[" not in line:
            other |= {n.strip() for n in match.group(1).split(",")}
    # A local first set to '' and then only to KEYS[n] (the limiter's "discovery") is a key
    # or nothing: what is not a key never reaches redis.call (the script checks for '').
    safe = from_keys - {n for n in other if not re.search(rf"{n}\s*=\s*''", text)}
    bad = []
    for command, raw in _CALL.findall(text):
        argument = raw.strip()
        if command.upper() in _KEYLESS or re.fullmatch(r"KEYS\[\d+\]", argument):
            continue
        if argument not in safe:
            bad.append(f"{command} {argument}")
    return bad


def test_the_scan_finds_the_scripts() -> None:
    found = {(module, name) for module, name, _ in scripts()}
    assert ("worker.rest_limits.limit_state", "_RESERVE") in found
    assert ("gateway.sessions", "_CHECKPOINT") in found
    assert len(found) >= 20


def test_cluster_every_script_touches_only_keys_it_declared() -> None:
    bad = {
        f"{module}.{name}": undeclared
        for module, name, text in scripts()
        if (module, name) not in _EXCEPTIONS and (undeclared := undeclared_keys(text))
    }
    assert bad == {}


def test_the_check_sees_a_key_built_inside_a_script() -> None:
    built = "local state = ARGV[7] .. bucket\nredis.call('HGET', state, 'x')"
    assert undeclared_keys(built) == ["HGET state"]
    assert undeclared_keys("redis.call('GET', ARGV[1] .. 'x')") == ["GET ARGV[1] .. 'x'"]
    assert undeclared_keys("local k = KEYS[2]\nredis.call('DEL', k)") == []
