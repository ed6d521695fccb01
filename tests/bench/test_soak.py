"""A 60-second soak with a fixed seed, through the real command line: the same schedule every
time, judged by the checker from what the emulated Discord received."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest

if typing.TYPE_CHECKING:
    import pathlib

pytestmark = [pytest.mark.fault, pytest.mark.soak]

#: Its schedule (printed at the top of the output): poison, a worker kill -9 and a worker
#: SIGTERM, gateways scaled 2 -> 3 -> 2 twice with a gateway SIGTERM between, latency on the
#: broker link, overlapping.
SEED: typing.Final = 5
#: Every kind but the Redis and RabbitMQ ones and the gateway kill -9, whose open findings
#: (docs/soak.md, "Found and not fixed") would fail a suite run now and then; the long runs
#: play every kind.
FAULTS: typing.Final = (
    "worker-kill,worker-term,gateway-term,scale-gateways,storm,broker-latency,mongo-stop,poison"
)


@pytest.mark.timeout(400)
def test_a_one_minute_soak_loses_nothing(tmp_path: pathlib.Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "bench.soak", "--seconds", "60", "--seed", str(SEED),
            "--faults", FAULTS,
            "--workdir", str(tmp_path / "soak"), "--png", str(tmp_path / "soak.png"),
        ],
        capture_output=True,
        text=True,
        timeout=380,
        check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert last.startswith("soak: "), output
    assert last.endswith(" 0 lost, 0 twice, 0 late interactions, 0 identify violations, 0 429s"), (
        output
    )
    assert result.returncode == 0, output
    assert "fault " in result.stdout  # the nemesis played its schedule
    assert (tmp_path / "soak.png").exists()
