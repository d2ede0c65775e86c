"""Fake ``demucs.apply``."""
import torch


def apply_model(model, mix: torch.Tensor, shifts: int = 1, split: bool = True, overlap: float = 0.25,
                transition_power: float = 1.0, progress: bool = False, device=None, num_workers: int = 0,
                segment=None, pool=None) -> torch.Tensor:
    """mix [B, C, T] -> stems [B, S, C, T] (deterministic)."""
    if device is not None:
        mix = mix.to(device)
    with torch.no_grad():
        return model(mix)
