"""What shell completion needs to know about a command line, read from its argparse parsers:
the command tree, each command's options, how many words each option takes and what kind
of word each is (a file, a directory, a flake reference, one of some choices, or free text).

Generated from the parsers, so a new subcommand or option is completed without further work.
A subcommand whose real parser lives elsewhere (`evix daemon` is evixd's parser plus
`status|stop`) is registered in the main parser as a stub with
`set_defaults(full_parser="module:function ...")`: those parsers are merged in its place.
An action can name its kind itself with an attribute `complete = "file"|"dir"|"flake"`.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field

# What a value word is, from its metavar, unless the action says (`action.complete`).
KIND_BY_METAVAR = {"PATH": "file", "FILE": "file", "DIR": "dir", "REF": "flake", "RESOLVED": "flake"}
KINDS = ("file", "dir", "flake", "choice", "none")


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    kinds: tuple[str, ...]  # one per value word the option takes; () for a flag
    choices: tuple[str, ...]
    help: str


@dataclass
class Command:
    path: str  # "evix daemon status"
    help: str = ""
    options: list[Option] = field(default_factory=list)
    positional: str = "none"  # kind of the positional words
    positional_choices: tuple[str, ...] = ()
    subcommands: dict[str, Command] = field(default_factory=dict)

    def walk(self) -> list[Command]:
        """This command and every command below it, parents first."""
        found = [self]
        for sub in self.subcommands.values():
            found += sub.walk()
        return found


def command_tree(parser: argparse.ArgumentParser, path: str = "evix", help: str = "") -> Command:
    """The Command for `parser` (named `path`) and everything below it."""
    return _merge(Command(path, help), [parser])


def short_help(text: str | None) -> str:
    """The first clause of an option's help, on one line, for a completion menu."""
    if not text or text == argparse.SUPPRESS:
        return ""
    first = " ".join(text.split()).split("; ")[0].split(" (")[0]
    return first if len(first) <= 72 else first[:69] + "..."


def _merge(cmd: Command, parsers: list[argparse.ArgumentParser]) -> Command:
    for parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_subcommands(cmd, action)
            elif action.help == argparse.SUPPRESS:
                continue
            elif action.option_strings:
                if not any(set(action.option_strings) <= set(o.flags) for o in cmd.options):  # -h of each
                    cmd.options.append(_option(action))
            else:
                cmd.positional = _kind(action, _metavars(action)[0], positional=True)
                cmd.positional_choices = tuple(map(str, action.choices or ()))
    return cmd


def _add_subcommands(cmd: Command, action: argparse._SubParsersAction) -> None:
    helps = {a.dest: a.help or "" for a in action._choices_actions}
    for name, sub in action.choices.items():
        full = sub.get_default("full_parser")
        parsers = [load_parser(ref) for ref in full.split()] if full else [sub]
        cmd.subcommands[name] = _merge(Command(f"{cmd.path} {name}", short_help(helps.get(name))), parsers)


def load_parser(ref: str) -> argparse.ArgumentParser:
    """The parser that `ref` ("module:function") builds."""
    module, _, function = ref.partition(":")
    return getattr(importlib.import_module(module), function)()


def _option(action: argparse.Action) -> Option:
    metavars = _metavars(action)
    words = _word_count(action)
    kinds = tuple(_kind(action, metavars[min(i, len(metavars) - 1)]) for i in range(words))
    return Option(tuple(action.option_strings), kinds, tuple(map(str, action.choices or ())), short_help(action.help))


def _word_count(action: argparse.Action) -> int:
    if isinstance(action.nargs, int):
        return action.nargs
    if action.nargs is None:
        return 1
    return 0 if action.nargs == argparse.OPTIONAL and action.const is not None else 1


def _metavars(action: argparse.Action) -> tuple[str, ...]:
    metavar = action.metavar or action.dest.upper()
    return tuple(metavar) if isinstance(metavar, tuple) else (str(metavar),)


def _kind(action: argparse.Action, metavar: str, positional: bool = False) -> str:
    explicit = getattr(action, "complete", None)
    if explicit in KINDS:
        return explicit
    if action.choices:
        return "choice"
    return KIND_BY_METAVAR.get(metavar, "file" if positional else "none")
