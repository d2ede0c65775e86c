"""Noise schedule, reverse diffusion process and sample processors of MultiBandDiffusion (Audiocraft's
``NoiseSchedule``, ``SampleProcessor``, ``MultiBandProcessor``; same numerics, float32).

Power schedule: ``betas = linspace(beta_t0 ** (1 / beta_exp), beta_t1 ** (1 / beta_exp), num_steps) ** beta_exp``.
``generate_subsampled`` runs the reverse process on a sub-sampled chain (default steps 999, 949, ..., 49, 0: 20
model calls), re-deriving the betas of the sub-sampled chain from the cumulative products ``alpha_bar``.
"""
from __future__ import annotations

from collections import namedtuple
import random
import typing as tp

import torch

TrainingItem = namedtuple("TrainingItem", "noisy noise step")
DEFAULT_STEP_LIST: tp.List[int] = list(range(1000))[::-50] + [0]  # 999, 949, ..., 49, 0


def betas_from_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """Betas of the chain whose cumulative products are ``alpha_bar`` ``[N]``: ``1 - alpha_bar[i] / alpha_bar[i-1]``
    (the first: ``1 - alpha_bar[0]``)."""
    alphas = torch.cat([torch.Tensor([alpha_bar[0]]), alpha_bar[1:] / alpha_bar[:-1]])
    return 1 - alphas


class SampleProcessor(torch.nn.Module):
    """Identity projection between the audio and the space where diffusion happens."""

    def project_sample(self, x: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, C, T]`` -> diffusion space (identity)."""
        return x

    def return_sample(self, z: torch.Tensor) -> torch.Tensor:
        """Diffusion space ``[B, C, T]`` -> audio (identity)."""
        return z


class MultiBandProcessor(SampleProcessor):
    """Splits the audio into ``n_bands`` mel-spaced bands (julius ``SplitBands``) and rescales each band so that
    its power matches that of Gaussian noise in that band, partially (``power_std`` < 1) or fully (1).

    The statistics (``counts``, ``sum_x``, ``sum_x2``, ``sum_target_x2`` buffers) are accumulated by
    ``project_sample`` over the first ``num_samples`` items seen, then frozen. Per band:
    ``mean = sum_x / counts``, ``std = sqrt(max(sum_x2 / counts - mean ** 2, 0))``, ``target_std =
    sum_target_x2 / counts`` (a mean power, as in Audiocraft).

    Args:
        n_bands: number of bands. sample_rate: of the audio. num_samples: items used to fit the statistics.
        power_std: exponent of the rescaling (float, or one per band).
    """

    def __init__(self, n_bands: int = 8, sample_rate: float = 24_000, num_samples: int = 10_000,
                 power_std: tp.Union[float, tp.List[float], torch.Tensor] = 1.) -> None:
        super().__init__()
        import julius  # imported when first needed (keeps `import audiocraft` light)
        if isinstance(n_bands, bool) or not isinstance(n_bands, int) or n_bands < 1:
            raise ValueError(f"n_bands must be an integer >= 1, got {n_bands!r}")
        self.n_bands = n_bands
        self.split_bands = julius.SplitBands(sample_rate, n_bands=n_bands)
        self.num_samples = num_samples
        if isinstance(power_std, (list, tuple)):
            if len(power_std) != n_bands:
                raise ValueError(f"power_std has {len(power_std)} values, one per band is needed ({n_bands})")
            power_std = torch.tensor(power_std)
        self.power_std = power_std
        self.register_buffer("counts", torch.zeros(1))
        self.register_buffer("sum_x", torch.zeros(n_bands))
        self.register_buffer("sum_x2", torch.zeros(n_bands))
        self.register_buffer("sum_target_x2", torch.zeros(n_bands))
        self.counts: torch.Tensor
        self.sum_x: torch.Tensor
        self.sum_x2: torch.Tensor
        self.sum_target_x2: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        return self.sum_x / self.counts

    @property
    def std(self) -> torch.Tensor:
        return (self.sum_x2 / self.counts - self.mean ** 2).clamp(min=0).sqrt()

    @property
    def target_std(self) -> torch.Tensor:
        return self.sum_target_x2 / self.counts

    @staticmethod
    def _check(x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected audio [B, C, T], got {shape}")

    def project_sample(self, x: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, C, T]`` -> normalised bands, summed (updates the statistics until ``num_samples``)."""
        self._check(x)
        bands = self.split_bands(x)
        if self.counts.item() < self.num_samples:
            ref_bands = self.split_bands(torch.randn_like(x))
            self.counts += len(x)
            self.sum_x += bands.mean(dim=(2, 3)).sum(dim=1)
            self.sum_x2 += bands.pow(2).mean(dim=(2, 3)).sum(dim=1)
            self.sum_target_x2 += ref_bands.pow(2).mean(dim=(2, 3)).sum(dim=1)
        rescale = (self.target_std / self.std.clamp(min=1e-12)) ** self.power_std
        bands = (bands - self.mean.view(-1, 1, 1, 1)) * rescale.view(-1, 1, 1, 1)
        return bands.sum(dim=0)

    def return_sample(self, x: torch.Tensor) -> torch.Tensor:
        """Diffusion space ``[B, C, T]`` -> audio: ``sum_b band_b * (std / target_std) ** power_std + mean``."""
        self._check(x)
        bands = self.split_bands(x)
        rescale = (self.std / self.target_std) ** self.power_std
        bands = bands * rescale.view(-1, 1, 1, 1) + self.mean.view(-1, 1, 1, 1)
        return bands.sum(dim=0)


ModelFn = tp.Callable[..., tp.Any]  # model(x, step, condition=...) -> object with `.sample`


class NoiseSchedule:
    """Noise schedule and reverse process.

    Args:
        beta_t0, beta_t1: variance of the first / last step. num_steps: number of steps.
        variance: ``'beta'`` or ``'beta_tilde'`` (or ``'none'``): sigma of the full reverse process.
        clip: clamp of every denoised sample (0: none). rescale: scale applied after step 0 (1: none).
        device: of the betas. beta_exp: power of the schedule. repartition: only ``'power'``.
        n_bands: must be None (multi-band schedules are not supported, as in Audiocraft's sampling).
        sample_processor: maps diffusion samples back to audio. noise_scale: scale of the noise.
        **kwargs: ignored (a config's schedule section also holds the learning-rate scheduler keys).
    """

    def __init__(self, beta_t0: float = 1e-4, beta_t1: float = 0.02, num_steps: int = 1000,
                 variance: str = "beta", clip: float = 5., rescale: float = 1.,
                 device: tp.Union[torch.device, str] = "cpu", beta_exp: float = 1, repartition: str = "power",
                 alpha_sigmoid: tp.Optional[dict] = None, n_bands: tp.Optional[int] = None,
                 sample_processor: tp.Optional[SampleProcessor] = None, noise_scale: float = 1.0,
                 **kwargs: tp.Any) -> None:
        if n_bands is not None:
            raise ValueError(f"NoiseSchedule(n_bands={n_bands!r}) is not supported: n_bands must be None")
        if repartition != "power":
            raise ValueError(f"NoiseSchedule(repartition={repartition!r}) is not supported; allowed: 'power'")
        if variance not in ("beta", "beta_tilde", "none"):
            raise ValueError(f"NoiseSchedule(variance={variance!r}); allowed: 'beta', 'beta_tilde', 'none'")
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"NoiseSchedule(num_steps={num_steps!r}) must be an integer >= 1")
        self.beta_t0 = beta_t0
        self.beta_t1 = beta_t1
        self.variance = variance
        self.num_steps = num_steps
        self.clip = clip
        self.sample_processor = sample_processor if sample_processor is not None else SampleProcessor()
        self.rescale = rescale
        self.n_bands = n_bands
        self.noise_scale = noise_scale
        self.betas = torch.linspace(beta_t0 ** (1 / beta_exp), beta_t1 ** (1 / beta_exp), num_steps,
                                    device=device, dtype=torch.float) ** beta_exp
        self.rng = random.Random(1234)

    def get_beta(self, step: tp.Union[int, torch.Tensor]) -> torch.Tensor:
        return self.betas[step]

    def get_initial_noise(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(x)

    def get_alpha_bar(self, step: tp.Optional[tp.Union[int, torch.Tensor]] = None) -> torch.Tensor:
        """``alpha_bar`` for one step (an int: the plain product of ``1 - beta`` up to it), for a ``[B]`` tensor
        of steps (``[B, 1, 1]``), or for every step (``[num_steps]``, cumulative product)."""
        if step is None:
            return (1 - self.betas).cumprod(dim=-1)
        if isinstance(step, int):
            return (1 - self.betas[:step + 1]).prod()
        return (1 - self.betas).cumprod(dim=0)[step].view(-1, 1, 1)

    def get_training_item(self, x: torch.Tensor, tensor_step: bool = False) -> TrainingItem:
        """A noisy training item from clean audio ``x`` ``[B, C, T]``: one random step for the batch (an int), or
        one per item (``tensor_step``)."""
        step: tp.Union[int, torch.Tensor]
        if tensor_step:
            step = torch.randint(0, self.num_steps, size=(x.size(0),), device=x.device)
        else:
            step = self.rng.randrange(self.num_steps)
        alpha_bar = self.get_alpha_bar(step)
        x = self.sample_processor.project_sample(x)
        noise = torch.randn_like(x)
        noisy = (alpha_bar.sqrt() / self.rescale) * x + (1 - alpha_bar).sqrt() * noise * self.noise_scale
        return TrainingItem(noisy, noise, step)

    def generate(self, model: ModelFn, initial: torch.Tensor, condition: tp.Optional[torch.Tensor] = None,
                 return_list: bool = False) -> tp.Union[torch.Tensor, tp.List[torch.Tensor]]:
        """Full reverse process over all ``num_steps`` steps from ``initial`` noise ``[B, C, T]``."""
        alpha_bar = self.get_alpha_bar(step=self.num_steps - 1)
        current = initial
        iterates = [initial]
        for step in range(self.num_steps)[::-1]:
            with torch.no_grad():
                estimate = model(current, step, condition=condition).sample
            alpha = 1 - self.betas[step]
            previous = (current - (1 - alpha) / (1 - alpha_bar).sqrt() * estimate) / alpha.sqrt()
            previous_alpha_bar = self.get_alpha_bar(step=step - 1)
            sigma2: tp.Union[float, torch.Tensor] = 0
            if step > 0 and self.variance == "beta":
                sigma2 = 1 - alpha
            elif step > 0 and self.variance == "beta_tilde":
                sigma2 = (1 - previous_alpha_bar) / (1 - alpha_bar) * (1 - alpha)
            if sigma2 > 0:
                previous += sigma2 ** 0.5 * torch.randn_like(previous) * self.noise_scale
            alpha_bar = previous_alpha_bar
            current = self._end_step(previous, step, iterates if return_list else None)
        if return_list:
            return iterates
        return self.sample_processor.return_sample(current)

    def _end_step(self, previous: torch.Tensor, step: int,
                  iterates: tp.Optional[tp.List[torch.Tensor]]) -> torch.Tensor:
        """Clip the new iterate, rescale it after the last step and record it; returns the next input.
        The rescale is in place on the tensor that is returned, as in Audiocraft."""
        if self.clip:
            previous = previous.clamp(-self.clip, self.clip)
        if step == 0:
            previous *= self.rescale
        if iterates is not None:
            iterates.append(previous.cpu())
        return previous

    def subsampled_coefficients(self, step_list: tp.Sequence[int]) -> tp.List[tp.Tuple[int, torch.Tensor,
                                                                                       torch.Tensor,
                                                                                       tp.Optional[torch.Tensor]]]:
        """For each model call of :meth:`generate_subsampled`: ``(step, a, c, sigma)`` with the update
        ``x' = (x - c * estimate) / sqrt(a) + sigma * noise`` (``c = (1 - a) / sqrt(1 - alpha_bar)``; ``sigma`` None
        where no noise is added). 0-dim float32 tensors, computed as Audiocraft does."""
        alpha_bars = (1 - self.betas).cumprod(dim=0)[list(reversed(step_list))].cpu()
        betas = betas_from_alpha_bar(alpha_bars)
        alpha_bar = self.get_alpha_bar(step=self.num_steps - 1)
        out = []
        for idx, step in enumerate(step_list[:-1]):
            alpha = 1 - betas[-1 - idx]
            coef = (1 - alpha) / (1 - alpha_bar).sqrt()
            previous_alpha_bar = self.get_alpha_bar(step_list[idx + 1])
            sigma: tp.Optional[torch.Tensor] = None
            if step == step_list[-2]:
                previous_alpha_bar = torch.tensor(1.0)
            else:
                sigma2 = (1 - previous_alpha_bar) / (1 - alpha_bar) * (1 - alpha)
                if sigma2 > 0:
                    sigma = sigma2 ** 0.5
            out.append((step, alpha, coef, sigma))
            alpha_bar = previous_alpha_bar
        return out

    def generate_subsampled(self, model: ModelFn, initial: torch.Tensor,
                            step_list: tp.Optional[tp.Sequence[int]] = None,
                            condition: tp.Optional[torch.Tensor] = None,
                            return_list: bool = False) -> tp.Union[torch.Tensor, tp.List[torch.Tensor]]:
        """Reverse process visiting only the steps of ``step_list`` (default 999, 949, ..., 49, 0), from
        ``initial`` noise ``[B, C, T]``: ``len(step_list) - 1`` model calls ``model(x, step, condition=...)``.
        Returns the processed sample ``[B, C, T]`` (or every iterate, unprocessed, with ``return_list``)."""
        steps = _check_step_list(DEFAULT_STEP_LIST if step_list is None else step_list, self.num_steps)
        current = initial * self.noise_scale
        iterates = [current]
        for step, alpha, coef, sigma in self.subsampled_coefficients(steps):
            with torch.no_grad():
                estimate = model(current, step, condition=condition).sample * self.noise_scale
            previous = (current - coef * estimate) / alpha.sqrt()
            if sigma is not None:
                previous += sigma * torch.randn_like(previous) * self.noise_scale
            current = self._end_step(previous, step, iterates if return_list else None)
        if return_list:
            return iterates
        return self.sample_processor.return_sample(current)


def _check_step_list(step_list: tp.Sequence[int], num_steps: int) -> tp.List[int]:
    steps = list(step_list)
    if len(steps) < 2 or any(isinstance(s, bool) or not isinstance(s, int) for s in steps):
        raise ValueError(f"step_list must be a list of at least 2 integer steps, got {step_list!r}")
    if any(not 0 <= s < num_steps for s in steps):
        raise ValueError(f"step_list values must be in [0, {num_steps - 1}], got {step_list!r}")
    return steps
