"""Reading a /metrics page the way Prometheus and its tools do, for the tests."""

from __future__ import annotations

import shutil
import subprocess
import typing

from prometheus_client import parser
from prometheus_client.openmetrics import parser as openmetrics_parser

if typing.TYPE_CHECKING:
    import aiohttp

OPENMETRICS: typing.Final = "application/openmetrics-text; version=1.0.0; charset=utf-8"

#: (name, sorted labels) -> value.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def promtool_problems(text: str) -> str:
    """What ``promtool check metrics`` says of a page (empty when it is clean)."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: bash tests/run.sh installs it"
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return (done.stdout + done.stderr).strip() if done.returncode else ""


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text page, through the official parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    """Scrape ``url`` in both formats; each must be valid (promtool on the text page, the
    OpenMetrics parser on the other) and say the same."""
    async with http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    assert promtool_problems(text) == ""
    async with http.get(url, headers={"Accept": OPENMETRICS}) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        open_text = await response.text()
    families = list(openmetrics_parser.text_string_to_metric_families(open_text))
    assert families, "the OpenMetrics page holds no family"
    samples = parse(text)
    assert any(name == "process_resident_memory_bytes" for name, _ in samples)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]
