"""Thin argparse layer: ``translate train | apply | video | export | eval | demo``.

Each sub-command lives in ``translate/commands/<name>.py`` with two functions:
``add_parser(subparsers)`` declares its flags and ``run(args) -> int`` does the work
through the Python API; ``--threads`` is added to every one here. User errors (``UserError``) become one ``error:`` line and exit 2.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import sys

from translate.errors import UserError
from translate.runtime import prefer_huge_pages, set_threads

prefer_huge_pages()  # before anything imports torch

COMMANDS = ("train", "apply", "video", "export", "eval", "demo")


def plain(text: str | None) -> str | None:
    """Module docstrings as terminal text: reST roles, literals and ``::`` markers removed."""
    if not text:
        return text
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)  # :func:`x` -> x
    text = re.sub(r"``([^`]+)``", r"\1", text)  # ``x`` -> x
    text = re.sub(r"\s*::$", ":", text, flags=re.MULTILINE)  # "for example::" -> "for example:"
    return text


class Parser(argparse.ArgumentParser):
    """argparse with plain-text descriptions and one-line errors (plus where to read more)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["description"] = plain(kwargs.get("description"))
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        line = message
        choice = re.match(r"argument (\S+?)(?:/\S+)?: invalid choice: '?([^'\s]+)'? \(choose from (.*)\)", message)
        if choice:
            flag, value, allowed = choice.group(1), choice.group(2), [c.strip(" '") for c in choice.group(3).split(",")]
            close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.5)
            line = f"{flag} {value}: not one of {', '.join(allowed)}" + (f"; did you mean {close[0]}?" if close else "")
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if unknown and unknown.group(1).startswith("--"):
            flags = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
            close = difflib.get_close_matches(unknown.group(1).split("=")[0], flags, n=1)
            if close:
                line = f"{message}; did you mean {close[0]}?"
        self.exit(2, f"error: {line}\nsee {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
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
    parser.set_defaults(_commands=sub.choices)
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the command's parser, which knows its own flags and --help
        args._commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
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
