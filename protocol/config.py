"""What to evaluate and how: the configuration shared by the CLI, the library, workers and the daemon.

Fields split in two. Those that change the result (input, args, overrides, options, lookup
path, recursion, depth limit, meta, input drvs) form the canonical JSON whose sha256 is the
session key. Those that only change how it is computed (workers, memory limit, timeout, GC
roots, worker command, forking) do not, so `evix query` finds the session without repeating
`--workers`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from collections.abc import Iterator
from typing import Any

import orjson

from . import config_json as cj
from .flakeref import absolute_flake_ref
from .remotes import EndpointError, Remote, remote_from_json, split_endpoint


class ConfigError(ValueError):
    """The configuration is not valid (the message says what to change); `field`, when
    known, is the JSON path of the field at fault (`args[0].value`)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Arg:
    """`--arg NAME EXPR` (is_string False) or `--argstr NAME VALUE` (is_string True)."""

    name: str
    value: str
    is_string: bool = False


_HOW = ("workers", "max_memory_mb", "item_timeout", "gc_roots_dir", "worker_command", "eval_store", "fork_workers",
        "warm_template", "remotes", "remote_token", "remote_tls_ca", "remote_tls_fingerprint", "remote_stall_timeout")
_BOOLS = ("force_recurse", "meta", "show_input_drvs", "no_instantiate", "check_cache_status", "nix_eval_jobs",
          "constituents", "pure_eval", "fork_workers", "warm_template")


@dataclass(frozen=True)
class EvalConfig:
    flake: str | None = None
    expr: str | None = None
    file: str | None = None
    args: tuple[Arg, ...] = ()
    override_inputs: tuple[tuple[str, str], ...] = ()
    override_flakes: tuple[tuple[str, str], ...] = ()
    options: tuple[tuple[str, str], ...] = ()
    lookup_path: tuple[str, ...] = ()
    nix_path: str = ""
    base_dir: str = ""
    force_recurse: bool = False
    meta: bool = False
    show_input_drvs: bool = False
    max_depth: int = 100  # longest attrPath traversed: a cut for what cycle detection misses
    select: str | None = None  # a function applied to the root before traversal
    apply: str | None = None  # a function applied to each derivation: its JSON is extraValue
    no_instantiate: bool = False  # drvPaths computed, no .drv written (Nix's read-only mode)
    check_cache_status: bool = False  # cacheStatus, neededBuilds, neededSubstitutes per derivation
    reference_lock_file: str | None = None  # a flake.lock to use instead of the flake's own
    pure_eval: bool = False  # flakes evaluated in pure mode (nix-eval-jobs without --impure)
    # evaluate as nix-eval-jobs does (evix-eval-jobs): meta whose failure is the job's error,
    # system and requiredSystemFeatures from the .drv, unknown --option only a warning;
    # with `constituents`, aggregates as its --constituents reads them.
    nix_eval_jobs: bool = False
    constituents: bool = False
    # how, not what:
    workers: int = 1
    max_memory_mb: int = 4096
    item_timeout: float | None = None
    gc_roots_dir: str | None = None
    worker_command: tuple[str, ...] | None = field(default=None, compare=False)
    eval_store: str | None = None  # the store .drv files are written to (default: Nix's `store`)
    fork_workers: bool = True  # from a template that loaded the input once; False: a fresh process each
    warm_template: bool = True  # the template evaluates a first derivation before forking (evix_worker/template.py)
    # remote workers (`evix worker --listen`), beside the local ones (protocol/remotes.py):
    remotes: tuple[Remote, ...] = ()
    remote_token: str | None = field(default=None, repr=False)
    remote_tls_ca: str | None = None  # a CA file: connect with TLS, verifying the service against it
    remote_tls_fingerprint: str | None = None  # or TLS with the service's certificate pinned (SHA-256)
    remote_stall_timeout: float = 30.0  # seconds a remote may stay silent mid-batch before it counts as gone

    @property
    def processes_per_run(self) -> int:
        """Worker processes a run starts itself: the one template it forks from, else one each."""
        if self.workers == 0:
            return 0
        return 1 if self.fork_workers else self.workers

    # ---- checking and resolving ------------------------------------------------------
    def validate(self) -> EvalConfig:
        """Raises ConfigError for a configuration no evaluation can start from."""
        given = [n for n in ("flake", "expr", "file") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ConfigError(
                "exactly one of --flake, --expr or --file is required"
                + (f" (got {', '.join('--' + g for g in given)})" if given else "")
            )
        if self.override_inputs and self.flake is None:
            raise ConfigError("--override-input only applies to --flake")
        if self.override_flakes and self.flake is None:
            raise ConfigError("--override-flake only applies to --flake")
        if self.workers < 0 or (self.workers == 0 and not self.remotes):
            raise ConfigError("--workers must be at least 1 (0 only with --remote: evaluate on remote workers only)")
        self._validate_remotes()
        if self.max_depth < 1:
            raise ConfigError("--max-depth must be at least 1")
        if self.max_memory_mb <= 0:
            raise ConfigError("--max-memory must be a positive number of MiB")
        if self.item_timeout is not None and self.item_timeout <= 0:
            raise ConfigError("the per-item timeout must be positive")
        if self.no_instantiate:
            clash = [flag for flag, on in (("--show-input-drvs", self.show_input_drvs),
                                           ("--check-cache-status", self.check_cache_status),
                                           ("--constituents", self.constituents)) if on]
            if clash:
                raise ConfigError(f"--no-instantiate cannot be combined with {', '.join(clash)} "
                                  "(they need the .drv files it does not write)")
        if self.reference_lock_file is not None and self.flake is None:
            raise ConfigError("--reference-lock-file only applies to --flake")
        for where, text in self._texts():
            if "\0" in text:
                raise ConfigError(f"{where} contains a NUL character (at offset {text.index(chr(0))}); Nix would "
                                  "silently cut the string there, so it is refused", field=where)
        return self

    def _validate_remotes(self) -> None:
        for remote in self.remotes:
            try:
                split_endpoint(remote.endpoint)
            except EndpointError as e:
                raise ConfigError(str(e), field="remotes") from None
            if remote.connections < 1:
                raise ConfigError(f"--remote {remote.endpoint}: the number of connections must be at least 1")
        if self.remotes and (self.check_cache_status or self.constituents):
            raise ConfigError("--check-cache-status and --constituents cannot be used with --remote (they read .drv "
                              "files in this machine's store; remote workers write theirs to their own)")
        if self.remote_tls_ca and self.remote_tls_fingerprint:
            raise ConfigError("give --remote-tls-ca or --remote-tls-fingerprint, not both")
        if self.remote_stall_timeout <= 0:
            raise ConfigError("--remote-stall-timeout must be positive")

    def _texts(self) -> Iterator[tuple[str, str]]:
        """Every string of the config, with its JSON path."""
        for name in ("flake", "expr", "file", "nix_path", "base_dir", "gc_roots_dir", "select", "apply",
                     "reference_lock_file", "eval_store", "remote_token", "remote_tls_ca",
                     "remote_tls_fingerprint"):
            if getattr(self, name) is not None:
                yield _camel(name), getattr(self, name)
        for i, a in enumerate(self.args):
            yield f"args[{i}].name", a.name
            yield f"args[{i}].value", a.value
        for name in ("override_inputs", "override_flakes", "options"):
            for i, (first, second) in enumerate(getattr(self, name)):
                yield f"{_camel(name)}[{i}][0]", first
                yield f"{_camel(name)}[{i}][1]", second
        for name in ("lookup_path", "worker_command"):
            for i, text in enumerate(getattr(self, name) or ()):
                yield f"{_camel(name)}[{i}]", text

    def resolved(self, cwd: str | None = None) -> EvalConfig:
        """The same config with local paths made absolute against `cwd`, so it means the same in a daemon."""
        cwd = cwd or os.getcwd()
        return replace(
            self,
            flake=absolute_flake_ref(self.flake, cwd) if self.flake is not None else None,
            file=_absolute_file(self.file, cwd),
            reference_lock_file=(os.path.abspath(os.path.join(cwd, self.reference_lock_file))
                                 if self.reference_lock_file else None),
            override_inputs=tuple((n, absolute_flake_ref(r, cwd)) for n, r in self.override_inputs),
            override_flakes=tuple((o, absolute_flake_ref(r, cwd)) for o, r in self.override_flakes),
            gc_roots_dir=os.path.abspath(os.path.join(cwd, self.gc_roots_dir)) if self.gc_roots_dir else None,
            remote_tls_ca=os.path.abspath(os.path.join(cwd, self.remote_tls_ca)) if self.remote_tls_ca else None,
            base_dir=self.base_dir or cwd,
        )

    # ---- canonical form and key --------------------------------------------------------
    def what(self) -> dict[str, Any]:
        """The fields that change the result, in canonical form (duplicates resolved, sorted)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _HOW}
        args = {a.name: a for a in self.args}  # later --arg of the same name wins, as in Nix
        d["args"] = [[a.name, a.value, a.is_string] for a in sorted(args.values(), key=lambda a: a.name)]
        d["override_inputs"] = sorted(dict(self.override_inputs).items())
        d["override_flakes"] = [list(p) for p in self.override_flakes]  # the first match wins: keep the order
        d["options"] = [list(o) for o in self.options]
        d["lookup_path"] = list(self.lookup_path)
        if self.expr is None and self.select is None and self.apply is None and all(a.is_string for a in self.args):
            d["base_dir"] = ""  # only --expr, --select, --apply or an --arg expression resolve paths against it
        return d

    def session_key(self) -> str:
        """sha256 of the canonical JSON of what is evaluated."""
        import hashlib  # not at import: `evix query` starts faster without it

        return hashlib.sha256(orjson.dumps(self.what(), option=orjson.OPT_SORT_KEYS)).hexdigest()

    def describe(self) -> str:
        """A short human description of the input, for messages."""
        if self.flake is not None:
            return f"--flake {self.flake}"
        if self.file is not None:
            return f"--file {self.file}"
        return f"--expr {self.expr!r}"

    # ---- JSON (camelCase at the edge) ---------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["args"] = [{"name": a.name, "value": a.value, "isString": a.is_string} for a in self.args]
        d["override_inputs"] = [list(p) for p in self.override_inputs]
        d["override_flakes"] = [list(p) for p in self.override_flakes]
        d["options"] = [list(p) for p in self.options]
        d["lookup_path"] = list(self.lookup_path)
        d["worker_command"] = list(self.worker_command) if self.worker_command else None
        d["remotes"] = [r.to_json() for r in self.remotes]
        return {_camel(k): v for k, v in d.items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EvalConfig:
        """Decodes a config object; ConfigError (naming the field and what it must be) for
        unknown fields and wrong shapes. null means the field's default."""
        if not isinstance(d, dict):
            raise ConfigError("config must be a JSON object")
        known = {_camel(f.name): f.name for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        kw: dict[str, Any] = {}
        try:
            for key, value in d.items():
                if value is not None:
                    kw[known[key]] = _decode_field(known[key], key, value)
        except cj.FieldError as e:
            raise ConfigError(str(e), field=e.field) from None
        return cls(**kw)


def _decode_field(name: str, key: str, value: Any) -> Any:
    if name == "args":
        return tuple(Arg(*a) for a in cj.args(key, value))
    if name == "override_inputs":
        return cj.pairs(key, value, "input name, flake reference")
    if name == "override_flakes":
        return cj.pairs(key, value, "original flake reference, resolved flake reference")
    if name == "options":
        return cj.pairs(key, value, "setting, value")
    if name == "remotes":
        if not isinstance(value, list):
            raise cj.FieldError(key, "an array of remote objects", value)
        try:
            return tuple(remote_from_json(f"{key}[{i}]", r) for i, r in enumerate(value))
        except EndpointError as e:
            raise ConfigError(str(e), field=key) from None
    if name in ("lookup_path", "worker_command"):
        return cj.strings(key, value)
    if name in _BOOLS:
        return cj.boolean(key, value)
    if name in ("workers", "max_memory_mb", "max_depth"):
        return cj.integer(key, value)
    if name in ("item_timeout", "remote_stall_timeout"):
        return cj.number(key, value)
    return cj.string(key, value)


def _absolute_file(file: str | None, cwd: str) -> str | None:
    """A file made absolute; a lookup-path file (`<nixpkgs/lib>`) stays as it is."""
    if file is None or (file.startswith("<") and file.endswith(">")):
        return file
    return os.path.abspath(os.path.join(cwd, file))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)
