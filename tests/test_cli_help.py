"""`evix --version` and the man-page `--help` of every command (issue 13): each parser, the
subcommands' own parsers included, says what it does, every default, an example and its
exit statuses; `--version` names the Nix that the bindings really load."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator

import pytest

from evix_client.cli import build_parser
from evix_client.completion import OTHER_COMMANDS
from evix_client.completion_model import load_parser
from evix_helpers import REPO, nix_bin, run_evix
from protocol.helpformat import _says_nothing


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((dict(a.choices) for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def every_parser() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(name, parser) of every command a user can ask --help of."""
    todo = [("evix", build_parser())] + [(name, load_parser(ref)) for name, ref in OTHER_COMMANDS.items()]
    while todo:
        name, parser = todo.pop()
        subs = _subparsers(parser)
        options = [a for a in parser._actions if a.option_strings and "-h" not in a.option_strings]
        if options or not subs:  # a bare dispatcher of subcommands is never shown on its own
            yield name, parser
        for sub_name, sub in subs.items():
            full = sub.get_default("full_parser")
            refs = full.split() if full else []
            todo += [(f"{name} {sub_name}", load_parser(r)) for r in refs] or [(f"{name} {sub_name}", sub)]


PARSERS = dict(every_parser())


def test_every_command_is_covered() -> None:
    assert {"evix", "evix eval", "evix query", "evix diff", "evix daemon", "evix daemon status",
            "evix daemon stop", "evix eval-jobs", "evix completion", "evixd", "evix-eval-jobs"} <= set(PARSERS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_help_reads_like_a_man_page(name: str) -> None:
    parser = PARSERS[name]
    text = parser.format_help()
    assert parser.description, f"{name}: no description"
    assert "exit status" in text, f"{name}: --help names no exit status"
    assert re.search(r"^examples?:\n  \S", text, re.M), f"{name}: --help has no example"
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.option_strings and not _says_nothing(action.default):
            shown = formatter._get_help_string(action) or ""
            assert "default" in shown, f"{name} {action.option_strings[0]}: its default is not said"


def test_defaults_are_said_once_with_their_value() -> None:
    from protocol.helpformat import ManPageFormatter

    p = argparse.ArgumentParser(formatter_class=ManPageFormatter)
    p.add_argument("--jobs", type=int, default=3, help="how many")
    p.add_argument("--delay", type=float, default=0.5, help="seconds")
    p.add_argument("--depth", type=int, default=7, help="how deep (default 7)")
    p.add_argument("--no-fork", dest="fork", action="store_false", help="spawn instead")
    text = " ".join(p.format_help().split())
    assert "how many (default 3)" in text and "seconds (default 0.5)" in text
    assert text.count("default 7") == 1 and "default True" not in text
    eval_help = " ".join(PARSERS["evix eval"].format_help().split())
    assert "(default 4096)" in eval_help and "default True" not in eval_help


def test_version_names_the_nix_the_bindings_load() -> None:
    run = run_evix("--version")
    assert run.code == 0, run.stderr
    lines = run.stdout.decode().splitlines()
    reference = subprocess.run([nix_bin("nix-instantiate"), "--version"], capture_output=True, text=True,
                               check=True).stdout.split()[-1]
    from importlib import metadata

    assert lines == [f"evix {metadata.version('evix')}", f"Nix {reference} (C API)"]


def test_version_keeps_nix_out_of_the_client_process() -> None:
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write('MODULES ' + ' '.join(sys.modules) + '\\n'))\n"
            "from evix_client.main import entry\nsys.argv = ['evix', '--version']\nentry()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0 and "Nix " in out.stdout, out.stderr
    loaded = set(next(line for line in out.stderr.splitlines() if line.startswith("MODULES ")).split()[1:])
    assert not {m.split(".")[0] for m in loaded} & {"nixffi", "cffi", "_cffi_backend", "trio", "capnp"}


def test_without_the_compiled_bindings_version_and_eval_say_how_to_get_nix(tmp_path) -> None:
    """A tree whose nixffi was never compiled (what a build without the C API would leave),
    run by the base interpreter so the venv's editable install cannot lend it the real one."""
    for package in ("evix_client", "evix_worker", "evixd", "protocol"):
        (tmp_path / package).symlink_to(REPO / package)
    shutil.copytree(REPO / "nixffi", tmp_path / "nixffi", ignore=shutil.ignore_patterns("_nixlib*", "*.so"))
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}:{sysconfig.get_paths()['purelib']}")
    out = subprocess.run([sys._base_executable, "-m", "evix_client", "--version"], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 1
    assert out.stdout.startswith("evix ") and "Nix " not in out.stdout
    assert "compiled bindings are missing" in out.stderr and "scripts/bootstrap-nix" in out.stderr
    assert "Traceback" not in out.stderr
    ev = subprocess.run([sys._base_executable, "-m", "evix_client", "eval", "--no-daemon", "--expr", "{ }"],
                        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert ev.returncode == 1
    assert "compiled bindings are missing" in ev.stderr and "scripts/bootstrap-nix" in ev.stderr
    assert "Traceback" not in ev.stderr
