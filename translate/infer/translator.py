"""``Translator``: a generator loaded once, applied to images, folders and videos.

The CLI is a thin layer over this class::

    from translate import Translator
    t = Translator.load("runs/day2night", direction="AtoB", device="auto", precision="bf16")
    night = t(Image.open("day.jpg"))          # PIL in → PIL out (numpy → numpy, tensor → tensor)

Every image keeps its own size: it is reflection-padded to the multiple the network needs,
translated, and cropped back.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from translate.config import DEFAULT_MEMORY_BUDGET_MB, NetConfig
from translate.errors import UserError
from translate.files import signed_to_unit, to_channels, to_unit, unit_to_signed
from translate.formats import build_checked, read_generator
from translate.infer.tiling import (
    MemoryBudget,
    activation_bytes_per_pixel,
    collect_instance_norm_stats,
    downscale_for_stats,
    frozen_instance_norm,
    instance_norms,
    pad_to_multiple,
    plan_tiles,
    translate_tiled,
)
from translate.nets import build_generator, size_multiple
from translate.runtime import autocast_dtype, place, resolve_device


@dataclass
class Translator:
    """A generator in eval mode on a device, with its architecture and precision."""

    net: nn.Module
    net_config: NetConfig
    device: torch.device
    precision: str = "fp32"
    source: str = ""
    tile: int | None = None  # force tiled inference with this tile side (pixels)
    overlap: int = 32
    memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB  # translating one image may use this much; tile above
    compile: bool = False  # untiled forwards through torch.compile (compiled at the first call of each size)

    # ------------------------------------------------------------------ construction

    @classmethod
    def load(
        cls,
        model: str | Path,
        *,
        direction: str = "AtoB",
        device: str = "auto",
        precision: str = "fp32",
        arch: str | None = None,
        tile: int | None = None,
        overlap: int = 32,
        memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB,
        compile: bool = False,
    ) -> Translator:
        """Load a run directory, checkpoint directory, generator file or reference ``.pth``.

        Args:
            model: path; a run directory means its newest complete checkpoint.
            direction: AtoB (``gen_ab``) or BtoA (``gen_ba``, CycleGAN only).
            device: auto, cpu, cuda, cuda:N.
            precision: fp32, bf16 (CPU with bf16 or CUDA) or fp16 (CUDA).
            arch: architecture of a reference-layout ``.pth`` (inferred from keys if None).
        """
        path = Path(model)
        if not path.exists():
            raise UserError(f"--model {model}: not found; pass a run directory, a .safetensors generator or a .pth file")
        dev = resolve_device(device)
        autocast_dtype(precision, dev)  # validates the precision for this device
        if path.is_file() and path.suffix in (".pth", ".pt", ".ckpt"):
            from translate.infer.importers import read_reference_generator

            weights, net_cfg, source = read_reference_generator(path, arch=arch)
        else:
            weights, net_cfg, source = read_generator(path, direction)
        logging.getLogger("translate").info("model: %s", source)  # which checkpoint and weights a run directory gave
        net = build_checked(lambda: build_generator(net_cfg), weights, source)
        return cls.from_module(
            net,
            net_cfg,
            device=dev,
            precision=precision,
            source=source,
            tile=tile,
            overlap=overlap,
            memory_budget_mb=memory_budget_mb,
            compile=compile,
        )

    @classmethod
    def from_module(
        cls, net: nn.Module, net_config: NetConfig, *, device: torch.device | str = "cpu", precision: str = "fp32", **kwargs: Any
    ) -> Translator:
        device = torch.device(device)
        net = place(net.eval().requires_grad_(False), device, inference=True)
        return cls(net=net, net_config=net_config, device=device, precision=precision, **kwargs)

    # ------------------------------------------------------------------ properties

    @property
    def in_channels(self) -> int:
        return self.net_config.in_channels

    @property
    def out_channels(self) -> int:
        return self.net_config.out_channels

    @property
    def multiple(self) -> int:
        # size_multiple builds the architecture (on the meta device) to read it: compute once
        cached = self.__dict__.get("_multiple")
        if cached is None:
            cached = self.__dict__["_multiple"] = size_multiple(self.net_config)
        return cached

    def autocast(self):
        dtype = autocast_dtype(self.precision, self.device)
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()

    def memory(self) -> MemoryBudget:
        """What translating one image may use (``memory_budget_mb``) and what a pass of this
        network costs, as the plain numbers tiling decides with."""
        return MemoryBudget(
            budget_bytes=self.memory_budget_mb * 2**20,
            bytes_per_pixel=activation_bytes_per_pixel(self.net, self.net_config, multiple=self.multiple, precision=self.precision),
            multiple=self.multiple,
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            host_buffers=self.device.type == "cpu",  # on a GPU the budget bounds the GPU's memory
        )

    # ------------------------------------------------------------------ tensors

    @torch.inference_mode()
    def translate_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """Translate images of one size, tile by tile where one pass would exceed the memory budget
        (or always, with tiles of ``tile`` pixels, when ``tile`` is set).

        Args:
            batch: (B, C_in, H, W) float in [-1, 1], any device; any H, W.

        Returns:
            (B, C_out, H, W) float32 in [-1, 1] on CPU.
        """
        if batch.ndim != 4 or batch.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, H, W), got {tuple(batch.shape)}")
        memory = self.memory()
        if not self.tile and not memory.needs_tiling(batch.shape):
            return self._untiled(batch)
        outputs = []
        for image in batch.split(1):  # each on its own: statistics are per image; one that fits needs no tiles
            fits = not self.tile and not memory.needs_tiling(image.shape)
            outputs.append(self._untiled(image) if fits else self._tiled(image, memory))
        return outputs[0].contiguous() if len(outputs) == 1 else torch.cat(outputs)  # no copy for one image

    def forward_padded(self, batch: torch.Tensor, *, compiled: bool = False) -> torch.Tensor:
        """One pass of the network: pad to its size multiple, forward, crop back.

        This is the callable tiling runs on every tile (see ``infer.tiling.translate_tiled``).

        Args:
            batch: (B, C_in, H, W) float in [-1, 1], any device; any H, W.
            compiled: run the ``torch.compile`` wrapper when ``compile`` is set. Tiling uses
                ``net`` itself: it swaps instance-norm forwards, which a compiled graph would not see.

        Returns:
            (B, C_out, H, W) float32 on CPU, not clamped (tiles are blended first).
        """
        # each generator states its smallest input side (ResNet: two pixels after downsampling;
        # U-Net: its multiple); padding further would change the output of normal-size images
        min_side = getattr(self.net, "min_size", self.multiple)
        padded, (h, w) = pad_to_multiple(batch.to(self.device, torch.float32), self.multiple, min_side)
        if self.device.type in ("cpu", "cuda"):
            padded = padded.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            out = (self._network() if compiled else self.net)(padded)
        return out[..., :h, :w].float().cpu()

    def _untiled(self, batch: torch.Tensor) -> torch.Tensor:
        return self.forward_padded(batch, compiled=True).clamp_(-1, 1).contiguous()

    def _tiled(self, image: torch.Tensor, memory: MemoryBudget) -> torch.Tensor:
        """One (1, C_in, H, W) image through overlapping tiles, with instance-norm statistics from
        a global pass: at full resolution when the image fits the budget, else on a downscaled copy."""
        if self.overlap < 0:
            raise UserError(f"--overlap {self.overlap}: must be >= 0 (e.g. --overlap 32)")
        height, width = image.shape[-2:]
        plan = plan_tiles(height, width, self.tile or memory.tile_side(height, width), self.overlap, self.multiple)
        stats = None
        if instance_norms(self.net):
            padded, _ = pad_to_multiple(image.to("cpu", torch.float32), self.multiple)
            whole = padded if not memory.needs_tiling(image.shape) else downscale_for_stats(padded, memory)
            stats = collect_instance_norm_stats(self.net, self.forward_padded, whole)
            del padded, whole
        with frozen_instance_norm(stats):
            return translate_tiled(self.forward_padded, image, plan)

    def _network(self) -> Any:
        """``net``, or its ``torch.compile`` wrapper when ``compile`` is set (built once)."""
        if not self.compile:
            return self.net
        cached = self.__dict__.get("_compiled")
        if cached is None or cached[0] is not self.net:
            cached = self.__dict__["_compiled"] = (self.net, torch.compile(self.net))
        return cached[1]

    # ------------------------------------------------------------------ images

    def translate_array(self, image: np.ndarray) -> np.ndarray:
        """Translate one HWC (or HW) image; uint8 → uint8, uint16 → uint16, float [0, 1] → float32.

        Channels are converted to what the network takes (grey ↔ RGB, ITU-R 601 luma); an alpha
        channel is passed through unchanged.
        """
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
            raise ValueError(f"expected an HWC image with 1-4 channels, got shape {image.shape}")
        x = to_unit(image)
        alpha = None
        if x.shape[2] in (2, 4):
            x, alpha = x[:, :, :-1], image[:, :, -1:]
        x = to_channels(x, self.in_channels)
        tensor = unit_to_signed(torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None])
        out = signed_to_unit(self.translate_batch(tensor)[0].permute(1, 2, 0).numpy())
        if alpha is not None and out.shape[2] == 1:
            out = to_channels(out, 3)  # a grey result beside an alpha channel becomes RGBA
        if image.dtype in (np.uint8, np.uint16):
            out = np.round(out * np.iinfo(image.dtype).max).astype(image.dtype)
        if alpha is not None:
            out = np.concatenate([out, alpha.astype(out.dtype)], axis=2)
        return out

    def __call__(self, image: Any) -> Any:
        """Translate a PIL image, a numpy HWC array or a (B, C, H, W)/(C, H, W) tensor in [-1, 1]."""
        if isinstance(image, torch.Tensor):
            if image.ndim == 3:
                return self.translate_batch(image[None])[0].to(image.device)
            return self.translate_batch(image).to(image.device)
        if isinstance(image, np.ndarray):
            return self.translate_array(image)
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover
            Image = None
        if Image is not None and isinstance(image, Image.Image):
            return _translate_pil(self, image)
        raise TypeError(f"cannot translate a {type(image).__name__}; pass a PIL image, numpy array or torch tensor")

    # ------------------------------------------------------------------ folders and videos

    def translate_folder(self, src: str | Path, dst: str | Path, **options: Any):
        """Translate every image under ``src`` into the mirrored tree ``dst`` (see ``infer.folder``)."""
        from translate.infer.folder import translate_folder

        return translate_folder(self, Path(src), Path(dst), **options)

    def translate_video(self, src: str | Path, dst: str | Path, **options: Any):
        """Translate a video file (or a folder of frames) into ``dst`` (see ``infer.video``)."""
        from translate.infer.video import translate_video

        return translate_video(self, Path(src), Path(dst), **options)


def _translate_pil(translator: Translator, image: Any) -> Any:
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image).astype(np.uint16)
        out = translator.translate_array(arr)
        return Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else (out >> 8).astype(np.uint8))
    if mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in mode or "transparency" in image.info else "RGB")
    out = translator.translate_array(np.asarray(image))
    return Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out)
