"""Quantizers of the compression models: residual vector quantization (RVQ) and a no-op quantizer."""
from .base import BaseQuantizer, DummyQuantizer, QuantizedResult
from .vq import ResidualVectorQuantizer

__all__ = ["BaseQuantizer", "DummyQuantizer", "QuantizedResult", "ResidualVectorQuantizer"]
