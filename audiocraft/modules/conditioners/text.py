"""Text conditioners: a hashed look-up table (tests, debugging) and a frozen T5 encoder (MusicGen)."""
from __future__ import annotations

import logging
import os
import random
import typing as tp
import warnings

import torch
from torch import nn

from ...utils.hub import hub_reachable
from ...utils.validation import ArgumentError, check_descriptions
from .attributes import ConditionType
from .base import TextConditioner
from .tokenizers import NounsTokenizer, Tokenizer, WhiteSpaceTokenizer

logger = logging.getLogger(__name__)


def _load_t5_tokenizer(tokenizer_cls: tp.Any, name: str, **kwargs: tp.Any) -> tp.Any:
    """``tokenizer_cls.from_pretrained(name, **kwargs)``, naming the missing package when it fails for want of one.

    T5 repositories hold a SentencePiece model (``spiece.model``). transformers 4.x reads it with sentencepiece;
    5.x converts it to its ``tokenizers`` form with sentencepiece and protobuf and, when either is missing, tries
    a tiktoken reader instead, which fails with a message about tiktoken, not about the real cause."""
    try:
        return tokenizer_cls.from_pretrained(name, **kwargs)
    except (ImportError, ValueError, OSError) as err:
        missing = _missing_sentencepiece_packages()
        if not missing:
            raise
        packages = " ".join(missing)
        raise ImportError(f"cannot load the tokenizer of {name!r}: T5's SentencePiece tokenizer needs {packages} "
                          f"(pip install {packages}); transformers said: {err}") from err


def _missing_sentencepiece_packages() -> tp.List[str]:
    """Which of the packages reading ``spiece.model`` (sentencepiece, protobuf) cannot be imported."""
    import importlib
    missing = []
    for package, module in (("sentencepiece", "sentencepiece"), ("protobuf", "google.protobuf")):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    return missing


class LUTConditioner(TextConditioner):
    """Embedding table over hashed words (see :mod:`.tokenizers`), then ``output_proj``.

    Args:
        n_bins: number of hash buckets (rows of ``embed``).
        dim: embedding width.
        output_dim: width expected by the language model.
        tokenizer: 'whitespace' or 'noun_split' (approximated without spaCy, see :mod:`.tokenizers`).
        pad_idx: padding id.
    """

    TOKENIZERS = ("whitespace", "noun_split")

    def __init__(self, n_bins: int, dim: int, output_dim: int, tokenizer: str, pad_idx: int = 0) -> None:
        super().__init__(dim, output_dim)
        self.embed = nn.Embedding(n_bins, dim)
        self.tokenizer: Tokenizer
        if tokenizer == "whitespace":
            self.tokenizer = WhiteSpaceTokenizer(n_bins, pad_idx=pad_idx)
        elif tokenizer == "noun_split":
            warnings.warn("LUTConditioner(tokenizer='noun_split') keeps content words instead of spaCy nouns "
                          "(spaCy is not used by this package).", stacklevel=2)
            self.tokenizer = NounsTokenizer(n_bins, pad_idx=pad_idx)
        else:
            raise ArgumentError(f"tokenizer must be one of {list(self.TOKENIZERS)}, got {tokenizer!r}.")

    def tokenize(self, x: tp.List[tp.Optional[str]]) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """texts -> (tokens [B, L] int32, mask [B, L] int32) on the embedding's device."""
        tokens, mask = self.tokenizer(check_descriptions("x", x))
        device = self.embed.weight.device
        return tokens.to(device), mask.to(device)

    def forward(self, inputs: tp.Tuple[torch.Tensor, torch.Tensor]) -> ConditionType:
        """(tokens [B, L], mask [B, L]) -> (embeds [B, L, output_dim] zero where masked, mask [B, L])."""
        tokens, mask = inputs
        embeds = self.output_proj(self.embed(tokens))
        return embeds * mask.unsqueeze(-1), mask


class T5Conditioner(TextConditioner):
    """Frozen (or fine-tuned) T5 encoder from Hugging Face transformers, then ``output_proj``.

    The tokenizer and encoder are loaded with ``from_pretrained(name)`` (so ``HF_HUB_CACHE`` / ``HF_HUB_OFFLINE``
    apply). Unless ``finetune``, the encoder is NOT a registered submodule: it stays out of ``state_dict()``,
    ``parameters()``, ``.to()`` and ``.train()``, lives on ``device`` in eval mode and runs without gradients.

    Args:
        name: one of :attr:`MODELS`.
        output_dim: width expected by the language model.
        finetune: train the encoder (registers it as ``self.t5``).
        device: device of the encoder and of the tokenized inputs.
        autocast_dtype: dtype name for ``torch.autocast`` on non-CPU devices ('float16', 'bfloat16'); None,
            'float32' or a CPU device run without autocast.
        word_dropout: in training mode, probability of dropping each space-separated word (drawn from Python's
            ``random`` module, as Audiocraft does).
        normalize_text: lower-case, strip punctuation and stop words before tokenizing. This approximates
            Audiocraft's spaCy lemmatisation (spaCy is not a dependency; no lemmas, numbers kept as digits), so
            results differ from Audiocraft's for models trained with it; a warning says so.

    Texts longer than ``MAX_TOKENS`` tokens (T5's maximum length) are refused with a ``ValueError``: the encoder's
    memory grows with the square of the length.
    """

    MAX_TOKENS = 512
    t5: tp.Any  # the transformers T5EncoderModel (a submodule only when finetune)

    MODELS = ["t5-small", "t5-base", "t5-large", "t5-3b", "t5-11b",
              "google/flan-t5-small", "google/flan-t5-base", "google/flan-t5-large",
              "google/flan-t5-xl", "google/flan-t5-xxl"]
    MODELS_DIMS = {
        "t5-small": 512, "t5-base": 768, "t5-large": 1024, "t5-3b": 1024, "t5-11b": 1024,
        "google/flan-t5-small": 512, "google/flan-t5-base": 768, "google/flan-t5-large": 1024,
        "google/flan-t5-xl": 2048, "google/flan-t5-xxl": 4096,
    }

    def __init__(self, name: str, output_dim: int, finetune: bool, device: tp.Union[torch.device, str],
                 autocast_dtype: tp.Optional[str] = "float32", word_dropout: float = 0.0,
                 normalize_text: bool = False) -> None:
        if name not in self.MODELS:
            raise ArgumentError(f"Unknown T5 model name {name!r}; expected one of {self.MODELS}.")
        if not 0.0 <= float(word_dropout) <= 1.0:
            raise ArgumentError(f"word_dropout must be in [0, 1], got {word_dropout!r}.")
        super().__init__(self.MODELS_DIMS[name], output_dim)
        self.device = device
        self.name = name
        self.finetune = finetune
        self.word_dropout = float(word_dropout)
        device_type = torch.device(device).type
        self._autocast_dtype: tp.Optional[torch.dtype] = None
        if autocast_dtype is not None and device_type != "cpu":
            dtype = getattr(torch, autocast_dtype, None)
            if not isinstance(dtype, torch.dtype):
                raise ArgumentError(f"autocast_dtype must name a torch dtype (e.g. 'float16'), got {autocast_dtype!r}.")
            # float32 autocast is no autocast (and torch warns that CUDA does not support it): leave it off.
            self._autocast_dtype = None if dtype == torch.float32 else dtype
        elif device_type != "cpu":
            logger.warning("T5 runs without autocast on %s; this might lead to NaN.", device_type)
        self._device_type = device_type

        from transformers import T5EncoderModel, T5Tokenizer  # heavy: imported only when a T5 is built

        previous = logging.root.manager.disable
        logging.disable(logging.ERROR)  # transformers is noisy about unused decoder weights
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                local = not os.path.isdir(name) and not hub_reachable()  # unreachable: the cache, no retries
                self.t5_tokenizer = _load_t5_tokenizer(T5Tokenizer, name, local_files_only=local)
                t5 = T5EncoderModel.from_pretrained(name, local_files_only=local).train(mode=finetune)
        finally:
            logging.disable(previous)
        if finetune:
            self.t5 = t5
        else:
            # Kept outside the module tree: not saved in checkpoints, not moved by .to(), never trained.
            self.__dict__["t5"] = t5.to(device)
            t5.requires_grad_(False)

        self.normalize_text = normalize_text
        self.text_normalizer: tp.Optional[WhiteSpaceTokenizer] = None
        if normalize_text:
            warnings.warn("T5Conditioner(normalize_text=True) uses a light normaliser (lower case, no punctuation, "
                          "no stop words) instead of Audiocraft's spaCy lemmatisation; texts may differ.",
                          stacklevel=2)
            self.text_normalizer = WhiteSpaceTokenizer(1, stopwords=True)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(device_type=self._device_type, dtype=self._autocast_dtype,
                              enabled=self._autocast_dtype is not None)

    def tokenize(self, x: tp.List[tp.Optional[str]]) -> tp.Dict[str, torch.Tensor]:
        """texts (None = no description) -> {'input_ids', 'attention_mask'} [B, L] int64, right-padded to the
        longest text of the batch; rows of None / empty texts have an all-zero attention mask."""
        entries: tp.List[str] = [t if t is not None else "" for t in check_descriptions("x", x)]
        if self.text_normalizer is not None:
            entries = [t or "" for t in self.text_normalizer.normalize(list(entries))]
        if self.word_dropout > 0.0 and self.training:
            entries = [" ".join(w for w in t.split(" ") if random.random() >= self.word_dropout) for t in entries]
        empty = [i for i, t in enumerate(entries) if t == ""]
        encoded = self.t5_tokenizer(entries, return_tensors="pt", padding=True)
        if encoded["input_ids"].shape[-1] > self.MAX_TOKENS:
            lengths = encoded["attention_mask"].sum(dim=-1)
            index = int(lengths.argmax())
            raise ArgumentError(f"text x[{index}] (with MusicGen: descriptions[{index}]) is {int(lengths[index])} "
                                f"tokens long; {type(self).__name__} ({self.name}) "
                                f"takes at most {self.MAX_TOKENS} tokens per text. Shorten the description.")
        inputs = {"input_ids": encoded["input_ids"].to(self.device),
                  "attention_mask": encoded["attention_mask"].to(self.device)}
        if empty:
            inputs["attention_mask"][empty, :] = 0
        return inputs

    def forward(self, inputs: tp.Mapping[str, torch.Tensor]) -> ConditionType:
        """{'input_ids', 'attention_mask'} [B, L] -> (embeds [B, L, output_dim] zero on padding, mask [B, L] int64)."""
        mask = inputs["attention_mask"]
        rows = mask.any(dim=-1)
        if self.finetune or bool(rows.all()) or not bool(rows.any()):
            with torch.set_grad_enabled(self.finetune), self._autocast():
                hidden = self.t5(**inputs).last_hidden_state  # [B, L, dim]
            embeds = self.output_proj(hidden.to(self.output_proj.weight))
            return embeds * mask.unsqueeze(-1), mask
        # Rows without any token (None / empty texts: the unconditional half of classifier-free guidance) come out
        # as zeros whatever T5 computes for them: only the other rows go through the encoder.
        keep = rows.nonzero().squeeze(1)
        with torch.no_grad(), self._autocast():
            hidden = self.t5(**{k: v.index_select(0, keep) for k, v in inputs.items()}).last_hidden_state
        kept = self.output_proj(hidden.to(self.output_proj.weight)) * mask.index_select(0, keep).unsqueeze(-1)
        embeds = kept.new_zeros(mask.shape + kept.shape[-1:])
        embeds.index_copy_(0, keep, kept)
        return embeds, mask
