"""The platform's processes when the playground runs it natively: gateways and workers.

Each is a real ``python -m gateway`` / ``python -m worker`` against the playground (its
``PLAYGROUND_URL``), so what the page shows is what the platform does. The page can stop one
gracefully (SIGTERM: shards handed over, in-flight handlers drained), kill one (SIGKILL) and
start it again, to watch hand-off happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import time
import typing

__all__: typing.Sequence[str] = ("ACTIONS", "Process", "StartError", "Supervisor")

#: What the page (and tests) may ask of a process.
ACTIONS: typing.Final = ("stop", "kill", "start")
#: A worker drains in-flight handlers for up to 30 s on SIGTERM; a gateway hands over quicker.
STOP_TIMEOUT: typing.Final[float] = 40.0


class StartError(RuntimeError):
    """The platform could not start (``sync-commands`` failed); the message names its log."""


@dataclasses.dataclass(slots=True)
class Process:
    name: str
    role: str
    """``gateway`` or ``worker``."""
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    log: pathlib.Path | None = None

    def view(self) -> dict[str, typing.Any]:
        state = "stopped"
        code = None
        if self.popen is not None:
            code = self.popen.poll()
            state = "running" if code is None else "exited"
        return {
            "name": self.name,
            "role": self.role,
            "pid": self.popen.pid if self.popen is not None else None,
            "state": state,
            "exit_code": code,
            "started_at": self.started_at,
        }


class Supervisor:
    """Starts ``gateways`` gateways and ``workers`` workers with ``env``, logs in ``log_dir``."""

    def __init__(
        self,
        env: typing.Mapping[str, str],
        *,
        gateways: int,
        workers: int,
        log_dir: pathlib.Path,
    ) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.processes = [Process(f"gateway-{i + 1}", "gateway") for i in range(gateways)] + [
            Process(f"worker-{i + 1}", "worker") for i in range(workers)
        ]
        #: Told a line of text whenever a process starts, stops or exits.
        self.listeners: list[typing.Callable[[str], None]] = []
        self._watcher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        await self.sync_commands()
        for process in self.processes:
            self._spawn(process)
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await asyncio.gather(*(self._stop(p, signal.SIGTERM) for p in self.processes))

    async def sync_commands(self) -> None:
        """``python -m worker sync-commands``: the slash menu shows what the plugins declare."""
        log = self.log_dir / "sync-commands.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "worker", "sync-commands",
                env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                code = await asyncio.wait_for(process.wait(), 120)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise StartError(f"sync-commands did not finish in 120 s; see {log}") from None
            except asyncio.CancelledError:  # the playground stops while commands sync
                process.kill()
                await process.wait()
                raise
        if code != 0:
            raise StartError(f"sync-commands failed (exit {code}); see {log}")
        self._tell("slash commands synced (python -m worker sync-commands)")

    def snapshot(self) -> list[dict[str, typing.Any]]:
        return [process.view() for process in self.processes]

    async def act(self, action: str, name: str) -> str:
        """``stop`` (SIGTERM), ``kill`` (SIGKILL) or ``start`` the process called ``name``."""
        if action not in ACTIONS:
            raise LookupError(f"unknown scenario {action!r}")
        process = next((p for p in self.processes if p.name == name), None)
        if process is None:
            raise LookupError(f"no process called {name!r}")
        running = process.popen is not None and process.popen.poll() is None
        if action == "start":
            if running:
                raise LookupError(f"{name} is already running")
            self._spawn(process)
            return f"{name} started"
        if not running:
            raise LookupError(f"{name} is not running")
        assert process.popen is not None
        pid = process.popen.pid
        if action == "kill":
            process.popen.send_signal(signal.SIGKILL)
            return f"{name} (pid {pid}) killed with SIGKILL"
        process.popen.send_signal(signal.SIGTERM)
        return f"{name} (pid {pid}) sent SIGTERM: it drains, then exits"

    def _spawn(self, process: Process) -> None:
        process.log = self.log_dir / f"{process.name}.log"
        with process.log.open("ab") as out:
            process.popen = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", process.role],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal reaches the playground only
            )
        process.started_at = time.time()
        self._tell(f"{process.name} started (pid {process.popen.pid})")

    async def _stop(self, process: Process, sig: int) -> None:
        popen = process.popen
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(sig)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, popen.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            popen.kill()
            await loop.run_in_executor(None, popen.wait)

    async def _watch(self) -> None:
        """Report exits (the page's process list follows them)."""
        reported: set[int] = set()
        while True:
            for process in self.processes:
                popen = process.popen
                if popen is None or popen.pid in reported:
                    continue
                code = popen.poll()
                if code is not None:
                    reported.add(popen.pid)
                    how = f"signal {-code}" if code < 0 else f"status {code}"
                    self._tell(f"{process.name} (pid {popen.pid}) exited with {how}")
            await asyncio.sleep(0.2)

    def _tell(self, text: str) -> None:
        for listener in self.listeners:
            listener(text)


def child_env(base: typing.Mapping[str, str], playground_url: str, plugins: str) -> dict[str, str]:
    """The environment of a gateway or worker the playground runs: no token, its URL."""
    env = {k: v for k, v in base.items() if k not in _DISCORD_VARIABLES}
    env.update(
        {
            "PLAYGROUND_URL": playground_url,
            "WORKER_PLUGINS": plugins,
            "HEALTH_PORT": "0",
            "LOG_FORMAT": env.get("LOG_FORMAT", "text"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    # The children import the project the playground was started from.
    root = str(pathlib.Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


_DISCORD_VARIABLES: typing.Final = frozenset(
    {"DISCORD_TOKEN", "DISCORD_TOKEN_FILE", "DISCORD_API_URL", "LAVALINK_URL", "LAVALINK_PASSWORD"}
)
