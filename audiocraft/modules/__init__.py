"""Modules: the building blocks of the models (convolutions, LSTM, SEANet, transformer, conditioners, ...).

As in Audiocraft, the codec's building blocks are re-exported here; transformer, conditioners, chroma and
codebook patterns are imported from their own modules (``audiocraft.modules.transformer`` etc.).
"""
from .conv import (  # noqa: F401
    NormConv1d, NormConvTranspose1d, StreamableConv1d, StreamableConvTranspose1d, pad1d, pad_for_conv1d, unpad1d,
)
from .lstm import StreamableLSTM  # noqa: F401
from .seanet import SEANetDecoder, SEANetEncoder  # noqa: F401
