"""Compression models: the abstract ``CompressionModel``, ``EncodecModel`` (SEANet + RVQ) and a wrapper
around transformers' EnCodec (``HFEncodecCompressionModel``) for ``facebook/encodec_*`` hub ids.

Shapes: audio ``[B, C, T]`` float; codes ``[B, K, F]`` int64 with ``F = ceil(T / hop)``; latents ``[B, D, F]``.

Streaming (``EncodecModel`` only) is exact, see ``modules/seanet.py``::

    with model.streaming():
        for codes in chunks:                   # [B, K, f] new frames, any f >= 0
            audio = model.decode(codes)        # [B, C, n] samples that no later frame can change
        audio = model.flush_decoder()          # the held-back end of the stream (None if nothing was fed)

The concatenated pieces equal ``model.decode(all_codes)`` up to float round-off (<1e-5). A causal model returns
``f * hop`` samples per call and nothing at the flush. The non-causal MusicGen codec looks ahead: in steady
state it has returned ``frames * hop - streaming_delay`` samples (``streaming_delay`` = 2402 samples, 3.75
frames at 32 kHz), and ``flush_decoder()`` returns the last ``streaming_delay`` samples, computed with the
end-of-signal padding of the one-shot decode. ``encode``/``flush_encoder`` stream the same way.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
import logging
import math
from pathlib import Path
import typing as tp

import torch
from torch import nn

from ..modules.streaming import StreamingModule
from ..quantization import BaseQuantizer, QuantizedResult
from ..utils.validation import ArgumentError, ArgumentTypeError

if tp.TYPE_CHECKING:  # pragma: no cover
    from transformers import EncodecModel as HFEncodecModel  # noqa: F401

logger = logging.getLogger(__name__)


def __getattr__(name: str) -> tp.Any:
    """Lazy ``HFEncodecModel`` (transformers' ``EncodecModel``) so that importing this module stays light."""
    if name == "HFEncodecModel":
        from transformers import EncodecModel
        return EncodecModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------- input checks
def _check_wav(x: tp.Any, channels: int, allow_empty: bool = False) -> None:
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(f"x must be a torch.Tensor [B, C, T], got {type(x).__name__}")
    if x.dim() != 3:
        raise ArgumentError(f"x must be a 3D tensor [B, C, T], got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise ArgumentTypeError(f"x must be a floating point tensor, got dtype {x.dtype}")
    if x.shape[1] != channels:
        raise ArgumentError(f"x has {x.shape[1]} channel(s) (shape {list(x.shape)}), the model expects {channels}")
    if x.shape[0] == 0:
        raise ArgumentError(f"x must hold at least one item (B >= 1), got shape {list(x.shape)}")
    if x.shape[-1] == 0 and not allow_empty:
        raise ArgumentError(f"x must hold at least one sample, got shape {list(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ArgumentError(f"x contains NaN or infinite values (shape {list(x.shape)}); audio must be finite")


def _as_model_dtype(x: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """``x`` in the floating point dtype of ``model``'s first parameter (float16 / float64 audio is accepted)."""
    param = next(iter(model.parameters()), None)
    return x if param is None or x.dtype == param.dtype else x.to(param.dtype)


def _check_codes(codes: tp.Any, total_codebooks: int, cardinality: int, allow_empty: bool = False) -> None:
    if not isinstance(codes, torch.Tensor):
        raise ArgumentTypeError(f"codes must be a torch.Tensor [B, K, T] of integers, got {type(codes).__name__}")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise ArgumentTypeError(f"codes must be an integer tensor (torch.int64), got dtype {codes.dtype}")
    if codes.dim() != 3:
        raise ArgumentError(f"codes must be a 3D tensor [B, K, T], got shape {list(codes.shape)}")
    if not 1 <= codes.shape[1] <= total_codebooks:
        raise ArgumentError(f"codes has K={codes.shape[1]} codebooks (shape {list(codes.shape)}); "
                            f"allowed: 1 to {total_codebooks}")
    if codes.shape[0] == 0:
        raise ArgumentError(f"codes must hold at least one item (B >= 1), got shape {list(codes.shape)}")
    if codes.shape[-1] == 0:
        if not allow_empty:
            raise ArgumentError(f"codes must hold at least one frame, got shape {list(codes.shape)}")
        return
    low, high = int(codes.min()), int(codes.max())
    if low < 0 or high >= cardinality:
        raise ArgumentError(f"codes values must be in [0, {cardinality - 1}] (codebook size {cardinality}), "
                            f"got values in [{low}, {high}]")


# ---------------------------------------------------------------------------------------------- base class
class CompressionModel(ABC, StreamingModule):
    """Base API for all compression models that aim at being used as audio tokenizers with a language model."""

    @abstractmethod
    def forward(self, x: torch.Tensor) -> QuantizedResult:
        ...

    @abstractmethod
    def encode(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        """Audio ``[B, C, T]`` -> ``(codes [B, K, F] int64, scale [B, 1] or None)``."""
        ...

    @abstractmethod
    def decode(self, codes: torch.Tensor, scale: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        """Codes ``[B, K, F]`` (and the scale from ``encode``) -> audio ``[B, C, F * hop]``."""
        ...

    @abstractmethod
    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, F]`` -> continuous latent ``[B, D, F]``."""
        ...

    @property
    @abstractmethod
    def channels(self) -> int:
        ...

    @property
    @abstractmethod
    def frame_rate(self) -> float:
        ...

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        ...

    @property
    @abstractmethod
    def cardinality(self) -> int:
        ...

    @property
    @abstractmethod
    def num_codebooks(self) -> int:
        ...

    @property
    @abstractmethod
    def total_codebooks(self) -> int:
        ...

    @abstractmethod
    def set_num_codebooks(self, n: int) -> None:
        """Use only the first ``n`` codebooks (for a RVQ: lower bandwidth)."""
        ...

    @staticmethod
    def get_pretrained(name: str, device: tp.Union[torch.device, str] = "cpu") -> "CompressionModel":
        """A pretrained compression model, in eval mode, on ``device``.

        ``name`` may be ``'debug_compression_model'`` (tiny random model), an existing local checkpoint file or
        folder (Audiocraft export format), or a transformers EnCodec hub id such as ``'facebook/encodec_32khz'``
        (wrapped in ``HFEncodecCompressionModel``). On CPU the SEANet decoder is prepared for inference
        (:func:`audiocraft.backends.prepare_codec`: same results, faster).
        """
        from . import loaders
        from .builders import get_debug_compression_model
        if not isinstance(name, (str, Path)):
            raise ArgumentTypeError(f"name must be a str, got {type(name).__name__}")
        name = str(name)
        model: CompressionModel
        if name in ("dac_44khz", "dac_24khz"):
            raise NotImplementedError(f"name={name!r}: DAC compression models are not supported by this package")
        if name == "debug_compression_model":
            model = get_debug_compression_model()
        elif Path(name).exists():
            model = loaders.load_compression_model(name, device=device)
        else:
            logger.info("Getting pretrained compression model from HF %s", name)
            from transformers import EncodecModel as _HFEncodecModel
            try:
                hf_model = _HFEncodecModel.from_pretrained(name)
            except OSError as err:
                raise OSError(f"could not load the compression model {name!r} as a transformers EncodecModel "
                              f"(not a local path either): {err}") from err
            model = HFEncodecCompressionModel(hf_model)
        model = model.to(device).eval()
        from .. import backends
        backends.prepare_codec(model)  # CPU: the fast SEANet decoding (audiocraft/backends/cpu/codec.py)
        return model


# ---------------------------------------------------------------------------------------------- EnCodec
class EncodecModel(CompressionModel):
    """EnCodec: ``encoder`` (SEANet) -> ``quantizer`` (RVQ) -> ``decoder`` (SEANet).

    Args:
        encoder, decoder: ``[B, C, T]`` <-> ``[B, D, F]`` modules (SEANetEncoder / SEANetDecoder).
        quantizer: a ``BaseQuantizer`` over ``[B, D, F]``.
        frame_rate: frames per second (``sample_rate // hop_length``; a plain ``int`` here, where Audiocraft
            1.3 stores a ``numpy.int64``).
        sample_rate, channels: of the audio.
        causal: whether encoder and decoder are causal (incompatible with ``renormalize``).
        renormalize: divide the input by its RMS (over the channel mean) before encoding and return that
            ``scale`` with the codes, multiply it back after decoding.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, quantizer: BaseQuantizer,
                 frame_rate: int, sample_rate: int, channels: int, causal: bool = False,
                 renormalize: bool = False) -> None:
        super().__init__()
        if causal and renormalize:
            raise ArgumentError("renormalize=True is not supported for a causal model (causal=True)")
        self.encoder = encoder
        self.decoder = decoder
        self.quantizer = quantizer
        self._frame_rate = frame_rate
        self._sample_rate = int(sample_rate)
        self._channels = int(channels)
        self.renormalize = renormalize
        self.causal = causal

    # ---- properties ----------------------------------------------------------------------------
    @property
    def frame_rate(self) -> int:  # type: ignore[override]
        return self._frame_rate  # type: ignore[return-value]

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def total_codebooks(self) -> int:
        """Total number of quantizer codebooks available."""
        return self.quantizer.total_codebooks

    @property
    def num_codebooks(self) -> int:
        """Active number of codebooks used by the quantizer."""
        return self.quantizer.num_codebooks

    def set_num_codebooks(self, n: int) -> None:
        """Set the active number of codebooks used by the quantizer."""
        self.quantizer.set_num_codebooks(n)

    @property
    def cardinality(self) -> int:
        """Cardinality of each codebook."""
        return int(getattr(self.quantizer, "bins"))

    @property
    def streaming_delay(self) -> int:
        """Audio samples a streaming ``decode`` holds back until ``flush_decoder()`` (0 if causal)."""
        delay = getattr(self.decoder, "streaming_delay", None)
        if delay is None:
            raise AttributeError(f"the decoder ({type(self.decoder).__name__}) does not report a streaming delay")
        return int(delay)

    # ---- normalisation -------------------------------------------------------------------------
    def preprocess(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        """``[B, C, T]`` -> (possibly renormalised ``x``, ``scale [B, 1]`` or None)."""
        scale = None
        if self.renormalize:
            mono = x.mean(dim=1, keepdim=True)
            volume = mono.pow(2).mean(dim=2, keepdim=True).sqrt()
            scale = 1e-8 + volume
            x = x / scale
            scale = scale.view(-1, 1)
        return x, scale

    def postprocess(self, x: torch.Tensor, scale: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        """Undo ``preprocess``: multiply ``x`` ``[B, C, T]`` by ``scale`` ``[B, 1]`` when given."""
        if scale is not None:
            if not self.renormalize:
                raise ArgumentError("scale must be None for a model built with renormalize=False")
            x = x * scale.view(-1, 1, 1)
        return x

    # ---- training forward ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> QuantizedResult:
        """Auto-encode ``x`` ``[B, C, T]``: ``QuantizedResult`` whose ``x`` is the reconstruction ``[B, C, T]``."""
        _check_wav(x, self.channels)
        length = x.shape[-1]
        x, scale = self.preprocess(x)
        emb = self.encoder(x)
        q_res = self.quantizer(emb, self.frame_rate)
        out = self.decoder(q_res.x)
        # the output may be longer than the input when T is not a multiple of the hop length
        q_res.x = self.postprocess(out[..., :length], scale)
        return q_res

    # ---- inference ------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        """Audio ``[B, C, T]`` float -> ``(codes [B, K, ceil(T / hop)] int64, scale [B, 1] or None)``.

        In streaming mode: codes of the frames that no later audio can change (``flush_encoder`` ends).
        Audio of another floating point dtype is cast to the model's.
        """
        _check_wav(x, self.channels, allow_empty=self.is_streaming)
        x = _as_model_dtype(x, self)
        if self.is_streaming and self.renormalize:
            raise ArgumentError("streaming encode is not supported with renormalize=True (the scale needs the "
                                "whole signal)")
        x, scale = self.preprocess(x)
        emb = self.encoder(x)
        codes = self.quantizer.encode(emb)
        return codes, scale

    def flush_encoder(self) -> tp.Optional[torch.Tensor]:
        """End a streaming encode: codes ``[B, K, f]`` of the last frames, None if nothing was fed."""
        emb = tp.cast(StreamingModule, self.encoder).flush()
        return None if emb is None else self.quantizer.encode(emb)

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, F]`` int64 -> quantized latent ``[B, D, F]`` (sum of the K codebook vectors)."""
        _check_codes(codes, self.total_codebooks, self.cardinality)
        return self.quantizer.decode(codes.long())

    def decode(self, codes: torch.Tensor, scale: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        """Codes ``[B, K, F]`` int64 -> audio ``[B, C, F * hop]`` float (``scale`` from ``encode``, if any).

        In streaming mode: decodes the new frames and returns only the final samples (see module doc).
        """
        _check_codes(codes, self.total_codebooks, self.cardinality, allow_empty=self.is_streaming)
        emb = self.quantizer.decode(codes.long())  # [B, D, F] (F may be 0 while streaming)
        out = self.decoder(emb)
        return self.postprocess(out, scale)

    def flush_decoder(self, scale: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        """End a streaming decode: the held-back audio ``[B, C, n]`` (n = ``streaming_delay`` in steady
        state), None if no frame was decoded in this stream. The decoder is then ready for a new stream."""
        out = tp.cast(StreamingModule, self.decoder).flush()
        return None if out is None else self.postprocess(out, scale)

    def flush(self, x: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        raise NotImplementedError("EncodecModel streams its encoder and decoder separately: "
                                  "use flush_decoder() or flush_encoder()")


# ---------------------------------------------------------------------------------------------- transformers
class HFEncodecCompressionModel(CompressionModel):
    """Wrapper around a transformers ``EncodecModel`` (attribute ``model``), for ``facebook/encodec_*`` ids.

    Inference only; the number of codebooks must match one of the model's target bandwidths.
    """

    def __init__(self, model: "HFEncodecModel") -> None:
        super().__init__()
        self.model = model
        bandwidths = list(self.model.config.target_bandwidths)
        num_codebooks = [bw * 1000 / (self.frame_rate * math.log2(self.cardinality)) for bw in bandwidths]
        if any(abs(nc - round(nc)) > 1e-3 for nc in num_codebooks):
            raise ArgumentError(f"target_bandwidths {bandwidths} do not map to whole numbers of codebooks: "
                                f"{num_codebooks}")
        self.possible_num_codebooks = [int(round(nc)) for nc in num_codebooks]
        self._num_codebooks = max(self.possible_num_codebooks)

    def forward(self, x: torch.Tensor) -> QuantizedResult:
        raise NotImplementedError("Forward and training with HF EncodecModel not supported.")

    def encode(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        """Audio ``[B, C, T]`` -> ``(codes [B, K, F], scale or None)`` at the bandwidth of ``num_codebooks``."""
        _check_wav(x, self.channels)
        x = _as_model_dtype(x, self.model)
        bandwidth_index = self.possible_num_codebooks.index(self.num_codebooks)
        bandwidth = self.model.config.target_bandwidths[bandwidth_index]
        res: tp.Any = self.model.encode(x, None, bandwidth)
        if len(res[0]) != 1 or len(res[1]) != 1:
            raise ArgumentError("chunked transformers EnCodec models (config.chunk_length_s set) are not supported")
        return res[0][0], res[1][0]

    def decode(self, codes: torch.Tensor, scale: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        """Codes ``[B, K, F]`` -> audio ``[B, C, F * hop]``."""
        if self.is_streaming:
            raise NotImplementedError("HFEncodecCompressionModel cannot decode in streaming mode")
        _check_codes(codes, self.total_codebooks, self.cardinality)
        scales = [None] if scale is None else [scale]
        model: tp.Any = self.model
        return model.decode(codes[None].long(), scales)[0]

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, F]`` -> latent ``[B, D, F]``."""
        _check_codes(codes, self.total_codebooks, self.cardinality)
        return self.model.quantizer.decode(codes.long().transpose(0, 1))

    @property
    def channels(self) -> int:
        return int(self.model.config.audio_channels)

    @property
    def frame_rate(self) -> float:
        """``sample_rate / hop_length`` as a float (Audiocraft's; transformers' ``config.frame_rate`` rounds up)."""
        return self.sample_rate / math.prod(self.model.config.upsampling_ratios)

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sampling_rate)

    @property
    def cardinality(self) -> int:
        return int(self.model.config.codebook_size)

    @property
    def num_codebooks(self) -> int:
        return self._num_codebooks

    @property
    def total_codebooks(self) -> int:
        return max(self.possible_num_codebooks)

    def set_num_codebooks(self, n: int) -> None:
        if n not in self.possible_num_codebooks:
            raise ArgumentError(f"Allowed values for num codebooks: {self.possible_num_codebooks}, got {n}")
        self._num_codebooks = n


# ---------------------------------------------------------------------------------------------- stereo
class InterleaveStereoCompressionModel(CompressionModel):
    """Stereo from a mono codec (attribute ``model``): each channel is encoded on its own and the two code stacks
    are interleaved, per codebook level (``[q0_L, q0_R, q1_L, q1_R, ...]``, ``[B, 2K, F]``) or, with
    ``per_timestep``, per frame (``[B, K, 2F]``, frames ``t0_L, t0_R, t1_L, ...``).

    Built by :func:`audiocraft.models.builders.get_wrapped_compression_model` from a stereo LM's config
    (``interleave_stereo_codebooks``). As in Audiocraft, ``num_codebooks`` counts codebooks after interleaving,
    ``set_num_codebooks`` / ``total_codebooks`` those of the mono model, and ``frame_rate`` is doubled with
    ``per_timestep``. ``forward`` (training) and ``decode_latent`` are not supported.

    Streaming: ``decode`` runs the two channels as one batch of ``2B`` through the mono model, so one
    ``streaming()`` context serves both channels (``flush_decoder`` returns ``[B, 2, n]``).
    """

    def __init__(self, model: CompressionModel, per_timestep: bool = False) -> None:
        super().__init__()
        if not isinstance(model, CompressionModel):
            raise ArgumentTypeError(f"model must be a CompressionModel, got {type(model).__name__}")
        if model.channels != 1:
            raise ArgumentError(f"the wrapped compression model must be mono (channels 1), got {model.channels} "
                                "channels")
        if not isinstance(per_timestep, bool):
            raise ArgumentTypeError(f"per_timestep must be a bool, got {per_timestep!r}")
        self.model = model
        self.per_timestep = per_timestep

    # ---- properties ----------------------------------------------------------------------------
    @property
    def total_codebooks(self) -> int:
        """Codebooks of the mono model (before interleaving)."""
        return self.model.total_codebooks

    @property
    def num_codebooks(self) -> int:
        """Active codebooks AFTER interleaving (twice the mono model's, unless ``per_timestep``)."""
        return self.model.num_codebooks if self.per_timestep else 2 * self.model.num_codebooks

    def set_num_codebooks(self, n: int) -> None:
        """Set the active codebooks of the mono model (BEFORE interleaving)."""
        self.model.set_num_codebooks(n)

    @property
    def num_virtual_steps(self) -> int:
        """Frames per real frame: 2 with ``per_timestep`` (left, then right), else 1."""
        return 2 if self.per_timestep else 1

    @property
    def frame_rate(self) -> float:
        return self.model.frame_rate * self.num_virtual_steps

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def channels(self) -> int:
        return 2

    @property
    def cardinality(self) -> int:
        return self.model.cardinality

    @property
    def streaming_delay(self) -> int:
        """Audio samples a streaming ``decode`` holds back until ``flush_decoder()`` (the mono model's)."""
        return int(getattr(self.model, "streaming_delay"))

    # ---- interleaving --------------------------------------------------------------------------
    def _interleave(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Two ``[B, K, F]`` stacks -> ``[B, 2K, F]`` (``[B, K, 2F]`` with ``per_timestep``)."""
        dim = 3 if self.per_timestep else 2
        stacked = torch.stack([left, right], dim=dim)  # [B, K, 2, F] or [B, K, F, 2]
        batch, k, f = left.shape
        return stacked.reshape(batch, k, 2 * f) if self.per_timestep else stacked.reshape(batch, 2 * k, f)

    def get_left_right_codes(self, codes: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Interleaved codes -> the left and the right channel's mono codes, each ``[B, K, F]``."""
        if self.per_timestep:
            return codes[..., 0::2], codes[..., 1::2]
        return codes[:, 0::2], codes[:, 1::2]

    def _check_interleaved(self, codes: tp.Any) -> None:
        _check_codes(codes, self.num_codebooks, self.cardinality, allow_empty=self.is_streaming)
        if codes.shape[1] != self.num_codebooks:
            raise ArgumentError(f"codes has K={codes.shape[1]} codebooks (shape {list(codes.shape)}); the stereo model "
                                f"needs exactly {self.num_codebooks} (left and right interleaved)")
        if codes.shape[-1] % self.num_virtual_steps:
            raise ArgumentError(f"codes has {codes.shape[-1]} frames (shape {list(codes.shape)}); interleaved per "
                                "timestep, it needs an even number (left, right)")

    # ---- inference ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> QuantizedResult:
        raise NotImplementedError("InterleaveStereoCompressionModel does not support forward; use encode and "
                                  "decode")

    def encode(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        """Stereo audio ``[B, 2, T]`` -> ``(codes [B, 2K, F] interleaved, scale [B, 2] or None)``.

        Each channel is encoded by the mono model on its own (in streaming mode, both as one batch of ``2B``).
        """
        _check_wav(x, self.channels, allow_empty=self.is_streaming)
        if self.is_streaming:
            codes, scale = self.model.encode(torch.cat([x[:, :1], x[:, 1:]], dim=0))
            left, right = codes.chunk(2, dim=0)
            scales = None if scale is None else scale.reshape(2, -1).t()
        else:
            left, scale_left = self.model.encode(x[:, :1])
            right, scale_right = self.model.encode(x[:, 1:])
            scales = None
            if scale_left is not None and scale_right is not None:
                scales = torch.cat([scale_left.reshape(-1, 1), scale_right.reshape(-1, 1)], dim=1)
        return self._interleave(left, right), scales

    def flush_encoder(self) -> tp.Optional[torch.Tensor]:
        """End a streaming encode: interleaved codes of the last frames, None if nothing was fed."""
        codes = tp.cast(tp.Any, self.model).flush_encoder()
        return None if codes is None else self._interleave(*codes.chunk(2, dim=0))

    def decode(self, codes: torch.Tensor, scale: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        """Interleaved codes (and the ``[B, 2]`` scale of ``encode``) -> stereo audio ``[B, 2, T]``: left from the
        left codes, right from the right ones, decoded by the mono model as one batch of ``2B``."""
        self._check_interleaved(codes)
        left, right = self.get_left_right_codes(codes)
        both_scales = None
        if scale is not None:
            if scale.dim() != 2 or scale.shape[0] != codes.shape[0] or scale.shape[1] != 2:
                raise ArgumentError(f"scale must have shape [B, 2] = [{codes.shape[0]}, 2], got {list(scale.shape)}")
            both_scales = torch.cat([scale[:, :1], scale[:, 1:]], dim=0)
        audio = self.model.decode(torch.cat([left, right], dim=0), both_scales)
        return self._stereo(audio)

    def flush_decoder(self, scale: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        """End a streaming decode: the held-back stereo audio ``[B, 2, n]``, None if nothing was decoded."""
        both_scales = None if scale is None else torch.cat([scale[:, :1], scale[:, 1:]], dim=0)
        audio = tp.cast(tp.Any, self.model).flush_decoder(both_scales)
        return None if audio is None else self._stereo(audio)

    @staticmethod
    def _stereo(audio: torch.Tensor) -> torch.Tensor:
        """``[2B, 1, T]`` (left items, then right items) -> ``[B, 2, T]``."""
        left, right = audio.chunk(2, dim=0)
        return torch.cat([left, right], dim=1)

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("InterleaveStereoCompressionModel does not support decode_latent (each channel "
                                  "has its own latent); decode the left / right codes with .model")
