"""The argparse layer: one-line errors with a suggestion, plain-text help."""

from __future__ import annotations

import pytest

from translate.cli import COMMANDS, main


def test_mistyped_choice_is_one_line_with_the_closest_match(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "cycle_gun", "--data", "somewhere"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert "--model" in lines[0] and "cycle_gun" in lines[0] and "pix2pix" in lines[0] and "did you mean cyclegan?" in lines[0]
    assert lines[1] == "see translate train --help"


def test_mistyped_flag_suggests_the_closest_one(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "pred", "target", "--metrcs", "psnr"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "--metrcs" in lines[0] and lines[1] == "see translate eval --help"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_plain_text(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.strip()
    for markup in ("``", ":func:", ":class:", ":mod:", "::\n"):
        assert markup not in out, (command, markup)
