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
from typing import Any

import orjson

from .flakeref import absolute_flake_ref


class ConfigError(ValueError):
    """The configuration is not valid (the message says what to change)."""


@dataclass(frozen=True)
class Arg:
    """`--arg NAME EXPR` (is_string False) or `--argstr NAME VALUE` (is_string True)."""

    name: str
    value: str
    is_string: bool = False


_HOW = ("workers", "max_memory_mb", "item_timeout", "gc_roots_dir", "worker_command", "eval_store", "fork_workers",
        "warm_template")
_BOOLS = ("force_recurse", "meta", "show_input_drvs", "no_instantiate", "check_cache_status", "nix_eval_jobs",
          "constituents", "pure_eval", "fork_workers", "warm_template")


@dataclass(frozen=True)
class EvalConfig:
    flake: str | None = None
    expr: str | None = None
    file: str | None = None
    args: tuple[Arg, ...] = ()
    override_inputs: tuple[tuple[str, str], ...] = ()
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
    warm_template: bool = False  # the template evaluates a first derivation before forking

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
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1 (remote workers are not available yet)")
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
        return self

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
            gc_roots_dir=os.path.abspath(os.path.join(cwd, self.gc_roots_dir)) if self.gc_roots_dir else None,
            base_dir=self.base_dir or cwd,
        )

    # ---- canonical form and key --------------------------------------------------------
    def what(self) -> dict[str, Any]:
        """The fields that change the result, in canonical form (duplicates resolved, sorted)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _HOW}
        args = {a.name: a for a in self.args}  # later --arg of the same name wins, as in Nix
        d["args"] = [[a.name, a.value, a.is_string] for a in sorted(args.values(), key=lambda a: a.name)]
        d["override_inputs"] = sorted(dict(self.override_inputs).items())
        d["options"] = [list(o) for o in self.options]
        d["lookup_path"] = list(self.lookup_path)
        if self.expr is None and all(a.is_string for a in self.args):
            d["base_dir"] = ""  # only an --expr or --arg expression resolves paths against it
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
        d["options"] = [list(p) for p in self.options]
        d["lookup_path"] = list(self.lookup_path)
        d["worker_command"] = list(self.worker_command) if self.worker_command else None
        return {_camel(k): v for k, v in d.items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EvalConfig:
        """Decodes a config object, rejecting unknown fields and wrong types with ConfigError."""
        if not isinstance(d, dict):
            raise ConfigError("config must be a JSON object")
        known = {_camel(f.name): f.name for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        kw: dict[str, Any] = {}
        try:
            for key, value in d.items():
                name = known[key]
                if value is None:
                    kw[name] = None
                elif name == "args":
                    kw[name] = tuple(
                        Arg(str(a["name"]), str(a["value"]), bool(a.get("isString", False))) for a in value
                    )
                elif name in ("override_inputs", "options"):
                    kw[name] = tuple((str(k), str(v)) for k, v in value)
                elif name in ("lookup_path", "worker_command"):
                    kw[name] = tuple(str(x) for x in value)
                elif name in _BOOLS:
                    kw[name] = _typed(name, value, bool)
                elif name in ("workers", "max_memory_mb", "max_depth"):
                    kw[name] = _typed(name, value, int)
                elif name == "item_timeout":
                    kw[name] = float(_typed(name, value, (int, float)))
                else:
                    kw[name] = _typed(name, value, str)
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"malformed config: {e}") from e
        return cls(**kw)


def _absolute_file(file: str | None, cwd: str) -> str | None:
    """A file made absolute; a lookup-path file (`<nixpkgs/lib>`) stays as it is."""
    if file is None or (file.startswith("<") and file.endswith(">")):
        return file
    return os.path.abspath(os.path.join(cwd, file))


def _typed(name: str, value: Any, t: Any) -> Any:
    if not isinstance(value, t) or (t is int and isinstance(value, bool)):
        raise ConfigError(f"config field {_camel(name)} has the wrong type ({type(value).__name__})")
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)
