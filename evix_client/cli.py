"""Argument parsing for `evix`: one builder per subcommand, converted straight to an EvalConfig."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from protocol.argtypes import count, positive_count, positive_seconds
from protocol.config import Arg, ConfigError, EvalConfig
from protocol.helpformat import ManPageFormatter
from protocol.remotes import TOKEN_ENV, Remote, parse_systems
from protocol.loglevel import add_logging_options
from protocol.query import Filter

from .version import VersionAction

DESCRIPTION = """\
Evaluate a Nix flake output, file or expression through the Nix C API and stream every
derivation as one JSON object per line on stdout (logs go to stderr). One broken
attribute is an error event, never the end of the run.
"""

MAIN_EPILOG = """\
`evix COMMAND --help` explains each command, its options, examples and exit statuses.

exit status: 0 on success, 1 on an error (said on stderr), 2 for a usage error; each
command's --help lists its own.

examples:
  evix eval --file examples/jobs.nix --workers 2
  evix --version
  evix completion bash > ~/.local/share/bash-completion/completions/evix
"""

EVAL_EPILOG = """\
events (one JSON object per line):
  derivation  {"attr", "attrPath", "name", "system", "drvPath", "outputs"} (+ "meta",
              "metaError", "inputDrvs", "constituents" when asked for or present;
              "metaError" {"path", "message"}: the first part of meta that failed)
  attrset     {"attr", "attrPath", "attrs"}: a set that is traversed
  error       {"attr", "attrPath", "error", "fatal"}: Nix's message for that attribute

traversal: the root is always expanded; below it an attribute set is expanded only if
it has `recurseForDerivations = true` (or with --force-recurse). A function at any depth is
called with the --arg/--argstr values, as nix-eval-jobs does (one that cannot be called is an
error event; `x: ...` is skipped). A set that is one of its own ancestors is an error event
("attribute set cycle: a.b.a is a"), and so is a set at --max-depth that would be expanded.

exit status: 0 when the run completed (even with error events), 1 when the input cannot
be loaded or stdout cannot be written, 2 for a usage error, 75 when the daemon went away
after part of the output (run it again), 128 + N when stopped by signal N (130 Ctrl-C,
143 SIGTERM, 129 SIGHUP), 141 when stdout was closed early. All failures: docs/failures.md.

examples:
  evix eval --flake .#hydraJobs --workers 4
  evix eval --file ./release.nix --arg pkgs 'import <nixpkgs> {}' --meta
  evix eval --expr 'import ./jobs.nix { }' --force-recurse
  evix eval --flake .#hydraJobs --workers 2 --remote arm-box:7357 aarch64-linux 2   (see `evix worker --help`)
"""


def add_input_options(p: argparse.ArgumentParser) -> None:
    """What to evaluate: the options that make up a session's key."""
    src = p.add_argument_group("input (exactly one)")
    one = src.add_mutually_exclusive_group(required=True)
    one.add_argument("--flake", metavar="REF", help="a flake output, e.g. .#hydraJobs (the fragment selects the root)")
    one.add_argument("--expr", metavar="EXPR", help="an inline Nix expression")
    one.add_argument("--file", metavar="PATH", help="a Nix file")
    n = p.add_argument_group("Nix")
    n.add_argument("--arg", nargs=2, action="append", default=[], metavar=("NAME", "EXPR"),
                   help="pass a Nix expression to every function met, the root and those below it (as nix-eval-jobs)")
    n.add_argument("--argstr", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="pass a string to every function met, the root included")
    n.add_argument("--override-input", nargs=2, action="append", default=[], metavar=("NAME", "REF"),
                   help="replace a flake input, `dep` or an input of an input `dep/sub` (--flake only)")
    n.add_argument("--override-flake", nargs=2, action="append", default=[], metavar=("ORIGINAL", "RESOLVED"),
                   help="redirect the indirect flake reference ORIGINAL (`nixpkgs`) to RESOLVED, as Nix's flag "
                        "registry does (--flake only; inputs locked in flake.lock stay as locked)")
    n.add_argument("--option", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="set a Nix option in every worker (unknown keys are an error)")
    n.add_argument("-I", dest="include", action="append", default=[], metavar="PATH",
                   help="add to the lookup path (<nixpkgs>), before NIX_PATH")
    t = p.add_argument_group("traversal and output")
    t.add_argument("--force-recurse", action="store_true", help="expand every attribute set, ignoring recurseForDerivations")
    t.add_argument("--max-depth", type=positive_count, default=EvalConfig().max_depth, metavar="N",
                   help="longest attribute path traversed; a set at depth N that would be expanded is an "
                        f"error event instead (default {EvalConfig().max_depth})")
    t.add_argument("--meta", action="store_true",
                   help="include each derivation's meta as JSON (and metaError when a part of it fails)")
    t.add_argument("--show-input-drvs", action="store_true", help="include inputDrvs read from each .drv file")
    t.add_argument("--select", metavar="EXPR",
                   help="a function applied to the root before traversal; it must return an attribute set "
                        "(with a bare --flake REF it receives the whole flake: outputs, inputs, sourceInfo...)")
    t.add_argument("--apply", metavar="EXPR",
                   help="a function applied to each derivation; its result (a set) becomes extraValue")
    t.add_argument("--no-instantiate", action="store_true",
                   help="compute drvPaths and outputs without writing .drv files (no inputDrvs, "
                        "requiredSystemFeatures, cache status or GC roots then)")
    t.add_argument("--check-cache-status", action="store_true",
                   help="add cacheStatus (local, cached, notBuilt), neededBuilds and neededSubstitutes, "
                        "looked up in the store and Nix's substituters")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """How to evaluate: options that do not change the result."""
    r = p.add_argument_group("workers")
    d = EvalConfig()
    r.add_argument("--workers", type=count, default=d.workers, metavar="N",
                   help=f"local worker processes (default {d.workers}; 0 with --remote: remote workers only)")
    r.add_argument("--max-memory", type=positive_count, default=d.max_memory_mb, metavar="MB",
                   help="per-worker memory limit in MiB: a worker whose own memory (pages it shares with no other "
                        "process; a fork's pages shared with the template it came from are the template's) passes "
                        "it is replaced; under a limit below 1536, Nix's garbage collector starts with a heap of a "
                        f"quarter of it, so that garbage is collected as the worker goes (default {d.max_memory_mb})")
    r.add_argument("--timeout", type=positive_seconds, default=None, metavar="SECONDS",
                   help="per-attribute time limit; an attribute over it gets an error event")
    r.add_argument("--gc-roots-dir", metavar="DIR", help="register a GC root for every evaluated derivation")
    r.add_argument("--no-fork", dest="fork_workers", action="store_false",
                   help="start every worker as a new process that loads the input itself, instead of forking "
                        "it from one process that loaded it once (slower restarts; for debugging)")
    r.add_argument("--warm-template", action=argparse.BooleanOptionalAction, default=d.warm_template,
                   help="let the process that forks the workers evaluate one derivation first (when a worker is "
                        "first replaced, the next few too; under a memory limit, each attribute that passed it), so that what packages share (a stdenv) is "
                        "evaluated once and every worker starts with it; its memory "
                        "is the template's, counted once, not each worker's (default: on)")
    add_remote_options(p)


def add_remote_options(p: argparse.ArgumentParser) -> None:
    """Remote workers (`evix worker --listen` on other machines): how, not what."""
    r = p.add_argument_group("remote workers")
    r.add_argument("--remote", nargs=3, action="append", default=[], metavar=("ENDPOINT", "SYSTEMS", "N"),
                   help="N connections to the worker service at ENDPOINT (HOST:PORT, [IPV6]:PORT), each a worker "
                        "for the derivations of SYSTEMS (comma-separated; '' for any system); repeatable")
    r.add_argument("--remote-token", metavar="TOKEN", help="the services' shared token (default $EVIX_REMOTE_TOKEN)")
    r.add_argument("--remote-tls-ca", metavar="PEM", help="connect with TLS, checking the services against this CA")
    r.add_argument("--remote-tls-fingerprint", metavar="SHA256",
                   help="connect with TLS, accepting only a service certificate of this SHA-256 fingerprint")
    r.add_argument("--remote-stall-timeout", type=positive_seconds, default=EvalConfig().remote_stall_timeout,
                   metavar="SECONDS", help="a remote silent this long mid-batch is dropped and its work requeued "
                                           f"(default {EvalConfig().remote_stall_timeout:g})")


def remotes_from_args(ns: argparse.Namespace) -> tuple[Remote, ...]:
    """`--remote ENDPOINT SYSTEMS N` triples; ConfigError for a bad N."""
    remotes = []
    for endpoint, systems, n in ns.remote:
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(f"--remote {endpoint} {systems!r} {n}: N must be a number of connections, at least 1")
        remotes.append(Remote(endpoint, parse_systems(systems), int(n)))
    return tuple(remotes)


def add_common_options(p: argparse.ArgumentParser) -> None:
    c = p.add_argument_group("general")
    c.add_argument("--socket", metavar="PATH", help="daemon socket (default: $EVIX_SOCKET or $XDG_RUNTIME_DIR/evix.sock)")
    add_logging_options(c)


QUERY_EPILOG = """\
Prints the matching derivations of the daemon's warm session for this input as NDJSON
(the lines `evix eval` printed), ordered by attribute path. Give the same input options
as the `evix eval` that made the session; --workers and other run options may differ.
Filters of one kind are alternatives; different kinds must all match.

exit status: 0 when the query was answered (even with no match), 1 when no daemon answers
or it has no session for this input, 2 for a usage error, 75 when the daemon stayed at its
connection limit or went away (run it again).

examples:
  evix eval --flake .#hydraJobs --workers 4 >/dev/null
  evix query --flake .#hydraJobs --system x86_64-linux
  evix query --flake .#hydraJobs --attr-prefix packages.x86_64-linux --attr-glob '*.hello*'
"""

DIFF_EPILOG = """\
Re-evaluates the input (reading its files as they are now) and prints one JSON object:
"added" and "removed" derivations by attribute, "changed" (same attribute, new drvPath,
with oldDrvPath) and the new run's "errors". The new result becomes the warm session.

exit status: 0 when the diff was printed, 1 when no daemon answers, it has no session for
this input, or the input cannot be loaded, 2 for a usage error, 75 when the daemon stayed
at its connection limit or went away (run it again).

examples:
  evix eval --flake .#hydraJobs >/dev/null
  evix diff --flake .#hydraJobs
"""

COMPLETION_EPILOG = """\
Prints a completion script for evix, evixd and evix-eval-jobs, generated from their
options: subcommands, options, file, directory and flake-reference arguments.

exit status: 0, or 2 for a usage error.

examples:
  evix completion bash > ~/.local/share/bash-completion/completions/evix
  evix completion zsh > ~/.zfunc/_evix        # with fpath+=(~/.zfunc) before compinit
  evix completion fish > ~/.config/fish/completions/evix.fish
  source <(evix completion bash)              # this shell only
"""

WATCH_EPILOG = """\
Prints the first evaluation's events as `evix eval` does, then, after each change, one JSON
object per line as `evix diff` prints it ("added", "removed", "changed", "errors"). A burst
of writes gives one re-evaluation; a change during an evaluation gives one more after it.
An input that stops loading (syntax error, deleted file) gives a line whose "errors" say
why, and the watch goes on. Watched: for --file, the directory tree of the file; for
--flake, its root and every path input in flake.lock (an edit there counts as if the input
were re-locked; flake.lock itself is never written). Editor swap files, .git and `result`
links are ignored. --expr and remote flakes cannot be watched.

exit status: runs until stopped: 130 on Ctrl-C (143 SIGTERM, 129 SIGHUP), workers stopped;
1 when the watch cannot start (nothing on disk to watch) or stdout cannot be written, 2 for a
usage error, 75 when the daemon went away (run it again), 141 when stdout was closed early.

examples:
  evix watch --file ./jobs.nix
  evix watch --flake .#hydraJobs --workers 4 --watch ../shared-lib
"""


def add_filter_options(p: argparse.ArgumentParser) -> None:
    """`evix query` filters: one option per Filter field, each repeatable."""
    f = p.add_argument_group("filters (repeatable)")
    f.add_argument("--system", action="append", metavar="SYSTEM", help="derivations for this system")
    f.add_argument("--attr-prefix", action="append", metavar="ATTR",
                   help="attribute path prefix, element-wise (a.b matches a.b.c, not a.bc)")
    f.add_argument("--name", action="append", metavar="NAME", help="derivation name, exactly")
    f.add_argument("--drv-path", action="append", metavar="PATH", help="store path of the .drv, exactly")
    f.add_argument("--attr-glob", action="append", metavar="PATTERN", help="shell pattern over the attribute path")
    f.add_argument("--meta-error", action=argparse.BooleanOptionalAction, default=None,
                   help="only derivations whose meta failed to evaluate (--no-meta-error: only those whose meta is fine)")


def filter_from_args(ns: argparse.Namespace) -> Filter:
    def opt(values: list[str] | None) -> tuple[str, ...] | None:
        return tuple(values) if values else None

    return Filter(systems=opt(ns.system), attr_prefix=opt(ns.attr_prefix), names=opt(ns.name),
                  drv_paths=opt(ns.drv_path), attr_globs=opt(ns.attr_glob), meta_error=ns.meta_error)


PAIR_OPTIONS = {"--arg": "arg", "--argstr": "argstr", "--override-input": "override_input",
                "--override-flake": "override_flake", "--option": "option"}


def take_pair_options(argv: list[str], options: dict[str, str] = PAIR_OPTIONS) -> tuple[list[str], dict[str, list[list[str]]]]:
    """Takes `--arg NAME VALUE`-style options (`options`: flag -> dest) out of `argv` before
    argparse sees them.

    argparse refuses a value that starts with "-" (`--argstr suffix -rc1`), which
    nix-instantiate accepts: the two words after such an option are taken verbatim.
    """
    rest: list[str] = []
    pairs: dict[str, list[list[str]]] = {dest: [] for dest in options.values()}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            rest += argv[i:]
            break
        if word in options and i + 2 < len(argv):  # else argparse reports what is missing
            pairs[options[word]].append([argv[i + 1], argv[i + 2]])
            i += 3
            continue
        rest.append(word)
        i += 1
    return rest, pairs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evix", description=DESCRIPTION, epilog=MAIN_EPILOG,
                                     formatter_class=ManPageFormatter)
    parser.add_argument("--version", action=VersionAction,
                        help="print evix's version and the Nix version whose C API it is linked against, then exit "
                             "(exit 1 when that library cannot be loaded)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    def command(name: str, help: str, description: str, epilog: str, *extra: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
        """A subcommand with the option groups every evaluating command shares."""
        p = sub.add_parser(name, help=help, description=description, epilog=epilog,
                           formatter_class=ManPageFormatter)
        add_input_options(p)
        for add in extra:
            add(p)
        add_run_options(p)
        return p

    ev = command("eval", "evaluate once and stream events as NDJSON", DESCRIPTION, EVAL_EPILOG)
    ev.add_argument("--no-daemon", action="store_true", help="evaluate in this process even if a daemon runs")
    add_common_options(ev)
    add_common_options(command("query", "print derivations of the daemon's warm session (needs the daemon)",
                               "Query a warm session of the evix daemon.", QUERY_EPILOG, add_filter_options))
    add_common_options(command("diff", "re-evaluate and compare with the daemon's warm session (needs the daemon)",
                               "Re-evaluate and compare with the daemon's warm session.", DIFF_EPILOG))

    wa = command("watch", "evaluate a local file or flake, then print a diff each time its files change",
                 "Evaluate, then re-evaluate on every change and print one diff per line.", WATCH_EPILOG)
    wa.add_argument("--watch", action="append", default=[], metavar="PATH",
                    help="also watch PATH (a directory tree, or a file), e.g. for imports from elsewhere (repeatable)")
    wa.add_argument("--debounce", type=positive_seconds, default=None, metavar="SECONDS",
                    help="quiet time that ends a burst of changes before re-evaluating (default 0.02)")
    wa.add_argument("--no-daemon", action="store_true", help="watch in this process even if a daemon runs")
    add_common_options(wa)

    # `evix daemon ...` and `evix eval-jobs ...` are handed to their own parsers before this
    # one runs (see main.py); registered here so that `evix --help` lists them, and with
    # `full_parser` naming those parsers for `evix completion` (completion_model.py).
    sub.add_parser("daemon", help="start the daemon in the background (same as evixd; `evix daemon --help`), "
                                  "or `evix daemon status|stop`", add_help=False).set_defaults(
        full_parser="evixd.daemon.main:build_parser evix_client.daemon_control:build_parser")
    sub.add_parser("worker", help="serve evaluation to masters on other machines over TCP (`evix worker --help`)",
                   add_help=False).set_defaults(full_parser="evixd.remote_service.main:build_parser")
    sub.add_parser("eval-jobs", help="nix-eval-jobs' command line and output (same as evix-eval-jobs)",
                   add_help=False).set_defaults(full_parser="evix_client.eval_jobs:build_parser")
    comp = sub.add_parser("completion", help="print a shell completion script (bash, zsh or fish)",
                          description="Print a shell completion script.", epilog=COMPLETION_EPILOG,
                          formatter_class=ManPageFormatter)
    comp.add_argument("shell", choices=("bash", "zsh", "fish"), metavar="SHELL", help="bash, zsh or fish")
    return parser


def shared_fields(ns: argparse.Namespace) -> dict[str, object]:
    """The EvalConfig fields `evix eval` and `evix-eval-jobs` take from options of the same name."""
    return dict(lookup_path=tuple(ns.include), nix_path=os.environ.get("NIX_PATH", ""),
                force_recurse=ns.force_recurse, meta=ns.meta, show_input_drvs=ns.show_input_drvs,
                select=ns.select, apply=ns.apply, no_instantiate=ns.no_instantiate,
                check_cache_status=ns.check_cache_status, gc_roots_dir=ns.gc_roots_dir)


def config_from_args(ns: argparse.Namespace) -> EvalConfig:
    args = tuple(Arg(n, v, False) for n, v in ns.arg) + tuple(Arg(n, v, True) for n, v in ns.argstr)
    return EvalConfig(
        flake=ns.flake,
        expr=ns.expr,
        file=ns.file,
        args=args,
        override_inputs=tuple(map(tuple, ns.override_input)),
        override_flakes=tuple(map(tuple, ns.override_flake)),
        options=tuple(map(tuple, ns.option)),
        **shared_fields(ns),  # type: ignore[arg-type]
        max_depth=ns.max_depth,
        workers=ns.workers,
        max_memory_mb=ns.max_memory,
        item_timeout=ns.timeout,
        fork_workers=ns.fork_workers,
        warm_template=ns.warm_template,
        remotes=remotes_from_args(ns),
        # in the config, so that a daemon (whose environment is not ours) has it too
        remote_token=(ns.remote_token or os.environ.get(TOKEN_ENV)) if ns.remote else None,
        remote_tls_ca=ns.remote_tls_ca,
        remote_tls_fingerprint=ns.remote_tls_fingerprint,
        remote_stall_timeout=ns.remote_stall_timeout,
    ).resolved()
