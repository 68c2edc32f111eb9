"""Export a generator for deployment: ONNX or TorchScript.

Both formats take and return the network's own tensors, with no pre- or post-processing:

* input ``input``: float32 ``(B, C_in, H, W)``, NCHW, values in [-1, 1] (``pixel / 255 * 2 - 1``);
* output ``output``: float32 ``(B, C_out, H, W)``, NCHW, values in [-1, 1]
  (``(y + 1) / 2 * 255`` gives 8-bit pixels).

B, H and W are dynamic, but H and W must be multiples of the network's size multiple (4 for
``resnet_*``, 128 for ``unet_128``, 256 for ``unet_256``): pad (reflect) and crop around the
call, as ``Translator`` does. The ONNX file records that multiple, the value range and the
network config in its metadata (``translate.size_multiple``, ``translate.value_range``,
``translate.net_config``).

The network is exported in eval mode: dropout off, batch norm with its running statistics,
instance norm with per-image statistics. ONNX uses PyTorch's ``torch.export``-based exporter
(``exporter="dynamo"``, opset >= 18 there) and falls back to the TorchScript-based one
(``exporter="legacy"``) if that fails; both are checked against PyTorch with onnxruntime
when it is installed.

TorchScript files (``torch.jit.trace``) are code-bearing archives for deployment (C++
``torch::jit::load``, mobile, serving). translate never loads them: its own models are
safetensors, which carry no code.

Files are written atomically (:func:`translate.files.atomic_write`).
"""

from __future__ import annotations

import copy
import io
import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from translate.config import NetConfig, to_json
from translate.errors import UserError
from translate.files import atomic_write, unit_to_signed

log = logging.getLogger("translate")

ExportFormat = Literal["onnx", "torchscript"]
OnnxExporter = Literal["dynamo", "legacy"]

DEFAULT_OPSET = 18
MIN_OPSET = 17
CHECK_TOLERANCE = 1e-3  # max abs difference in [-1, 1] outputs; fp32 exports land near 1e-6


@dataclass
class ExportResult:
    """What was written and how well it reproduces PyTorch."""

    path: Path
    format: ExportFormat
    exporter: str  # dynamo | legacy | trace
    max_abs_diff: float | None  # on a check input whose size differs from the traced one; None: not checked
    check_shape: tuple[int, ...] | None


def export_generator(
    net: nn.Module,
    net_config: NetConfig,
    out: str | Path,
    fmt: ExportFormat,
    *,
    opset: int = DEFAULT_OPSET,
    exporter: OnnxExporter = "dynamo",
    check: bool = True,
    protect: Sequence[str | Path] = (),
) -> ExportResult:
    """Write ``net`` to ``out`` as ONNX or TorchScript (see the module docstring for the I/O).

    Args:
        net: the generator (any device/dtype/memory format: a float32 CPU copy is exported).
        net_config: its architecture (gives channels and size multiple, stored as metadata).
        out: the file to write; its folder is created.
        fmt: ``onnx`` or ``torchscript``.
        opset: ONNX opset (>= 17; the dynamo exporter uses at least 18).
        exporter: ONNX exporter to try first; the other one is the fallback.
        check: run the exported file on an input of another size and batch 2 and compare with
            PyTorch (ONNX needs onnxruntime; skipped without it).
        protect: paths that must not be overwritten (the model being exported).

    Returns:
        An :class:`ExportResult`.

    Raises:
        UserError: ``out`` is a folder or a protected file, or cannot be written.
        ValueError: unknown ``fmt``/``exporter`` or opset below 17.
    """
    if fmt not in ("onnx", "torchscript"):
        raise ValueError(f"format must be 'onnx' or 'torchscript', got {fmt!r}")
    if exporter not in ("dynamo", "legacy"):
        raise ValueError(f"exporter must be 'dynamo' or 'legacy', got {exporter!r}")
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset!r}")
    out = _check_destination(Path(out), protect)
    from translate.nets import size_multiple

    multiple = size_multiple(net_config)
    # A private float32 CPU copy in eval mode: the caller's module keeps its device and mode.
    model = copy.deepcopy(net).to("cpu", torch.float32).to(memory_format=torch.contiguous_format).eval()
    model.requires_grad_(False)
    side = multiple * max(2, math.ceil(64 / multiple))
    example = unit_to_signed(torch.rand(2, net_config.in_channels, side, side))
    # Another batch, height and width than the example: proves the axes are really dynamic.
    check_input = unit_to_signed(torch.rand(2, net_config.in_channels, side + multiple, side + 2 * multiple))

    if fmt == "onnx":
        data, used = _onnx_bytes(model, example, multiple, opset, exporter)
        data = _with_metadata(data, net_config, multiple)
        atomic_write(out, data)
        diff = _check_onnx(out, model, check_input) if check else None
    else:
        used = "trace"
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated": still the deployable format
            traced = torch.jit.trace(model, example, check_trace=False)
            torch.jit.save(traced, buffer)
        atomic_write(out, buffer.getvalue())
        diff = _check_torchscript(out, model, check_input) if check else None
    if diff is not None and diff > CHECK_TOLERANCE:
        log.warning("%s: exported %s differs from PyTorch by up to %.3g", out, fmt, diff)
    return ExportResult(out, fmt, used, diff, tuple(check_input.shape) if diff is not None else None)


# ----------------------------------------------------------------------------------------
# ONNX


def _onnx_bytes(model: nn.Module, example: torch.Tensor, multiple: int, opset: int, exporter: OnnxExporter) -> tuple[bytes, str]:
    order = ["dynamo", "legacy"] if exporter == "dynamo" else ["legacy", "dynamo"]
    errors = []
    for name in order:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter's notice
                data = _export_dynamo(model, example, multiple, opset) if name == "dynamo" else _export_legacy(model, example, opset)
            return data, name
        except Exception as exc:  # noqa: BLE001  exporter internals raise anything; the other one may work
            errors.append(f"{name}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
            log.warning("ONNX export with the %s exporter failed (%s); trying the other one", name, errors[-1])
    raise UserError(f"ONNX export failed with both exporters ({'; '.join(errors)}); try --format torchscript")


def _export_dynamo(model: nn.Module, example: torch.Tensor, multiple: int, opset: int) -> bytes:
    batch = torch.export.Dim("batch")
    # H and W as multiples of the size multiple: the graph then holds for every legal size.
    height, width = torch.export.Dim("h"), torch.export.Dim("w")
    program = torch.onnx.export(
        model,
        (example,),
        None,
        dynamo=True,
        opset_version=max(opset, 18),
        input_names=["input"],
        output_names=["output"],
        dynamic_shapes=({0: batch, 2: multiple * height, 3: multiple * width},),
        verbose=False,
    )
    return program.model_proto.SerializeToString()


def _export_legacy(model: nn.Module, example: torch.Tensor, opset: int) -> bytes:
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (example,),
        buffer,
        dynamo=False,
        opset_version=opset,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": axes, "output": axes},
        do_constant_folding=True,
    )
    return buffer.getvalue()


def _with_metadata(data: bytes, net_config: NetConfig, multiple: int) -> bytes:
    import onnx

    proto = onnx.load_from_string(data)
    entries = {
        "translate.net_config": to_json(net_config),
        "translate.size_multiple": str(multiple),
        "translate.value_range": "[-1, 1]",
        "translate.layout": "NCHW float32",
    }
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    return proto.SerializeToString()


def _check_onnx(path: Path, model: nn.Module, check_input: torch.Tensor) -> float | None:
    try:
        import onnxruntime as ort
    except ImportError:
        log.info("onnxruntime is not installed: %s not checked", path)
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (result,) = session.run(["output"], {"input": check_input.numpy()})
    with torch.inference_mode():
        expected = model(check_input)
    return float((torch.from_numpy(result) - expected).abs().max())


def _check_torchscript(path: Path, model: nn.Module, check_input: torch.Tensor) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode():
        return float((loaded(check_input) - model(check_input)).abs().max())


# ----------------------------------------------------------------------------------------
# files


def _check_destination(out: Path, protect: Sequence[str | Path]) -> Path:
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give the file to write, e.g. {out / 'model.onnx'}")
    target = out.resolve()
    for item in protect:
        guarded = Path(item).resolve()
        if target == guarded or (out.exists() and guarded.exists() and os.path.samefile(out, guarded)):
            raise UserError(f"{out}: is the model being exported; choose another output file")
        if guarded.is_dir() and target.is_relative_to(guarded) and target.suffix == ".safetensors":
            raise UserError(f"{out}: would overwrite weights inside {item}; choose another output file")
    return out
