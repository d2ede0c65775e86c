"""MAGNeT's language model: a non-autoregressive, masked transformer over K parallel streams of codes.

Same modules and state-dict keys as :class:`~audiocraft.models.lm.LMModel` (MAGNeT checkpoints use the parallel
pattern with ``empty_initial=-1``: the output at step t predicts the codes of step t, and unknown codes are the
mask token ``card``). What differs:

- attention is NON-causal; when predicting codebook ``stage >= 1`` a position only attends to positions within
  ``subcodes_context`` steps (``|i - j| <= subcodes_context``); stage 0 attends everywhere. The restriction is
  a boolean mask handed to the attention backend, so it holds on every backend (SDPA, the CPU backend, xformers);
  Audiocraft 1.3 honoured it on its xformers path only.
- generation (:meth:`MagnetLMModel.generate`) decodes codebook after codebook, each in ``decoding_steps[stage]``
  iterations over the WHOLE sequence::

      for stage in 0 .. K-1:
          for step s of n:  mask_p = cos(pi/2 * linspace(0, 1, n)[s])
              re-mask the max(int(mask_p * count), 1) least certain spans of codebook `stage` (all at first)
              logits = one forward of [cond; null] (2B items), restricted attention for stage >= 1
              logits = uncond + (cond - uncond) * (mask_p * max_cfg_coef + (1 - mask_p) * min_cfg_coef)
              probs = softmax(logits / max(temp * (n - 1 - s) / n, 0.01))
              sample every position in ONE multinomial call; fill the masked ones; score the spans
"""
from __future__ import annotations

import math
import typing as tp

import torch

from ..modules.conditioners import ConditioningAttributes
from ..utils.sampling import multinomial, sample_top_p
from ..utils.validation import ArgumentError, ArgumentTypeError
from ._generation import CheckedGenerators, ConditionPadding, Generators, check_generators
from ._magnet_spans import DONT_REMASK_ME_SCORE, chunk_mask, least_probable_span_mask
from .lm import ConditionTensors, LMModel

SPAN_ARRANGEMENTS = ("nonoverlap", "stride1")
SPAN_SCORINGS = ("max", "prod")
_MIN_TEMPERATURE = 1e-2  # the annealed temperature never goes below this (Audiocraft's floor)
_ALIGN = 8  # Audiocraft pads its stage masks to a multiple of 8 (xformers alignment); kept for attn_mask_per_stage


def check_decoding_steps(decoding_steps: tp.Any, n_q: int) -> tp.List[int]:
    """``decoding_steps``: a list of ``n_q`` positive ints (one per codebook); returned as a list of int."""
    if isinstance(decoding_steps, (str, bytes)) or not isinstance(decoding_steps, (list, tuple)):
        raise ArgumentTypeError(f"decoding_steps must be a list of {n_q} positive ints (one per codebook), got "
                                f"{decoding_steps!r} ({type(decoding_steps).__name__}).")
    if len(decoding_steps) != n_q:
        raise ArgumentError(f"decoding_steps must have one entry per codebook ({n_q}), got {len(decoding_steps)}: "
                            f"{list(decoding_steps)}.")
    for i, steps in enumerate(decoding_steps):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ArgumentError(f"decoding_steps[{i}] must be a positive int, got {steps!r}.")
    return [int(s) for s in decoding_steps]


class MagnetLMModel(LMModel):
    """Transformer-based, non-autoregressive model over multiple streams of audio tokens (MAGNeT).

    Args:
        subcodes_context: positions attended on each side when predicting codebooks > 0 (-1: unrestricted).
        compression_model_framerate: frame rate of the audio tokenizer (frames per second).
        segment_duration: length of the generated segment in seconds.
        span_len: length of the masked spans (the minimal run of consecutive masked tokens).
        **kwargs: the arguments of :class:`LMModel` (MAGNeT checkpoints: ``causal=False``).
    """

    def __init__(self, subcodes_context: int = 5, compression_model_framerate: int = 50,
                 segment_duration: float = 10, span_len: int = 3, **kwargs: tp.Any) -> None:
        for name, value, minimum in (("subcodes_context", subcodes_context, -1), ("span_len", span_len, 1),
                                     ("compression_model_framerate", compression_model_framerate, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ArgumentError(f"{name} must be an int >= {minimum}, got {value!r}.")
        if isinstance(segment_duration, bool) or not isinstance(segment_duration, (int, float)) \
                or not segment_duration > 0:
            raise ArgumentError(f"segment_duration must be a number of seconds > 0, got {segment_duration!r}.")
        super().__init__(**kwargs)
        self.causal = bool(kwargs.get("causal", False))
        self.subcodes_context = subcodes_context
        self.span_len = span_len
        self.compression_model_framerate = compression_model_framerate
        self.segment_duration = segment_duration
        self._mask_cache: tp.Dict[tp.Tuple[int, str], torch.Tensor] = {}

    # ---- restricted attention ------------------------------------------------------------------------
    @property
    def segment_length(self) -> int:
        """Frames of a generated segment: ``compression_model_framerate * segment_duration``."""
        return int(self.compression_model_framerate * self.segment_duration)

    def restricted_context_attn_mask(self, seq_len: int, device: tp.Union[str, torch.device] = "cpu",
                                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Additive mask ``[seq_len, seq_len]``: 0 where ``|query - key| <= subcodes_context``, -inf elsewhere."""
        allowed = self._allowed(seq_len, torch.device(device))
        return torch.zeros(seq_len, seq_len, device=device, dtype=dtype).masked_fill_(~allowed, float("-inf"))

    def _allowed(self, seq_len: int, device: torch.device) -> torch.Tensor:
        positions = torch.arange(seq_len, device=device)
        return (positions[:, None] - positions[None, :]).abs() <= self.subcodes_context

    def stage_attention_mask(self, stage: int, seq_len: int,
                             device: tp.Union[str, torch.device] = "cpu") -> tp.Optional[torch.Tensor]:
        """Boolean ``[seq_len, seq_len]`` self-attention mask (True = attended) of ``stage``, or None where
        attention is unrestricted (stage 0, or ``subcodes_context == -1``). Cached per length and device."""
        if stage <= 0 or self.subcodes_context < 0:
            return None
        key = (seq_len, str(device))
        if key not in self._mask_cache:
            with torch.inference_mode(False):  # usable outside inference mode too
                self._mask_cache[key] = self._allowed(seq_len, torch.device(device))
        return self._mask_cache[key]

    @property
    def attn_mask_per_stage(self) -> tp.List[tp.Optional[torch.Tensor]]:
        """Audiocraft's per-stage masks for the segment length: None (stage 0) or an additive float mask
        ``[1, num_heads, L8, L8]`` (L8: the segment length rounded up to a multiple of 8, zero padded)."""
        param = next(iter(self.parameters()))
        length = self.segment_length
        aligned = -(-length // _ALIGN) * _ALIGN
        layers: tp.Any = self.transformer.layers
        heads = int(layers[0].self_attn.num_heads) if len(layers) else 1
        masks: tp.List[tp.Optional[torch.Tensor]] = []
        for stage in range(self.n_q):
            if self.stage_attention_mask(stage, length, param.device) is None:
                masks.append(None)
                continue
            mask = torch.zeros(1, heads, aligned, aligned, device=param.device, dtype=param.dtype)
            mask[..., :length, :length] = self.restricted_context_attn_mask(length, param.device, param.dtype)
            masks.append(mask)
        return masks

    # ---- forward -------------------------------------------------------------------------------------
    def _stage_hidden(self, sequence: torch.Tensor, condition_tensors: ConditionTensors, stage: int,
                      padding: tp.Optional[ConditionPadding] = None) -> torch.Tensor:
        """``[B, K, S]`` -> transformer output ``[B, P + S, dim]`` with the stage's attention restriction over
        the whole fused sequence (prepended conditions included, as Audiocraft crops its mask)."""
        S = sequence.shape[-1]
        kwargs: tp.Dict[str, tp.Any] = {}
        if padding is not None:
            padding.fed = 0  # one non-streaming call per step
            kwargs = padding.step_kwargs(S)
        restricted = self.stage_attention_mask(stage, self._prefix_length(condition_tensors) + S, sequence.device)
        if restricted is not None:
            src_mask = kwargs.get("src_mask")
            kwargs["src_mask"] = restricted if src_mask is None else src_mask & restricted
        return self._hidden(sequence, condition_tensors, **kwargs)

    def forward(self, sequence: torch.Tensor, conditions: tp.Sequence[ConditioningAttributes],
                condition_tensors: tp.Optional[ConditionTensors] = None, stage: int = -1) -> torch.Tensor:
        """sequence ``[B, K, S]`` (mask token ``card`` where unknown) -> logits ``[B, K, S, card]``.

        ``stage``: the codebook being predicted; stages >= 1 attend within ``subcodes_context`` steps, stage 0 and
        -1 (no stage) everywhere."""
        self._check_stage(stage, allow_none=True)
        S = sequence.shape[-1]
        out = self._stage_hidden(sequence, self._condition_tensors(conditions, condition_tensors), stage)
        return self._heads(out[:, -S:])

    def _check_stage(self, stage: tp.Any, allow_none: bool = False) -> None:
        low = -1 if allow_none else 0
        if isinstance(stage, bool) or not isinstance(stage, int) or not low <= stage < self.n_q:
            raise ArgumentError(f"stage must be an int in [{low}, {self.n_q}), got {stage!r}.")

    # ---- generation ----------------------------------------------------------------------------------
    def generate(self, prompt: tp.Optional[torch.Tensor] = None,  # type: ignore[override]
                 conditions: tp.Sequence[ConditioningAttributes] = (), num_samples: tp.Optional[int] = None,
                 max_gen_len: int = 256, use_sampling: bool = True, temp: float = 3.0, top_k: int = 0,
                 top_p: float = 0.9, cfg_coef: tp.Optional[float] = None, two_step_cfg: tp.Optional[bool] = None,
                 remove_prompts: bool = False, check: bool = False,
                 callback: tp.Optional[tp.Callable[[int, int], tp.Any]] = None, *,
                 max_cfg_coef: float = 10.0, min_cfg_coef: float = 1.0,
                 decoding_steps: tp.Sequence[int] = (20, 10, 10, 10), anneal_temp: bool = True,
                 span_scoring: str = "max", span_arrangement: str = "nonoverlap", generator: Generators = None,
                 mask_condition_padding: bool = False) -> torch.Tensor:
        """Generate codes ``[B, K, T]`` by iterative masked decoding, codebook after codebook.

        Args:
            prompt: codes ``[B, K, P]`` kept fixed at the start (``P < max_gen_len``); included in the output.
            conditions: one :class:`ConditioningAttributes` per item; guidance runs when any is given.
            num_samples: batch size when neither prompt nor conditions give it.
            max_gen_len: frames of the sequence. With ``'nonoverlap'`` spans the sequence is cut to a multiple of
                ``span_len`` (50 -> 48 for spans of 3), and so is the output.
            use_sampling: sample (True) or take the argmax of the guided logits (False).
            temp: initial temperature, annealed linearly towards 0 within each stage (``anneal_temp``); floored
                at 0.01.
            top_k, top_p: sampling truncation (``top_p > 0`` wins over ``top_k > 0``).
            cfg_coef, two_step_cfg, remove_prompts, check: LMModel arguments MAGNeT does not support; must be
                left at their defaults (None / None / False / False).
            callback: ``callback(step, total_steps)`` after each forward pass (``total_steps =
                sum(decoding_steps)``); returning exactly ``False`` stops generation: no frame is complete then,
                so only the prompt frames are returned (``[B, K, P]``).
            max_cfg_coef, min_cfg_coef: the guidance coefficient goes from ``max_cfg_coef`` (everything masked)
                to ``min_cfg_coef`` (nothing masked) with the masking rate.
            decoding_steps: decoding iterations per codebook (``n_q`` positive ints).
            anneal_temp: anneal the temperature (True) or keep ``temp``.
            span_scoring: ``'max'`` (1 - max probability of a span) or ``'prod'`` (sum of -log p) for
                ``'nonoverlap'`` spans.
            span_arrangement: ``'nonoverlap'`` (chunks of ``span_len``) or ``'stride1'`` (overlapping spans).
            generator: RNG of the draws: None (torch's global RNG, as Audiocraft: one multinomial call per step
                over all ``B * T`` positions), one ``torch.Generator``, or one per item (one call per item).
            mask_condition_padding: hide the padded positions of the conditions from attention, so an item's
                result does not depend on the other items' text lengths (used with per-item generators).
        """
        unsupported = {"cfg_coef": (cfg_coef, None), "two_step_cfg": (two_step_cfg, None),
                       "remove_prompts": (remove_prompts, False), "check": (check, False)}
        for name, (value, default) in unsupported.items():
            if value is not default and value != default:
                raise ArgumentError(f"{name}={value!r} is not supported by MAGNeT (leave it at {default!r}); guidance "
                                    "is set with max_cfg_coef / min_cfg_coef. Load MAGNeT checkpoints with "
                                    "audiocraft.models.MAGNeT.get_pretrained.")
        if self.training:
            raise RuntimeError("MagnetLMModel.generate needs eval mode; call lm.eval() first.")
        steps = check_decoding_steps(decoding_steps, self.n_q)
        if span_arrangement not in SPAN_ARRANGEMENTS:
            raise ArgumentError(f"span_arrangement must be one of {SPAN_ARRANGEMENTS}, got {span_arrangement!r}.")
        if span_scoring not in SPAN_SCORINGS:
            raise ArgumentError(f"span_scoring must be one of {SPAN_SCORINGS}, got {span_scoring!r}.")
        with torch.inference_mode():
            return _MagnetDecoding(self, prompt, conditions, num_samples, max_gen_len, steps, span_arrangement,
                                   span_scoring, generator, mask_condition_padding).run(
                use_sampling, float(temp), int(top_k), float(top_p), float(max_cfg_coef), float(min_cfg_coef),
                anneal_temp, callback)


class _MagnetDecoding:
    """The state of one :meth:`MagnetLMModel.generate` call: the codes being decoded and the guidance batch."""

    def __init__(self, lm: MagnetLMModel, prompt: tp.Optional[torch.Tensor],
                 conditions: tp.Sequence[ConditioningAttributes], num_samples: tp.Optional[int], max_gen_len: int,
                 decoding_steps: tp.List[int], span_arrangement: str, span_scoring: str, generator: Generators,
                 mask_condition_padding: bool) -> None:
        self.lm = lm
        device = next(iter(lm.parameters())).device
        self.device = device
        B = lm._batch_size(prompt, conditions, num_samples)
        K, L = lm.n_q, lm.span_len
        self.generators: CheckedGenerators = check_generators(generator, B)
        if isinstance(max_gen_len, bool) or not isinstance(max_gen_len, int) or max_gen_len < 1:
            raise ArgumentError(f"max_gen_len must be a positive int, got {max_gen_len!r}.")
        if prompt is None:
            prompt = torch.zeros((B, K, 0), dtype=torch.long, device=device)
        if prompt.dim() != 3 or prompt.shape[1] != K:
            raise ArgumentError(f"prompt must be [B, {K}, P] codes, got shape {list(prompt.shape)}.")
        self.chunked = L > 1 and span_arrangement == "nonoverlap"
        self.lps = L > 1 and span_arrangement == "stride1"
        T = (max_gen_len // L) * L if self.chunked else max_gen_len
        if T < L:
            raise ArgumentError(f"max_gen_len={max_gen_len} is shorter than one span ({L} frames).")
        P = prompt.shape[-1]
        if not P < max_gen_len or P > T:
            raise ArgumentError(f"The prompt ({P} frames) must be shorter than the generated sequence ({T} frames"
                                f"{', cut to a multiple of the span length' if T != max_gen_len else ''}).")
        self.B, self.T, self.P = B, T, P
        self.prompt = prompt.to(device)
        self.codes = torch.full((B, K, T), lm.special_token_id, dtype=torch.long, device=device)
        self.codes[..., :P] = self.prompt
        self.decoding_steps = decoding_steps
        self.span_scoring = span_scoring
        # one batch [cond..., null...] (never the two-step pair): a dict, empty without conditions
        self.cfg_conditions = tp.cast(ConditionTensors, lm._cfg_conditions(conditions, two_step=False))
        self.padding: tp.Optional[ConditionPadding] = None
        if mask_condition_padding and self.cfg_conditions:
            capacity = lm._prefix_length(self.cfg_conditions) + T
            self.padding = ConditionPadding.build(self.cfg_conditions, lm.fuser.fuse2cond, 2 * B, capacity, device)

    # ---- one forward ---------------------------------------------------------------------------------
    def guided_logits(self, stage: int, cfg_coef: float) -> torch.Tensor:
        """Logits of codebook ``stage`` for every position, with guidance: ``[B, 1, T, card]``."""
        lm, codes = self.lm, self.codes
        if self.cfg_conditions:
            out = lm._stage_hidden(torch.cat([codes, codes], dim=0), self.cfg_conditions, stage, self.padding)
            both = lm.linears[stage](out[:, -self.T:])[:, None]  # only the stage's head: [2B, 1, T, card]
            cond, uncond = both.split(self.B, dim=0)
            return uncond + (cond - uncond) * cfg_coef
        out = lm._stage_hidden(codes, {}, stage)
        return lm.linears[stage](out[:, -self.T:])[:, None]

    def sample(self, logits: torch.Tensor, temperature: float, use_sampling: bool, top_k: int,
               top_p: float) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """``[B, 1, T, card]`` -> (tokens ``[B, 1, T, 1]``, probabilities ``[B, 1, T, card]`` the span scores read:
        the tempered softmax, renormalised to the top-k when top-k sampling, as Audiocraft's in-place top-k)."""
        probs = torch.softmax(logits / max(temperature, _MIN_TEMPERATURE), dim=-1)
        if not use_sampling:
            return torch.argmax(logits, dim=-1, keepdim=True), probs
        if top_p <= 0.0 and top_k > 0:
            k = min(top_k, probs.shape[-1])
            kth = torch.topk(probs, k, dim=-1)[0][..., -1:]
            probs = probs * (probs >= kth).float()
            probs = probs / probs.sum(dim=-1, keepdim=True)
        return self._draw(probs, top_p), probs

    def _draw(self, probs: torch.Tensor, top_p: float) -> torch.Tensor:
        def one(p: torch.Tensor, generator: tp.Optional[torch.Generator]) -> torch.Tensor:
            if top_p > 0.0:
                return sample_top_p(p, p=top_p, generator=generator)
            return multinomial(p, num_samples=1, generator=generator)

        if isinstance(self.generators, list):
            return torch.cat([one(probs[b:b + 1], g) for b, g in enumerate(self.generators)], dim=0)
        return one(probs, self.generators)

    # ---- the decoding loop ---------------------------------------------------------------------------
    def run(self, use_sampling: bool, temp: float, top_k: int, top_p: float, max_cfg_coef: float,
            min_cfg_coef: float, anneal_temp: bool, callback: tp.Optional[tp.Callable[[int, int], tp.Any]]
            ) -> torch.Tensor:
        B, T, P, L = self.B, self.T, self.P, self.lm.span_len
        mask_id = self.lm.special_token_id
        total = sum(self.decoding_steps)
        done = 0
        for stage, n_steps in enumerate(self.decoding_steps):
            stage_codes = torch.full((B, 1, T), mask_id, dtype=torch.long, device=self.device)
            if self.chunked:
                n_chunks = T // L
                scores = torch.zeros((B, 1, n_chunks), dtype=torch.float32, device=self.device)
                scores[..., :P // L] = DONT_REMASK_ME_SCORE
                count = n_chunks - P // L
            else:
                scores = torch.zeros((B, 1, T), dtype=torch.float32, device=self.device)
                scores[..., :P] = DONT_REMASK_ME_SCORE
                count = T - P
            times = torch.linspace(0, 1, n_steps, device=self.device)
            for step in range(n_steps):
                steps_left = n_steps - 1 - step
                mask_p = torch.cos(times[step] * math.pi * 0.5)
                num_masked = max(int((mask_p * count).item()), 1)
                # re-mask the least certain spans (everything at the first step)
                chunks: tp.Optional[torch.Tensor] = None
                if self.chunked:
                    chunks, remask = chunk_mask(scores, num_masked, L)
                    stage_codes[remask] = mask_id
                elif self.lps:
                    remask = torch.cat([least_probable_span_mask(scores[b:b + 1], num_masked, L)
                                        for b in range(B)], dim=0)
                    stage_codes[remask] = mask_id
                else:
                    stage_codes = stage_codes.scatter(2, scores.topk(num_masked, dim=-1).indices, mask_id)
                if P:
                    stage_codes[..., :P] = self.prompt[:, stage:stage + 1]
                self.codes[:, stage:stage + 1] = stage_codes
                # predict every position, guided with the annealed coefficient
                p = float(mask_p)
                logits = self.guided_logits(stage, p * max_cfg_coef + (1 - p) * min_cfg_coef)
                temperature = temp * (steps_left / n_steps) if anneal_temp else temp
                tokens, probs = self.sample(logits, temperature, use_sampling, top_k, top_p)
                masked = stage_codes == mask_id
                stage_codes = torch.where(masked, tokens[..., 0], stage_codes)
                self.codes[:, stage:stage + 1] = stage_codes
                # score the new tokens; the others stay fixed
                token_probs = torch.gather(probs, 3, tokens)[..., 0]  # [B, 1, T]
                if chunks is not None:
                    per_chunk = token_probs.reshape(B, 1, -1, L)
                    if self.span_scoring == "max":
                        scores = 1 - torch.max(per_chunk, dim=-1)[0]
                    else:
                        scores = torch.sum(-torch.log(per_chunk), dim=-1)
                    scores = scores.masked_fill(~chunks, DONT_REMASK_ME_SCORE)
                else:
                    scores = (-torch.log(token_probs)).masked_fill(~masked, DONT_REMASK_ME_SCORE)
                done += 1
                if callback is not None and callback(done, total) is False:
                    return self.codes[..., :P].clone()
        return self.codes
