"""Datasets of audio files: a manifest of `AudioMeta` and an `AudioDataset` of random segments.

A dataset starts from a list of :class:`AudioMeta` (path, duration, sample rate, ...), made by scanning a folder
(:func:`find_audio_files`, with an optional manifest cache) or read from a JSONL manifest
(:func:`load_audio_meta`, one ``AudioMeta`` dict per line, optionally gzipped). :class:`AudioDataset` then serves
segments of ``segment_duration`` seconds, resampled and remixed with ``convert_audio`` and zero-padded when the
file is short. Item ``i`` of epoch ``e`` is drawn from a generator seeded with ``(shuffle_seed, e, i)`` only, so
every process (distributed rank, data-loader worker) computes the same segment for the same index.

Unreadable files never stop an epoch: at scan time they are left out (``ScanResult.skipped``), at read time
another file is drawn and the failure is counted (``AudioDataset.num_failed_reads``, shared with data-loader
workers).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
import gzip
import json
import logging
import math
import os
from pathlib import Path
import typing as tp

import torch
import torch.nn.functional as F

from .audio import audio_info, audio_read
from .audio_utils import convert_audio

logger = logging.getLogger(__name__)

PathLike = tp.Union[str, os.PathLike]
DEFAULT_EXTS = ['.wav', '.mp3', '.flac', '.ogg', '.m4a']
_MASK64 = (1 << 63) - 1


@dataclass
class BaseInfo:
    """Dataclass with dict round-trips that ignore unknown keys."""

    @classmethod
    def _dict2fields(cls, dictionary: tp.Dict[str, tp.Any]) -> tp.Dict[str, tp.Any]:
        return {f.name: dictionary[f.name] for f in fields(cls) if f.name in dictionary}

    @classmethod
    def from_dict(cls, dictionary: tp.Dict[str, tp.Any]) -> tp.Any:
        return cls(**cls._dict2fields(dictionary))

    def to_dict(self) -> tp.Dict[str, tp.Any]:
        return {f.name: self.__getattribute__(f.name) for f in fields(self)}


@dataclass(order=True)
class AudioMeta(BaseInfo):
    """One audio file of a dataset.

    Args:
        path: the file.
        duration: its duration in seconds.
        sample_rate: its native sample rate (Hz).
        amplitude: its peak amplitude, when known.
        weight: its sampling weight (``sample_on_weight``), when given.
        info_path: where its metadata (JSON) lives, when not next to the file.
    """
    path: str
    duration: float
    sample_rate: int
    amplitude: tp.Optional[float] = None
    weight: tp.Optional[float] = None
    info_path: tp.Optional[str] = None

    @classmethod
    def from_dict(cls, dictionary: tp.Dict[str, tp.Any]) -> "AudioMeta":
        base = cls._dict2fields(dictionary)
        missing = [name for name in ("path", "duration", "sample_rate") if name not in base]
        if missing:
            raise ValueError(f"AudioMeta entry {dictionary!r} lacks {missing}.")
        if base.get("info_path") is not None:
            base["info_path"] = str(base["info_path"])
        return cls(**base)


@dataclass(order=True)
class SegmentInfo(BaseInfo):
    """Where a dataset item comes from and its size once converted.

    ``n_frames`` valid samples (at ``sample_rate``) followed by ``total_frames - n_frames`` of zero padding.
    """
    meta: AudioMeta
    seek_time: float
    n_frames: int
    total_frames: int
    sample_rate: int
    channels: int


@dataclass
class ScanResult:
    """What scanning a folder found: readable files, and ``(path, reason)`` for each file left out."""
    meta: tp.List[AudioMeta]
    skipped: tp.List[tp.Tuple[str, str]]


# ---------------------------------------------------------------------------------------- manifests
def _get_audio_meta(file_path: PathLike, minimal: bool = True) -> AudioMeta:
    """Probe one file. ``minimal=False`` also reads it to record its peak ``amplitude``."""
    info = audio_info(file_path)
    amplitude: tp.Optional[float] = None
    if not minimal:
        wav, _ = audio_read(file_path)
        amplitude = float(wav.abs().max()) if wav.numel() else 0.0
    return AudioMeta(str(file_path), float(info.duration), int(info.sample_rate), amplitude)


def _list_audio_files(root: Path, exts: tp.Sequence[str]) -> tp.List[Path]:
    wanted = {e.lower() if e.startswith(".") else "." + e.lower() for e in exts}
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in wanted:
                found.append(Path(dirpath) / name)
    return found


def _file_key(path: Path) -> tp.Tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _read_scan_cache(cache: Path) -> tp.Dict[str, tp.Dict[str, tp.Any]]:
    if not cache.is_file():
        return {}
    entries = {}
    try:
        with open(cache, "r", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    entry = json.loads(line)
                    entries[entry["path"]] = entry
    except (OSError, ValueError, KeyError) as err:
        logger.warning("Ignoring unreadable manifest cache %s (%s).", cache, err)
        return {}
    return entries


def _write_jsonl_atomic(path: Path, rows: tp.Iterable[tp.Dict[str, tp.Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    opener: tp.Callable[..., tp.Any] = gzip.open if path.suffix == ".gz" else open
    with opener(tmp, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    os.replace(tmp, path)


def scan_audio_folder(root: PathLike, exts: tp.Sequence[str] = DEFAULT_EXTS, minimal: bool = True,
                      cache: tp.Optional[PathLike] = None, progress: bool = False) -> ScanResult:
    """Find and probe every audio file under ``root`` (recursively, sorted).

    Files that cannot be probed are left out with a warning and listed in ``ScanResult.skipped``. With
    ``cache`` (a JSONL file), probes of files whose size and mtime did not change are reused, and the cache
    is rewritten atomically.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise FileNotFoundError(f"Audio folder {str(root)!r} does not exist or is not a folder.")
    cached = _read_scan_cache(Path(cache)) if cache is not None else {}
    files = _list_audio_files(root_path, exts)
    iterator: tp.Iterable[Path] = files
    if progress:
        from tqdm import tqdm
        iterator = tqdm(files, desc="scanning audio", unit="file")
    meta: tp.List[AudioMeta] = []
    skipped: tp.List[tp.Tuple[str, str]] = []
    new_cache: tp.List[tp.Dict[str, tp.Any]] = []
    for path in iterator:
        key = _file_key(path)
        entry = cached.get(str(path))
        if entry is None or (entry.get("size"), entry.get("mtime_ns")) != key or (
                not minimal and "meta" in entry and entry["meta"].get("amplitude") is None):
            entry = {"path": str(path), "size": key[0], "mtime_ns": key[1]}
            try:
                entry["meta"] = _get_audio_meta(path, minimal).to_dict()
            except Exception as err:  # any decoder error: leave the file out, keep going
                entry["error"] = f"{type(err).__name__}: {err}"
        new_cache.append(entry)
        if "meta" in entry:
            meta.append(AudioMeta.from_dict(entry["meta"]))
        else:
            logger.warning("Skipping unreadable audio file %s (%s).", path, entry.get("error"))
            skipped.append((str(path), str(entry.get("error"))))
    if cache is not None:
        _write_jsonl_atomic(Path(cache), new_cache)
    return ScanResult(meta, skipped)


def find_audio_files(path: PathLike, exts: tp.Sequence[str] = DEFAULT_EXTS, resolve: bool = True,
                     minimal: bool = True, progress: bool = False, workers: int = 0) -> tp.List[AudioMeta]:
    """Audiocraft's scanner: every readable audio file under ``path`` as ``AudioMeta`` (unreadable ones skipped).

    ``resolve`` makes the paths absolute; ``workers`` is accepted for compatibility (probing is sequential).
    """
    root = Path(path).resolve() if resolve else Path(path)
    return scan_audio_folder(root, exts, minimal=minimal, progress=progress).meta


def load_audio_meta(path: PathLike, resolve: bool = True, fast: bool = True) -> tp.List[AudioMeta]:
    """Read a JSONL manifest (``.jsonl`` or ``.jsonl.gz``), one ``AudioMeta`` dict per line.

    Relative paths are taken relative to the manifest's folder (and made absolute when ``resolve``).
    """
    manifest = Path(path)
    if not manifest.is_file():
        raise FileNotFoundError(f"Manifest {str(path)!r} does not exist.")
    opener: tp.Callable[..., tp.Any] = gzip.open if manifest.suffix == ".gz" else open
    meta = []
    with opener(manifest, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                m = AudioMeta.from_dict(json.loads(line))
            except ValueError as err:
                raise ValueError(f"{manifest}:{lineno}: not a valid AudioMeta line ({err}).") from None
            file_path = Path(m.path)
            if not file_path.is_absolute():
                file_path = manifest.parent / file_path
            m.path = str(file_path.resolve() if resolve else file_path)
            meta.append(m)
    return meta


def save_audio_meta(path: PathLike, meta: tp.List[AudioMeta]) -> None:
    """Write ``meta`` as a JSONL manifest (gzipped if ``path`` ends with ``.gz``), atomically."""
    _write_jsonl_atomic(Path(path), (m.to_dict() for m in meta))


# ---------------------------------------------------------------------------------------- dataset
def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that depends only on ``(seed, epoch, index)`` (identical in every process)."""
    x = (int(seed) & _MASK64) * 0x9E3779B97F4A7C15 + int(epoch)
    x = (x & _MASK64) * 0xBF58476D1CE4E5B9 + int(index)
    x = (x & _MASK64) * 0x94D049BB133111EB
    return (x ^ (x >> 31)) & _MASK64


class AudioDataset(torch.utils.data.Dataset):
    """Segments (or whole files) of a list of audio files, converted to ``sample_rate`` / ``channels``.

    Args:
        meta: the files.
        segment_duration: seconds per item; None serves whole files (item i = file i).
        shuffle: draw new segments every epoch (``start_epoch``); False keeps item i fixed (validation).
        num_samples: items per epoch when serving segments.
        sample_rate: output sample rate.
        channels: output channels (1 = mean of the channels, 2 = duplicated mono or the first two).
        pad: zero-pad short segments to ``segment_duration``.
        sample_on_duration: pick files with probability proportional to their duration...
        sample_on_weight: ...times their ``weight``; with neither, uniformly.
        min_segment_ratio: a segment starts at most ``duration - min_segment_ratio * segment_duration`` s in,
            so at least that fraction of it is real audio (for files longer than that).
        max_read_retry: files drawn for one item before trying every file in turn (an item fails only when
            no file of the dataset can be read).
        return_info: return ``(wav, SegmentInfo)`` instead of ``wav``.
        min_audio_duration / max_audio_duration: leave out shorter / longer files.
        shuffle_seed: base seed of the item generators.
        load_wav: False skips decoding and returns zeros of the right size (for token caches).
        permutation_on_files: item i of an epoch is file ``perm_e[i % n]`` so each epoch visits every file
            (overrides duration/weight sampling).

    An item is ``wav [channels, frames]`` float32 (``frames = int(segment_duration * sample_rate)`` when padded).
    """

    def __init__(self, meta: tp.List[AudioMeta], segment_duration: tp.Optional[float] = None, shuffle: bool = True,
                 num_samples: int = 10_000, sample_rate: int = 48_000, channels: int = 2, pad: bool = True,
                 sample_on_duration: bool = True, sample_on_weight: bool = True, min_segment_ratio: float = 0.5,
                 max_read_retry: int = 10, return_info: bool = False,
                 min_audio_duration: tp.Optional[float] = None, max_audio_duration: tp.Optional[float] = None,
                 shuffle_seed: int = 0, load_wav: bool = True, permutation_on_files: bool = False) -> None:
        if not isinstance(meta, (list, tuple)) or not all(isinstance(m, AudioMeta) for m in meta):
            raise TypeError("meta must be a list of AudioMeta.")
        if segment_duration is not None and not (isinstance(segment_duration, (int, float))
                                                 and math.isfinite(segment_duration) and segment_duration > 0):
            raise ValueError(f"segment_duration must be a positive number of seconds or None, "
                             f"got {segment_duration!r}.")
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}.")
        if not isinstance(sample_rate, int) or sample_rate < 1:
            raise ValueError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}.")
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}.")
        if not 0.0 <= float(min_segment_ratio) <= 1.0:
            raise ValueError(f"min_segment_ratio must be in [0, 1], got {min_segment_ratio!r}.")
        if not isinstance(max_read_retry, int) or max_read_retry < 1:
            raise ValueError(f"max_read_retry must be a positive int, got {max_read_retry!r}.")
        self.min_audio_duration = min_audio_duration
        self.max_audio_duration = max_audio_duration
        self.meta: tp.List[AudioMeta] = self._filter_duration(list(meta))
        if not self.meta:
            raise ValueError(f"No audio file left in the dataset ({len(meta)} given, min_audio_duration="
                             f"{min_audio_duration}, max_audio_duration={max_audio_duration}).")
        self.segment_duration = None if segment_duration is None else float(segment_duration)
        self.shuffle = shuffle
        self.num_samples = num_samples if segment_duration is not None else len(self.meta)
        self.sample_rate = sample_rate
        self.channels = channels
        self.pad = pad
        self.sample_on_duration = sample_on_duration
        self.sample_on_weight = sample_on_weight
        self.min_segment_ratio = float(min_segment_ratio)
        self.max_read_retry = max_read_retry
        self.return_info = return_info
        self.shuffle_seed = int(shuffle_seed)
        self.load_wav = load_wav
        self.permutation_on_files = permutation_on_files
        self.current_epoch = 0
        self.sampling_probabilities = self._get_sampling_probabilities()
        # Shared-memory counter: data-loader workers increment the parent's copy.
        self._failed_reads = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._warned: tp.Set[str] = set()

    # -- construction helpers ---------------------------------------------------------------------
    @classmethod
    def from_meta(cls, root: PathLike, **kwargs: tp.Any) -> "AudioDataset":
        """From a manifest file, or a folder holding ``data.jsonl`` / ``data.jsonl.gz``."""
        root_path = Path(root)
        if root_path.is_dir():
            for name in ("data.jsonl", "data.jsonl.gz"):
                if (root_path / name).is_file():
                    root_path = root_path / name
                    break
            else:
                raise FileNotFoundError(f"No data.jsonl or data.jsonl.gz in {str(root)!r}.")
        return cls(load_audio_meta(root_path), **kwargs)

    @classmethod
    def from_path(cls, root: PathLike, minimal_meta: bool = True, exts: tp.Sequence[str] = DEFAULT_EXTS,
                  **kwargs: tp.Any) -> "AudioDataset":
        """From a manifest (``.jsonl[.gz]``) or by scanning a folder of audio files."""
        root_path = Path(root)
        if root_path.is_file():
            return cls.from_meta(root_path, **kwargs)
        return cls(find_audio_files(root_path, exts, minimal=minimal_meta), **kwargs)

    def _filter_duration(self, meta: tp.List[AudioMeta]) -> tp.List[AudioMeta]:
        return [m for m in meta
                if (self.min_audio_duration is None or m.duration >= self.min_audio_duration)
                and (self.max_audio_duration is None or m.duration <= self.max_audio_duration)]

    def _get_sampling_probabilities(self, normalized: bool = True) -> torch.Tensor:
        """File probabilities ``[num_files]`` from durations and weights."""
        scores = []
        for m in self.meta:
            score = 1.0
            if self.sample_on_weight and m.weight is not None:
                score *= float(m.weight)
            if self.sample_on_duration:
                score *= float(m.duration)
            scores.append(score)
        probs = torch.tensor(scores, dtype=torch.float64).clamp_min(0)
        if float(probs.sum()) <= 0:
            probs = torch.ones_like(probs)
        return probs / probs.sum() if normalized else probs

    # -- epochs and sampling ----------------------------------------------------------------------
    def start_epoch(self, epoch: int) -> None:
        """Items drawn from now on belong to ``epoch`` (call before building the data-loader iterator)."""
        self.current_epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    @property
    def num_failed_reads(self) -> int:
        """Reads that failed (and were replaced by another file) so far, workers included."""
        return int(self._failed_reads.item())

    @staticmethod
    def _get_file_permutation(num_files: int, permutation_index: int, base_seed: int) -> tp.List[int]:
        rng = torch.Generator()
        rng.manual_seed(item_seed(base_seed, permutation_index, -1 & _MASK64))
        return torch.randperm(num_files, generator=rng).tolist()

    def _epoch_for_seed(self) -> int:
        return self.current_epoch if self.shuffle else 0

    def sample_file(self, index: int, rng: torch.Generator, attempt: int = 0) -> AudioMeta:
        """The file of item ``index`` (attempt 0), or a random replacement for a failed read."""
        if self.permutation_on_files and attempt == 0:
            epoch = self._epoch_for_seed() + index // len(self.meta)
            perm = self._get_file_permutation(len(self.meta), epoch, self.shuffle_seed)
            return self.meta[perm[index % len(self.meta)]]
        if not (self.sample_on_duration or self.sample_on_weight):
            return self.meta[int(torch.randint(len(self.meta), (1,), generator=rng))]
        return self.meta[int(torch.multinomial(self.sampling_probabilities, 1, generator=rng))]

    # -- reading ----------------------------------------------------------------------------------
    def _audio_read(self, path: str, seek_time: float = 0., duration: float = -1.) -> tp.Tuple[torch.Tensor, int]:
        return audio_read(path, seek_time, duration, pad=False)

    def _record_failure(self, path: str, err: BaseException) -> None:
        self._failed_reads.add_(1)
        if path not in self._warned:
            self._warned.add(path)
            logger.warning("Skipping unreadable audio file %s (%s: %s).", path, type(err).__name__, err)

    def _load_segment(self, meta: AudioMeta, seek_time: float) -> tp.Tuple[torch.Tensor, SegmentInfo]:
        duration = -1.0 if self.segment_duration is None else self.segment_duration
        target = None if self.segment_duration is None else int(self.segment_duration * self.sample_rate)
        if self.load_wav:
            wav, sr = self._audio_read(meta.path, seek_time, duration)
            if wav.dim() != 2 or wav.shape[0] < 1:
                raise ValueError(f"decoded audio has shape {list(wav.shape)}")
            wav = convert_audio(wav, sr, self.sample_rate, self.channels)
        else:
            frames = math.ceil(max(0.0, meta.duration - seek_time) * self.sample_rate)
            wav = torch.zeros(self.channels, frames if target is None else min(target, frames))
        if target is not None:
            wav = wav[:, :target]
        n_frames = wav.shape[-1]
        if target is not None and self.pad and n_frames < target:
            wav = F.pad(wav, (0, target - n_frames))
        info = SegmentInfo(meta, seek_time, n_frames=n_frames, total_frames=wav.shape[-1],
                           sample_rate=self.sample_rate, channels=wav.shape[0])
        return wav.contiguous(), info

    def _get_item_with_info(self, index: int) -> tp.Tuple[torch.Tensor, SegmentInfo]:
        """Item ``index``: up to ``max_read_retry`` drawn files, then every file in turn; raises only when no
        file of the dataset can be read."""
        rng = torch.Generator()
        rng.manual_seed(item_seed(self.shuffle_seed, self._epoch_for_seed(), index))
        last_error: tp.Optional[BaseException] = None
        failed: tp.Set[str] = set()
        candidates: tp.Iterator[tp.Tuple[AudioMeta, float]] = self._candidates(index, rng)
        for meta, seek_time in candidates:
            if meta.path in failed:
                continue
            try:
                return self._load_segment(meta, seek_time)
            except Exception as err:  # decoder errors, missing files: try another file
                self._record_failure(meta.path, err)
                failed.add(meta.path)
                last_error = err
        raise RuntimeError(f"Could not read any audio for item {index}: all {len(failed)} file(s) of the dataset "
                           f"failed (last error: {last_error}).")

    def _candidates(self, index: int, rng: torch.Generator) -> tp.Iterator[tp.Tuple[AudioMeta, float]]:
        """(file, seek time) to try for item ``index``: drawn ones, then every file (seek 0) as a last resort."""
        for attempt in range(self.max_read_retry):
            if self.segment_duration is None:
                yield self.meta[(index + attempt) % len(self.meta)], 0.0
            else:
                meta = self.sample_file(index, rng, attempt)
                max_seek = max(0.0, meta.duration - self.segment_duration * self.min_segment_ratio)
                yield meta, float(torch.rand(1, generator=rng, dtype=torch.float64)) * max_seek
        for offset in range(len(self.meta)):
            yield self.meta[(index + offset) % len(self.meta)], 0.0

    def __getitem__(self, index: int) -> tp.Union[torch.Tensor, tp.Tuple[torch.Tensor, SegmentInfo]]:
        wav, info = self._get_item_with_info(index)
        return (wav, info) if self.return_info else wav

    def collater(self, samples: tp.List[tp.Any]) -> tp.Any:
        """Stack items into ``wav [B, C, T_max]`` (right-padded with zeros); with infos, ``(wav, [info])``."""
        if not samples:
            raise ValueError("collater needs at least one sample.")
        if self.return_info:
            wavs = [s[0] for s in samples]
            infos = [s[1] for s in samples]
        else:
            wavs = list(samples)
        longest = max(w.shape[-1] for w in wavs)
        wav = torch.stack([F.pad(w, (0, longest - w.shape[-1])) for w in wavs])
        if self.return_info:
            for info in infos:
                info.total_frames = longest
            return wav, infos
        return wav
