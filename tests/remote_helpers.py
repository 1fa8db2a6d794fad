"""Real `evix worker --listen` services on loopback for tests: started, their port read from
their log, their log kept, and stopped (their evaluators die with them) at the end."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil

from evix_helpers import command, evix_env, wait_until

TOKEN = "test-token-0123456789"


class Service:
    """One running `evix worker` process; `log` holds its stderr so far."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, prefix: list[str] | None = None) -> None:
        self.process = subprocess.Popen([*(prefix or []), *command("evix"), "worker", *args], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, env=evix_env(extra=env), start_new_session=True)
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.endpoint = wait_until(self._listening, "the worker service to listen", timeout=60)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            self._lines.append(raw.decode("utf-8", "replace"))

    @property
    def log(self) -> str:
        return "".join(self._lines)

    def _listening(self) -> str | None:
        assert self.process.poll() is None, f"the worker service exited: {self.log}"
        found = re.search(r"listening on (\S+)", self.log)
        return found.group(1) if found else None

    def descendants(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.process.pid).children(recursive=True)
        return []

    def kill(self) -> None:
        """SIGKILL to the service alone: its evaluators die with it (they are bound to its life)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the service and nothing else of ours
        self.process.wait(timeout=30)
        self._reader.join(timeout=5)


@contextlib.contextmanager
def services(*arg_lists: list[str], env: dict[str, str] | None = None,
             prefix: list[str] | None = None) -> Iterator[list[Service]]:
    """Services started with these arguments (each after `evix worker`), stopped at the end."""
    started: list[Service] = []
    try:
        for args in arg_lists:
            started.append(Service(args, env=env, prefix=prefix))
        yield started
    finally:
        for service in started:
            service.stop()


def listen_args(token: str | None = TOKEN, *extra: str, cache: Path | None = None) -> list[str]:
    args = ["--listen", "127.0.0.1:0", "-v", *(["--token", token] if token else ["--insecure-no-token"]), *extra]
    return args + (["--source-cache", str(cache)] if cache else [])


def remote_env(token: str = TOKEN) -> dict[str, str]:
    return {"EVIX_REMOTE_TOKEN": token}
