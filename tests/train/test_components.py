"""Tests of the training building blocks: schedules, EMA, LoRA, checkpoints and RNG states, config checks."""
import math
from pathlib import Path
import random

import numpy as np
import pytest
import torch
from torch import nn

from audiocraft.train import checkpoint as ckpt
from audiocraft.train.config import TrainConfig
from audiocraft.train.ema import ModuleEMA
from audiocraft.train.lora import (
    LoRAParametrization, apply_lora, lora_parameters, merge_lora, merged_state_dict,
)
from audiocraft.train.schedules import LRSchedule, build_lr_scheduler


def test_cosine_schedule_with_warmup() -> None:
    s = LRSchedule("cosine", total_steps=10, warmup_steps=2, lr_min_ratio=0.1)
    assert [s(0), s(1)] == [0.5, 1.0]
    assert s(2) == pytest.approx(1.0)
    assert s(6) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s(10) == pytest.approx(0.1) and s(50) == pytest.approx(0.1)
    lin = LRSchedule("linear", total_steps=4, warmup_steps=0)
    assert [lin(i) for i in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert [LRSchedule("linear_warmup", 10, 4)(i) for i in (0, 3, 9)] == [0.25, 1.0, 1.0]
    assert LRSchedule("constant", 10, 4)(0) == 1.0


def test_scheduler_resumes_from_state_dict() -> None:
    def make():
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
        return opt, build_lr_scheduler(opt, "cosine", 8, 2)
    opt, sched = make()
    lrs = []
    for _ in range(6):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    opt2, sched2 = make()
    for _ in range(3):
        opt2.step()
        sched2.step()
    state = sched2.state_dict()
    opt3, sched3 = make()
    sched3.load_state_dict(state)
    for _ in range(3):
        opt3.step()
        sched3.step()
    assert sched3.get_last_lr()[0] == lrs[-1]


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="step"), "schedule must be one of"),
    (dict(total_steps=0), "total_steps must be a positive int"),
    (dict(warmup_steps=20), r"warmup_steps must be an int in \[0, total_steps=10\]"),
])
def test_schedule_errors(kwargs, match) -> None:
    args = dict(kind="cosine", total_steps=10, warmup_steps=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        LRSchedule(**args)


def test_ema_unbiased_average() -> None:
    p = nn.Parameter(torch.tensor([0.0]))
    ema = ModuleEMA({"p": p}, decay=0.5, every=2)
    values = []
    for step, v in enumerate([1.0, 2.0, 3.0, 4.0], 1):
        p.data.fill_(v)
        if ema.step(step):
            values.append(ema.shadow["p"].item())
    # updates at steps 2 (p=2) and 4 (p=4): count 1 -> w=1 -> 2; count 1.5 -> w=2/3 -> 2/3*4 + 1/3*2
    assert values == pytest.approx([2.0, 2 / 3 * 4 + 1 / 3 * 2])
    state = ema.state_dict()
    other = ModuleEMA({"p": p}, decay=0.5)
    other.load_state_dict(state)
    assert other.count == ema.count and other.shadow["p"].item() == pytest.approx(values[-1])
    with pytest.raises(KeyError, match="EMA state does not match"):
        other.load_state_dict({"count": 1.0, "shadow": {"q": torch.zeros(1)}})


class _Attn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.in_proj_weight = nn.Parameter(torch.randn(12, 4))
        self.out_proj = nn.Linear(4, 4, bias=False)

    def forward(self, x):
        q, _, _ = torch.nn.functional.linear(x, self.in_proj_weight).chunk(3, dim=-1)
        return self.out_proj(q)


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.self_attn = _Attn()
        self.linear1 = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, x):
        return self.norm(self.linear1(self.self_attn(x)))


def test_lora_starts_at_base_trains_adapters_and_merges() -> None:
    torch.manual_seed(0)
    model = _Toy()
    x = torch.randn(3, 4)
    before = model(x).detach()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    names = apply_lora(model, rank=2, alpha=4.0)
    assert names == ["linear1.weight", "self_attn.in_proj_weight", "self_attn.out_proj.weight"]
    assert torch.allclose(model(x), before)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(lora_parameters(model)) and len(trainable) == 6
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        model(x).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
    after = model(x).detach()
    assert not torch.allclose(after, before)
    merged = merged_state_dict(model)
    assert set(merged) == set(base_state)
    lora = model.self_attn.parametrizations.in_proj_weight[0]
    expected = base_state["self_attn.in_proj_weight"] + 2.0 * lora.lora_B @ lora.lora_A
    assert torch.allclose(merged["self_attn.in_proj_weight"], expected, atol=1e-6)
    fresh = _Toy()
    fresh.load_state_dict(merged)
    assert torch.allclose(fresh(x), after, atol=1e-5)
    assert merge_lora(model) == 3 and set(model.state_dict()) == set(base_state)
    assert torch.allclose(model(x), after, atol=1e-5)


def test_lora_errors() -> None:
    with pytest.raises(ValueError, match="No weight of the model matches the LoRA targets"):
        apply_lora(nn.Sequential(nn.Linear(2, 2)), targets=("nothing.weight",))
    with pytest.raises(ValueError, match="LoRA rank must be a positive int, got 0"):
        LoRAParametrization(4, 4, rank=0)


def test_rng_state_round_trip_and_atomic_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    gen = nn.Module()
    gen.rng = torch.Generator().manual_seed(4)
    state = ckpt.get_rng_state()
    generators = {n: g.get_state() for n, g in ckpt.module_generators(gen).items()}
    assert list(generators) == ["rng"]
    expected = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=gen.rng).item())
    path = ckpt.save_checkpoint({"step": 3, "model": {}, "rng": [state], "generators": generators},
                                tmp_path / "c" / "checkpoint.th")
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.th"]  # no temporary file left
    loaded = ckpt.load_checkpoint(path)
    ckpt.set_rng_state(loaded["rng"][0])
    gen.rng.set_state(loaded["generators"]["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item(),
            torch.rand(1, generator=gen.rng).item()) == expected


def test_load_checkpoint_rejects_other_files(tmp_path: Path) -> None:
    from audiocraft.utils.checkpoint_io import CheckpointError
    torch.save({"best_state": {}}, tmp_path / "x.th")
    with pytest.raises(CheckpointError, match="is not a training checkpoint"):
        ckpt.load_checkpoint(tmp_path / "x.th")


@pytest.mark.parametrize("changes, world, match", [
    (dict(steps=0), 1, "steps must be an integer >= 1, got 0"),
    (dict(lr=-1.0), 1, "lr must be a number > 0.0, got -1.0"),
    (dict(batch_size=3), 2, r"batch_size \(3\) must be divisible by the number of processes \(2\)"),
    (dict(schedule="step"), 1, "schedule must be one of"),
    (dict(precision="fp8"), 1, "precision must be one of"),
    (dict(warmup=20, steps=10), 1, r"warmup must be <= steps \(10\), got 20"),
    (dict(segment_duration=0.0), 1, "segment_duration must be a number > 0.0"),
    (dict(merge_text_p=2.0), 1, "merge_text_p must be a number >= 0.0 and <= 1.0"),
    (dict(data=""), 1, "data must be a non-empty path"),
])
def test_config_validation(changes, world, match) -> None:
    cfg = TrainConfig(data="d", out="o")
    for key, value in changes.items():
        setattr(cfg, key, value)
    with pytest.raises(ValueError, match=match):
        cfg.validate(world)


def test_config_dict_round_trip() -> None:
    cfg = TrainConfig(data="d", out="o", lora=True, betas=(0.8, 0.9))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.learning_rate == 1e-4 and TrainConfig(data="d", out="o").learning_rate == 1e-5
    assert TrainConfig(data="d", out="o", steps=100).warmup_steps == 5
    with pytest.raises(ValueError, match=r"Unknown training options \['bogus'\]"):
        TrainConfig.from_dict({"data": "d", "out": "o", "bogus": 1})
