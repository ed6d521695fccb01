"""The page in headless Chromium, with the whole platform run by ``python -m playground``.

Debian's ``chromium`` (``tests/run.sh`` installs it), driven by Playwright's Python package;
never a downloaded browser. Screenshots land in ``tests/artifacts/playground/``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import pathlib
import re
import selectors
import signal
import subprocess
import sys
import time
import typing
import urllib.request
import uuid

import aio_pika
import orjson
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.conftest import cleanup_broker

if typing.TYPE_CHECKING:
    import collections.abc

CHROMIUM: typing.Final = pathlib.Path("/usr/bin/chromium")
ARTIFACTS: typing.Final = pathlib.Path(__file__).parents[2] / "artifacts" / "playground"
#: As the machine's own probe starts it: headless, and nothing phoning home.
CHROMIUM_ARGS: typing.Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TIMEOUT_MS: typing.Final = 20_000


class Platform(typing.NamedTuple):
    url: str
    process: subprocess.Popen[bytes]
    log_dir: pathlib.Path


def read_address(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The page's address, from the line ``python -m playground`` prints once it serves."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        if selector.select(timeout=0.5):
            line = process.stdout.readline()
            seen += line
            found = re.search(rb"open (http://\S+?)/\s*$", line)
            if found:
                return found.group(1).decode()
        if process.poll() is not None:
            break
    raise AssertionError(f"python -m playground did not start: {seen.decode(errors='replace')}")


def wait_until_ready(url: str, timeout: float = 60.0) -> None:
    """Both shards connected, the slash commands synced, every process running."""
    deadline = time.monotonic() + timeout
    state: dict[str, typing.Any] = {"shards": "never answered", "processes": ""}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/playground/api/state", timeout=5) as response:
                state = orjson.loads(response.read())
        except OSError:  # busy starting four processes: a slow answer is asked again
            time.sleep(0.3)
            continue
        shards = [s for s in state["shards"] if s["connected"]]
        running = [p for p in state["processes"] if p["state"] == "running"]
        if len(shards) == 2 and state["commands"] and len(running) == 4:
            return
        time.sleep(0.3)
    raise AssertionError(f"the platform did not come up: {state['shards']} {state['processes']}")


@pytest.fixture(scope="module")
def platform(
    amqp_url: str, redis_url: str, mongo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> collections.abc.Iterator[Platform]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    log_dir = tmp_path_factory.mktemp("playground-logs")
    env = {
        **os.environ,
        "AMQP_URL": amqp_url,
        "REDIS_URL": redis_url,
        "MONGO_URL": mongo_url,
        "NAMESPACE": namespace,
        "LOG_LEVEL": "INFO",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "playground", "--port", "0", "--log-dir", str(log_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = read_address(process, timeout=30)
        wait_until_ready(url)
        yield Platform(url, process, log_dir)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        # Off this thread: Playwright's sync API keeps an event loop of its own here.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _cleanup(amqp_url, namespace)).result()


async def _cleanup(amqp_url: str, namespace: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    await cleanup_broker(connection, namespace)
    await connection.close()


@pytest.fixture(scope="module")
def browser() -> collections.abc.Iterator[typing.Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is needed: apt-get install chromium (tests/run.sh does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(
    browser: typing.Any, platform: Platform, request: pytest.FixtureRequest
) -> collections.abc.Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{platform.url}/")
    expect(page.locator("#guilds button[aria-current=true]")).to_have_text("# general")
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    context.close()


def bot_replies(page: Page) -> typing.Any:
    return page.locator("li.message[data-author=Shardline] .content")


def test_typing_bang_ping_shows_the_reply(page: Page) -> None:
    page.fill("#composer", "!ping")
    page.press("#composer", "Enter")
    expect(page.locator("li.message[data-author=alice] .content").last).to_have_text("!ping")
    expect(bot_replies(page).last).to_contain_text("Pong! Gateway")


def test_slash_ping_runs_from_the_slash_menu(page: Page) -> None:
    page.locator("#user").select_option(label="bob")
    page.fill("#composer", "/pi")
    menu = page.locator("#slash-menu")
    expect(menu).to_be_visible()
    menu.locator("[data-command=ping]").click()
    expect(page.locator("#command-chip")).to_have_text("/ping")
    before = bot_replies(page).count()
    page.press("#composer", "Enter")
    expect(bot_replies(page)).to_have_count(before + 1)
    expect(bot_replies(page).last).to_contain_text("Pong! Gateway")
    expect(page.locator("li.message[data-author=Shardline] .invoked").last).to_have_text(
        "↳ bob used /ping"
    )
    expect(page.locator("#status")).to_have_text("/ping: answered")


def test_a_forced_reconnect_shows_a_resume_in_the_side_panel(page: Page) -> None:
    resumes = page.locator("#events li[data-kind=resume]", has_text="RESUME shard 1: resumed")
    before = resumes.count()
    page.locator("#scenarios summary").click()
    page.locator("#fault-shard").select_option("1")
    page.get_by_role("button", name="Force RECONNECT (op 7)").click()
    expect(resumes).to_have_count(before + 1)
    expect(page.locator("#shards tr[data-shard='1'] td").last).to_have_text("connected")


def test_a_click_is_answered_by_the_asking_worker_after_it_stopped_taking_events(
    page: Page, platform: Platform
) -> None:
    """The asking replica gets SIGTERM (intake stopped, handlers drain), so the click can only
    reach the other replica, which hands it over; the asker answers, then exits."""
    page.fill("#composer", "!vote Lunch at noon?")
    page.press("#composer", "Enter")
    question = page.locator("li.message", has_text="Lunch at noon?").last
    expect(question.get_by_role("button", name="Yes")).to_be_visible()
    pid = re.search(r"worker pid (\d+)", question.inner_text())
    assert pid is not None
    asker = page.locator("#processes li", has_text=f"pid {pid.group(1)}")
    name = asker.get_attribute("data-process")
    asker.get_by_role("button", name="SIGTERM").click()
    expect(page.locator("#events li[data-kind=scenario]").first).to_contain_text(
        f"{name} (pid {pid.group(1)}) sent SIGTERM"
    )
    question.get_by_role("button", name="Yes").click()
    expect(bot_replies(page).last).to_contain_text(
        f"voted Yes (answered by worker pid {pid.group(1)})"
    )
    expect(page.locator("#events li[data-kind=process]").first).to_contain_text(
        f"{name} (pid {pid.group(1)}) exited with status 0"
    )
    # Back to two replicas for whatever runs next.
    page.locator(f"#processes li[data-process={name}]").get_by_role("button", name="start").click()
    expect(page.locator(f"#processes li[data-process={name}] small")).to_contain_text("pid")
