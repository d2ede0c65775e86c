"""Light word tokenizers for the look-up-table conditioner and optional T5 text normalisation.

Audiocraft's versions run spaCy (lemmas, stop words, part-of-speech tags) and num2words. Neither is a
dependency here (spaCy also needs a language model download), so these are deliberately simple and
documented as approximations: lower-casing, punctuation removal and a fixed English stop-word list; no
lemmatisation, numbers stay digits, and "nouns" are approximated by the remaining content words. No
pretrained MusicGen uses them (its conditioners are T5 with ``normalize_text: false`` and chroma).
"""
from __future__ import annotations

import hashlib
import re
import typing as tp

import torch
from torch.nn.utils.rnn import pad_sequence

from ...utils.utils import length_to_mask
from ...utils.validation import ArgumentError, ArgumentTypeError

PUNCTUATION = "?:!.,;"

# A short list of English function words (a subset of the usual stop-word lists).
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where
which while who whom why will with would you your yours yourself yourselves
""".split())

_WORD = re.compile(r"[^\s" + re.escape(PUNCTUATION) + r"]+")


def hash_trick(word: str, vocab_size: int) -> int:
    """Stable bucket of ``word`` in ``[0, vocab_size)`` (sha256 of its UTF-8 bytes, modulo vocab_size)."""
    return int(hashlib.sha256(word.encode("utf-8")).hexdigest(), 16) % vocab_size


def split_words(text: str, stopwords: bool = True) -> tp.List[str]:
    """Lower-case words of ``text`` without the punctuation ``?:!.,;`` (and without stop words if asked)."""
    words = _WORD.findall(text.lower())
    if stopwords:
        words = [w for w in words if w not in STOPWORDS]
    return words


class Tokenizer:
    """Texts (``str | None`` each) -> (token ids [B, L] int32, mask [B, L] int32)."""

    def __call__(self, texts: tp.List[tp.Optional[str]]) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError()


class WhiteSpaceTokenizer(Tokenizer):
    """Hash every word into ``n_bins`` buckets; a None text is one padding token with an all-zero mask.

    Args:
        n_bins: vocabulary size.
        pad_idx: id used for padding.
        stopwords: drop English stop words.
    """

    def __init__(self, n_bins: int, pad_idx: int = 0, stopwords: bool = True) -> None:
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins <= 0:
            raise ArgumentError(f"n_bins must be a positive int, got {n_bins!r}.")
        self.n_bins = n_bins
        self.pad_idx = pad_idx
        self.stopwords = stopwords

    def words(self, text: str) -> tp.List[str]:
        return split_words(text, stopwords=self.stopwords)

    def normalize(self, texts: tp.List[tp.Optional[str]]) -> tp.List[tp.Optional[str]]:
        """The texts as the tokenizer sees them (words joined by spaces); None stays None."""
        return [None if t is None else " ".join(self.words(t)) for t in texts]

    def __call__(self, texts: tp.List[tp.Optional[str]]) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """texts -> (tokens [B, L] int32 padded with pad_idx, mask [B, L] int32), L >= 1."""
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or len(texts) == 0:
            raise ArgumentTypeError(f"texts must be a non-empty list of str or None, got {texts!r}.")
        ids: tp.List[torch.Tensor] = []
        lengths: tp.List[int] = []
        for i, text in enumerate(texts):
            if text is None:
                ids.append(torch.tensor([self.pad_idx], dtype=torch.long))
                lengths.append(0)
                continue
            if not isinstance(text, str):
                raise ArgumentTypeError(f"texts[{i}] must be a str or None, got {type(text).__name__}.")
            words = self.words(text)
            ids.append(torch.tensor([hash_trick(w, self.n_bins) for w in words], dtype=torch.long))
            lengths.append(len(words))
        mask = length_to_mask(torch.tensor(lengths, dtype=torch.long)).int()
        tokens = pad_sequence(ids, batch_first=True, padding_value=self.pad_idx).int()
        if tokens.shape[1] < mask.shape[1]:
            tokens = torch.nn.functional.pad(tokens, (0, mask.shape[1] - tokens.shape[1]), value=self.pad_idx)
        return tokens, mask


class NounsTokenizer(WhiteSpaceTokenizer):
    """Approximation of Audiocraft's noun tokenizer: without a part-of-speech tagger, keeps the content words
    (stop words removed), hashed like :class:`WhiteSpaceTokenizer`."""

    def __init__(self, n_bins: int, pad_idx: int = 0) -> None:
        super().__init__(n_bins, pad_idx=pad_idx, stopwords=True)
