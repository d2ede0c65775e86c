"""Tests of audiocraft/data/music_dataset.py: sidecar metadata, MusicInfo -> ConditioningAttributes, collate."""
import json
from pathlib import Path

import pytest
import torch

from audiocraft.data.audio_dataset import find_audio_files
from audiocraft.data.music_dataset import (
    MusicDataset, MusicInfo, augment_music_info_description, load_music_metadata,
)
from audiocraft.modules.conditioners import ConditioningAttributes, WavCondition
from tests.train.synth import make_music_folder, notes, write_wav

SR = 16000


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    make_music_folder(tmp_path, count=2, seconds=0.5, sample_rate=SR)
    write_wav(tmp_path / "meta.wav", notes(0.5, SR, [60], seed=5), SR)
    (tmp_path / "meta.json").write_text(json.dumps({
        "title": " Song ", "artist": "Someone", "key": "C Major", "bpm": "120", "genre": "Rock",
        "moods": "Happy, Energetic", "keywords": ["Guitar", "Drums"], "description": "a rock song.",
        "instrument": "Guitar", "duration": 99, "sample_rate": 1}))
    (tmp_path / "meta.txt").write_text("ignored: the json has a description")
    write_wav(tmp_path / "badjson.wav", notes(0.5, SR, [62], seed=6), SR)
    (tmp_path / "badjson.json").write_text("{not json")
    (tmp_path / "badjson.txt").write_text("fallback description")
    return tmp_path


def test_load_music_metadata_prefers_json_then_txt(folder: Path) -> None:
    assert load_music_metadata(folder / "track0.wav") == {"description": "calm piano melody"}
    assert load_music_metadata(folder / "meta.wav")["description"] == "a rock song."
    assert load_music_metadata(folder / "badjson.wav") == {"description": "fallback description"}
    assert load_music_metadata(folder / "nothing.wav") == {}


def test_music_dataset_items_carry_metadata_and_self_wav(folder: Path) -> None:
    ds = MusicDataset(find_audio_files(folder), segment_duration=0.5, sample_rate=SR, channels=1,
                      num_samples=4, permutation_on_files=True)
    items = {Path(info.meta.path).stem: (wav, info) for wav, info in (ds[i] for i in range(4))}
    assert set(items) == {"track0", "track1", "meta", "badjson"}
    wav, info = items["meta"]
    assert isinstance(info, MusicInfo)
    assert (info.title, info.artist, info.key, info.bpm, info.genre) == ("Song", "Someone", "c major", 120.0, "rock")
    assert info.moods == ["happy", "energetic"] and info.keywords == ["guitar", "drums"]
    assert info.sample_rate == SR and info.meta.duration == pytest.approx(0.5)  # file facts win over the json
    assert isinstance(info.self_wav, WavCondition)
    assert torch.equal(info.self_wav.wav, wav[None]) and info.self_wav.length.tolist() == [info.n_frames]
    assert info.self_wav.sample_rate == [SR] and info.self_wav.path == [info.meta.path]
    attrs = info.to_condition_attributes()
    assert isinstance(attrs, ConditioningAttributes)
    assert attrs.text["description"] == "a rock song." and attrs.text["moods"] == "happy energetic"
    assert attrs.text["bpm"] == "120.0" and attrs.text["name"] is None
    assert set(attrs.text) == {"title", "artist", "key", "bpm", "genre", "moods", "keywords", "description",
                               "name", "instrument"}
    assert list(attrs.wav) == ["self_wav"]
    assert items["track1"][1].to_condition_attributes().text["description"] == "upbeat synth pop"
    assert items["badjson"][1].description == "fallback description"


def test_collate_pads_and_keeps_infos(folder: Path) -> None:
    ds = MusicDataset(find_audio_files(folder), segment_duration=0.5, sample_rate=SR, channels=1, num_samples=3)
    wav, infos = ds.collater([ds[i] for i in range(3)])
    assert wav.shape == (3, 1, SR // 2) and len(infos) == 3
    assert all(isinstance(info, MusicInfo) and info.total_frames == SR // 2 for info in infos)


def test_info_fields_required(folder: Path, caplog) -> None:
    meta = [m for m in find_audio_files(folder) if Path(m.path).stem == "track0"]
    ds = MusicDataset(meta, segment_duration=0.5, sample_rate=SR, channels=1, num_samples=1,
                      info_fields_required=True)
    _, info = ds[0]
    assert info.description is None and "missing the required field 'title'" in caplog.text
    with pytest.raises(KeyError, match="missing the required field 'title'"):
        MusicInfo.from_dict({"description": "x"}, fields_required=True)


def _info(**kwargs) -> MusicInfo:
    return MusicInfo.from_dict(dict(meta=None, seek_time=0.0, n_frames=1, total_frames=1, sample_rate=SR,
                                    channels=1, **kwargs))


def test_augment_description_merges_metadata() -> None:
    info = _info(description="Nice tune.", key="A minor", bpm=90, genre="jazz", moods=["sad", "slow"])
    assert augment_music_info_description(info).description == "Nice tune."
    rng = torch.Generator().manual_seed(0)
    merged = augment_music_info_description(info, merge_text_p=1.0, rng=rng).description
    assert merged.startswith("Nice tune. ")
    pairs = sorted(merged[len("Nice tune. "):].split(". "))
    assert pairs == ["bpm: 90", "genre: jazz", "key: a minor", "moods: sad, slow"]
    only_meta = augment_music_info_description(info, merge_text_p=1.0, drop_desc_p=1.0, drop_other_p=1.0)
    assert only_meta.description is None
    no_desc = augment_music_info_description(_info(genre="pop"), merge_text_p=1.0)
    assert no_desc.description == "genre: pop"


def test_merge_text_is_deterministic_per_item(folder: Path) -> None:
    meta = find_audio_files(folder)
    kwargs = dict(segment_duration=0.5, sample_rate=SR, channels=1, num_samples=6, merge_text_p=1.0,
                  drop_other_p=0.5)
    a = MusicDataset(meta, **kwargs)
    b = MusicDataset(meta, **kwargs)
    assert [a[i][1].description for i in range(6)] == [b[i][1].description for i in reversed(range(6))][::-1]


def test_music_dataset_argument_errors(folder: Path) -> None:
    with pytest.raises(ValueError, match=r"merge_text_p must be a probability in \[0, 1\], got 2"):
        MusicDataset(find_audio_files(folder), merge_text_p=2)
    with pytest.raises(ValueError, match="Paraphrasing is not supported"):
        MusicDataset(find_audio_files(folder), paraphrase_p=0.5)
