"""The accelerated twins of ``nn.Conv2d`` and ``nn.ConvTranspose2d``.

:func:`translate.accel.accelerate` turns a plain layer into its twin in place (its class only:
the same object, parameters, hooks and ``state_dict``). A twin's forward takes a faster route
where one applies, decided at every call from the call itself (device, autograd, dtype,
tracing), and otherwise the ordinary operator:

- CPU inference (autograd off), fp32 or bf16: weights packed once for oneDNN
  (:mod:`translate.accel.packed`) in layers with many weights for their map;
- CPU training (autograd on): matrix products (:mod:`translate.accel.products`) in layers with
  many weight pairs for their map.

FX tracing, ``torch.jit.trace``, ``torch.jit.script``, ``torch.compile`` and ``torch.export``
(both ONNX exporters) record the ordinary operator.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812
from torch.nn.utils import parametrize

from translate.accel import packed, products

log = logging.getLogger(__name__)


def _eager(x: object) -> bool:
    """Whether this call runs eagerly (not traced, scripted, compiled or exported)."""
    if isinstance(x, torch.fx.Proxy) or not isinstance(x, Tensor):
        return False
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling())


class _Accelerated:
    """What both twins share: per-instance settings and the packed copies (never saved).

    (No class-level annotations for these attributes: TorchScript would read them as the
    module's attribute types.)
    """

    def _accel_setup(self, *, packing: bool, bf16: bool) -> None:
        self._accel_packing = packing
        self._accel_bf16 = bf16
        self._accel_packed = packed.PackedWeights()
        self._accel_warned = False

    def __getstate__(self) -> dict:
        # deepcopy and pickling: the copy packs its own weights, nothing of ours is carried
        state = nn.Module.__getstate__(self)  # type: ignore[arg-type]
        state["_accel_packed"] = packed.PackedWeights()
        return state

    def _packed_route(self, x: Tensor, pixels: int, transposed: bool) -> Tensor | None:
        """The output on packed weights, or None where that route does not apply or failed."""
        if not self._accel_packing:
            return None
        dtype = packed.inference_dtype(self, x)  # type: ignore[arg-type]
        if dtype is None or (dtype == torch.bfloat16 and not self._accel_bf16):
            return None
        if not packed.worth_packing(self, pixels):  # type: ignore[arg-type]
            return None
        try:
            return packed.packed_forward(self, self._accel_packed, x, dtype, transposed)  # type: ignore[arg-type]
        except (NotImplementedError, AttributeError, TypeError) as err:
            # the private ops changed in this build: the ordinary operator is always right
            self._accel_packing = False
            log.warning(
                "translate.accel: oneDNN packed convolution unavailable in %s (%s); this layer runs the ordinary operator", type(self).__name__, err
            )
        except RuntimeError as err:  # this input only: oneDNN refused it
            if not self._accel_warned:
                self._accel_warned = True
                log.warning(
                    "translate.accel: oneDNN packed convolution refused input %s (%s); the ordinary operator runs instead", tuple(x.shape), err
                )
        return None


class AcceleratedConv2d(_Accelerated, nn.Conv2d):
    """``nn.Conv2d`` with the CPU routes of :mod:`translate.accel.convs`.

    Shape: ``(B, C_in, H, W)`` -> ``(B, C_out, H_out, W_out)``, as ``nn.Conv2d``.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not torch.jit.is_scripting():  # TorchScript compiles only the ordinary operator below
            if _eager(x):
                return self._eager_forward(x)
        return self._conv_forward(x, self.weight, self.bias)

    def _eager_forward(self, x: Tensor) -> Tensor:
        # a parametrized weight (spectral norm) is recomputed at each access: ordinary operator
        if x.ndim == 4 and not isinstance(self.padding, str) and not parametrize.is_parametrized(self):
            out_h, out_w = products.conv_output_size(self, x)
            pixels = x.shape[0] * out_h * out_w
            if torch.is_grad_enabled():
                if products.training_call(self, x) and products.worth_products(self, pixels):
                    return products.conv2d(self, x)
            else:
                out = self._packed_route(x, pixels, transposed=False)
                if out is not None:
                    return out
        return self._conv_forward(x, self.weight, self.bias)


class AcceleratedConvTranspose2d(_Accelerated, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with the CPU routes of :mod:`translate.accel.convs`.

    Shape: ``(B, C_in, H, W)`` -> ``(B, C_out, H_out, W_out)``, as ``nn.ConvTranspose2d``.
    """

    def forward(self, x: Tensor, output_size: Optional[list[int]] = None) -> Tensor:  # noqa: UP045 (TorchScript)
        if not torch.jit.is_scripting():  # TorchScript compiles only the ordinary operator below
            if output_size is None and _eager(x):
                return self._eager_forward(x)
        # nn.ConvTranspose2d.forward, which TorchScript cannot reach through super()
        if self.padding_mode != "zeros":
            raise ValueError("Only `zeros` padding mode is supported for ConvTranspose2d")
        assert isinstance(self.padding, tuple)
        output_padding = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation)  # type: ignore[arg-type]
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups, self.dilation)

    def _eager_forward(self, x: Tensor) -> Tensor:
        if x.ndim == 4 and not parametrize.is_parametrized(self):  # as in AcceleratedConv2d
            pixels = x.shape[0] * x.shape[2] * x.shape[3]
            if torch.is_grad_enabled():
                if products.training_call(self, x) and products.worth_products(self, pixels):
                    return products.conv_transpose2d(self, x)
            else:
                out = self._packed_route(x, pixels, transposed=True)
                if out is not None:
                    return out
        return nn.ConvTranspose2d.forward(self, x)


TWINS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv2d: AcceleratedConv2d,
    nn.ConvTranspose2d: AcceleratedConvTranspose2d,
}
"""Plain layer class -> accelerated twin. Only these exact classes are swapped: subclasses
(and parametrized layers, whose class PyTorch replaces) have forwards of their own."""
