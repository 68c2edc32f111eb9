"""History pool, resumable sampler and learning-rate schedules."""

from __future__ import annotations

import pytest
import torch

from translate.config import TrainConfig
from translate.train.pool import ImagePool
from translate.train.sampler import ResumableSampler
from translate.train.schedules import build_scheduler, linear_factor, scheduler_state


def test_pool_fills_then_swaps_and_resumes_identically() -> None:
    pool = ImagePool(3, seed=1)
    batches = [torch.full((1, 1, 2, 2), float(i)) for i in range(10)]
    for b in batches[:3]:  # while filling, the new image comes back and is stored
        assert torch.equal(pool.query(b), b)
    assert [float(x.mean()) for x in pool.images] == [0.0, 1.0, 2.0]
    state = pool.state_dict()
    out1 = [float(pool.query(b).mean()) for b in batches[3:]]
    assert any(v < 3 for v in out1), "a full pool returns stored images about half the time"
    assert any(v >= 3 for v in out1)
    resumed = ImagePool(3, seed=99)
    resumed.load_state_dict(state)
    out2 = [float(resumed.query(b).mean()) for b in batches[3:]]
    assert out1 == out2


def test_pool_size_zero_is_identity() -> None:
    pool = ImagePool(0)
    x = torch.randn(2, 3, 4, 4)
    assert pool.query(x) is x


def test_sampler_resume_with_other_world_size_sees_each_sample_once() -> None:
    n, seed = 11, 5
    full = list(ResumableSampler(n, seed=seed))
    assert sorted(full) == list(range(n))
    consumed = 4
    rest = []
    for rank in range(3):  # resume on 3 processes after 4 samples were consumed
        s = ResumableSampler(n, seed=seed, rank=rank, world_size=3)
        s.set_epoch(0, consumed)
        rest.append(list(s))
    seen = set(full[:consumed]) | {i for r in rest for i in r}
    assert seen == set(range(n))
    assert all(len(r) == len(rest[0]) for r in rest)  # padded: ranks stay in step
    other = ResumableSampler(n, seed=seed)
    other.set_epoch(1)
    assert list(other) != full


def test_linear_schedule_matches_paper_shape() -> None:
    assert linear_factor(0, 200, 0.5) == 1.0
    assert linear_factor(99, 200, 0.5) == 1.0
    assert linear_factor(150, 200, 0.5) == pytest.approx(0.5)
    assert linear_factor(200, 200, 0.5) == 0.0


@pytest.mark.parametrize("name", ["linear", "step", "cosine", "plateau", "constant"])
def test_every_schedule_builds_and_round_trips(name: str) -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=1.0)
    cfg = TrainConfig(schedule=name)
    sched = build_scheduler(opt, cfg, 10)
    for _ in range(6):
        opt.step()
        sched.step(1.0) if name == "plateau" else sched.step()
    lr = opt.param_groups[0]["lr"]
    if name in ("linear", "cosine", "step"):
        assert lr < 1.0
    if name == "constant":
        assert lr == 1.0
    state = scheduler_state(sched)
    opt2 = torch.optim.Adam([param], lr=1.0)
    sched2 = build_scheduler(opt2, cfg, 10)
    sched2.load_state_dict(state)
    assert sched2.state_dict().get("last_epoch") == sched.state_dict().get("last_epoch")
