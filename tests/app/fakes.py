"""A stand-in for MusicGen with the facade's API: instant, deterministic, records how it was called."""
import math
import types
import typing as tp

import torch

from audiocraft.models import MultiBandDiffusion


class FakeMusicGen:
    """Generates a 440 Hz sine of the requested duration; ``calls`` records (method, texts, melodies)."""

    sample_rate = 32000
    audio_channels = 1
    frame_rate = 50
    max_duration = 30.0

    def __init__(self, name: str = "facebook/musicgen-melody", melody: tp.Optional[bool] = None) -> None:
        self.name = name
        melody = "melody" in name if melody is None else melody
        conditioners = {"description": object()}
        if melody:
            conditioners["self_wav"] = object()
        self.lm = types.SimpleNamespace(condition_provider=types.SimpleNamespace(conditioners=conditioners))
        self.compression_model = types.SimpleNamespace(num_codebooks=4, cardinality=2048)
        self.params: tp.Dict[str, tp.Any] = {}
        self.callback: tp.Optional[tp.Callable[[int, int], tp.Any]] = None
        self.calls: tp.List[tp.Tuple[str, tp.Any, tp.Any]] = []

    def set_generation_params(self, **params: tp.Any) -> None:
        if params.get("temperature", 1.0) <= 0:
            raise ValueError(f"temperature must be > 0, got {params['temperature']}.")
        self.params = params

    def set_custom_progress_callback(self, callback: tp.Optional[tp.Callable[[int, int], tp.Any]]) -> None:
        self.callback = callback

    def _frames(self, cancel: tp.Any = None) -> tp.Iterator[int]:
        """Run the decoding steps (progress callback, cancellation); yields each step number."""
        length = int(self.params["duration"] * self.frame_rate)
        for step in range(1, length + 1):
            if self.callback is not None:
                self.callback(step, length)
            if cancel is not None and cancel.cancelled:  # a cancel seen during a step drops that step
                return
            yield step

    def _sine(self, batch: int, start_frame: int, frames: int) -> torch.Tensor:
        per_frame = self.sample_rate // self.frame_rate
        t = torch.arange(start_frame * per_frame, (start_frame + frames) * per_frame) / self.sample_rate
        return (0.5 * torch.sin(2 * math.pi * 440 * t)).expand(batch, 1, -1).clone()

    def _audio(self, batch: int, cancel: tp.Any = None, return_tokens: bool = False) -> tp.Any:
        """The sine; with ``return_tokens`` also tokens ``[B, 4, frames]`` (frame i holds the code i % 2048)."""
        steps = 0
        for steps in self._frames(cancel):
            pass
        audio = self._sine(batch, 0, steps)
        if not return_tokens:
            return audio
        return audio, (torch.arange(steps) % 2048).expand(batch, 4, -1).clone()

    def generate(self, descriptions: tp.List[tp.Optional[str]], cancel: tp.Any = None,
                 return_tokens: bool = False) -> tp.Any:
        self.calls.append(("generate", list(descriptions), None))
        return self._audio(len(descriptions), cancel, return_tokens)

    def generate_with_chroma(self, descriptions: tp.List[tp.Optional[str]], melody_wavs: tp.Any,
                             melody_sample_rate: int, cancel: tp.Any = None, return_tokens: bool = False) -> tp.Any:
        if "self_wav" not in self.lm.condition_provider.conditioners:
            raise ValueError("no melody conditioner")
        self.calls.append(("generate_with_chroma", list(descriptions), (melody_wavs, melody_sample_rate)))
        return self._audio(len(descriptions), cancel, return_tokens)

    def generate_stream(self, descriptions: tp.List[tp.Optional[str]], *, chunk_seconds: float = 1.0,
                        first_chunk_seconds: tp.Optional[float] = None,
                        melody_wavs: tp.Any = None, melody_sample_rate: tp.Optional[int] = None,
                        cancel: tp.Any = None) -> tp.Iterator[torch.Tensor]:
        """A first chunk of ``first_chunk_seconds`` (default ``chunk_seconds``), then chunks of ``chunk_seconds``
        (the last one shorter); ``before_chunk(i)`` runs before chunk i."""
        if melody_wavs is not None and "self_wav" not in self.lm.condition_provider.conditioners:
            raise ValueError("no melody conditioner")
        self.calls.append(("generate_stream", list(descriptions), (melody_wavs, melody_sample_rate)))
        self.first_chunk_seconds = first_chunk_seconds
        per_chunk = max(1, int(chunk_seconds * self.frame_rate))
        size = per_chunk if first_chunk_seconds is None else max(1, int(first_chunk_seconds * self.frame_rate))
        done = step = index = 0
        for step in self._frames(cancel):
            if step - done == size:
                self.before_chunk(index)
                yield self._sine(len(descriptions), done, step - done)
                done, index, size = step, index + 1, per_chunk
        if step > done:
            self.before_chunk(index)
            yield self._sine(len(descriptions), done, step - done)

    def before_chunk(self, index: int) -> None:
        """Tests replace this to act between chunks (press Stop, check the model is held)."""


def fake_loader(loaded: tp.Optional[tp.List[str]] = None) -> tp.Callable[[str], FakeMusicGen]:
    """A ModelCache loader making FakeMusicGen models; appends each loaded name to ``loaded``."""
    def load(name: str) -> FakeMusicGen:
        if "missing" in name:
            raise RuntimeError(f"Repository {name} not found in the offline cache\nmore details")
        if loaded is not None:
            loaded.append(name)
        return FakeMusicGen(name)
    return load


class FakeDiffusion(MultiBandDiffusion):
    """A stand-in for MultiBandDiffusion: decodes tokens ``[B, K, F]`` into a 220 Hz sine of ``F`` frames, and
    records each call's tokens in ``calls``."""

    def __init__(self, sample_rate: int = 32000) -> None:  # no diffusion models, no codec weights
        self.codec_model = types.SimpleNamespace(sample_rate=sample_rate, num_codebooks=4, cardinality=2048,
                                                 frame_rate=50)
        self.device = torch.device("cpu")
        self.calls: tp.List[torch.Tensor] = []

    @property
    def sample_rate(self) -> int:
        return int(self.codec_model.sample_rate)

    def tokens_to_wav(self, tokens: torch.Tensor, n_bands: int = 32) -> torch.Tensor:
        self.calls.append(tokens)
        t = torch.arange(tokens.shape[-1] * 640) / 32000
        return (0.25 * torch.sin(2 * math.pi * 220 * t)).expand(tokens.shape[0], 1, -1).clone()
