"""Fine-tuning MusicGen: data to checkpoint to a folder ``MusicGen.get_pretrained`` loads.

    from audiocraft.train import TrainConfig, train
    result = train(TrainConfig(data="my_music/", out="runs/mine", steps=2000))
    # then MusicGen.get_pretrained("runs/mine")

Command line: ``musicgen-train`` (see :mod:`audiocraft.train.cli`); distributed with ``torchrun``.
"""
from .config import TrainConfig
from .config import TrainError
from .loss import compute_cross_entropy
from .solver import MusicGenTrainer, TrainResult, train

__all__ = ["TrainConfig", "TrainError", "compute_cross_entropy", "MusicGenTrainer", "TrainResult", "train"]
