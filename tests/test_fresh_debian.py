"""Both README commands in a brand-new minimal Debian 12 root (issue 13), through
scripts/check-fresh-debian --quick: debootstrap minbase with git, python3, python3-venv, a git
clone of this checkout's HEAD, then `scripts/dev example` and `scripts/dev test` (a few quick
tests) inside a chroot, reusing this machine's Nix build. Where it cannot run (not root, no
debootstrap, no finished Nix build, no mirror) it fails with the script's own reason, unless
EVIX_TESTS_ALLOW_SKIP=1 (evix_helpers.cannot_run_here)."""

from __future__ import annotations

import subprocess

from evix_helpers import REPO, cannot_run_here

SCRIPT = REPO / "scripts" / "check-fresh-debian"
CANNOT_RUN = 3
TIMEOUT = 3600  # seconds: the first run debootstraps and fetches every package


def test_readme_commands_work_in_a_fresh_debian_root() -> None:
    check = subprocess.run([str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60)
    if check.returncode == CANNOT_RUN:
        cannot_run_here(check.stderr.strip())
    assert check.returncode == 0, check.stderr
    proc = subprocess.run([str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "both README commands passed in a fresh Debian 12 root" in proc.stderr
    derivations = next(line for line in proc.stderr.splitlines() if "derivations printed" in line)
    assert int(derivations.split("example: ")[1].split()[0]) == 5  # examples/jobs.nix: 5 derivations
    assert " passed" in proc.stdout and " failed" not in proc.stdout
