"""Vector quantization with EMA codebooks (k-means init, dead-code expiry) and its residual stack.

Shapes: a ``VectorQuantization`` takes latents ``[B, D, T]`` (or ``[B, T, D]`` with ``channels_last``) and
returns codes ``[B, T]``; ``ResidualVectorQuantization`` stacks ``K`` of them on successive residuals and
returns codes ``[K, B, T]``.

Training (``module.train()``): each forward
1. initialises the codebook by k-means on the first batch (when ``kmeans_init``),
2. assigns each vector to its nearest code,
3. replaces codes whose EMA usage fell below ``threshold_ema_dead_code`` by random vectors of the batch,
4. updates ``cluster_size`` / ``embed_avg`` by an exponential moving average (``decay``) and sets
   ``embed = embed_avg / laplace_smoothed(cluster_size)``,
5. returns the quantized latent with a straight-through gradient and the commitment loss
   ``mse(quantized.detach(), x) * commitment_weight`` (+ optional orthogonal regularisation).
The codebooks are buffers, learnt only through these updates (no gradient).

Deviation from Audiocraft 1.3, on purpose: there, an expired code is written into ``embed`` only and is
overwritten by ``embed_avg / cluster_size`` in the same step, so expiry has no effect. Here the replaced code
also gets ``embed_avg = vector * threshold`` and ``cluster_size = threshold``, so the new code survives.
Inference (encode/decode, eval mode) is unaffected.
"""
from __future__ import annotations

import typing as tp

import torch
from torch import nn
from torch.nn import functional as F

from ..utils.validation import ArgumentError


def _ema_inplace(moving_avg: torch.Tensor, new: torch.Tensor, decay: float) -> None:
    moving_avg.mul_(decay).add_(new, alpha=1 - decay)


def _laplace_smoothing(x: torch.Tensor, n_categories: int, epsilon: float = 1e-5) -> torch.Tensor:
    return (x + epsilon) / (x.sum() + n_categories * epsilon)


def _sample_vectors(samples: torch.Tensor, num: int) -> torch.Tensor:
    """``num`` rows of ``samples`` ``[N, D]``: without replacement when ``N >= num``."""
    n = samples.shape[0]
    if n >= num:
        indices = torch.randperm(n, device=samples.device)[:num]
    else:
        indices = torch.randint(0, n, (num,), device=samples.device)
    return samples[indices]


def _squared_distances(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """``[N, D]`` x ``[K, D]`` -> ``[N, K]`` squared Euclidean distances."""
    return x.pow(2).sum(1, keepdim=True) - 2 * x @ codes.t() + codes.pow(2).sum(1)[None]


def kmeans(samples: torch.Tensor, num_clusters: int, num_iters: int = 10) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on ``samples`` ``[N, D]``: returns ``(means [K, D], bins [K])`` (bins = cluster sizes).

    Clusters that end up empty keep their previous mean.
    """
    dim = samples.shape[-1]
    means = _sample_vectors(samples, num_clusters)
    bins = torch.zeros(num_clusters, dtype=torch.long, device=samples.device)
    for _ in range(num_iters):
        buckets = _squared_distances(samples, means).argmin(dim=-1)
        bins = torch.bincount(buckets, minlength=num_clusters)
        empty = bins == 0
        sums = means.new_zeros(num_clusters, dim).scatter_add_(0, buckets[:, None].expand(-1, dim), samples)
        new_means = sums / bins.masked_fill(empty, 1)[:, None].to(samples.dtype)
        means = torch.where(empty[:, None], means, new_means)
    return means, bins


def _orthogonal_loss(codebook: torch.Tensor) -> torch.Tensor:
    """Mean squared off-identity cosine similarity of the codes ``[K, D]``."""
    n = codebook.shape[0]
    normed = F.normalize(codebook, p=2, dim=-1)
    identity = torch.eye(n, device=codebook.device, dtype=codebook.dtype)
    return ((normed @ normed.t() - identity) ** 2).sum() / (n ** 2)


class EuclideanCodebook(nn.Module):
    """Codebook of ``codebook_size`` vectors of size ``dim``, nearest-neighbour assignment, EMA learning.

    Buffers (checkpoint names): ``inited`` ``[1]`` (1.0 once initialised), ``cluster_size`` ``[K]`` (EMA of
    usage counts), ``embed`` ``[K, D]`` (the codes), ``embed_avg`` ``[K, D]`` (EMA of assigned-vector sums).
    """

    def __init__(self, dim: int, codebook_size: int, kmeans_init: bool = False, kmeans_iters: int = 10,
                 decay: float = 0.8, epsilon: float = 1e-5, threshold_ema_dead_code: float = 2) -> None:
        super().__init__()
        self.decay = decay
        self.codebook_size = codebook_size
        self.kmeans_iters = kmeans_iters
        self.epsilon = epsilon
        self.threshold_ema_dead_code = threshold_ema_dead_code
        if kmeans_init:
            embed = torch.zeros(codebook_size, dim)
        else:
            embed = nn.init.kaiming_uniform_(torch.empty(codebook_size, dim))
        self.register_buffer("inited", torch.tensor([float(not kmeans_init)]))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())
        self.inited: torch.Tensor
        self.cluster_size: torch.Tensor
        self.embed: torch.Tensor
        self.embed_avg: torch.Tensor

    @torch.no_grad()
    def _init_embed(self, flat: torch.Tensor) -> None:
        if bool(self.inited.item()):
            return
        embed, bins = kmeans(flat, self.codebook_size, self.kmeans_iters)
        self.embed.copy_(embed)
        self.embed_avg.copy_(embed)
        self.cluster_size.copy_(bins)
        self.inited.fill_(1.0)

    @torch.no_grad()
    def _expire_codes(self, flat: torch.Tensor) -> None:
        if not self.threshold_ema_dead_code:
            return
        expired = self.cluster_size < self.threshold_ema_dead_code
        if not bool(expired.any()):
            return
        samples = _sample_vectors(flat, self.codebook_size)
        self.embed.copy_(torch.where(expired[:, None], samples, self.embed))
        self.embed_avg.copy_(torch.where(expired[:, None], samples * self.threshold_ema_dead_code, self.embed_avg))
        self.cluster_size.masked_fill_(expired, float(self.threshold_ema_dead_code))

    def _quantize(self, flat: torch.Tensor) -> torch.Tensor:
        """Nearest code index of each row of ``flat`` ``[N, D]`` -> ``[N]`` int64 (same arithmetic as Audiocraft)."""
        embed = self.embed.t()
        dist = -(flat.pow(2).sum(1, keepdim=True) - 2 * flat @ embed + embed.pow(2).sum(0, keepdim=True))
        return dist.max(dim=-1).indices

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., D]`` -> code indices ``[...]`` int64."""
        flat = x.reshape(-1, x.shape[-1])
        return self._quantize(flat).view(*x.shape[:-1])

    def decode(self, embed_ind: torch.Tensor) -> torch.Tensor:
        """Code indices ``[...]`` -> vectors ``[..., D]``."""
        return F.embedding(embed_ind, self.embed)

    def forward(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """``[..., D]`` -> ``(quantized [..., D], indices [...])``; learns in training mode (see module doc)."""
        flat = x.reshape(-1, x.shape[-1])
        self._init_embed(flat)
        embed_ind = self._quantize(flat)
        quantize = self.decode(embed_ind).view(x.shape)
        if self.training:
            with torch.no_grad():
                onehot = F.one_hot(embed_ind, self.codebook_size).to(flat.dtype)
                self._expire_codes(flat)
                _ema_inplace(self.cluster_size, onehot.sum(0), self.decay)
                _ema_inplace(self.embed_avg, (flat.t() @ onehot).t(), self.decay)
                cluster_size = (_laplace_smoothing(self.cluster_size, self.codebook_size, self.epsilon)
                                * self.cluster_size.sum())
                self.embed.copy_(self.embed_avg / cluster_size[:, None])
        return quantize, embed_ind.view(*x.shape[:-1])


class VectorQuantization(nn.Module):
    """One EMA codebook (attribute ``_codebook``) with optional in/out projections to ``codebook_dim``.

    Args:
        dim: latent size ``D``; codebook_dim: codebook vector size (projections are ``nn.Identity`` when
            equal to ``dim``); channels_last: inputs are ``[B, T, D]`` instead of ``[B, D, T]``;
        commitment_weight: weight of the commitment loss; orthogonal_reg_*: orthogonal regularisation of
            the codes (weight, only codes used in the batch, at most that many random codes).
        Other arguments go to ``EuclideanCodebook``.
    """

    def __init__(self, dim: int, codebook_size: int, codebook_dim: tp.Optional[int] = None, decay: float = 0.8,
                 epsilon: float = 1e-5, kmeans_init: bool = False, kmeans_iters: int = 10,
                 threshold_ema_dead_code: float = 2, channels_last: bool = False, commitment_weight: float = 1.0,
                 orthogonal_reg_weight: float = 0.0, orthogonal_reg_active_codes_only: bool = False,
                 orthogonal_reg_max_codes: tp.Optional[int] = None) -> None:
        super().__init__()
        _codebook_dim = dim if codebook_dim is None else codebook_dim
        requires_projection = _codebook_dim != dim
        self.project_in: nn.Module = nn.Linear(dim, _codebook_dim) if requires_projection else nn.Identity()
        self.project_out: nn.Module = nn.Linear(_codebook_dim, dim) if requires_projection else nn.Identity()
        self.epsilon = epsilon
        self.commitment_weight = commitment_weight
        self.orthogonal_reg_weight = orthogonal_reg_weight
        self.orthogonal_reg_active_codes_only = orthogonal_reg_active_codes_only
        self.orthogonal_reg_max_codes = orthogonal_reg_max_codes
        self._codebook = EuclideanCodebook(dim=_codebook_dim, codebook_size=codebook_size,
                                           kmeans_init=kmeans_init, kmeans_iters=kmeans_iters, decay=decay,
                                           epsilon=epsilon, threshold_ema_dead_code=threshold_ema_dead_code)
        self.codebook_size = codebook_size
        self.channels_last = channels_last

    @property
    def codebook(self) -> torch.Tensor:
        """The codes ``[codebook_size, codebook_dim]``."""
        return self._codebook.embed

    @property
    def inited(self) -> torch.Tensor:
        return self._codebook.inited

    def _to_last(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.channels_last else x.transpose(1, 2)

    def _from_last(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.channels_last else x.transpose(1, 2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, D, T]`` -> codes ``[B, T]`` int64."""
        return self._codebook.encode(self.project_in(self._to_last(x)))

    def decode(self, embed_ind: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, T]`` -> ``[B, D, T]``."""
        return self._from_last(self.project_out(self._codebook.decode(embed_ind)))

    def forward(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, D, T]`` -> ``(quantized [B, D, T], codes [B, T], loss [1])``."""
        x = self.project_in(self._to_last(x))
        quantize, embed_ind = self._codebook(x)
        loss = torch.zeros(1, device=x.device, dtype=x.dtype)
        if self.training:
            quantize = x + (quantize - x).detach()  # straight-through estimator
            if self.commitment_weight > 0:
                loss = loss + F.mse_loss(quantize.detach(), x) * self.commitment_weight
            if self.orthogonal_reg_weight > 0:
                codebook = self.codebook
                if self.orthogonal_reg_active_codes_only:
                    codebook = codebook[torch.unique(embed_ind)]
                num_codes = codebook.shape[0]
                if self.orthogonal_reg_max_codes is not None and num_codes > self.orthogonal_reg_max_codes:
                    keep = torch.randperm(num_codes, device=x.device)[:self.orthogonal_reg_max_codes]
                    codebook = codebook[keep]
                loss = loss + _orthogonal_loss(codebook) * self.orthogonal_reg_weight
        return self._from_last(self.project_out(quantize)), embed_ind, loss


class ResidualVectorQuantization(nn.Module):
    """``num_quantizers`` ``VectorQuantization`` layers (attribute ``layers``), each coding the residual of
    the previous ones. Keyword arguments go to every ``VectorQuantization``.
    """

    def __init__(self, *, num_quantizers: int, **kwargs: tp.Any) -> None:
        super().__init__()
        self.layers = nn.ModuleList([VectorQuantization(**kwargs) for _ in range(num_quantizers)])

    def _active(self, n_q: tp.Optional[int]) -> tp.List[VectorQuantization]:
        layers = [tp.cast(VectorQuantization, layer) for layer in self.layers]
        return layers[:n_q or len(layers)]

    def forward(self, x: torch.Tensor,
                n_q: tp.Optional[int] = None) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, D, T]`` -> ``(quantized [B, D, T], codes [K, B, T], losses [K, 1])`` with the first ``n_q``."""
        quantized_out = torch.zeros_like(x)
        residual = x
        all_losses, all_indices = [], []
        for layer in self._active(n_q):
            quantized, indices, loss = layer(residual)
            quantized = quantized.detach()
            residual = residual - quantized
            quantized_out = quantized_out + quantized
            all_indices.append(indices)
            all_losses.append(loss)
        if self.training:
            # straight-through for the sum (each layer's output was detached above)
            quantized_out = x + (quantized_out - x).detach()
        return quantized_out, torch.stack(all_indices), torch.stack(all_losses)

    def encode(self, x: torch.Tensor, n_q: tp.Optional[int] = None) -> torch.Tensor:
        """``[B, D, T]`` -> codes ``[K, B, T]`` int64 (``K = n_q`` or all layers)."""
        residual = x
        all_indices = []
        for layer in self._active(n_q):
            indices = layer.encode(residual)
            residual = residual - layer.decode(indices)
            all_indices.append(indices)
        return torch.stack(all_indices)

    def decode(self, q_indices: torch.Tensor) -> torch.Tensor:
        """Codes ``[K, B, T]`` -> latent ``[B, D, T]``, the sum of the first ``K`` layers' codes."""
        quantized_out: tp.Optional[torch.Tensor] = None
        for layer, indices in zip(self._active(None), q_indices):
            quantized = layer.decode(indices)
            quantized_out = quantized if quantized_out is None else quantized_out + quantized
        if quantized_out is None:
            raise ArgumentError("q_indices must hold at least one codebook")
        return quantized_out
