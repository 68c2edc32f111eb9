"""ONNX / TorchScript export: dynamic axes, eval mode, parity with PyTorch, atomic files, CLI."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from translate.cli import main
from translate.config import NetConfig
from translate.errors import UserError
from translate.infer.export import export_generator
from translate.infer.translator import Translator
from translate.nets import build_generator

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(autouse=True)
def quiet_torch_trace_log():
    # pytest's log capture hooks torch's structured-trace logger, and the dynamo exporter then
    # formats thousands of debug payloads: twice the export time, for nothing.
    logger = logging.getLogger("torch.__trace")
    disabled, logger.disabled = logger.disabled, True
    yield
    logger.disabled = disabled


def generator(name: str, **cfg) -> tuple[torch.nn.Module, NetConfig]:
    torch.manual_seed(0)
    net_cfg = NetConfig(generator=name, **cfg)
    net = build_generator(net_cfg)
    with torch.no_grad():  # batch-norm running statistics far from (0, 1): eval mode must use them
        for name_, buffer in net.named_buffers():
            if name_.endswith("running_mean"):
                buffer.normal_(0.0, 0.5)
            elif name_.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    return net.train(), net_cfg  # left in train mode on purpose: export must switch to eval


@pytest.mark.parametrize(
    ("name", "cfg", "exporter", "sizes"),
    [
        # the default exporter (torch.export-based) is slow (~10 s): one network goes through it
        ("resnet_6blocks", dict(base_channels_g=4), "dynamo", [(40, 56), (64, 36)]),
        ("unet_128", dict(base_channels_g=4, norm="batch", dropout=True), "legacy", [(128, 256), (256, 128)]),
    ],
    ids=["resnet-dynamo", "unet-batchnorm-dropout-legacy"],
)
def test_onnx_matches_pytorch_at_dynamic_sizes(tmp_path, name, cfg, exporter, sizes):
    net, net_cfg = generator(name, **cfg)
    out = tmp_path / "g.onnx"
    result = export_generator(net, net_cfg, out, "onnx", exporter=exporter)
    assert result.path == out and result.exporter == exporter
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    assert net.training  # the caller's module is untouched

    model = onnx.load(str(out))
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["translate.value_range"] == "[-1, 1]" and int(meta["translate.size_multiple"]) >= 4

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    assert graph_input.name == "input" and graph_input.type == "tensor(float)"
    net.eval()
    for height, width in sizes:
        x = torch.rand(2, net_cfg.in_channels, height, width) * 2 - 1
        (got,) = session.run(["output"], {"input": x.numpy()})
        with torch.inference_mode():
            expected = net(x).numpy()
        assert got.shape == (2, net_cfg.out_channels, height, width)
        assert np.abs(got - expected).max() <= 1e-4
        assert expected.std() > 1e-3  # the comparison is not between two near-constant images


def test_cli_exports_torchscript_that_round_trips(tiny_generator_factory, tmp_path, capsys):
    model = tiny_generator_factory("resnet_6blocks", base_channels=4)
    out = tmp_path / "deploy" / "g.pt"
    assert main(["export", "--model", str(model), "--device", "cpu", "--format", "torchscript", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["g.pt"]  # no temporary file left behind

    scripted = torch.jit.load(str(out))
    translator = Translator.load(model, device="cpu")
    x = torch.rand(2, 3, 44, 60) * 2 - 1  # another size than the traced example
    with torch.inference_mode():
        torch.testing.assert_close(scripted(x), translator.net(x), atol=1e-5, rtol=1e-5)


def test_cli_refuses_to_overwrite_the_model_and_unknown_suffixes(tiny_generator_factory, tmp_path, capsys):
    model = tiny_generator_factory("resnet_6blocks", base_channels=4)
    before = model.read_bytes()
    assert main(["export", "--model", str(model), "--format", "onnx", str(model)]) == 2
    assert "is the model being exported" in capsys.readouterr().err
    assert model.read_bytes() == before
    assert main(["export", "--model", str(model), str(tmp_path / "g.bin")]) == 2
    assert "--format onnx" in capsys.readouterr().err


def test_folder_destination_is_refused(tmp_path):
    net, net_cfg = generator("resnet_6blocks", base_channels_g=4)
    with pytest.raises(UserError, match="is a folder"):
        export_generator(net, net_cfg, tmp_path, "torchscript")
    with pytest.raises(ValueError, match="'tflite'"):
        export_generator(net, net_cfg, tmp_path / "g", "tflite")  # type: ignore[arg-type]


def test_onnx_cli_writes_the_file(tiny_generator_factory, tmp_path):
    model = tiny_generator_factory("unet_128", norm="batch", base_channels=4)
    out = tmp_path / "g.onnx"
    args = ["export", "--model", str(model), "--device", "cpu", "--exporter", "legacy", "--opset", "17", out.as_posix()]
    assert main(args) == 0
    assert out.is_file() and out.stat().st_size > 0
    assert Path(out).read_bytes()[:2] != b"PK"  # an ONNX protobuf, not a zip archive
