"""The CUDA routes: inference matches the CPU, mixed precision stays finite, a training run works.

Every test here is marked ``cuda`` and skipped where ``torch.cuda.is_available()`` is false
(tests/conftest.py); ``scripts/gpu_check.sh`` runs them on a GPU machine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from translate.config import preset
from translate.data.samples import make_sample_dataset
from translate.formats import list_checkpoints, read_generator
from translate.infer.translator import Translator
from translate.train.loop import train

pytestmark = pytest.mark.cuda


@pytest.fixture
def exact_fp32() -> Iterator[None]:
    """cuDNN convolutions in true fp32: by default they may use TF32 (10-bit mantissa)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_generator_on_cuda_matches_cpu(tiny_generator_file: Path, photo, exact_fp32: None) -> None:
    # 96 x 160: not a multiple of the U-Net's 128, so padding and cropping run on both devices
    batch = torch.cat([photo(96, 160), photo(96, 160, "chelsea")])
    on_cpu = Translator.load(tiny_generator_file, device="cpu").translate_batch(batch)
    on_cuda = Translator.load(tiny_generator_file, device="cuda").translate_batch(batch)
    assert on_cuda.shape == on_cpu.shape == (2, 3, 96, 160)
    assert on_cpu.abs().max() > 0  # a real output, not a constant zero
    torch.testing.assert_close(on_cuda, on_cpu, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_forward_is_finite_and_close_to_fp32(tiny_generator_file: Path, photo, precision: str) -> None:
    batch = photo(128, 128, "coffee")
    reference = Translator.load(tiny_generator_file, device="cuda").translate_batch(batch)
    out = Translator.load(tiny_generator_file, device="cuda", precision=precision).translate_batch(batch)
    assert out.dtype == torch.float32 and out.shape == reference.shape
    assert torch.isfinite(out).all()
    # bf16 keeps 8 significant bits: allow a few per cent of the output's scale
    assert (out - reference).abs().max() <= 0.05 * reference.abs().max() + 1e-3


def test_tiled_inference_on_cuda_matches_cpu(tiny_generator_factory, photo, exact_fp32: None) -> None:
    path = tiny_generator_factory("resnet_6blocks", base_channels=8)
    batch = photo(160, 192)
    on_cpu = Translator.load(path, device="cpu", tile=96, overlap=32).translate_batch(batch)
    on_cuda = Translator.load(path, device="cuda", tile=96, overlap=32).translate_batch(batch)
    assert on_cuda.shape == on_cpu.shape == (1, 3, 160, 192)
    torch.testing.assert_close(on_cuda, on_cpu, rtol=1e-3, atol=1e-4)


@pytest.fixture(scope="module")
def tiny_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cuda_data")
    return {
        "cyclegan": make_sample_dataset(root / "unpaired", "unpaired", size=40, count=4),
        "pix2pix": make_sample_dataset(root / "paired", "paired", size=136, count=4),
    }


@pytest.mark.parametrize(("model", "precision"), [("cyclegan", "fp32"), ("cyclegan", "bf16"), ("cyclegan", "fp16"), ("pix2pix", "fp16")])
def test_training_on_cuda_writes_finite_losses_and_weights(tiny_datasets: dict[str, Path], tmp_path: Path, model: str, precision: str) -> None:
    cfg = preset(model)
    cfg.data.root = str(tiny_datasets[model])
    cfg.data.load_size, cfg.data.crop_size = (36, 32) if model == "cyclegan" else (136, 128)
    cfg.data.batch_size = 2
    cfg.net.generator = "resnet_6blocks" if model == "cyclegan" else "unet_128"
    cfg.net.base_channels_g = cfg.net.base_channels_d = 4
    cfg.train.device, cfg.train.precision = "cuda", precision
    cfg.train.steps, cfg.train.log_every, cfg.train.sample_every = 4, 1, 0

    result = train(cfg, tmp_path / "run")

    assert result.step == 4 and result.checkpoint is not None
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [row for row in rows if "g_ab" in row]
    assert [row["step"] for row in losses] == [1, 2, 3, 4]
    for row in losses:
        for key, value in row.items():
            assert isinstance(value, (int, float)) and math.isfinite(value), (row["step"], key, value)
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")][-1] == "step_0000004"
    weights, _, _ = read_generator(tmp_path / "run", "AtoB")
    floats = [w for w in weights.values() if w.is_floating_point()]  # batch norm also counts batches (int64)
    assert floats and all(torch.isfinite(w).all() for w in floats)
    assert all(w.dtype == torch.float32 for w in floats)  # mixed precision keeps fp32 master weights
