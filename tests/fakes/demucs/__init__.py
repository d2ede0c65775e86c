"""Fake demucs for the tests: NOT a separator, every stem is half the mix (see ../README.md)."""
__version__ = "0.0.0+tests-fake"
