"""Tests of audiocraft/data/audio_dataset.py: scanning, manifests, segments, determinism, unreadable files."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audiocraft.data import audio_dataset
from audiocraft.data.audio_dataset import (
    AudioDataset, AudioMeta, SegmentInfo, find_audio_files, item_seed, load_audio_meta, save_audio_meta,
    scan_audio_folder,
)
from tests.train.synth import notes, write_wav

SR = 16000


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    write_wav(tmp_path / "b.wav", notes(1.0, SR, [60, 64], seed=1), SR)
    write_wav(tmp_path / "a.wav", notes(0.5, 8000, [62], seed=2, channels=2), 8000)
    write_wav(tmp_path / "sub" / "c.wav", notes(2.0, SR, [67, 71, 74], seed=3), SR)
    (tmp_path / "broken.wav").write_bytes(b"RIFF" + bytes(range(200)))
    (tmp_path / "notes.txt").write_text("not audio")
    return tmp_path


def test_scan_finds_sorted_files_and_skips_unreadable(folder: Path) -> None:
    result = scan_audio_folder(folder)
    names = [Path(m.path).name for m in result.meta]
    assert names == ["a.wav", "b.wav", "c.wav"]
    assert [m.sample_rate for m in result.meta] == [8000, SR, SR]
    assert [m.duration for m in result.meta] == pytest.approx([0.5, 1.0, 2.0])
    assert [Path(p).name for p, _ in result.skipped] == ["broken.wav"]
    assert [Path(m.path).name for m in find_audio_files(folder)] == names


def test_scan_cache_reuses_probes_until_a_file_changes(folder: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache" / "manifest.jsonl"
    first = scan_audio_folder(folder, cache=cache)
    assert len(cache.read_text().splitlines()) == 4  # 3 files + the broken one (remembered as broken)

    def fail(*args, **kwargs):
        raise AssertionError("probed although cached")

    monkeypatch.setattr(audio_dataset, "_get_audio_meta", fail)
    second = scan_audio_folder(folder, cache=cache)
    assert second.meta == first.meta and len(second.skipped) == 1
    write_wav(folder / "b.wav", notes(1.5, SR, [60], seed=9), SR)  # new size: probed again
    third = scan_audio_folder(folder, cache=cache)
    assert [(Path(p).name, reason) for p, reason in third.skipped] == [
        ("b.wav", "AssertionError: probed although cached"), ("broken.wav", first.skipped[0][1])]


def test_scan_rejects_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_audio_folder(tmp_path / "nope")


@pytest.mark.parametrize("name", ["data.jsonl", "data.jsonl.gz"])
def test_manifest_round_trip_and_relative_paths(folder: Path, tmp_path: Path, name: str) -> None:
    meta = find_audio_files(folder)
    out = tmp_path / "m" / name
    save_audio_meta(out, meta)
    assert load_audio_meta(out) == meta
    # Relative paths are relative to the manifest's folder.
    rel = tmp_path / "rel.jsonl"
    rel.write_text(json.dumps({"path": "b.wav", "duration": 1.0, "sample_rate": SR}) + "\n")
    (tmp_path / "b.wav").write_bytes((folder / "b.wav").read_bytes())
    assert load_audio_meta(rel)[0].path == str((tmp_path / "b.wav").resolve())
    ds = AudioDataset.from_meta(out.parent, segment_duration=0.25, sample_rate=SR, channels=1)
    assert len(ds.meta) == 3


def test_bad_manifest_line_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"path": "x.wav", "duration": 1.0, "sample_rate": SR}) + "\n{\"path\": \"y\"}\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: .*lacks \['duration', 'sample_rate'\]"):
        load_audio_meta(bad)


def test_segments_are_converted_and_match_the_file(folder: Path) -> None:
    meta = find_audio_files(folder)
    ds = AudioDataset(meta, segment_duration=0.4, sample_rate=SR, channels=1, return_info=True,
                      num_samples=12, min_segment_ratio=1.0, shuffle_seed=3)
    for index in range(len(ds)):
        wav, info = ds[index]
        assert isinstance(info, SegmentInfo)
        assert wav.shape == (1, int(0.4 * SR)) and wav.dtype == torch.float32
        assert info.total_frames == wav.shape[-1] and info.sample_rate == SR and info.channels == 1
        assert info.seek_time + 0.4 <= info.meta.duration + 1e-9 or info.meta.duration < 0.4
        if info.meta.sample_rate == SR:  # no resampling: exactly the file's samples
            full = torch.from_numpy(_read_pcm(Path(info.meta.path)))
            start = int(info.seek_time * SR)
            assert torch.equal(wav[0, :info.n_frames], full[0, start:start + info.n_frames])


def _read_pcm(path: Path) -> np.ndarray:
    import wave
    with wave.open(str(path), "rb") as fh:
        data = np.frombuffer(fh.readframes(fh.getnframes()), dtype="<i2").reshape(-1, fh.getnchannels()).T
    return (data.astype(np.float32) / 32768).copy()


def test_short_file_is_resampled_remixed_and_padded(folder: Path) -> None:
    meta = [m for m in find_audio_files(folder) if m.path.endswith("a.wav")]  # 0.5 s stereo at 8 kHz
    ds = AudioDataset(meta, segment_duration=1.0, sample_rate=SR, channels=1, return_info=True, num_samples=2)
    wav, info = ds[0]
    assert wav.shape == (1, SR)
    assert info.seek_time == 0.0 and info.n_frames == SR // 2 and info.total_frames == SR
    assert wav[:, info.n_frames:].abs().max() == 0 and wav[:, :info.n_frames].abs().max() > 0.1
    nopad = AudioDataset(meta, segment_duration=1.0, sample_rate=SR, channels=2, pad=False, num_samples=2)
    assert nopad[0].shape == (2, SR // 2)


def test_items_depend_only_on_seed_epoch_and_index(folder: Path) -> None:
    meta = find_audio_files(folder)
    kwargs = dict(segment_duration=0.3, sample_rate=SR, channels=1, return_info=True, num_samples=8)
    a = AudioDataset(meta, shuffle_seed=5, **kwargs)
    b = AudioDataset(meta, shuffle_seed=5, **kwargs)
    order = [5, 2, 7, 0]
    got_a = {i: a[i] for i in order}
    got_b = {i: b[i] for i in reversed(order)}
    for i in order:
        assert torch.equal(got_a[i][0], got_b[i][0]) and got_a[i][1] == got_b[i][1]
    seeks = [a[i][1].seek_time for i in range(8)]
    a.start_epoch(1)
    assert [a[i][1].seek_time for i in range(8)] != seeks
    fixed = AudioDataset(meta, shuffle=False, shuffle_seed=5, **kwargs)
    before = [fixed[i][1].seek_time for i in range(8)]
    fixed.start_epoch(4)
    assert [fixed[i][1].seek_time for i in range(8)] == before
    assert item_seed(1, 2, 3) == item_seed(1, 2, 3) != item_seed(1, 3, 2)


def test_permutation_on_files_visits_every_file_each_epoch(folder: Path) -> None:
    meta = find_audio_files(folder)
    ds = AudioDataset(meta, segment_duration=0.2, sample_rate=SR, channels=1, return_info=True, num_samples=3,
                      permutation_on_files=True)
    for epoch in range(3):
        ds.start_epoch(epoch)
        assert sorted(ds[i][1].meta.path for i in range(3)) == sorted(m.path for m in meta)


def test_unreadable_files_are_replaced_and_counted(folder: Path) -> None:
    good = find_audio_files(folder)
    bad = [AudioMeta(str(folder / "broken.wav"), 1.0, SR), AudioMeta(str(folder / "gone.wav"), 1.0, SR)]
    ds = AudioDataset(good + bad, segment_duration=0.2, sample_rate=SR, channels=1, num_samples=20,
                      sample_on_duration=False, sample_on_weight=False, return_info=True)
    items = [ds[i] for i in range(20)]
    assert all(Path(info.meta.path).name in {"a.wav", "b.wav", "c.wav"} for _, info in items)
    assert ds.num_failed_reads > 0
    # The counter is shared with data-loader workers.
    before = ds.num_failed_reads
    ds.start_epoch(1)
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=1, collate_fn=ds.collater)
    assert sum(len(batch[1]) for batch in loader) == 20
    assert ds.num_failed_reads > before
    # Even when every drawn file fails, the item comes from some readable file.
    mostly_bad = AudioDataset(bad * 20 + good[:1], segment_duration=0.2, sample_rate=SR, channels=1,
                              max_read_retry=2, sample_on_duration=False, sample_on_weight=False)
    assert all(mostly_bad[i].shape == (1, int(0.2 * SR)) for i in range(5))
    only_bad = AudioDataset(bad, segment_duration=0.2, sample_rate=SR, channels=1, max_read_retry=3)
    with pytest.raises(RuntimeError, match=r"Could not read any audio for item 0: all 2 file\(s\) of the dataset"):
        only_bad[0]


def test_whole_files_and_collater_padding(folder: Path) -> None:
    meta = find_audio_files(folder)
    ds = AudioDataset(meta, segment_duration=None, sample_rate=SR, channels=1, return_info=True)
    assert len(ds) == 3
    wav, infos = ds.collater([ds[0], ds[2]])
    assert wav.shape == (2, 1, 2 * SR)
    assert infos[0].n_frames == SR // 2 and infos[0].total_frames == 2 * SR
    assert wav[0, :, SR // 2:].abs().max() == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(segment_duration=-1.0), "segment_duration must be a positive number"),
    (dict(num_samples=0), "num_samples must be a positive int"),
    (dict(min_segment_ratio=1.5), r"min_segment_ratio must be in \[0, 1\]"),
    (dict(min_audio_duration=10.0), "No audio file left"),
])
def test_constructor_errors(folder: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AudioDataset(find_audio_files(folder), **kwargs)
