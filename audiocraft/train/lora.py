"""LoRA adapters on weight matrices, merged into the base weights for export.

A LoRA adapter replaces a weight ``W [out, in]`` by ``W + (alpha / rank) * B @ A`` with ``A [rank, in]``
(random) and ``B [out, rank]`` (zeros, so training starts from the base model); only ``A`` and ``B`` train.

It is attached with ``torch.nn.utils.parametrize`` to the weight *parameter* rather than by wrapping
``nn.Linear`` modules: MusicGen's attention keeps its fused q/k/v projection as a bare parameter
(``self_attn.in_proj_weight``), which a module wrapper (or peft's LoRA layers) cannot reach, while a
parametrization works for it and for ``nn.Linear.weight`` alike, whatever code reads the weight.
"""
from __future__ import annotations

import math
import typing as tp

import torch
from torch import nn
from torch.nn.utils import parametrize

# Weight names (suffixes) adapted by default: every projection of every transformer layer.
DEFAULT_LORA_TARGETS = ("self_attn.in_proj_weight", "self_attn.out_proj.weight", "cross_attention.in_proj_weight",
                        "cross_attention.out_proj.weight", "linear1.weight", "linear2.weight")


class LoRAParametrization(nn.Module):
    """``weight -> weight + scaling * lora_B @ lora_A`` for a weight ``[out_features, in_features]``."""

    def __init__(self, out_features: int, in_features: int, rank: int = 8, alpha: float = 16.0) -> None:
        super().__init__()
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"LoRA rank must be a positive int, got {rank!r}.")
        if alpha <= 0:
            raise ValueError(f"LoRA alpha must be > 0, got {alpha!r}.")
        self.rank = rank
        self.alpha = float(alpha)
        self.scaling = self.alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def delta(self) -> torch.Tensor:
        """The low-rank update ``[out, in]``."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta().to(weight.dtype)


def _lora_of(module: nn.Module, name: str) -> tp.Optional[LoRAParametrization]:
    if not parametrize.is_parametrized(module, name):
        return None
    for p in tp.cast(tp.Any, module).parametrizations[name]:
        if isinstance(p, LoRAParametrization):
            return p
    return None


def apply_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0,
               targets: tp.Sequence[str] = DEFAULT_LORA_TARGETS, freeze: bool = True) -> tp.List[str]:
    """Attach LoRA adapters to every 2-D weight of ``model`` whose name ends with one of ``targets``.

    With ``freeze`` every other parameter stops training (``requires_grad = False``) first. Returns the names
    of the adapted weights (sorted). Raises ValueError if no weight matches.
    """
    if freeze:
        for p in model.parameters():
            p.requires_grad_(False)
    chosen = []
    for module_name, module in list(model.named_modules()):
        for param_name, param in list(module.named_parameters(recurse=False)):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if param.dim() != 2 or not any(full == t or full.endswith("." + t) for t in targets):
                continue
            lora = LoRAParametrization(param.shape[0], param.shape[1], rank, alpha)
            lora.to(device=param.device, dtype=torch.float32)
            parametrize.register_parametrization(module, param_name, lora)
            tp.cast(tp.Any, module).parametrizations[param_name].original.requires_grad_(False)
            chosen.append(full)
    if not chosen:
        raise ValueError(f"No weight of the model matches the LoRA targets {list(targets)}.")
    return sorted(chosen)


def lora_parameters(model: nn.Module) -> tp.Dict[str, nn.Parameter]:
    """The adapters' parameters by name."""
    return {name: p for name, p in model.named_parameters() if ".lora_A" in name or ".lora_B" in name}


@torch.no_grad()
def merge_parametrized_state(model: nn.Module, state: tp.Mapping[str, torch.Tensor]) -> tp.Dict[str, torch.Tensor]:
    """A state dict of parametrized ``model`` (values may differ from the model's, e.g. EMA) with every
    parametrized weight computed from it (LoRA merged: ``original + scaling * B @ A``) under its original name.
    """
    out = {k: v for k, v in state.items() if ".parametrizations." not in f".{k}"}
    for module_name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        prefix = f"{module_name}." if module_name else ""
        for param_name, plist in tp.cast(tp.Any, module).parametrizations.items():
            root = f"{prefix}parametrizations.{param_name}."
            weight = state[root + "original"]
            for index, parametrization in enumerate(plist):
                values = {name: state[f"{root}{index}.{name}"] for name, _ in parametrization.named_parameters()}
                weight = torch.func.functional_call(parametrization, values, (weight,))
            out[prefix + param_name] = weight
    return out


@torch.no_grad()
def merged_state_dict(model: nn.Module) -> tp.Dict[str, torch.Tensor]:
    """``model.state_dict()`` with every parametrized weight replaced by its current value under its original
    name (LoRA merged), without changing ``model``."""
    return {k: v.detach().clone() for k, v in merge_parametrized_state(model, model.state_dict()).items()}


@torch.no_grad()
def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA adapter into its weight in place and remove it. Returns the number merged."""
    merged = 0
    for module in list(model.modules()):
        if not parametrize.is_parametrized(module):
            continue
        for param_name in list(tp.cast(tp.Any, module).parametrizations):
            if _lora_of(module, param_name) is not None:
                parametrize.remove_parametrizations(module, param_name, leave_parametrized=True)
                merged += 1
    return merged
