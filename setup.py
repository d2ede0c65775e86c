"""Packaging for audiocraft (MusicGen), a from-scratch reimplementation of Audiocraft."""
from pathlib import Path
import re

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _version() -> str:
    text = (HERE / "audiocraft" / "__init__.py").read_text()
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.M)
    if match is None:
        raise RuntimeError("__version__ not found in audiocraft/__init__.py")
    return match.group(1)


def _requirements() -> list:
    """requirements.txt without its comments (whole-line or after the requirement)."""
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


TEST = ["pytest>=7", "hypothesis>=6"]  # enough for the transformers-dependent tests (make test-transformers4)
EXTRAS = {
    "test": TEST,
    "dev": TEST + [
        "flake8>=6", "mypy>=1.5",
        "nbclient>=0.9", "nbformat>=5.9", "ipykernel>=6.25", "matplotlib>=3.5", "playwright>=1.40", "psutil>=5.9",
    ],
    "xformers": ["xformers"],
    "torchaudio": ["torchaudio"],
    "demucs": ["demucs>=4.0"],
    "app": ["gradio>=5.0"],
    # `jupyter notebook demo.ipynb` (README); ipykernel runs its cells; matplotlib draws its spectrograms.
    "notebook": ["notebook>=7.0", "ipykernel>=6.25", "matplotlib>=3.5"],
}

setup(
    name="audiocraft",
    version=_version(),
    description="MusicGen: exact, fast, easy text-to-music generation in PyTorch (Audiocraft-compatible).",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    # Tested on CPython 3.11 (CI); 3.10 is the oldest Python that torch 2.13 and current transformers support.
    python_requires=">=3.10",
    packages=find_packages(exclude=("tests", "tests.*", "benchmarks", "scripts")),
    include_package_data=True,
    package_data={"audiocraft": ["backends/cpu/csrc/*.cpp", "backends/cpu/csrc/*.h"]},  # native CPU kernels, compiled on first use
    install_requires=_requirements(),
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "musicgen=audiocraft.cli:main",
            "musicgen-train=audiocraft.train.cli:main",
        ],
    },
    classifiers=[
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Topic :: Multimedia :: Sound/Audio",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
