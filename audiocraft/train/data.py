"""Training data: the music dataset of a folder or manifest, sharded over ranks, resumable mid-epoch."""
from __future__ import annotations

import itertools
import logging
from pathlib import Path
import typing as tp

from torch.utils.data import DataLoader, DistributedSampler, Sampler

from ..data.audio_dataset import AudioMeta, load_audio_meta, scan_audio_folder
from ..data.music_dataset import MusicDataset
from .config import TrainError
from .distributed import DistEnv, broadcast_object

logger = logging.getLogger(__name__)
MANIFEST_CACHE = "manifest_cache.jsonl"


def discover_audio(data: str, cache_dir: Path, env: DistEnv) -> tp.Tuple[tp.List[AudioMeta], int]:
    """The readable audio files of a folder (scanned by rank 0, probes cached in ``cache_dir``) or a manifest,
    identical on every rank, and the number of files left out."""
    found: tp.Any = None
    if env.is_main:
        path = Path(data)
        try:
            if path.is_dir():
                result = scan_audio_folder(path.resolve(), cache=cache_dir / MANIFEST_CACHE)
                meta, skipped = result.meta, len(result.skipped)
            elif path.is_file():
                meta, skipped = load_audio_meta(path), 0
            else:
                raise TrainError(f"--data {data!r} is neither a folder of audio files nor a JSONL manifest.")
            found = ([m.to_dict() for m in meta], skipped, None)
        except (TrainError, ValueError, OSError) as err:
            found = ([], 0, str(err))
    meta_dicts, skipped, error = broadcast_object(found)
    if error is not None:
        raise TrainError(error)
    if not meta_dicts:
        raise TrainError(f"No readable audio file in {data!r} ({skipped} unreadable file(s) skipped).")
    return [AudioMeta.from_dict(d) for d in meta_dicts], skipped


def build_dataset(meta: tp.List[AudioMeta], sample_rate: int, channels: int, segment_duration: float,
                  batch_size: int, samples_per_epoch: tp.Optional[int], min_segment_ratio: float, seed: int,
                  merge_text_p: float = 0., drop_desc_p: float = 0., drop_other_p: float = 0.) -> MusicDataset:
    """A `MusicDataset` visiting every file once per epoch (epoch length rounded up to whole batches)."""
    num_samples = samples_per_epoch or max(len(meta), batch_size)
    num_samples = -(-num_samples // batch_size) * batch_size
    return MusicDataset(meta, segment_duration=segment_duration, shuffle=True, num_samples=num_samples,
                        sample_rate=sample_rate, channels=channels, pad=True, min_segment_ratio=min_segment_ratio,
                        return_info=True, shuffle_seed=seed, permutation_on_files=True,
                        merge_text_p=merge_text_p, drop_desc_p=drop_desc_p, drop_other_p=drop_other_p)


class SkipSampler(Sampler[int]):
    """``base`` without its first ``skip`` indices (to resume an epoch where it stopped)."""

    def __init__(self, base: DistributedSampler, skip: int = 0) -> None:
        self.base = base
        self.skip = skip

    def __iter__(self) -> tp.Iterator[int]:
        return itertools.islice(iter(self.base), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


def epoch_loader(dataset: MusicDataset, env: DistEnv, micro_batch: int, epoch: int, skip_samples: int, seed: int,
                 num_workers: int) -> DataLoader:
    """The data loader of ``epoch`` for this rank, after ``skip_samples`` samples (all ranks together)."""
    dataset.start_epoch(epoch)
    sampler: DistributedSampler = DistributedSampler(dataset, num_replicas=env.world_size, rank=env.rank,
                                                     shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=micro_batch, sampler=SkipSampler(sampler, skip_samples // env.world_size),
                      num_workers=num_workers, collate_fn=dataset.collater, drop_last=True,
                      pin_memory=env.device.type == "cuda")
