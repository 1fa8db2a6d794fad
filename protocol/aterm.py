"""The `.drv` file format: Nix's ATerm text `Derive(outputs, inputDrvs, inputSrcs, platform,
builder, args, env)`, parsed in full.

Pure text parsing, so that both a worker (which has Nix) and the master (which must not load
Nix) can read the derivations in the store: `inputDrvs` for `--show-input-drvs`, outputs and
inputs for `--check-cache-status`, `requiredSystemFeatures` and `platform` for nix-eval-jobs'
fields. Dynamic-derivation inputs (`(outputs, [child map])`) keep only their outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_ESCAPE = re.compile(r"\\(.)", re.S)
_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t"}


class DrvParseError(ValueError):
    """The text is not a derivation in a format we know."""


@dataclass(frozen=True)
class Output:
    """One output: `path` ("" when not known statically), and for content-addressed outputs
    the hash algorithm (`r:sha256` for recursive) and hash."""

    path: str
    hash_algo: str = ""
    hash: str = ""

    @property
    def input_addressed(self) -> bool:
        return bool(self.path) and not self.hash_algo


@dataclass(frozen=True)
class Derivation:
    outputs: dict[str, Output]
    input_drvs: dict[str, list[str]]
    input_srcs: list[str]
    platform: str
    builder: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def known_output_paths(self) -> bool:
        """False for floating content-addressed, deferred and impure derivations."""
        return all(o.path for o in self.outputs.values())

    def required_system_features(self) -> list[str]:
        """What Nix's ParsedDerivation::getRequiredSystemFeatures gives, sorted: the words of
        `requiredSystemFeatures` (a list in structured attrs), plus `ca-derivations` when an
        output path is not known statically."""
        features = set(self.strings_attr("requiredSystemFeatures"))
        if not self.known_output_paths:
            features.add("ca-derivations")
        return sorted(features)

    def strings_attr(self, name: str) -> list[str]:
        """A list-of-strings attribute as Nix reads it: whitespace-separated words of the env
        variable, or the JSON list under structured attrs (`__json`)."""
        if "__json" in self.env:
            import json

            value = json.loads(self.env["__json"]).get(name, [])
            return [str(v) for v in value] if isinstance(value, list) else []
        return self.env.get(name, "").split()

    def substitutes_allowed(self) -> bool:
        """`allowSubstitutes` (default true), as ParsedDerivation::substitutesAllowed reads it."""
        if "__json" in self.env:
            import json

            return json.loads(self.env["__json"]).get("allowSubstitutes", True) is not False
        return self.env.get("allowSubstitutes", "1") == "1"


class _Reader:
    """A cursor over the text; each method reads one ATerm value and moves past it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def expect(self, token: str) -> None:
        if not self.text.startswith(token, self.i):
            raise DrvParseError(f"expected {token!r} at offset {self.i}")
        self.i += len(token)

    def comma(self) -> bool:
        """Moves past a ',' if there is one."""
        if self.text.startswith(",", self.i):
            self.i += 1
            return True
        return False

    def string(self) -> str:
        m = _STRING.match(self.text, self.i)
        if m is None:
            raise DrvParseError(f"expected a string at offset {self.i}")
        self.i = m.end()
        raw = m.group(1)
        return _ESCAPE.sub(lambda e: _UNESCAPE.get(e.group(1), e.group(1)), raw) if "\\" in raw else raw

    def items(self, open_: str, close: str, read: object) -> list:
        """`open_ item, item… close`, each item read by `read()`."""
        self.expect(open_)
        out = []
        while not self.text.startswith(close, self.i):
            out.append(read())  # type: ignore[operator]
            if not self.comma() and not self.text.startswith(close, self.i):
                raise DrvParseError(f"expected ',' or {close!r} at offset {self.i}")
        self.i += 1
        return out

    def strings(self) -> list[str]:
        return self.items("[", "]", self.string)

    def output(self) -> tuple[str, Output]:
        self.expect("(")
        name = self.string()
        parts = []
        for _ in range(3):
            self.expect(",")
            parts.append(self.string())
        self.expect(")")
        return name, Output(*parts)

    def input_drv(self) -> tuple[str, list[str]]:
        self.expect("(")
        path = self.string()
        self.expect(",")
        if self.text.startswith("(", self.i):  # dynamic derivations: (outputs, [child map])
            self.i += 1
            outputs = self.strings()
            self.expect(",")
            self.skip()
            self.expect(")")
        else:
            outputs = self.strings()
        self.expect(")")
        return path, outputs

    def pair(self) -> tuple[str, str]:
        self.expect("(")
        key = self.string()
        self.expect(",")
        value = self.string()
        self.expect(")")
        return key, value

    def skip(self) -> None:
        """Moves past one value of any shape (string, list or tuple)."""
        if self.text.startswith('"', self.i):
            self.string()
            return
        close = {"[": "]", "(": ")"}.get(self.text[self.i : self.i + 1])
        if close is None:
            raise DrvParseError(f"unexpected {self.text[self.i:self.i + 1]!r} at offset {self.i}")
        self.items(self.text[self.i], close, self.skip)


def parse(text: str) -> Derivation:
    """The derivation in `text` (a .drv file's contents); DrvParseError if it is not one."""
    if not text.startswith("Derive("):
        raise DrvParseError("not a derivation (expected 'Derive(')")
    r = _Reader(text)
    r.i = len("Derive(")
    try:
        outputs = dict(r.items("[", "]", r.output))
        r.expect(",")
        input_drvs = dict(r.items("[", "]", r.input_drv))
        r.expect(",")
        input_srcs = r.strings()
        r.expect(",")
        platform = r.string()
        r.expect(",")
        builder = r.string()
        r.expect(",")
        args = r.strings()
        r.expect(",")
        env = dict(r.items("[", "]", r.pair))
        r.expect(")")
    except IndexError:
        raise DrvParseError("truncated derivation") from None
    return Derivation(outputs, input_drvs, input_srcs, platform, builder, args, env)


def read(drv_path: str) -> Derivation:
    """Parses the .drv file at `drv_path` (OSError when it cannot be read)."""
    with open(drv_path, encoding="utf-8", errors="surrogateescape") as f:
        return parse(f.read())
