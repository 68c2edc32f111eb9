"""Thin argparse layer: ``translate train | apply | video | export | eval | demo``.

Each sub-command lives in ``translate/commands/<name>.py`` with two functions:
``add_parser(subparsers)`` declares its flags and ``run(args) -> int`` does the work
through the Python API; ``--threads`` is added to every one here. User errors (``UserError``)
and argparse's errors become one ``error:`` line and exit 2; argparse's add a second line,
``see translate <command> --help``, instead of the whole usage.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import re
import sys
from typing import Any, NoReturn

from translate.errors import UserError
from translate.runtime import prefer_huge_pages, set_threads

prefer_huge_pages()  # before anything imports torch

COMMANDS = ("train", "apply", "video", "export", "eval", "demo")


def plain(text: str | None) -> str | None:
    """A module docstring as terminal text: reST roles, ``literals`` and ``::`` markers removed.

    The command modules' docstrings are their ``--help`` descriptions; this is the one place
    their markup is turned into what a terminal should show.
    """
    if not text:
        return text
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)  # :func:`x` -> x
    text = re.sub(r"``([^`]+)``", r"\1", text)  # ``x`` -> x
    text = re.sub(r"\n[ \t]*::[ \t]*\n(?=\n)", "", text)  # a paragraph that is only "::" goes (one blank line stays)
    text = re.sub(r"\n[ \t]*::[ \t]*(?=\n)", "", text)
    text = re.sub(r"[ \t]+::$", "", text, flags=re.MULTILINE)  # "for example ::" -> "for example"
    text = re.sub(r"::$", ":", text, flags=re.MULTILINE)  # "for example::" -> "for example:"
    return text


TYPE_NAMES = {"int": "an integer", "float": "a number"}


class Parser(argparse.ArgumentParser):
    """argparse with plain-text descriptions and one-line errors: the flag, the bad value,
    what is allowed and the closest match, then where to read more (not the whole usage)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["description"] = plain(kwargs.get("description"))
        super().__init__(*args, **kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:  # reported by the command's own parser, which knows its flags and its --help
            self.commands.get(getattr(parsed, "command", None), self).error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, f"error: {self.one_line(message)}\nsee {self.prog} --help\n")

    def one_line(self, message: str) -> str:
        """argparse's message, rewritten to name the flag and value and suggest a fix."""
        choice = re.match(r"argument (\S+): invalid choice: (.+) \(choose from ", message)
        if choice:
            action = self.action_named(choice.group(1))
            value = unquote(choice.group(2))
            if action is not None and action.choices is not None:
                allowed = [str(c) for c in action.choices]
                name = action.option_strings[-1] if action.option_strings else "command" if action is self.command_action() else action.dest
                line = f"{name} {value}: not one of {', '.join(allowed)}"
                return line + suggestion(value, allowed)
        typed = re.match(r"argument (\S+): invalid (\w+) value: (.+)$", message)
        if typed:
            flag = typed.group(1).split("/")[-1]
            return f"{flag} {unquote(typed.group(3))}: expected {TYPE_NAMES.get(typed.group(2), 'a valid ' + typed.group(2))}"
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if unknown and unknown.group(1).startswith("-"):
            flags = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
            return message + suggestion(unknown.group(1).split("=")[0], flags, cutoff=0.7)
        required = re.match(r"the following arguments are required: (.*)$", message)
        commands = self.command_action()
        if required and commands is not None and commands.metavar in required.group(1).split(", "):
            return f"a command is required: one of {', '.join(commands.choices)}"
        return re.sub(r"\bargument (\S+)", lambda m: m.group(1).split("/")[-1], message)

    def command_action(self) -> argparse.Action | None:
        """The sub-command argument of the top-level parser (None for a command's parser)."""
        return next((a for a in self._actions if isinstance(a, argparse._SubParsersAction)), None)

    def action_named(self, name: str) -> argparse.Action | None:
        """The action argparse names ``name`` in its messages (``--flag``, ``-f/--flag``, a metavar, a dest)."""
        for action in self._actions:
            if name in ("/".join(action.option_strings), action.metavar, action.dest):
                return action
        return None


def unquote(text: str) -> str:
    """argparse quotes values with repr(): ``'x'`` -> ``x``."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, str) else text


def suggestion(value: str, allowed: list[str], cutoff: float = 0.5) -> str:
    """``"; did you mean X?"`` for the closest of ``allowed`` (case ignored), or nothing."""
    lowered = {a.lower(): a for a in allowed}
    close = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=cutoff)
    return f"; did you mean {lowered[close[0]]}?" if close else ""


def build_parser() -> Parser:
    parser = Parser(
        prog="translate",
        description="Image-to-image translation: train CycleGAN / pix2pix, translate folders and videos.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"translate.commands.{name}")
        module.add_parser(sub)
        sub.choices[name].add_argument(
            "--threads",
            type=int,
            metavar="N",
            help="PyTorch compute threads (default: one per core); on a machine busy with other jobs fewer can be much faster",
        )
    parser.commands = sub.choices
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        set_threads(args.threads)
        code = args.run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
