"""A running `evix watch` for tests: its stdout read as it comes, its diffs waited for
(always within a time bound), and its end checked (Ctrl-C: exit 130, no worker left)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from evix_helpers import start_evix, wait_until
from process_watch import evaluators, new_tag, tagged


def path_input_flake(root: Path, dep: Path, word: str) -> None:
    """A flake at `root` with two path inputs: `dep` (absolute: locked by its hash; its
    `word` is `word`) and `./sub` (relative); `hydraJobs.hello` is named after both words."""
    dep.mkdir(exist_ok=True)
    (dep / "flake.nix").write_text('{ outputs = { self }: { word = "%s"; }; }\n' % word)
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "sub" / "flake.nix").write_text('{ outputs = { self }: { word = "s1"; }; }\n')
    (root / "flake.nix").write_text("""{
  inputs.dep.url = "path:%s";
  inputs.sub.url = "path:./sub";
  outputs = { self, dep, sub }: { hydraJobs.hello = derivation {
    name = "hello-${dep.word}-${sub.word}"; system = "x86_64-linux"; builder = "/bin/sh"; }; };
}
""" % dep)


def inotify_watches(pid: int) -> int:
    """The inotify watches process `pid` holds, as the kernel lists them (one per directory)."""
    count = 0
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            count += sum(line.startswith("inotify wd:") for line in info.read_text().splitlines())
        except OSError:
            continue
    return count


def diff_of(line: dict[str, Any]) -> bool:
    return set(line) == {"added", "removed", "changed", "errors"}


class Watching:
    """`evix watch ARGS` started in `cwd`, tagged so that its workers can be found."""

    def __init__(self, *args: str, cwd: Path, socket_path: Path | None = None) -> None:
        self.tag = new_tag()
        self.proc = start_evix("watch", *args, cwd=cwd, socket_path=socket_path, env=tagged(self.tag, {}),
                               stderr=subprocess.PIPE)
        self.lines: list[dict[str, Any]] = []
        self.stderr = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._errors = threading.Thread(target=self._read_stderr, daemon=True)
        self._errors.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(json.loads(raw))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    @property
    def diffs(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if diff_of(line)]

    @property
    def events(self) -> list[dict[str, Any]]:
        """The first evaluation's events (what comes before the first diff)."""
        out = []
        for line in self.lines:
            if diff_of(line):
                break
            out.append(line)
        return out

    def wait_events(self, attrs: set[str], timeout: float = 60) -> None:
        """Until the first evaluation has printed a derivation for each of `attrs`."""
        wait_until(lambda: attrs <= {e["attr"] for e in self.events if "drvPath" in e},
                   f"the first evaluation's events for {sorted(attrs)}", timeout)

    def wait_diffs(self, n: int, timeout: float = 60) -> list[dict[str, Any]]:
        """Until `n` diffs have been printed (failing at once if the watch ends); returns them."""
        def enough() -> bool:
            code = self.proc.poll()
            assert code is None, f"evix watch ended with {code}: {self.stderr.decode(errors='replace')}"
            return len(self.diffs) >= n

        wait_until(enough, f"{n} diff(s) from evix watch", timeout)
        return self.diffs[:n]

    def stop(self) -> int:
        """Ctrl-C; returns the exit status once it ended, checking that no worker is left."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self._reader.join(timeout=10)
        self._errors.join(timeout=10)
        wait_until(lambda: not evaluators(self.tag), "the watch's workers to be gone", timeout=10)
        return code

    def __enter__(self) -> Watching:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
