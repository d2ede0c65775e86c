"""Noise schedule, sub-sampled reverse process and sample processors of MultiBandDiffusion (the full chain against
the official goldens is in tests/models/test_multibanddiffusion.py)."""
import math
import types

import pytest
import torch

from audiocraft.modules.diffusion_schedule import (DEFAULT_STEP_LIST, MultiBandProcessor, NoiseSchedule,
                                                   SampleProcessor, betas_from_alpha_bar)


def test_power_schedule_endpoints_and_shape():
    schedule = NoiseSchedule(beta_t0=1e-5, beta_t1=0.029, beta_exp=7.5, num_steps=1000, device="cpu")
    betas = schedule.betas
    assert betas.shape == (1000,) and betas.dtype == torch.float32
    assert math.isclose(betas[0].item(), 1e-5, rel_tol=1e-4) and math.isclose(betas[-1].item(), 0.029, rel_tol=1e-4)
    assert bool((betas[1:] > betas[:-1]).all())
    mid = (1e-5 ** (1 / 7.5) + (0.029 ** (1 / 7.5) - 1e-5 ** (1 / 7.5)) * 500 / 999) ** 7.5
    assert math.isclose(betas[500].item(), mid, rel_tol=1e-4)


def test_alpha_bar_forms():
    schedule = NoiseSchedule(beta_t0=1e-4, beta_t1=0.02, num_steps=50)
    cumulative = (1 - schedule.betas.double()).cumprod(0)
    assert math.isclose(schedule.get_alpha_bar(10).item(), cumulative[10].item(), rel_tol=1e-5)
    torch.testing.assert_close(schedule.get_alpha_bar().double(), cumulative, rtol=1e-5, atol=0)
    per_item = schedule.get_alpha_bar(torch.tensor([0, 49]))
    assert per_item.shape == (2, 1, 1)


def test_betas_from_alpha_bar_inverts_the_cumulative_product():
    betas = torch.rand(30) * 0.05
    torch.testing.assert_close(betas_from_alpha_bar((1 - betas).cumprod(0)), betas, rtol=1e-4, atol=1e-6)


def test_subsampled_coefficients_follow_the_subsampled_chain():
    schedule = NoiseSchedule(beta_t0=1e-5, beta_t1=0.029, beta_exp=7.5, num_steps=1000)
    coefficients = schedule.subsampled_coefficients(DEFAULT_STEP_LIST)
    assert [step for step, *_ in coefficients] == list(range(999, 0, -50))
    alpha_bar = (1 - schedule.betas.double()).cumprod(0)
    # the first visited step (999) uses a = alpha_bar(999) / alpha_bar(949); noise everywhere but the last step
    step, a, coef, sigma = coefficients[0]
    assert math.isclose(a.item(), (alpha_bar[999] / alpha_bar[949]).item(), rel_tol=1e-4)
    assert math.isclose(coef.item(), (1 - a.item()) / math.sqrt(1 - alpha_bar[999].item()), rel_tol=1e-4)
    assert sigma is not None and math.isclose(
        sigma.item() ** 2, (1 - alpha_bar[949].item()) / (1 - alpha_bar[999].item()) * (1 - a.item()), rel_tol=1e-3)
    assert coefficients[-1][3] is None and all(c[3] is not None for c in coefficients[:-1])


class _RecordingModel:
    """Returns a constant noise estimate and records the steps it is called with."""

    def __init__(self, value: float) -> None:
        self.value, self.steps = value, []

    def __call__(self, x, step, condition=None):
        self.steps.append(step)
        return types.SimpleNamespace(sample=torch.full_like(x, self.value))


def test_generate_subsampled_calls_and_random_draws():
    schedule = NoiseSchedule(beta_t0=1e-5, beta_t1=0.029, beta_exp=7.5, num_steps=1000)
    model = _RecordingModel(0.0)
    initial = torch.randn(2, 1, 50)
    torch.manual_seed(3)
    schedule.generate_subsampled(model, initial)
    after = torch.rand(2)
    assert model.steps == list(range(999, 0, -50))
    torch.manual_seed(3)
    for _ in range(len(DEFAULT_STEP_LIST) - 2):  # one noise draw per step except the last
        torch.randn_like(initial)
    assert torch.equal(torch.rand(2), after)


def test_generate_subsampled_clips_and_applies_the_processor():
    processor = SampleProcessor()
    processor.return_sample = lambda z: z * 0 + 7.0  # type: ignore[method-assign]
    schedule = NoiseSchedule(num_steps=1000, clip=5.0, sample_processor=processor)
    out = schedule.generate_subsampled(_RecordingModel(-1e6), torch.zeros(1, 1, 8), step_list=[999, 500, 0])
    assert torch.equal(out, torch.full((1, 1, 8), 7.0))
    iterates = schedule.generate_subsampled(_RecordingModel(-1e6), torch.zeros(1, 1, 8), step_list=[999, 500, 0],
                                            return_list=True)
    assert len(iterates) == 3 and float(iterates[-1].max()) == 5.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_bands=4), "n_bands must be None"),
    (dict(repartition="sigmoid"), r"repartition='sigmoid'\) is not supported"),
    (dict(variance="foo"), "variance='foo'"),
    (dict(num_steps=0), "num_steps=0"),
])
def test_schedule_rejects_unsupported_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NoiseSchedule(**kwargs)


@pytest.mark.parametrize("step_list, message", [([999], "at least 2"), ([1000, 0], r"in \[0, 999\]"),
                                                ([999, 0.5], "integer")])
def test_step_list_is_checked(step_list, message):
    with pytest.raises(ValueError, match=message):
        NoiseSchedule().generate_subsampled(_RecordingModel(0.0), torch.zeros(1, 1, 4), step_list=step_list)


def test_schedule_ignores_learning_rate_keys():
    schedule = NoiseSchedule(beta_t0=1e-5, lr_scheduler=None, cosine={"warmup": None})
    assert schedule.beta_t0 == 1e-5


# ------------------------------------------------------------------------------------------------ processors
def _processor(power_std: float = 0.75) -> MultiBandProcessor:
    processor = MultiBandProcessor(n_bands=8, sample_rate=32000, power_std=power_std)
    processor.counts.fill_(100.0)
    processor.sum_x.copy_(torch.linspace(-1, 1, 8))
    processor.sum_x2.copy_(torch.linspace(1, 30, 8))
    processor.sum_target_x2.copy_(torch.linspace(20, 5, 8))
    return processor


def test_multiband_processor_state_dict_names():
    shapes = {k: tuple(v.shape) for k, v in _processor().state_dict().items()}
    assert shapes == {"counts": (1,), "sum_x": (8,), "sum_x2": (8,), "sum_target_x2": (8,),
                      "split_bands.lowpass.filters": (7, 1, 751)}


def test_return_sample_rescales_each_band():
    processor = _processor()
    x = torch.randn(2, 1, 4000)
    mean = processor.sum_x / 100
    std = (processor.sum_x2 / 100 - mean ** 2).clamp(min=0).sqrt()
    target = processor.sum_target_x2 / 100  # a mean power, not a standard deviation (as in Audiocraft)
    bands = processor.split_bands(x)
    expected = sum(bands[i] * (std[i] / target[i]) ** 0.75 + mean[i] for i in range(8))
    torch.testing.assert_close(processor.return_sample(x), expected)


def test_return_sample_is_identity_with_neutral_statistics():
    processor = MultiBandProcessor(n_bands=8, sample_rate=32000, power_std=1.0)
    processor.counts.fill_(1.0)
    processor.sum_x2.fill_(2.0)
    processor.sum_target_x2.fill_(math.sqrt(2.0))  # std == target, mean 0: the bands just sum back
    x = torch.randn(1, 1, 3000)
    torch.testing.assert_close(processor.return_sample(x), x, atol=1e-5, rtol=0)


def test_project_sample_fits_statistics_until_num_samples():
    processor = MultiBandProcessor(n_bands=4, sample_rate=16000, num_samples=3)
    processor.project_sample(torch.randn(2, 1, 2000))
    assert processor.counts.item() == 2
    processor.project_sample(torch.randn(2, 1, 2000))
    assert processor.counts.item() == 4
    sums = processor.sum_x2.clone()
    processor.project_sample(torch.randn(2, 1, 2000))  # counts >= num_samples: frozen
    assert processor.counts.item() == 4 and torch.equal(processor.sum_x2, sums)


def test_processor_checks_its_input():
    with pytest.raises(ValueError, match=r"expected audio \[B, C, T\]"):
        _processor().return_sample(torch.zeros(10))
    with pytest.raises(ValueError, match="one per band"):
        MultiBandProcessor(n_bands=8, power_std=[1.0, 2.0])
