"""The realistic set's packages as data: names, scopes, dependencies and how each one fails.

gen_realistic.py turns this model into Nix; the model also says what evaluating that Nix
must give (derivations, error events, the paths the reference must skip), so the benchmark
can check evix and the reference against it. Everything comes from one seeded generator,
so the same seed always gives the same set.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# How a package fails. "catchable" errors are throws and asserts (builtins.tryEval catches
# them); the others (a missing attribute, callPackage's abort) stop a plain Nix process, so
# the reference skips their paths.
META_KINDS = ("broken", "unsupported", "unfree", "insecure", "invalidMeta")  # drvPath throws
CATCHABLE = META_KINDS + ("assert", "brokenDep", "throw")
UNCATCHABLE = ("missingAttr", "missingDep")
# failing packages per 1,000 packages, by kind (aliases that throw are counted separately)
FAILURE_RATES = {
    "broken": 70, "unsupported": 75, "unfree": 30, "insecure": 18, "invalidMeta": 6,
    "assert": 30, "missingAttr": 24, "missingDep": 24, "brokenDep": 45,
}
SYLLABLES = ("ba", "ko", "zen", "tri", "lu", "mar", "vex", "sol", "qui", "dra", "fen", "gor",
             "hal", "ix", "jun", "kel", "mo", "nor", "pa", "ros", "sta", "tu", "vin", "wex", "yel")
SUFFIXES = ("", "", "", "-utils", "-core", "-tools", "lib", "-client", "d", "-ng")


@dataclass(frozen=True)
class Scope:
    """`count` packages at attribute path `path`; `builder` names their builder (builders.nix)."""

    key: str
    path: tuple[str, ...]
    count: int
    builder: str  # "stdenv", "python", "haskell", "perl" or "qt"
    aliases: int  # removed packages whose attribute throws


SCOPES = (
    Scope("top", (), 840, "stdenv", 130),
    Scope("python3Packages", ("python3Packages",), 330, "python", 20),
    Scope("ghc96", ("haskell", "packages", "ghc96"), 190, "haskell", 0),
    Scope("perlPackages", ("perlPackages",), 100, "perl", 5),
    Scope("qt6", ("qt6",), 50, "qt", 0),
    Scope("kdePackages", ("qt6", "kdePackages"), 90, "qt", 5),
    Scope("xorg", ("xorg",), 80, "stdenv", 0),
)
# Top-level packages every scope builds with (fixed names, never broken), first in the set.
BASE_PACKAGES = ("pkg-config", "cmake", "ninja", "meson", "autoconf", "automake", "libtool",
                 "gettext", "python3", "ghc", "qtbase", "openssl", "libffi", "ncurses", "readline")
# Names the static part of the set defines (never generated).
RESERVED = ("lib", "config", "stdenv", "stdenvNoCC", "callPackage", "newScope", "fetchurl", "builders",
            "gmp", "mpfr", "libmpc", "isl", "m4", "bison", "texinfo", "perl", "zlib", "patchelf",
            "linuxHeaders", "glibc", "binutils", "binutils-unwrapped", "gcc", "gcc-unwrapped", "coreutils",
            "findutils", "diffutils", "gnused", "gnugrep", "gawk", "gnutar", "gzip", "bzip2", "gnumake",
            "bash", "patch", "xz", "attr", "acl", "libxcrypt", "libunistring", "libidn2", "expand-response-params",
            "gnu-config", "setupHooks", "haskell", "pkgsi686Linux", "pkgsStatic")
# Jobs that come from the static part of the set (bootstrap.nix, package-set.nix): the final
# stdenv and stdenvNoCC, and what the top level takes from bootstrap stage 4 (bootstrap.nix:
# the 13 tools, 21 toolchain packages, the binutils and compiler wrappers).
STATIC_DERIVATIONS = 2 + 13 + 21 + 2


@dataclass
class Package:
    name: str
    scope: Scope
    index: int
    kind: str = "ok"
    deps: list[str] = field(default_factory=list)  # attribute names visible in its scope
    broken_dep: str | None = None
    has_docs_flag: bool = False
    outputs: tuple[str, ...] = ("out",)

    @property
    def path(self) -> tuple[str, ...]:
        return self.scope.path + (self.name,)

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


@dataclass
class Model:
    """The whole set: packages by scope, aliases, overrides, variants, functions."""

    packages: dict[str, list[Package]]
    aliases: dict[str, list[str]]  # scope key -> removed names (attribute throws)
    minimal: list[str]  # top-level names with a `-minimal` variant (.override)
    debug: list[str]  # top-level names with a `-debug` variant (.overrideAttrs)
    overridden_args: dict[str, str]  # package -> dependency passed to callPackage with .override
    variants: dict[str, list[str]]  # "i686" / "static" -> top-level names
    i686_aliases: list[str]  # top-level `<name>_i686 = pkgsi686Linux.<name>`
    functions: dict[str, list[tuple[str, str, str]]]  # scope key -> (attr, "drv"|"set"|"required", target)

    FUNCTION_SET_SIZE = 4  # derivations in the set a "set" function returns

    def all_packages(self) -> list[Package]:
        return [p for ps in self.packages.values() for p in ps]

    def expected(self, with_functions: bool) -> tuple[int, int]:
        """(derivation events, error events) of the set."""
        pkgs = self.all_packages()
        drvs = sum(p.ok for p in pkgs) + STATIC_DERIVATIONS + len(self.minimal) + len(self.debug)
        drvs += sum(len(v) for v in self.variants.values()) + len(self.i686_aliases)
        errors = sum(not p.ok for p in pkgs) + sum(len(a) for a in self.aliases.values())
        if with_functions:
            fns = [f for fs in self.functions.values() for f in fs]
            drvs += sum(1 for f in fns if f[1] == "drv") + sum(self.FUNCTION_SET_SIZE for f in fns if f[1] == "set")
            errors += sum(1 for f in fns if f[1] == "required")
        return drvs, errors

    def skip_paths(self) -> list[tuple[str, ...]]:
        """Paths whose error builtins.tryEval cannot catch: the reference skips them."""
        return [p.path for p in self.all_packages() if p.kind in UNCATCHABLE]


class _Names:
    """Unique pronounceable attribute names."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.used = rng, set(BASE_PACKAGES) | set(RESERVED)

    def new(self) -> str:
        while True:
            stem = "".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(2, 3)))
            suffix = self.rng.choice(SUFFIXES)
            name = "lib" + stem if suffix == "lib" else stem + suffix
            if name not in self.used:
                self.used.add(name)
                return name


def _draw_kind(rng: random.Random) -> str:
    r = rng.randrange(1000)
    for kind, rate in FAILURE_RATES.items():
        if r < rate:
            return kind
        r -= rate
    return "ok"


def _scope_packages(scope: Scope, rng: random.Random, names: _Names, top_ok: list[str]) -> list[Package]:
    pkgs: list[Package] = []
    ok: list[str] = []
    meta_broken: list[str] = []
    for i in range(scope.count):
        fixed = scope.key == "top" and i < len(BASE_PACKAGES)
        p = Package(BASE_PACKAGES[i] if fixed else names.new(), scope, i)
        p.kind = "ok" if fixed else _draw_kind(rng)
        if p.kind == "brokenDep" and not meta_broken:
            p.kind = "ok"
        popular = ok[:25]
        n_deps = 0 if not ok else rng.choice((0, 1, 1, 2, 2, 3, 3, 4, 5))
        deps = {rng.choice(popular if rng.random() < 0.5 else ok) for _ in range(n_deps)}
        if scope.key != "top" and top_ok:
            deps |= {rng.choice(top_ok[:60]) for _ in range(rng.choice((0, 1, 1, 2)))}
        p.deps = sorted(deps)
        if p.kind == "brokenDep":
            p.broken_dep = rng.choice(meta_broken)
        p.has_docs_flag = rng.random() < 0.3
        p.outputs = ("out", "dev") if rng.random() < 0.25 else ("out",)
        if p.ok:
            ok.append(p.name)
        elif p.kind in META_KINDS:
            meta_broken.append(p.name)
        pkgs.append(p)
    return pkgs


def build(seed: int = 8) -> Model:
    """The model for `seed` (the benchmark always uses the default)."""
    rng = random.Random(seed)
    names = _Names(rng)
    packages: dict[str, list[Package]] = {}
    top_ok: list[str] = []
    for scope in SCOPES:
        packages[scope.key] = _scope_packages(scope, rng, names, top_ok)
        if scope.key == "top":
            top_ok = [p.name for p in packages["top"] if p.ok]
    aliases = {s.key: [names.new() for _ in range(s.aliases)] for s in SCOPES if s.aliases}
    top = [p for p in packages["top"][len(BASE_PACKAGES):] if p.ok]
    with_flag = [p.name for p in top if p.has_docs_flag]
    minimal = with_flag[:40]
    debug = [p.name for p in top[::17]][:25]
    overridden_args = {}
    for p in top:
        flagged = [d for d in p.deps if d in with_flag]
        if flagged and len(overridden_args) < 20:
            overridden_args[p.name] = flagged[0]
    # variant sets: packages whose dependencies are all base packages (never broken anywhere)
    leaves = [p.name for p in top if all(d in BASE_PACKAGES for d in p.deps)]
    variants = {"i686": leaves[:6], "static": leaves[6:11]}
    return Model(packages, aliases, minimal, debug, overridden_args, variants, variants["i686"][:2],
                 _functions(packages))


def _functions(packages: dict[str, list[Package]]) -> dict[str, list[tuple[str, str, str]]]:
    """Functions below the root, by scope: (attribute, shape, the package it builds on)."""
    ok = {key: [p.name for p in ps[len(BASE_PACKAGES) if key == "top" else 0:] if p.ok] for key, ps in packages.items()}
    return {
        "top": [(f"devShell-{n}", "drv", n) for n in ok["top"][:6]]
        + [("toolchainChecks", "set", "gcc")]
        + [(f"{n}-withPlugins", "required", n) for n in ok["top"][6:16]],
        "python3Packages": [("devEnv", "drv", "python3"), ("withPackages", "required", "python3")]
        + [(f"{n}-wrapped", "required", n) for n in ok["python3Packages"][:5]],
        "ghc96": [("ghcWithHoogle", "drv", "ghc"), ("ghcWithPackages", "required", "ghc")]
        + [(f"{n}-env", "drv", n) for n in ok["ghc96"][:1]],
    }
