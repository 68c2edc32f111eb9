"""The argparse layer: one-line errors with a suggestion, plain-text help."""

from __future__ import annotations

import argparse

import pytest

from translate.cli import COMMANDS, build_parser, main, plain


def error_lines(capsys, argv: list[str]) -> list[str]:
    """stderr of ``translate ARGV``, which must stop with argparse's exit status 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()


def choice_flags() -> list[tuple[str, str, list[str]]]:
    """(command, flag, allowed values) for every ``choices=`` flag of every command."""
    found = []
    for name, parser in build_parser().commands.items():
        for action in parser._actions:
            if action.choices is not None and action.option_strings:
                found.append((name, action.option_strings[-1], [str(c) for c in action.choices]))
    return found


def test_mistyped_choice_is_one_line_with_the_closest_match(capsys):
    lines = error_lines(capsys, ["train", "--model", "cycle_gun", "--data", "somewhere"])
    assert len(lines) == 2
    assert "--model" in lines[0] and "cycle_gun" in lines[0] and "pix2pix" in lines[0] and "did you mean cyclegan?" in lines[0]
    assert lines[1] == "see translate train --help"


@pytest.mark.parametrize(("command", "flag", "allowed"), choice_flags(), ids=lambda v: v if isinstance(v, str) else None)
def test_every_choice_flag_names_flag_value_allowed_values_and_closest(command, flag, allowed, capsys):
    typo = allowed[-1][:-1] + "#"  # one character off the last allowed value
    lines = error_lines(capsys, [command, flag, typo])
    assert len(lines) == 2, lines
    assert flag in lines[0] and typo in lines[0] and all(value in lines[0] for value in allowed)
    assert f"did you mean {allowed[-1]}?" in lines[0]
    assert lines[1] == f"see translate {command} --help"


def test_choice_suggestion_ignores_case(capsys):
    lines = error_lines(capsys, ["video", "--direction", "atob", "--model", "m", "in.mp4", "out.mp4"])
    assert "did you mean AtoB?" in lines[0]


def test_unknown_and_missing_command(capsys):
    lines = error_lines(capsys, ["trian"])
    assert len(lines) == 2 and "trian" in lines[0] and "did you mean train?" in lines[0] and lines[1] == "see translate --help"
    lines = error_lines(capsys, [])
    assert len(lines) == 2 and all(name in lines[0] for name in COMMANDS)


def test_mistyped_flag_suggests_the_closest_one(capsys):
    lines = error_lines(capsys, ["train", "--save-evry", "3"])
    assert len(lines) == 2 and "--save-evry" in lines[0] and "did you mean --save-every?" in lines[0]
    assert lines[1] == "see translate train --help"
    lines = error_lines(capsys, ["eval", "pred", "target", "--metrcs", "psnr"])
    assert len(lines) == 2 and "--metrcs" in lines[0] and "did you mean" not in lines[0]  # nothing close: no guess
    assert lines[1] == "see translate eval --help"


def test_missing_argument_and_bad_number_are_one_line(capsys):
    lines = error_lines(capsys, ["apply", "in"])
    assert len(lines) == 2 and "output" in lines[0] and "--model" in lines[0]
    lines = error_lines(capsys, ["train", "--steps", "ten"])
    assert len(lines) == 2 and "--steps" in lines[0] and "ten" in lines[0]
    assert not any(line.startswith("usage:") for line in lines)


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_is_plain_text(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"] if command else ["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.strip()
    for markup in ("``", ":func:", ":class:", ":mod:", "::"):
        assert markup not in out, (command, markup)


def test_plain_removes_rest_markup():
    text = "``translate x``: see :func:`a.b` and :class:`~c.D`.\n\nFor example::\n\n    run it\n\n::\n\n    run more\n"
    assert plain(text) == "translate x: see a.b and c.D.\n\nFor example:\n\n    run it\n\n    run more\n"


def test_subparsers_share_the_parser_class():
    parser = build_parser()
    assert all(type(sub) is type(parser) for sub in parser.commands.values())
    assert isinstance(parser, argparse.ArgumentParser)
