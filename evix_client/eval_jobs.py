"""`evix-eval-jobs` (also `evix eval-jobs`): nix-eval-jobs' command line and output on evix's
engine, so a CI that runs nix-eval-jobs switches by pointing at another binary.

Parsing only; the run itself (evixd.engine.eval_jobs) is imported once workers are starting.
"""

from __future__ import annotations

import argparse
import sys

from protocol import nix_settings
from protocol.argtypes import positive_count
from protocol.config import Arg, ConfigError, EvalConfig
from protocol.helpformat import ManPageFormatter

from .cli import shared_fields, take_pair_options

PROG = "evix-eval-jobs"

DESCRIPTION = """\
Evaluate a Nix file, expression or flake and print every derivation as one JSON object per
line, exactly as nix-eval-jobs prints it (same command line, same fields, keys sorted), on
evix's engine: a worker that crashes costs its attribute, not the run.
"""

EPILOG = """\
input (the positional EXPR):
  FILE                  a Nix file, or a lookup path such as '<nixpkgs/nixos/release.nix>'
  -E EXPR, EXPR --expr  an inline Nix expression
  --flake REF, REF --flake
                        a flake reference; REF#attr selects the root; flakes are evaluated
                        in pure mode unless --impure

lines on stdout (keys sorted):
  job    {"attr", "attrPath", "name", "system", "drvPath", "outputs", "requiredSystemFeatures"}
         + "meta" (--meta), "inputDrvs" (--show-input-drvs), "extraValue" (--apply),
         "constituents", "namedConstituents", "globConstituents" (--constituents),
         "isCached", "cacheStatus", "neededBuilds", "neededSubstitutes" (--check-cache-status)
  error  {"attr", "attrPath", "error"}
  "attr" quotes only path elements that contain a dot. With --workers 1 the lines come in
  ascending attrPath order, aggregates naming their constituents last.

Nix settings: every setting is also a flag, --NAME VALUE / --extra-NAME VALUE, or --NAME /
--no-NAME for a boolean one (--max-jobs 1, --extra-experimental-features 'nix-command flakes').
An unknown --option is a warning, as in Nix.

exit status: 0 when the run completed (error lines included); 1 when the input cannot be
loaded, when a worker died on an attribute (after the rest of the run), or for a usage error.

examples:
  evix-eval-jobs --workers 4 --flake .#hydraJobs
  evix-eval-jobs --meta --arg pkgs 'import <nixpkgs> {}' release.nix
  evix-eval-jobs -E 'import ./jobs.nix { }' --force-recurse --check-cache-status
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # nix-eval-jobs' usage errors exit 1
        self.exit(1, f"error: {message}\nTry '{self.prog} --help' for more information.\n")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description=DESCRIPTION, epilog=EPILOG, allow_abbrev=False,
                formatter_class=ManPageFormatter)
    p.add_argument("expr", nargs="?", metavar="EXPR", help="a file (default), an expression (-E) or a flake (--flake)")
    src = p.add_argument_group("input")
    src.add_argument("--flake", action="store_true", help="EXPR is a flake reference")
    src.add_argument("-E", "--expr", dest="is_expr", action="store_true", help="EXPR is a Nix expression")
    src.add_argument("--impure", action="store_true", help="evaluate a flake in impure mode")
    src.add_argument("--arg-from-stdin", action="append", default=[], metavar="NAME",
                     help="pass standard input as the string argument NAME")
    src.add_argument("-I", "--include", action="append", default=[], metavar="PATH",
                     help="add to the lookup path (<nixpkgs>), before NIX_PATH")
    _add_pair_options(src)
    src.add_argument("--reference-lock-file", metavar="FILE", help="use FILE instead of the flake's flake.lock")
    src.add_argument("--eval-store", metavar="URL", help="the store to write .drv files to")
    src.add_argument("--repair", action="store_true", help="accepted for compatibility (no effect)")
    out = p.add_argument_group("output")
    out.add_argument("--meta", action="store_true", help="add meta (a failing meta makes the job an error)")
    out.add_argument("--show-input-drvs", action="store_true", help="add inputDrvs")
    out.add_argument("--check-cache-status", action="store_true",
                     help="add isCached, cacheStatus, neededBuilds, neededSubstitutes")
    out.add_argument("--constituents", action="store_true", help="resolve Hydra aggregates' constituents")
    out.add_argument("--force-recurse", action="store_true", help="expand every attribute set")
    out.add_argument("--apply", metavar="EXPR", help="a function of each derivation; its result is extraValue")
    out.add_argument("--select", metavar="EXPR", help="a function of the root (or of the whole flake); its result is traversed")
    out.add_argument("--no-instantiate", action="store_true", help="compute drvPaths without writing .drv files")
    run = p.add_argument_group("workers")
    run.add_argument("--workers", type=positive_count, default=1, metavar="N", help="worker processes (default 1)")
    run.add_argument("--max-memory-size", type=positive_count, default=4096, metavar="MiB",
                     help="per-worker memory limit: the pages a worker shares with no other process "
                          "(default 4096)")
    run.add_argument("--gc-roots-dir", metavar="DIR", help="a GC root for every derivation")
    logs = p.add_argument_group("logging")
    logs.add_argument("-v", "--verbose", action="count", default=0, help="more output on stderr (errors too)")
    logs.add_argument("--quiet", action="count", default=0, help="less output on stderr")
    logs.add_argument("--debug", action="store_true", help="debug output on stderr")
    logs.add_argument("--log-format", metavar="FORMAT", help="accepted for compatibility")
    return p


def _add_pair_options(group: argparse._ArgumentGroup) -> None:
    """The options of PAIRS, for --help and completion only: `parse` takes them out of the
    command line before argparse sees it (their values may start with "-")."""
    pairs = [("--arg", ("NAME", "EXPR"), "pass a Nix expression to every function met"),
             ("--argstr", ("NAME", "VALUE"), "pass a string to every function met"),
             ("--arg-from-file", ("NAME", "FILE"), "pass the contents of FILE as the string argument NAME"),
             ("--override-input", ("PATH", "REF"),
              "replace the flake input PATH (`dep`, or `dep/sub` for an input of an input)"),
             ("--override-flake", ("ORIGINAL", "RESOLVED"),
              "redirect the indirect reference ORIGINAL (`nixpkgs`) to RESOLVED, as Nix's flag registry: "
              "in the flake reference and --override-input references (inputs locked in flake.lock keep "
              "their lock, as in Nix)"),
             ("--option", ("KEY", "VALUE"), "set a Nix setting (an unknown key is a warning)")]
    for flag, metavar, text in pairs:
        group.add_argument(flag, nargs=2, action="append", metavar=metavar, help=text)


PAIRS = {"--arg": "arg", "--argstr": "argstr", "--arg-from-file": "arg_from_file",
         "--override-input": "override_input", "--override-flake": "override_flake", "--option": "option"}


def take_setting_flags(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Takes `--NAME VALUE`, `--extra-NAME VALUE`, `--NAME`, `--no-NAME` (Nix settings) and
    `-j N` out of `argv`; returns the rest and the settings as (key, value), in order."""
    rest: list[str] = []
    settings: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        name = word[2:] if word.startswith("--") else ""
        if word == "--":
            rest += argv[i:]
            break
        if name in nix_settings.BOOLEAN:
            settings.append((name, "true"))
        elif name.startswith("no-") and name[3:] in nix_settings.BOOLEAN:
            settings.append((name[3:], "false"))
        elif (name in nix_settings.VALUED or word == "-j"
              or (name.startswith("extra-") and name[6:] in nix_settings.VALUED)) and i + 1 < len(argv):
            settings.append(("max-jobs" if word == "-j" else name, argv[i + 1]))
            i += 1
        else:
            rest.append(word)
        i += 1
    return rest, settings


def parse(argv: list[str], prog: str = PROG) -> tuple[EvalConfig, argparse.Namespace]:
    """nix-eval-jobs' command line as an EvalConfig (and the namespace, for logging)."""
    parser = build_parser(prog)
    argv, pairs = take_pair_options(argv, PAIRS)
    argv, settings = take_setting_flags(argv)
    ns = parser.parse_args(argv)
    try:
        return config_from(ns, pairs, settings), ns
    except ConfigError as e:
        parser.error(str(e))
        raise  # unreachable: error() exits


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{what}: {e.strerror or e}") from None


def config_from(ns: argparse.Namespace, pairs: dict[str, list[list[str]]], settings: list[tuple[str, str]]) -> EvalConfig:
    if not ns.expr:
        raise ConfigError("no expression specified")
    if ns.flake and ns.is_expr:
        raise ConfigError("--flake and --expr cannot be combined")
    if ns.repair:
        print(f"warning: {PROG}: --repair has no effect", file=sys.stderr)
    args = [Arg(n, v, False) for n, v in pairs["arg"]] + [Arg(n, v, True) for n, v in pairs["argstr"]]
    args += [Arg(n, _read(path, f"--arg-from-file {n}"), True) for n, path in pairs["arg_from_file"]]
    args += [Arg(n, sys.stdin.read(), True) for n in ns.arg_from_stdin]
    options = [tuple(o) for o in pairs["option"]] + settings
    return EvalConfig(
        flake=ns.expr if ns.flake else None,
        expr=ns.expr if ns.is_expr else None,
        file=ns.expr if not ns.flake and not ns.is_expr else None,
        args=tuple(args),
        override_inputs=tuple((n, r) for n, r in pairs["override_input"]),
        override_flakes=tuple((o, r) for o, r in pairs["override_flake"]),
        options=tuple(options),  # type: ignore[arg-type]
        **shared_fields(ns),  # type: ignore[arg-type]
        reference_lock_file=ns.reference_lock_file,
        pure_eval=ns.flake and not ns.impure,
        nix_eval_jobs=True,
        constituents=ns.constituents,
        workers=ns.workers,
        max_memory_mb=ns.max_memory_size,
        eval_store=ns.eval_store,
    ).resolved().validate()


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Runs nix-eval-jobs' command line; returns the exit status."""
    config, ns = parse(sys.argv[1:] if argv is None else argv, prog)
    from .eval_jobs_local import run

    return run(config, verbose=ns.verbose + (2 if ns.debug else 0), quiet=ns.quiet)


def entry() -> None:
    """Console-script entry: exit 130 on Ctrl-C, quietly on a closed stdout."""
    from .main import entry as evix_entry

    evix_entry(main)
