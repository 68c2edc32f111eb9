"""Fused Adam (the loop's optimizer on CPU and CUDA) needs gradients and state laid out like
their parameters; ``align_to_params`` guarantees it, so fused equals foreach Adam."""

from __future__ import annotations

import pytest
import torch

from translate.train.step import align_to_params


def adam_steps(kernel: dict, *, contiguous_state: bool, contiguous_grads: bool) -> torch.Tensor:
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(8, 4, 3, 3).contiguous(memory_format=torch.channels_last))
    grads = [torch.randn(8, 4, 3, 3) for _ in range(3)]
    opt = torch.optim.Adam([weight], lr=0.1, betas=(0.5, 0.999), **kernel)
    for i, grad in enumerate(grads):
        weight.grad = grad if contiguous_grads else grad.contiguous(memory_format=torch.channels_last)
        if i == 1 and contiguous_state:  # as a resumed run loads it: contiguous
            state = opt.state[weight]
            state["exp_avg"], state["exp_avg_sq"] = state["exp_avg"].contiguous(), state["exp_avg_sq"].contiguous()
        if kernel.get("fused"):
            align_to_params(opt)
        opt.step()
    return weight.detach()


def test_fused_adam_with_aligned_layouts_equals_foreach_adam():
    for contiguous_state in (False, True):
        for contiguous_grads in (False, True):
            reference = adam_steps({"foreach": True}, contiguous_state=contiguous_state, contiguous_grads=contiguous_grads)
            fused = adam_steps({"fused": True}, contiguous_state=contiguous_state, contiguous_grads=contiguous_grads)
            torch.testing.assert_close(fused, reference, atol=1e-6, rtol=1e-6)
            assert fused.is_contiguous(memory_format=torch.channels_last)


def test_without_alignment_fused_adam_is_wrong_on_cpu():
    """Documents the PyTorch behaviour align_to_params works around. Once PyTorch handles mixed
    layouts itself (or raises, as on CUDA) this skips with a message instead of failing; the
    workaround is still tested above either way."""
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(8, 4, 3, 3).contiguous(memory_format=torch.channels_last))
    copy = torch.nn.Parameter(weight.detach().clone(memory_format=torch.preserve_format))
    grad = torch.randn(8, 4, 3, 3)  # contiguous, unlike the weight
    fused = torch.optim.Adam([weight], lr=0.1, fused=True)
    foreach = torch.optim.Adam([copy], lr=0.1, foreach=True)
    weight.grad, copy.grad = grad.clone(), grad.clone()
    try:
        fused.step()
    except RuntimeError:
        pytest.skip("this PyTorch refuses mixed layouts in fused CPU Adam: align_to_params may be removable")
    foreach.step()
    if (weight - copy).abs().max() <= 0.01:
        pytest.skip("upstream fixed: this PyTorch's fused CPU Adam is right with mixed layouts; align_to_params may be removable")
