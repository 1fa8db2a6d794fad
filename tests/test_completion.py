"""`evix completion bash|zsh|fish` (issue 13): each script loads in its shell and completes
subcommands, options and option values (files, directories, choices) as the parsers say.
zsh and fish are exercised where they are installed; bash always is."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from evix_helpers import REPO, cannot_run_here, run_evix


def completion(shell: str) -> str:
    run = run_evix("completion", shell)
    assert run.code == 0, run.stderr
    return run.stdout.decode()


def need(shell: str) -> str:
    found = shutil.which(shell)
    if found is None:
        cannot_run_here(f"{shell} is not installed (apt-get install {shell})")
    return found


BASH_ASK = """
source "$1"; shift
complete -p evix evixd evix-eval-jobs
COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
_evix
if ((${#COMPREPLY[@]})); then printf '%s\\n' "${COMPREPLY[@]}"; fi
"""


def bash_complete(script: str, *words: str) -> tuple[list[str], list[str]]:
    """(the `complete -p` lines, the candidates bash's _evix offers for `words`)."""
    out = subprocess.run(["bash", "-c", BASH_ASK, "bash", script, *words], capture_output=True, text=True,
                         cwd=REPO, check=True)
    lines = out.stdout.splitlines()
    return lines[:3], sorted(lines[3:])


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("completion") / "evix.bash"
    path.write_text(completion("bash"))
    return str(path)


def test_bash_registers_all_three_commands(bash_script: str) -> None:
    registered, _ = bash_complete(bash_script, "evix", "")
    assert registered == [f"complete -F _evix {c}" for c in ("evix", "evixd", "evix-eval-jobs")]


@pytest.mark.parametrize("words, expected", [
    (("evix", "ev"), ["eval", "eval-jobs"]),
    (("evix", "eval", "--fl"), ["--flake"]),
    (("evix", "eval", "--file", "exam"), ["examples"]),
    (("evix", "eval", "--flake", "ex"), ["examples"]),
    (("evix", "eval", "--override-input", "nixpkgs", "scr"), ["scripts"]),
    (("evix", "eval", "--arg", "pkgs", ""), []),
    (("evix", "completion", ""), ["bash", "fish", "zsh"]),
    (("evix", "daemon", "st"), ["status", "stop"]),
    (("evix", "daemon", "stop", "--t"), ["--timeout"]),
    (("evixd", "--max-ses"), ["--max-session-memory", "--max-sessions"]),
    (("evix-eval-jobs", "--check"), ["--check-cache-status"]),
    (("evix-eval-jobs", "--override-flake", "nixpkgs", "scr"), ["scripts"]),
    (("evix-eval-jobs", "examples/jo"), ["examples/jobs.nix"]),
])
def test_bash_completes(bash_script: str, words: tuple[str, ...], expected: list[str]) -> None:
    assert bash_complete(bash_script, *words)[1] == expected


def test_bash_offers_every_option_of_a_command(bash_script: str) -> None:
    from evix_client.cli import build_parser

    eval_parser = next(a for a in build_parser()._actions if a.dest == "command").choices["eval"]
    flags = {f for a in eval_parser._actions for f in a.option_strings if f.startswith("--")}
    assert set(bash_complete(bash_script, "evix", "eval", "--")[1]) == flags


# zsh's completion system needs a terminal; its building blocks are replaced by functions that
# print what they are given, and _evix is run with the words a user typed.
ZSH_ASK = """
source "$1"; shift
print -r -- "registered: $_comps[evix] $_comps[evixd] $_comps[evix-eval-jobs]"
_describe() { print -rl -- "${(@P)${@[-1]}}" }
compadd() { print -rl -- "${(@P)${@[-1]}}" }
_files() { print -r -- "FILES $*" }
_message() { print -r -- "MESSAGE $*" }
words=("$@"); CURRENT=$#words; PREFIX=$words[-1]
_evix
"""


@pytest.mark.parametrize("words, expected", [
    (("evix", ""), "eval:evaluate once and stream events as NDJSON"),
    (("evix", "eval", "--"), "--flake:a flake output, e.g. .#hydraJobs"),
    (("evix", "eval", "--file", ""), "FILES "),
    (("evix", "eval", "--flake", ""), "FILES -/"),
    (("evix", "eval", "--arg", "x", ""), "MESSAGE value"),
    (("evix", "completion", ""), "fish"),
    (("evixd", "--socket", ""), "FILES "),
    (("evix-eval-jobs", "--"), "--meta:add meta"),
])
def test_zsh_completes(tmp_path, words: tuple[str, ...], expected: str) -> None:
    zsh = need("zsh")
    script = tmp_path / "_evix"
    script.write_text(completion("zsh"))
    prelude = "autoload -U compinit && compinit -u -D\n"
    out = subprocess.run([zsh, "-f", "-c", prelude + ZSH_ASK, "zsh", str(script), *words], capture_output=True,
                         text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "registered: _evix _evix _evix"
    assert expected in lines[1:], out.stdout


@pytest.mark.parametrize("line, expected", [
    ("evix ev", ["eval", "eval-jobs"]),
    ("evix eval --fl", ["--flake"]),
    ("evix eval --file exam", ["examples/"]),
    ("evix completion ", ["bash", "fish", "zsh"]),
    ("evix daemon st", ["status", "stop"]),
    ("evixd --max-ses", ["--max-session-memory", "--max-sessions"]),
    ("evix-eval-jobs --fla", ["--flake"]),
])
def test_fish_completes(tmp_path, line: str, expected: list[str]) -> None:
    fish = need("fish")
    script = tmp_path / "evix.fish"
    script.write_text(completion("fish"))
    out = subprocess.run([fish, "--no-config", "-c", f"source {script}; complete -C{line!r}"], capture_output=True,
                         text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0 and not out.stderr, out.stderr
    assert sorted(c.split("\t")[0] for c in out.stdout.splitlines()) == expected
