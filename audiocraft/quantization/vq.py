"""Residual vector quantizer (RVQ) used by EnCodec."""
from __future__ import annotations

import math
import typing as tp

import torch

from .base import BaseQuantizer, QuantizedResult
from .core_vq import ResidualVectorQuantization
from ..utils.validation import ArgumentError


class ResidualVectorQuantizer(BaseQuantizer):
    """``n_q`` residual codebooks of ``bins`` codes over latents ``[B, dimension, T]`` (attribute ``vq``).

    Args:
        dimension: latent size; n_q: number of codebooks; q_dropout: in training, use a random number of
            codebooks in ``[1, n_q]`` per batch; bins: codebook size; decay: EMA decay of the codebooks;
        kmeans_init / kmeans_iters: k-means initialisation on the first training batch;
        threshold_ema_dead_code: EMA usage below which a code is replaced by a batch vector;
        orthogonal_reg_weight / orthogonal_reg_active_codes_only / orthogonal_reg_max_codes: orthogonal
            regularisation of the codes (see ``core_vq.VectorQuantization``).
    """

    def __init__(self, dimension: int = 256, n_q: int = 8, q_dropout: bool = False, bins: int = 1024,
                 decay: float = 0.99, kmeans_init: bool = True, kmeans_iters: int = 10,
                 threshold_ema_dead_code: float = 2, orthogonal_reg_weight: float = 0.0,
                 orthogonal_reg_active_codes_only: bool = False,
                 orthogonal_reg_max_codes: tp.Optional[int] = None) -> None:
        super().__init__()
        if n_q < 1:
            raise ArgumentError(f"n_q must be >= 1, got {n_q}")
        self.max_n_q = n_q
        self.n_q = n_q
        self.q_dropout = q_dropout
        self.dimension = dimension
        self.bins = bins
        self.decay = decay
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.threshold_ema_dead_code = threshold_ema_dead_code
        self.orthogonal_reg_weight = orthogonal_reg_weight
        self.orthogonal_reg_active_codes_only = orthogonal_reg_active_codes_only
        self.orthogonal_reg_max_codes = orthogonal_reg_max_codes
        self.vq = ResidualVectorQuantization(
            dim=self.dimension, codebook_size=self.bins, num_quantizers=self.n_q, decay=self.decay,
            kmeans_init=self.kmeans_init, kmeans_iters=self.kmeans_iters,
            threshold_ema_dead_code=self.threshold_ema_dead_code, orthogonal_reg_weight=self.orthogonal_reg_weight,
            orthogonal_reg_active_codes_only=self.orthogonal_reg_active_codes_only,
            orthogonal_reg_max_codes=self.orthogonal_reg_max_codes, channels_last=False)

    def forward(self, x: torch.Tensor, frame_rate: int) -> QuantizedResult:
        """Quantize ``x`` ``[B, D, T]``; ``bandwidth`` in kbps = ``n_q * log2(bins) * frame_rate / 1000``."""
        n_q = self.n_q
        if self.training and self.q_dropout:
            n_q = int(torch.randint(1, self.n_q + 1, (1,)).item())
        bw_per_q = math.log2(self.bins) * frame_rate / 1000
        quantized, codes, commit_loss = self.vq(x, n_q=n_q)
        codes = codes.transpose(0, 1)  # [K, B, T] -> [B, K, T]
        bandwidth = torch.tensor(n_q * bw_per_q).to(x)
        return QuantizedResult(quantized, codes, bandwidth, penalty=torch.mean(commit_loss))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, D, T]`` -> codes ``[B, n_q, T]`` int64."""
        return self.vq.encode(x, n_q=self.n_q).transpose(0, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, T]`` (``K <= total_codebooks``) -> latent ``[B, D, T]``."""
        return self.vq.decode(codes.transpose(0, 1))

    @property
    def total_codebooks(self) -> int:
        return self.max_n_q

    @property
    def num_codebooks(self) -> int:
        return self.n_q

    def set_num_codebooks(self, n: int) -> None:
        if not 0 < n <= self.max_n_q:
            raise ArgumentError(f"n must be in [1, {self.max_n_q}] (the number of codebooks), got {n}")
        self.n_q = n
