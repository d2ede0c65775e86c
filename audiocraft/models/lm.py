"""The MusicGen language model: a streaming transformer over K interleaved streams of codes.

Codes ``[B, K, T]`` are interleaved by a codebook pattern (MusicGen: the delay pattern) into a sequence
``[B, K, S]``; the K embeddings of a step are summed, conditions are fused (prepended, summed or used as
cross-attention source), and K linear heads predict the K codes of the next step.

Generation (:meth:`LMModel.generate`) reads as follows::

    sequence = pattern.build_pattern_sequence(prompt padded with "unknown")   # [B, K, S], once
    with lm.streaming():                                                     # KV caches presized once
        for each step s:                                                     # the prompt in the first step
            logits = lm(sequence[..., prev:s])[..., -1]   (cond and null halves in ONE batch)
            logits = uncond + (cond - uncond) * cfg_coef
            token  = argmax | sample(softmax(logits / temp), top_k | top_p)
            sequence[..., s] = token where still unknown (prompt kept), special token where the pattern has none
    codes = pattern.revert_pattern_sequence(sequence)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
import math
import typing as tp

import torch
from torch import nn

from ..modules.activations import get_activation_fn
from ..modules.codebooks_patterns import CodebooksPatternProvider, Pattern
from ..modules.conditioners import (AttributeDropout, ClassifierFreeGuidanceDropout, ConditionFuser,
                                    ConditioningAttributes, ConditioningProvider, ConditionType)
from ..modules.streaming import StreamingError, StreamingModule
from ..modules.transformer import StreamingTransformer, create_norm_fn
from ..utils.sampling import multinomial, sample_top_k, sample_top_p
from ._generation import ConditionPadding, FrameTracker, Generators, check_generators
from ..utils.validation import ArgumentError

ConditionTensors = tp.Dict[str, ConditionType]
CFGConditions = tp.Union[ConditionTensors, tp.Tuple[ConditionTensors, ConditionTensors]]
_UNKNOWN_TOKEN = -1


def get_init_fn(method: str, input_dim: int,
                init_depth: tp.Optional[int] = None) -> tp.Callable[[torch.Tensor], tp.Any]:
    """In-place initializer with std ``1 / sqrt(input_dim)`` (divided by ``sqrt(2 * init_depth)`` if given):
    ``'gaussian'`` (normal truncated at 3 std) or ``'uniform'`` (same std)."""
    std = 1 / math.sqrt(input_dim)
    if init_depth is not None:
        std = std / math.sqrt(2 * init_depth)
    if method == "gaussian":
        return partial(torch.nn.init.trunc_normal_, mean=0.0, std=std, a=-3 * std, b=3 * std)
    if method == "uniform":
        bound = math.sqrt(3) * std
        return partial(torch.nn.init.uniform_, a=-bound, b=bound)
    raise ArgumentError(f"Unknown weight_init {method!r}; expected 'gaussian' or 'uniform'.")


def init_layer(m: nn.Module, method: str, init_depth: tp.Optional[int] = None, zero_bias_init: bool = False) -> None:
    """Initialise an ``nn.Linear`` (fan-in std, optional zero bias) or ``nn.Embedding`` (embedding dim std);
    other modules are left alone. float16 CPU weights are initialised in float32."""
    if isinstance(m, nn.Linear):
        init_fn = get_init_fn(method, m.in_features, init_depth=init_depth)
    elif isinstance(m, nn.Embedding):
        init_fn = get_init_fn(method, m.embedding_dim, init_depth=None)
    else:
        return
    weight = m.weight
    if weight.device.type == "cpu" and weight.dtype == torch.float16:
        tmp = weight.detach().float()
        init_fn(tmp)
        with torch.no_grad():
            weight.copy_(tmp.half())
    else:
        init_fn(weight)
    if isinstance(m, nn.Linear) and zero_bias_init and m.bias is not None:
        nn.init.constant_(m.bias, 0)


class ScaledEmbedding(nn.Embedding):
    """``nn.Embedding`` with its own learning rate ``lr`` (see ``make_optim_group``)."""

    def __init__(self, *args: tp.Any, lr: tp.Optional[float] = None, **kwargs: tp.Any) -> None:
        super().__init__(*args, **kwargs)
        self.lr = lr

    def make_optim_group(self) -> tp.Dict[str, tp.Any]:
        group: tp.Dict[str, tp.Any] = {"params": list(self.parameters())}
        if self.lr is not None:
            group["lr"] = self.lr
        return group


@dataclass
class LMOutput:
    """Outputs aligned with the input codes (no shift needed for a cross-entropy)."""
    logits: torch.Tensor  # [B, K, T, card], NaN where there is no valid prediction
    mask: torch.Tensor  # [B, K, T] bool, True where the logits are valid


class LMModel(StreamingModule):
    """Transformer language model over ``n_q`` parallel streams of codes, with classifier-free guidance.

    Args:
        pattern_provider: codebook interleaving. condition_provider: conditioners (text, melody...).
        fuser: how conditions enter the model (prepend / sum / cross / input_interpolate).
        n_q: streams K. card: codebook size (the special token is ``card``; embeddings have ``card + 1`` rows).
        dim, num_heads, hidden_scale (feed-forward ``hidden_scale * dim``), norm, norm_first (adds ``out_norm``).
        emb_lr: learning rate of the embeddings. bias_proj: biases of the output heads.
        weight_init ('gaussian' | 'uniform' | None), depthwise_init ('current' | 'global' | None),
        zero_bias_init: initialisation scheme (Audiocraft's).
        cfg_dropout: training probability of dropping all conditions. cfg_coef: guidance coefficient.
        attribute_dropout: ``{kind: {attribute: p}}`` (an ``args`` entry holds AttributeDropout's options).
        two_step_cfg: run conditional and null branches as two forwards (separate caches) instead of one batch.
        **kwargs: passed to :class:`StreamingTransformer` (num_layers, causal, cross_attention, activation,
            device, dtype, ...).
    """

    def __init__(self, pattern_provider: CodebooksPatternProvider, condition_provider: ConditioningProvider,
                 fuser: ConditionFuser, n_q: int = 8, card: int = 1024, dim: int = 128, num_heads: int = 8,
                 hidden_scale: int = 4, norm: str = "layer_norm", norm_first: bool = False,
                 emb_lr: tp.Optional[float] = None, bias_proj: bool = True, weight_init: tp.Optional[str] = None,
                 depthwise_init: tp.Optional[str] = None, zero_bias_init: bool = False, cfg_dropout: float = 0,
                 cfg_coef: float = 1.0, attribute_dropout: tp.Optional[tp.Dict[str, tp.Any]] = None,
                 two_step_cfg: bool = False, **kwargs: tp.Any) -> None:
        super().__init__()
        attribute_dropout = dict(attribute_dropout or {})
        dropout_args = dict(attribute_dropout.pop("args", None) or {})
        factory = {"device": kwargs.get("device"), "dtype": kwargs.get("dtype")}
        self.cfg_coef = cfg_coef
        self.cfg_dropout = ClassifierFreeGuidanceDropout(p=cfg_dropout)
        self.att_dropout = AttributeDropout(p=attribute_dropout, **dropout_args)
        self.condition_provider = condition_provider
        self.fuser = fuser
        self.card = card
        self.n_q = n_q
        self.dim = dim
        self.pattern_provider = pattern_provider
        self.two_step_cfg = two_step_cfg
        self.emb = nn.ModuleList([ScaledEmbedding(card + 1, dim, lr=emb_lr, **factory) for _ in range(n_q)])
        if "activation" in kwargs:
            kwargs["activation"] = get_activation_fn(kwargs["activation"])
        self.transformer = StreamingTransformer(d_model=dim, num_heads=num_heads,
                                                dim_feedforward=int(hidden_scale * dim), norm=norm,
                                                norm_first=norm_first, **kwargs)
        self.out_norm: tp.Optional[nn.Module] = create_norm_fn(norm, dim, **factory) if norm_first else None
        self.linears = nn.ModuleList([nn.Linear(dim, card, bias=bias_proj, **factory) for _ in range(n_q)])
        self._init_weights(weight_init, depthwise_init, zero_bias_init)

    def _init_weights(self, weight_init: tp.Optional[str], depthwise_init: tp.Optional[str],
                      zero_bias_init: bool) -> None:
        if depthwise_init not in (None, "current", "global"):
            raise ArgumentError(f"Unknown depthwise_init {depthwise_init!r}; expected None, 'current' or 'global'.")
        if weight_init is None:
            if depthwise_init is not None or zero_bias_init:
                raise ArgumentError("depthwise_init and zero_bias_init need a weight_init method.")
            return
        for emb in self.emb:
            init_layer(emb, method=weight_init, zero_bias_init=zero_bias_init)
        num_layers = len(self.transformer.layers)
        for idx, layer in enumerate(self.transformer.layers):
            depth = {"current": idx + 1, "global": num_layers, None: None}[depthwise_init]
            layer.apply(partial(init_layer, method=weight_init, init_depth=depth, zero_bias_init=zero_bias_init))
        for linear in self.linears:
            init_layer(linear, method=weight_init, zero_bias_init=zero_bias_init)

    @property
    def special_token_id(self) -> int:
        return self.card

    @property
    def num_codebooks(self) -> int:
        return self.n_q

    # ---- forward ---------------------------------------------------------------------------------------
    def _hidden(self, sequence: torch.Tensor, condition_tensors: ConditionTensors,
                padding: tp.Optional[ConditionPadding] = None, **transformer_kwargs: tp.Any) -> torch.Tensor:
        """sequence ``[B, K, S]`` -> normalised transformer output ``[B, P + S, dim]`` (P: prepended conditions).
        ``padding``: hide the conditions' padded positions from attention (and time steps per item);
        ``transformer_kwargs`` (e.g. MAGNeT's ``src_mask``) go to the transformer."""
        B, K, S = sequence.shape
        if K != self.n_q:
            raise ArgumentError(f"The sequence has {K} codebooks, the model {self.n_q}.")
        input_ = self.emb[0](sequence[:, 0])
        for k in range(1, K):
            input_ = input_ + self.emb[k](sequence[:, k])  # [B, S, dim]
        dtype = input_.dtype
        if any(t.dtype != dtype for t, _ in condition_tensors.values()):
            condition_tensors = {name: (t.to(dtype), m) for name, (t, m) in condition_tensors.items()}
        input_, cross_attention_input = self.fuser(input_, condition_tensors)
        extra = {} if padding is None else padding.step_kwargs(S)
        out = self.transformer(input_, cross_attention_src=cross_attention_input, **extra, **transformer_kwargs)
        return out if self.out_norm is None else self.out_norm(out)

    def _heads(self, out: torch.Tensor) -> torch.Tensor:
        """``[B, S, dim]`` -> logits ``[B, K, S, card]``."""
        return torch.stack([linear(out) for linear in self.linears], dim=1)

    def _condition_tensors(self, conditions: tp.Sequence[ConditioningAttributes],
                           condition_tensors: tp.Optional[ConditionTensors]) -> ConditionTensors:
        if condition_tensors is not None:
            if conditions:
                raise ArgumentError("Pass either conditions or condition_tensors, not both.")
            return condition_tensors
        if self.is_streaming:
            raise StreamingError("While streaming, pass precomputed condition_tensors instead of conditions.")
        attributes = self.att_dropout(self.cfg_dropout(list(conditions)))
        return self.condition_provider(self.condition_provider.tokenize(attributes))

    def forward(self, sequence: torch.Tensor, conditions: tp.Sequence[ConditioningAttributes],
                condition_tensors: tp.Optional[ConditionTensors] = None, stage: int = -1) -> torch.Tensor:
        """sequence ``[B, K, S]`` (pattern sequence of token ids) -> logits ``[B, K, S, card]``; the logits of
        prepended conditions are dropped. ``conditions`` are tokenized and encoded here (with the training
        dropouts) unless ``condition_tensors`` are given. ``stage`` (MAGNeT) must be -1."""
        if stage >= 0:
            raise ArgumentError(f"stage={stage}: per-stage attention masks are a MAGNeT feature; LMModel needs -1.")
        S = sequence.shape[-1]
        out = self._hidden(sequence, self._condition_tensors(conditions, condition_tensors))
        return self._heads(out[:, -S:])

    def compute_predictions(self, codes: torch.Tensor, conditions: tp.Sequence[ConditioningAttributes],
                            condition_tensors: tp.Optional[ConditionTensors] = None, stage: int = -1,
                            keep_only_valid_steps: bool = True) -> LMOutput:
        """codes ``[B, K, T]`` -> :class:`LMOutput` with logits ``[B, K, T, card]`` aligned with the codes (the
        prediction OF each code), NaN where the pattern gives no valid context, and mask ``[B, K, T]``."""
        B, K, T = codes.shape
        pattern = self.pattern_provider.get_pattern(T)
        sequence, _, _ = pattern.build_pattern_sequence(codes.contiguous(), self.special_token_id,
                                                        keep_only_valid_steps=keep_only_valid_steps)
        logits = self(sequence, conditions, condition_tensors, stage=stage)  # [B, K, S, card]
        logits = logits.permute(0, 3, 1, 2)  # [B, card, K, S]
        logits, _, mask = pattern.revert_pattern_logits(logits, float("nan"),
                                                        keep_only_valid_steps=keep_only_valid_steps)
        return LMOutput(logits.permute(0, 2, 3, 1), mask[None].expand(B, -1, -1))  # [B, K, T, card], [B, K, T]

    # ---- generation ------------------------------------------------------------------------------------
    def _cfg_conditions(self, conditions: tp.Sequence[ConditioningAttributes], two_step: bool) -> CFGConditions:
        """Condition tensors of ``conditions`` and of their null versions: one batch ``[cond..., null...]``
        (tokenized together, so padded together), or a (cond, null) pair for two-step guidance."""
        if not conditions:
            return {}
        null_conditions = ClassifierFreeGuidanceDropout(p=1.0)(list(conditions))
        provider = self.condition_provider
        if two_step:
            return (provider(provider.tokenize(list(conditions))), provider(provider.tokenize(null_conditions)))
        return provider(provider.tokenize(list(conditions) + list(null_conditions)))

    def _prefix_length(self, condition_tensors: ConditionTensors) -> int:
        prepended = self.fuser.fuse2cond.get("prepend", [])
        return sum(int(t.shape[1]) for name, (t, _) in condition_tensors.items() if name in prepended)

    def _last_logits(self, sequence: torch.Tensor, condition_tensors: ConditionTensors,
                     padding: tp.Optional[ConditionPadding] = None) -> torch.Tensor:
        """Logits of the last position only: ``[B, K, S] -> [B, K, card]``."""
        out = self._hidden(sequence, condition_tensors, padding)
        return self._heads(out[:, -1:])[:, :, 0]

    def _guided_logits(self, sequence: torch.Tensor, cfg_conditions: CFGConditions, cfg_coef: float,
                       null_branch: "_NullBranch",
                       paddings: tp.Sequence[tp.Optional[ConditionPadding]] = (None, None)) -> torch.Tensor:
        """One decoding step with classifier-free guidance: ``[B, K, S]`` -> ``[B, K, card]``. ``paddings``:
        the padding masks of the (conditional or joint, null) branches."""
        if isinstance(cfg_conditions, tuple):  # two-step: separate forwards, separate streaming states
            cond_tensors, null_tensors = cfg_conditions
            cond = self._last_logits(sequence, cond_tensors, paddings[0])
            null_branch.swap()
            uncond = self._last_logits(sequence, null_tensors, paddings[1])
            null_branch.swap()
        elif cfg_conditions:  # one batch of 2B: [cond..., null...]
            both = self._last_logits(torch.cat([sequence, sequence], dim=0), cfg_conditions, paddings[0])
            cond, uncond = both.split(sequence.shape[0], dim=0)
        else:
            return self._last_logits(sequence, cfg_conditions, paddings[0])
        return uncond + (cond - uncond) * cfg_coef

    @classmethod
    def _pick(cls, logits: torch.Tensor, use_sampling: bool, temp: float, top_k: int, top_p: float,
              generator: tp.Union[None, torch.Generator, tp.List[torch.Generator]]) -> torch.Tensor:
        """logits ``[B, K, card]`` -> tokens ``[B, K, 1]``: one sampling call over all rows (one per item with a
        list of generators), or argmax."""
        if not use_sampling or temp <= 0.0:
            return torch.argmax(logits, dim=-1, keepdim=True)
        if isinstance(generator, list):
            return torch.cat([cls._pick(logits[b:b + 1], use_sampling, temp, top_k, top_p, g)
                              for b, g in enumerate(generator)], dim=0)
        probs = torch.softmax(logits / temp, dim=-1)
        if top_p > 0.0:
            return sample_top_p(probs, p=top_p, generator=generator)
        if top_k > 0:
            return sample_top_k(probs, k=top_k, generator=generator)
        return multinomial(probs, num_samples=1, generator=generator)

    def _batch_size(self, prompt: tp.Optional[torch.Tensor], conditions: tp.Sequence[ConditioningAttributes],
                    num_samples: tp.Optional[int]) -> int:
        sizes = {"num_samples": num_samples, "prompt.shape[0]": None if prompt is None else int(prompt.shape[0]),
                 "len(conditions)": len(conditions) if conditions else None}
        given = {name: size for name, size in sizes.items() if size is not None}
        if len(set(given.values())) > 1:
            raise ArgumentError(f"Inconsistent batch sizes: {given}.")
        batch = next(iter(given.values()), 1)
        if batch <= 0:
            raise ArgumentError(f"The batch size must be positive, got {given}.")
        return batch

    def generate(self, prompt: tp.Optional[torch.Tensor] = None,
                 conditions: tp.Sequence[ConditioningAttributes] = (), num_samples: tp.Optional[int] = None,
                 max_gen_len: int = 256, use_sampling: bool = True, temp: float = 1.0, top_k: int = 250,
                 top_p: float = 0.0, cfg_coef: tp.Optional[float] = None, two_step_cfg: tp.Optional[bool] = None,
                 remove_prompts: bool = False, check: bool = False,
                 callback: tp.Optional[tp.Callable[[int, int], tp.Any]] = None,
                 generator: Generators = None,
                 on_frames: tp.Optional[tp.Callable[[torch.Tensor], tp.Any]] = None,
                 mask_condition_padding: bool = False) -> torch.Tensor:
        """Generate codes ``[B, K, max_gen_len]`` (``max_gen_len - T`` without the prompt if ``remove_prompts``).

        Args:
            prompt: codes ``[B, K, T]`` to continue (``T < max_gen_len``), kept in the output.
            conditions: one :class:`ConditioningAttributes` per sample; guidance runs when any is given.
            num_samples: batch size when neither prompt nor conditions give it.
            use_sampling, temp, top_k, top_p: sampling (top_p > 0 wins over top_k > 0); greedy otherwise.
            cfg_coef: guidance coefficient (None: ``self.cfg_coef``); honoured by both CFG modes (Audiocraft
                1.3's two-step mode ignored it and always used ``self.cfg_coef``).
            two_step_cfg: None: ``self.two_step_cfg``.
            check: verify the sequence against the pattern at every step (slow; for debugging).
            callback: ``callback(generated_steps, total_steps)`` after each step. If it returns exactly
                ``False``, generation stops after that step and returns the frames complete so far (every
                codebook known): ``[B, K, F]`` with ``F <= max_gen_len`` (prompt included unless
                ``remove_prompts``).
            generator: RNG of the sampling draws (default: torch's global RNG, as Audiocraft). A list of ``B``
                generators gives each item its own draws (one ``torch.multinomial`` per item), so an item's
                tokens do not depend on the other items' seeds.
            on_frames: ``on_frames(codes)`` with each block of newly completed frames ``[B, K, n]`` (prompt frames
                excluded), as soon as every codebook of those frames is known, before ``callback``. The blocks
                concatenated equal the returned codes without the prompt.
            mask_condition_padding: hide the padded positions of the conditions (mask 0) from attention, and time
                each item's steps from its own number of valid prefix positions, so that an item's result does not
                depend on the condition lengths of the other items of the batch (it equals generating it alone,
                up to float rounding). A row whose condition is all padding (e.g. the null branch of guidance)
                attends to its first position only, which the built-in conditioners embed as zeros, like the
                official padding. Off by default (Audiocraft's behaviour: padding is attended to).
        """
        if self.training:
            raise RuntimeError("LMModel.generate needs eval mode; call lm.eval() first.")
        with torch.inference_mode():
            return self._generate(prompt, conditions, num_samples, max_gen_len, use_sampling, temp, top_k, top_p,
                                  cfg_coef, two_step_cfg, remove_prompts, check, callback, generator, on_frames,
                                  mask_condition_padding)

    def _paddings(self, cfg_conditions: CFGConditions, batch: int,
                  capacity: int) -> tp.Tuple[tp.Optional[ConditionPadding], tp.Optional[ConditionPadding]]:
        """Padding masks of the branches: (joint or conditional, null)."""
        device = next(iter(self.parameters())).device
        fuse2cond = self.fuser.fuse2cond
        if isinstance(cfg_conditions, tuple):
            return (ConditionPadding.build(cfg_conditions[0], fuse2cond, batch, capacity, device),
                    ConditionPadding.build(cfg_conditions[1], fuse2cond, batch, capacity, device))
        rows = 2 * batch if cfg_conditions else batch
        return ConditionPadding.build(cfg_conditions, fuse2cond, rows, capacity, device), None

    def _generate(self, prompt: tp.Optional[torch.Tensor], conditions: tp.Sequence[ConditioningAttributes],
                  num_samples: tp.Optional[int], max_gen_len: int, use_sampling: bool, temp: float, top_k: int,
                  top_p: float, cfg_coef: tp.Optional[float], two_step_cfg: tp.Optional[bool], remove_prompts: bool,
                  check: bool, callback: tp.Optional[tp.Callable[[int, int], tp.Any]], generator: Generators,
                  on_frames: tp.Optional[tp.Callable[[torch.Tensor], tp.Any]],
                  mask_condition_padding: bool) -> torch.Tensor:
        device = next(iter(self.parameters())).device
        B = self._batch_size(prompt, conditions, num_samples)
        K = self.n_q
        generators = check_generators(generator, B)
        if prompt is None:
            prompt = torch.zeros((B, K, 0), dtype=torch.long, device=device)
        if prompt.dim() != 3 or prompt.shape[1] != K:
            raise ArgumentError(f"prompt must be [B, {K}, T] codes, got shape {list(prompt.shape)}.")
        start_offset = prompt.shape[-1]
        if not 0 <= start_offset < max_gen_len:
            raise ArgumentError(f"The prompt ({start_offset} steps) must be shorter than max_gen_len={max_gen_len}.")
        coef = self.cfg_coef if cfg_coef is None else cfg_coef
        two_step = self.two_step_cfg if two_step_cfg is None else two_step_cfg
        cfg_conditions = self._cfg_conditions(conditions, two_step)

        # The whole pattern sequence, with "unknown" where codes are still to be generated: [B, K, S].
        pattern: Pattern = self.pattern_provider.get_pattern(max_gen_len)
        codes = torch.full((B, K, max_gen_len), _UNKNOWN_TOKEN, dtype=torch.long, device=device)
        codes[..., :start_offset] = prompt
        sequence, _, mask = pattern.build_pattern_sequence(codes, self.special_token_id)
        start = pattern.get_first_step_with_timesteps(start_offset)
        if start is None:
            raise ArgumentError(f"The pattern has no step for timestep {start_offset}.")
        total = sequence.shape[-1]
        frames = FrameTracker(pattern, total, device)
        branches = cfg_conditions if isinstance(cfg_conditions, tuple) else (cfg_conditions,)
        capacity = max(self._prefix_length(tensors) for tensors in branches) + total  # KV cache steps
        paddings = self._paddings(cfg_conditions, B, capacity) if mask_condition_padding else (None, None)

        emitted = ready = start_offset  # frames handed to on_frames / complete so far
        with self.streaming():
            null_branch = _NullBranch(self)
            if isinstance(cfg_conditions, tuple):  # the null branch's own caches, then the conditional ones
                self.transformer.allocate_kv_caches(B, capacity)
                null_branch.swap()
            batch = 2 * B if (cfg_conditions and not isinstance(cfg_conditions, tuple)) else B
            self.transformer.allocate_kv_caches(batch, capacity)
            prev = 0
            for offset in range(start, total):
                step_input = sequence[..., prev:offset]
                if check:
                    self._check_step(step_input, mask[:, prev:offset])
                logits = self._guided_logits(step_input, cfg_conditions, coef, null_branch, paddings)
                token = self._pick(logits, use_sampling, temp, top_k, top_p, generators)  # [B, K, 1]
                token = torch.where(mask[:, offset:offset + 1], token, self.special_token_id)
                column = sequence[..., offset:offset + 1]
                sequence[..., offset:offset + 1] = torch.where(column == _UNKNOWN_TOKEN, token, column)
                prev = offset
                ready = max(ready, frames.ready_after(offset))
                if on_frames is not None and ready > emitted:
                    on_frames(frames.gather(sequence, emitted, ready))
                    emitted = ready
                if callback is not None and callback(1 + offset - start, total - start) is False:
                    break

        out, _, _ = pattern.revert_pattern_sequence(sequence, special_token=_UNKNOWN_TOKEN)
        out = out[..., :ready]  # every frame unless stopped early
        if bool((out == _UNKNOWN_TOKEN).any()):
            raise RuntimeError("Generation left unknown tokens in the sequence (pattern inconsistency).")
        return out[..., (start_offset if remove_prompts else 0):]

    def _check_step(self, step_input: torch.Tensor, step_mask: torch.Tensor) -> None:
        if bool((step_input == _UNKNOWN_TOKEN).any()):
            raise RuntimeError("The model is fed a token that was not generated yet.")
        expected = torch.where(step_mask, step_input, self.special_token_id)
        if not torch.equal(step_input, expected):
            raise RuntimeError("The sequence holds codes where the pattern expects the special token.")


class _NullBranch:
    """The streaming states of the null-condition branch of two-step guidance, kept aside.

    ``swap()`` exchanges the states of every streaming module of the model with the kept ones (the same
    typed states ``get_streaming_state`` / ``set_streaming_state`` move around, without walking the module
    tree at every step). Starts empty: the first swap leaves fresh states for the other branch."""

    def __init__(self, model: StreamingModule) -> None:
        self.modules = [module for _, module in model._streaming_modules()]
        self.states: tp.List[tp.Any] = [None] * len(self.modules)

    def swap(self) -> None:
        for i, module in enumerate(self.modules):
            self.states[i], module._streaming_state = module._streaming_state, self.states[i]
