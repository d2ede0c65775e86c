"""Conditioning of MusicGen: attributes, conditioners (T5 text, chroma melody, look-up table), the provider that
batches and runs them, the fuser that merges them into the LM, and condition dropout.

Same public names as Audiocraft 1.3's ``audiocraft.modules.conditioners`` module; transformers (T5) and demucs
are imported only when a conditioner that needs them is built / used.
"""
from .attributes import (
    CONDITION_KINDS, ConditioningAttributes, ConditionType, JointEmbedCondition, WavCondition, dropout_condition,
    nullify_condition, nullify_joint_embed, nullify_wav,
)
from .base import BaseConditioner, TextConditioner, WaveformConditioner, length_to_mask
from .chroma_stem import ChromaStemConditioner
from .dropout import AttributeDropout, ClassifierFreeGuidanceDropout, DropoutModule
from .fuser import ConditionFuser
from .provider import ConditioningProvider
from .text import LUTConditioner, T5Conditioner
from .tokenizers import NounsTokenizer, Tokenizer, WhiteSpaceTokenizer, hash_trick

__all__ = [
    "CONDITION_KINDS", "ConditioningAttributes", "ConditionType", "JointEmbedCondition", "WavCondition",
    "dropout_condition", "nullify_condition", "nullify_joint_embed", "nullify_wav",
    "BaseConditioner", "TextConditioner", "WaveformConditioner", "length_to_mask",
    "ChromaStemConditioner",
    "AttributeDropout", "ClassifierFreeGuidanceDropout", "DropoutModule",
    "ConditionFuser",
    "ConditioningProvider",
    "LUTConditioner", "T5Conditioner",
    "NounsTokenizer", "Tokenizer", "WhiteSpaceTokenizer", "hash_trick",
]
