"""Process-group set-up for ``torchrun``: gloo on CPU, NCCL on CUDA.

Only the training loop and the folder command call this; networks never see it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from translate.runtime import DistInfo, dist_from_env

__all__ = ["DistInfo", "dist_from_env", "init", "shutdown", "barrier", "all_agree", "any_flag", "check_in_sync"]


def init(info: DistInfo, device: torch.device) -> None:
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_agree(info: DistInfo, value: int) -> bool:
    """True when every rank holds the same integer (e.g. the step)."""
    if not info.enabled:
        return True
    t = torch.tensor([value, -value], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t[0]) == value and int(-t[1]) == value


def any_flag(info: DistInfo, flag: bool) -> bool:
    """True on every rank when any rank raised ``flag`` (e.g. a stop signal)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def check_in_sync(info: DistInfo, modules: list[torch.nn.Module]) -> None:
    """Raise when the ranks' parameters differ (compares a float64 fingerprint of each).

    Buffers (batch-norm running statistics) are left out: DDP broadcasts rank 0's at every
    forward, and rank 0's are the ones checkpoints keep.
    """
    if not info.enabled:
        return
    tensors = [p.detach() for m in modules for p in m.parameters()]
    # sum and sum of squares weighted by position: equal only if the weights are (almost surely) equal
    fingerprint = (
        torch.stack(
            [
                torch.stack([t.double().sum(), (t.double().flatten() * torch.arange(1, t.numel() + 1, dtype=torch.float64, device=t.device)).sum()])
                for t in tensors
            ]
        )
        .flatten()
        .cpu()
    )
    gathered = [torch.empty_like(fingerprint) for _ in range(info.world_size)]
    dist.all_gather(gathered, fingerprint)
    for rank, other in enumerate(gathered):
        if not torch.equal(other, gathered[0]):
            raise RuntimeError(f"weights of rank {rank} differ from rank 0; distributed training is out of sync")
