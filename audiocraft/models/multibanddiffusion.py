"""MultiBandDiffusion: decode EnCodec tokens (e.g. MusicGen's) into audio with 4 diffusion models, one per
frequency band ("From Discrete Tokens to High-Fidelity Audio Using Multi-Band Diffusion"), as Audiocraft 1.3.

>>> mbd = MultiBandDiffusion.get_mbd_musicgen()
>>> wav, tokens = musicgen.generate(['80s pop'], return_tokens=True)
>>> wav_diffusion = mbd.tokens_to_wav(tokens)            # [B, 1, T] (or [B, 2, T] for a stereo MusicGen)

Randomness comes from torch's global RNG, exactly as in Audiocraft (seed with ``torch.manual_seed``): for each
band in turn, the initial noise, then per step the transformer's dropout (the U-Nets run in training mode, as in
Audiocraft) and the step noise.
"""
from __future__ import annotations

import typing as tp

import torch

from .. import backends
from ..data.audio_utils import _check_sample_rate, convert_audio
from ..modules.diffusion_schedule import NoiseSchedule
from .encodec import CompressionModel
from .loaders import load_compression_model, load_diffusion_models
from .unet import DiffusionUnet

MBD_REPO = "facebook/multiband-diffusion"
MBD_MUSICGEN_FILE = "mbd_musicgen_32khz.th"
MBD_MUSICGEN_CODEC = "facebook/musicgen-small"
_SCHEDULE_KEYS = ("beta_t0", "beta_t1", "num_steps", "variance", "clip", "rescale", "beta_exp", "repartition",
                  "n_bands", "noise_scale")


class DiffusionProcess:
    """One band: a diffusion U-Net and its noise schedule (with the band's sample processor)."""

    def __init__(self, model: DiffusionUnet, noise_schedule: NoiseSchedule) -> None:
        self.model = model
        self.schedule = noise_schedule

    def generate(self, condition: torch.Tensor, initial_noise: torch.Tensor,
                 step_list: tp.Optional[tp.List[int]] = None) -> torch.Tensor:
        """Run the band's reverse process from ``initial_noise`` ``[B, C, T]`` conditioned on the codec latent
        ``condition`` ``[B, D, F]``; returns the band's audio ``[B, C, T]``."""
        model = self.model
        if not model.use_codec:
            return tp.cast(torch.Tensor, self.schedule.generate_subsampled(
                model=model, initial=initial_noise, step_list=step_list, condition=condition))
        # the condition's bottleneck embedding is the same at every step: computed once
        emb = model.condition_embedding(condition, model.bottleneck_length(initial_noise.shape[-1]))

        def call(x: torch.Tensor, step: int, condition: tp.Optional[torch.Tensor] = None) -> tp.Any:
            return model(x, step, condition_emb=emb)

        return tp.cast(torch.Tensor, self.schedule.generate_subsampled(
            model=call, initial=initial_noise, step_list=step_list, condition=condition))


def _check_tensor(name: str, x: tp.Any, dims: int, floating: bool) -> torch.Tensor:
    kind = "floating point" if floating else "integer"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor ({kind}, {dims}D), got {type(x).__name__}")
    if x.dim() != dims:
        raise ValueError(f"{name} must be a {dims}D tensor, got shape {list(x.shape)}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    if not floating and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor (torch.int64), got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {list(x.shape)}")
    if floating and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


class MultiBandDiffusion:
    """Sample audio from several diffusion models (one per band) conditioned on a codec's latent; the bands'
    outputs are summed.

    Args:
        DPs: the diffusion processes, one per band. codec_model: the compression model whose tokens are decoded.
    """

    def __init__(self, DPs: tp.List[DiffusionProcess], codec_model: CompressionModel) -> None:
        self.DPs = DPs
        self.codec_model = codec_model
        self.device = next(self.codec_model.parameters()).device
        self._split_bands: tp.Dict[tp.Tuple[int, str], torch.nn.Module] = {}

    @property
    def sample_rate(self) -> int:
        """Sample rate of the audio (the codec's), Hz."""
        return self.codec_model.sample_rate

    @staticmethod
    def get_mbd_musicgen(device: tp.Optional[tp.Union[torch.device, str]] = None) -> "MultiBandDiffusion":
        """The diffusion decoder trained for MusicGen (``facebook/multiband-diffusion``, ``mbd_musicgen_32khz.th``,
        4 bands) with the codec of ``facebook/musicgen-small`` (EnCodec 32 kHz, 4 codebooks). ``device``: default
        CUDA when available, else CPU."""
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        codec_model = load_compression_model(MBD_MUSICGEN_CODEC, device=device)
        models, processors, cfgs = load_diffusion_models(MBD_REPO, device=device, filename=MBD_MUSICGEN_FILE)
        DPs = []
        for model, processor, cfg in zip(models, processors, cfgs):
            backends.prepare_diffusion(model)
            kwargs = {key: cfg.schedule[key] for key in _SCHEDULE_KEYS if key in cfg.schedule}
            schedule = NoiseSchedule(**kwargs, sample_processor=processor, device=device)
            DPs.append(DiffusionProcess(model=model, noise_schedule=schedule))
        return MultiBandDiffusion(DPs=DPs, codec_model=codec_model)

    # ---- conditioning -------------------------------------------------------------------------------------
    @torch.no_grad()
    def get_condition(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Codec latent ``[B, D, F]`` of audio ``wav`` ``[B, C, T]`` at ``sample_rate`` (resampled to the codec's
        rate, encoded, then :meth:`get_emb`)."""
        wav = _check_tensor("wav", wav, 3, floating=True)
        sample_rate = _check_sample_rate(sample_rate, "sample_rate")
        wav = convert_audio(wav, sample_rate, self.sample_rate, wav.shape[1])
        codes, scale = self.codec_model.encode(wav)
        if scale is not None:
            raise ValueError("MultiBandDiffusion does not support compression models that rescale the audio "
                             "(renormalize=True)")
        return self.get_emb(codes)

    @torch.no_grad()
    def get_emb(self, codes: torch.Tensor) -> torch.Tensor:
        """Codec latent ``[B, D, F]`` of tokens ``codes`` ``[B, K, F]`` (the codec's ``decode_latent``)."""
        return self.codec_model.decode_latent(codes)

    # ---- diffusion ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, emb: torch.Tensor, size: tp.Optional[tp.Sequence[int]] = None,
                 step_list: tp.Optional[tp.List[int]] = None) -> torch.Tensor:
        """Audio ``[B, C, T]`` from the codec latent ``emb`` ``[B, D, F]``: for each band in turn, fresh Gaussian
        noise of ``size`` (default ``[B, channels, F * hop]``) is denoised and the bands are summed.

        Args:
            emb: conditioning latent (``get_emb`` / ``get_condition``). size: output shape ``[B, C, T]``.
            step_list: diffusion steps visited (default 999, 949, ..., 49, 0: 20 model calls per band).
        """
        emb = _check_tensor("emb", emb, 3, floating=True).to(self.device)
        if size is None:
            hop = int(self.codec_model.sample_rate / self.codec_model.frame_rate)
            size = (emb.shape[0], self.codec_model.channels, emb.shape[-1] * hop)
        size = torch.Size(size)
        if len(size) != 3 or size[0] != emb.shape[0] or min(size) < 1:
            raise ValueError(f"size must be [B, C, T] with B = {emb.shape[0]} (the batch of emb) and C, T >= 1, "
                             f"got {list(size)}")
        out = torch.zeros(size, device=self.device)
        for DP in self.DPs:
            out += DP.generate(condition=emb, step_list=step_list, initial_noise=torch.randn_like(out))
        return out

    def _bands(self, n_bands: int, device: torch.device) -> torch.nn.Module:
        key = (n_bands, str(device))
        split = self._split_bands.get(key)
        if split is None:
            import julius  # imported when first needed
            split = julius.SplitBands(n_bands=n_bands, sample_rate=self.sample_rate).to(device)
            self._split_bands[key] = split
        return split

    @torch.no_grad()
    def re_eq(self, wav: torch.Tensor, ref: torch.Tensor, n_bands: int = 32,
              strictness: float = 1) -> torch.Tensor:
        """Match the spectral balance of ``wav`` to ``ref`` (same shape ``[..., T]``): both are split into
        ``n_bands`` mel-spaced bands and each band of ``wav`` is scaled by ``(std(ref band) / std(band)) **
        strictness``, the standard deviations taken over the WHOLE tensor (all items together, as Audiocraft).
        ``strictness`` 0: no change, 1: exact matching."""
        for name, x in (("wav", wav), ("ref", ref)):
            if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() == 0 or x.numel() == 0:
                raise TypeError(f"{name} must be a non-empty floating point tensor [..., T], got "
                                f"{list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if wav.shape != ref.shape:
            raise ValueError(f"wav and ref must have the same shape, got {list(wav.shape)} and {list(ref.shape)}")
        if isinstance(n_bands, bool) or not isinstance(n_bands, int) or n_bands < 1:
            raise ValueError(f"n_bands must be an integer >= 1, got {n_bands!r}")
        split = self._bands(n_bands, wav.device)
        bands, bands_ref = split(wav), split(ref)
        out = torch.zeros_like(ref)
        for i in range(n_bands):
            out += bands[i] * (bands_ref[i].std() / bands[i].std()) ** strictness
        return out

    # ---- end to end ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def regenerate(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Compress ``wav`` ``[B, C, T]`` at ``sample_rate`` with the codec and regenerate it with diffusion
        (resampled to the codec's rate and back). Returns ``[B, C, T']`` at ``sample_rate`` (``T' = T`` up to the
        resampling's rounding). Channels beyond the codec's are regenerated one after the other (each channel
        as its own mono signal)."""
        wav = _check_tensor("wav", wav, 3, floating=True)
        sample_rate = _check_sample_rate(sample_rate, "sample_rate")
        channels = self.codec_model.channels
        if wav.shape[1] != channels:
            if channels != 1:
                raise ValueError(f"wav has {wav.shape[1]} channels, the codec expects {channels}")
            return torch.cat([self.regenerate(wav[:, c:c + 1], sample_rate) for c in range(wav.shape[1])], dim=1)
        wav = convert_audio(wav, sample_rate, self.sample_rate, channels)
        emb = self.get_condition(wav, sample_rate=self.sample_rate)
        out = self.generate(emb, size=wav.size())
        return convert_audio(out, self.sample_rate, sample_rate, channels)

    def _check_tokens(self, tokens: tp.Any) -> int:
        """Number of audio channels the tokens ``[B, K, F]`` describe (1, or 2 for interleaved stereo)."""
        tokens = _check_tensor("tokens", tokens, 3, floating=False)
        n_q = self.codec_model.num_codebooks
        card = self.codec_model.cardinality
        K = tokens.shape[1]
        if K not in (n_q, 2 * n_q):
            raise ValueError(f"tokens has K={K} codebooks (shape {list(tokens.shape)}); MultiBandDiffusion's codec "
                             f"uses {n_q} (mono) or {2 * n_q} (stereo, interleaved left/right)")
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= card:
            raise ValueError(f"tokens values must be in [0, {card - 1}] (codebook size {card}), got values in "
                             f"[{low}, {high}]")
        return K // n_q

    @torch.no_grad()
    def tokens_to_wav(self, tokens: torch.Tensor, n_bands: int = 32) -> torch.Tensor:
        """Audio ``[B, C, F * hop]`` from codec tokens ``[B, K, F]`` (e.g. ``MusicGen.generate(...,
        return_tokens=True)``): the codec's decoding is the reference of an EQ matching (:meth:`re_eq`,
        ``n_bands`` bands) applied to the diffusion output (conditioned on the tokens' latent).

        Stereo: tokens of a stereo MusicGen (``K = 2 * num_codebooks``, interleaved: ``tokens[:, 0::2]`` left,
        ``tokens[:, 1::2]`` right) are decoded channel by channel, left then right, exactly as two mono calls
        ``torch.cat([mbd.tokens_to_wav(tokens[:, 0::2]), mbd.tokens_to_wav(tokens[:, 1::2])], dim=1)``,
        giving ``[B, 2, T]``.
        """
        n_channels = self._check_tokens(tokens)
        if isinstance(n_bands, bool) or not isinstance(n_bands, int) or n_bands < 1:
            raise ValueError(f"n_bands must be an integer >= 1, got {n_bands!r}")
        if n_channels > 1:
            return torch.cat([self._tokens_to_wav(tokens[:, c::n_channels], n_bands) for c in range(n_channels)],
                             dim=1)
        return self._tokens_to_wav(tokens, n_bands)

    def _tokens_to_wav(self, tokens: torch.Tensor, n_bands: int) -> torch.Tensor:
        tokens = tokens.to(self.device)
        wav_encodec = self.codec_model.decode(tokens)
        condition = self.get_emb(tokens)
        wav_diffusion = self.generate(emb=condition, size=wav_encodec.size())
        return self.re_eq(wav=wav_diffusion, ref=wav_encodec, n_bands=n_bands)
