"""Thin argparse layer: ``translate train | apply | video | export | eval | demo``.

Each sub-command lives in ``translate/commands/<name>.py`` with two functions:
``add_parser(subparsers)`` declares its flags and ``run(args) -> int`` does the work
through the Python API; ``--threads`` is added to every one here. User errors (``UserError``) become one ``error:`` line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from translate.errors import UserError
from translate.runtime import prefer_huge_pages, set_threads

prefer_huge_pages()  # before anything imports torch

COMMANDS = ("train", "apply", "video", "export", "eval", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="translate",
        description="Image-to-image translation: train CycleGAN / pix2pix, translate folders and videos.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
