"""translate.files: atomic writes (whole or not at all), stale temporaries, value and channel conversions."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from translate import files
from translate.errors import UserError
from translate.files import (
    atomic_path,
    atomic_write,
    grey_tensor,
    is_temp,
    remove_stale_temps,
    signed_to_uint8,
    signed_to_unit,
    stale_temps,
    temp_name,
    to_channels,
    to_unit,
    unit_to_signed,
)

# ---------------------------------------------------------------------------------- atomic writes


def test_atomic_write_replaces_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "metrics.json"  # missing folders are created
    atomic_write(path, "first\n")
    atomic_write(path, b"second, longer than the first")
    assert path.read_bytes() == b"second, longer than the first"
    assert os.listdir(path.parent) == ["metrics.json"]


def test_failed_replace_raises_one_line_naming_the_path_and_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old and complete")

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "replace", full_disk)
    with pytest.raises(UserError) as info:
        atomic_write(path, b"new" * 1000, hint="free disk space")
    message = str(info.value)
    assert str(path) in message and "No space left on device" in message and message.endswith("free disk space")
    assert "\n" not in message
    assert path.read_bytes() == b"old and complete"
    assert os.listdir(tmp_path) == ["model.onnx"]  # no temporary left


def test_an_error_while_writing_removes_the_temporary_and_passes_through(tmp_path: Path) -> None:
    path = tmp_path / "grid.png"
    with pytest.raises(RuntimeError, match="encoder crashed"), atomic_path(path) as tmp:
        tmp.write_bytes(b"half a png")
        raise RuntimeError("encoder crashed")
    assert os.listdir(tmp_path) == []


def test_the_temporary_is_hidden_beside_the_path_and_keeps_its_suffix(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "night.mp4") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and is_temp(tmp.name)
        assert tmp.name.startswith(".")
        tmp.write_bytes(b"video")
    assert (tmp_path / "night.mp4").read_bytes() == b"video" and not tmp.exists()
    assert temp_name(tmp_path / "a.png") != temp_name(tmp_path / "a.png")


def test_atomic_path_replaces_an_existing_folder_whole(tmp_path: Path) -> None:
    final = tmp_path / "step_0000010"
    final.mkdir()
    (final / "model.safetensors").write_bytes(b"old weights")
    (final / "only_in_old").write_bytes(b"x")
    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "model.safetensors").write_bytes(b"new weights")
        (tmp / "state.safetensors").write_bytes(b"new state")
        assert (final / "model.safetensors").read_bytes() == b"old weights"  # untouched until complete
    assert sorted(os.listdir(final)) == ["model.safetensors", "state.safetensors"]
    assert (final / "model.safetensors").read_bytes() == b"new weights"
    assert os.listdir(tmp_path) == ["step_0000010"]  # neither the temporary nor the old folder is left


def test_a_failed_folder_write_leaves_the_old_folder(tmp_path: Path) -> None:
    final = tmp_path / "best"
    final.mkdir()
    (final / "model.safetensors").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["best"] and (final / "model.safetensors").read_bytes() == b"old"


# ---------------------------------------------------------------------------------- stale temporaries


def test_stale_temps_finds_only_this_paths_temporaries(tmp_path: Path) -> None:
    mine = [temp_name(tmp_path / "coffee.png"), temp_name(tmp_path / "coffee.png")]
    others = [
        temp_name(tmp_path / "coffee.jpg"),  # same stem, another suffix
        temp_name(tmp_path / "coffee-2.png"),  # a stem that starts like this one
        temp_name(tmp_path / "cof.png"),
        tmp_path / ".tmp-coffee-notahexname.png",
        tmp_path / "coffee.png",  # the output itself
    ]
    for path in mine + others:
        path.write_bytes(b"")
    (tmp_path / "sub").mkdir()
    temp_name(tmp_path / "sub" / "coffee.png").write_bytes(b"")  # another folder
    assert sorted(stale_temps(tmp_path / "coffee.png")) == sorted(mine)
    assert stale_temps(tmp_path / "missing" / "coffee.png") == []
    remove_stale_temps([tmp_path / "coffee.png", tmp_path / "cof.png"])
    assert not any(p.exists() for p in mine) and not others[2].exists()
    assert all(p.exists() for p in others[:2] + others[3:])


def test_temporaries_of_folders_and_names_without_suffix_are_found(tmp_path: Path) -> None:
    folder, pointer = temp_name(tmp_path / "step_0000002"), temp_name(tmp_path / "latest")
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"half")
    pointer.write_text("step_0000001\n")
    assert stale_temps([tmp_path / "step_0000002", tmp_path / "latest"]) == sorted([folder, pointer])
    remove_stale_temps([tmp_path / "step_0000002", tmp_path / "latest"])
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(sys.platform == "win32", reason="advisory locks are POSIX")
def test_a_claimed_temporary_is_stale_only_once_its_writer_is_gone(tmp_path: Path) -> None:
    dst = tmp_path / "night.mp4"
    with atomic_path(dst, claim=True) as tmp:
        assert tmp.exists()  # created at once, so a killed writer leaves something to find
        assert stale_temps(dst) == []  # a write in progress is not stale
        tmp.write_bytes(b"frames")
    assert dst.read_bytes() == b"frames"
    # a process killed mid-write: the kernel dropped its lock, its temporary is stale
    script = (
        "import os, sys\nfrom pathlib import Path\nfrom translate.files import atomic_path\n"
        "with atomic_path(Path(sys.argv[1]), claim=True) as tmp:\n    os._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", script, str(dst)]).returncode == 9
    left = [p for p in tmp_path.iterdir() if is_temp(p.name)]
    assert len(left) == 1 and stale_temps(dst) == left


# ---------------------------------------------------------------------------------- conversions


def test_uint8_round_trips_through_unit_and_signed() -> None:
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    unit = to_unit(pixels)
    assert unit.dtype == np.float32 and unit.min() == 0.0 and unit.max() == 1.0
    signed = unit_to_signed(unit)
    assert signed.min() == -1.0 and signed.max() == 1.0
    np.testing.assert_array_equal(signed_to_uint8(signed), pixels)
    np.testing.assert_array_equal(signed_to_uint8(torch.from_numpy(signed)), pixels)  # tensors too
    np.testing.assert_array_equal(np.round(signed_to_unit(signed) * 255).astype(np.uint8), pixels)
    tensor = unit_to_signed(torch.from_numpy(unit))
    torch.testing.assert_close(signed_to_unit(tensor), torch.from_numpy(unit), atol=1e-7, rtol=0)  # float: to an ulp


def test_uint16_and_float_to_unit() -> None:
    np.testing.assert_array_equal(to_unit(np.array([0, 65535], np.uint16)), [0.0, 1.0])
    floats = np.array([0.25, 0.5], np.float32)
    assert to_unit(floats) is floats  # already in [0, 1]: no copy


def test_out_of_range_values_are_clipped_and_rounded_to_nearest() -> None:
    np.testing.assert_array_equal(signed_to_uint8(np.array([-3.0, -1.0, 1.0, 7.0])), [0, 0, 255, 255])
    # 127.5 * (x + 1) = 0.6 and 1.4 round to 1; exact halves to even, as torch.round
    np.testing.assert_array_equal(signed_to_uint8(np.array([0.6 / 127.5 - 1, 1.4 / 127.5 - 1])), [1, 1])
    np.testing.assert_array_equal(signed_to_unit(np.array([-2.0, 3.0])), [0.0, 1.0])


def test_to_channels_grey_and_rgb_both_ways() -> None:
    rgb = np.ascontiguousarray(skimage.data.astronaut()[::8, ::8])
    grey = to_channels(rgb, 1)
    assert grey.shape == (*rgb.shape[:2], 1) and grey.dtype == np.uint8
    expected = np.round(rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    assert np.abs(grey[..., 0].astype(np.float64) - expected).max() <= 1  # ITU-R 601 luma, rounded
    back = to_channels(grey, 3)
    assert back.shape == rgb.shape and (back == grey).all()  # grey replicated
    assert to_channels(rgb, 3) is rgb and to_channels(grey, 1) is grey
    assert to_channels(rgb[..., 0], 3).shape == rgb.shape  # (H, W) is one channel
    unit = to_unit(rgb)
    assert to_channels(unit, 1).dtype == np.float32
    np.testing.assert_allclose(to_channels(unit, 1)[..., 0], expected / 255, atol=0.5 / 255 + 1e-6)


def test_to_channels_refuses_other_counts() -> None:
    with pytest.raises(ValueError, match="channels must be 1 or 3, got 4"):
        to_channels(np.zeros((2, 2, 3), np.float32), 4)
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        to_channels(np.zeros((2, 2, 2), np.float32), 3)


def test_grey_tensor_equals_to_channels_on_the_same_image() -> None:
    signed = unit_to_signed(to_unit(np.ascontiguousarray(skimage.data.coffee()[::4, ::4])))
    batch = torch.from_numpy(signed).permute(2, 0, 1)[None]
    from_tensor = grey_tensor(batch)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(from_tensor, to_channels(signed, 1))
