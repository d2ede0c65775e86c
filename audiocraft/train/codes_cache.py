"""An on-disk cache of EnCodec tokens, one file per dataset segment."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
import typing as tp

import torch

from ..data.audio_dataset import SegmentInfo


class CodesCache:
    """Tokens ``[K, T]`` of segments, keyed by the model and the segment (file, size, mtime, seek, frames)."""

    def __init__(self, folder: tp.Union[str, Path], model_key: str) -> None:
        self.folder = Path(folder)
        self.model_key = model_key
        self.hits = 0
        self.misses = 0

    def _path(self, info: SegmentInfo) -> Path:
        try:
            stat = os.stat(info.meta.path)
            stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            stamp = "?"
        key = "|".join([self.model_key, info.meta.path, stamp, f"{info.seek_time:.6f}", str(info.n_frames),
                        str(info.total_frames), str(info.sample_rate), str(info.channels)])
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.pt"

    def get(self, info: SegmentInfo) -> tp.Optional[torch.Tensor]:
        path = self._path(info)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            codes = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged entry is recomputed
            self.misses += 1
            return None
        self.hits += 1
        return codes.long()

    def put(self, info: SegmentInfo, codes: torch.Tensor) -> None:
        path = self._path(info)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        small = codes.detach().cpu().to(torch.int16 if int(codes.max()) < 2 ** 15 else torch.int32)
        torch.save(small.clone(), tmp)
        os.replace(tmp, path)
