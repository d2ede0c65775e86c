"""End-to-end fine-tuning of the tiny reference `facebook/musicgen-small` on synthesised music (CPU, one process).

Every run shares the session's token cache, so each one-second track is encoded once for all tests.
"""
import json
from pathlib import Path
import shutil

import numpy as np
import pytest
import torch

from audiocraft.train import MusicGenTrainer, TrainConfig, TrainError, train
from audiocraft.train.checkpoint import load_checkpoint


def _cfg(music_folder: Path, codes_cache: Path, out: Path, **changes) -> TrainConfig:
    cfg = TrainConfig(data=str(music_folder), out=str(out), steps=4, batch_size=2, lr=3e-3, warmup=0,
                      segment_duration=1.0, num_workers=0, progress=False, log_every=1,
                      codes_cache=str(codes_cache))
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def _musicgen():
    try:
        from audiocraft.models import MusicGen
    except ImportError:
        from audiocraft.models.musicgen import MusicGen
    return MusicGen


def test_finetune_loss_decreases_and_export_loads(music_folder: Path, codes_cache: Path, tmp_path: Path) -> None:
    # A manifest with the four tracks and one missing file: the missing file is replaced and counted.
    manifest = tmp_path / "data.jsonl"
    rows = [{"path": str(p), "duration": 1.0, "sample_rate": 32000} for p in sorted(music_folder.glob("*.wav"))]
    rows.append({"path": str(tmp_path / "gone.wav"), "duration": 1.0, "sample_rate": 32000})
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    cfg = _cfg(music_folder, codes_cache, out, data=str(manifest), steps=12, batch_size=4, progress=True)
    result = train(cfg)  # condition dropout of the base model on (cfg 0.3, word dropout 0.3)
    losses = result.losses
    assert len(losses) == 12 and result.step == 12
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 1.0, losses
    assert result.failed_reads >= 1 and result.skipped_files == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13)) and log[-1]["loss"] == pytest.approx(losses[-1])
    assert {"ce_q1", "ce_q4", "lr", "grad_norm"} <= set(log[0])
    # The exported folder is the official layout and MusicGen loads it.
    pkg = torch.load(out / "state_dict.bin", weights_only=True)
    assert set(pkg) == {"best_state", "xp.cfg", "version", "exported"} and pkg["exported"] is True
    model = _musicgen().get_pretrained(str(out), device="cpu")
    trained = load_checkpoint(out / "checkpoint.th")["model"]
    loaded = model.lm.state_dict()
    assert set(trained) <= set(loaded) and all(torch.equal(loaded[k], v) for k, v in trained.items())
    base = _musicgen().get_pretrained("facebook/musicgen-small", device="cpu")
    assert not torch.equal(loaded["linears.0.weight"], base.lm.state_dict()["linears.0.weight"])
    model.set_generation_params(duration=0.2, use_sampling=False)
    wav = model.generate(["calm piano melody"])
    assert wav.shape == (1, 1, 6400) and torch.isfinite(wav).all()


def test_first_step_loss_equals_hand_computation(music_folder: Path, codes_cache: Path, tmp_path: Path) -> None:
    """The trainer's loss = the delayed-pattern cross-entropy computed by hand from the LM's predictions."""
    trainer = MusicGenTrainer(_cfg(music_folder, codes_cache, tmp_path / "run", condition_dropout=False))
    batch = next(trainer._batches())
    wav, infos = batch[0]
    with torch.no_grad():
        trainer.lm.eval()
        codes, _ = trainer.compression_model.encode(wav)
        from audiocraft.modules.conditioners import ConditioningAttributes
        attrs = [ConditioningAttributes(text={"description": info.description}) for info in infos]
        out = trainer.lm.compute_predictions(codes, attrs)
    assert [info.description for info in infos] == [
        (music_folder / f"{Path(info.meta.path).stem}.txt").read_text().strip() for info in infos]
    logits, mask = out.logits.double().numpy(), out.mask.numpy()
    per_codebook = []
    for k in range(codes.shape[1]):
        rows = logits[:, k][mask[:, k]]
        targets = codes[:, k].numpy()[mask[:, k]]
        lse = np.log(np.exp(rows - rows.max(-1, keepdims=True)).sum(-1)) + rows.max(-1)
        per_codebook.append(np.mean(lse - rows[np.arange(len(rows)), targets]))
    trainer.model.train()
    metrics = trainer.run_step(batch)
    assert abs(metrics["loss"] - float(np.mean(per_codebook))) < 1e-5
    assert metrics["ce_q2"] == pytest.approx(per_codebook[1], abs=1e-5)


class _Stop(Exception):
    pass


def test_resume_reaches_the_same_parameters(music_folder: Path, codes_cache: Path, tmp_path: Path) -> None:
    """6 steps in one go == 3 steps, interrupted, then resumed to 6 (mid-epoch, with condition dropout on)."""
    full = _cfg(music_folder, codes_cache, tmp_path / "full", steps=6, save_every=3, export=False)
    train(full)

    def stop_at_3(step: int, loss: float) -> None:
        if step == 3:
            raise _Stop()

    part = _cfg(music_folder, codes_cache, tmp_path / "part", steps=6, save_every=3, export=False)
    with pytest.raises(_Stop):
        train(part, on_step=stop_at_3)
    assert load_checkpoint(tmp_path / "part" / "checkpoint.th")["step"] == 3
    with pytest.raises(TrainError, match="exists: pass --resume"):
        MusicGenTrainer(part)
    part.resume = True
    resumed = train(part)
    assert resumed.step == 6 and len(resumed.losses) == 3
    a = load_checkpoint(tmp_path / "full" / "checkpoint.th")
    b = load_checkpoint(tmp_path / "part" / "checkpoint.th")
    assert (a["step"], a["epoch"], a["epoch_samples"]) == (b["step"], b["epoch"], b["epoch_samples"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for pid, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][pid]["exp_avg_sq"])
    # A finished run can be extended: the schedule follows the new number of steps.
    full.resume, full.steps = True, 8
    extended = train(full)
    assert extended.step == 8 and len(extended.losses) == 2
    assert load_checkpoint(tmp_path / "full" / "checkpoint.th")["scheduler"]["last_epoch"] == 8
    # Options that change what is trained cannot be resumed.
    part.lora = True
    with pytest.raises(TrainError, match=r"options \['lora'\] differ"):
        MusicGenTrainer(part)


def test_lora_ema_export_merges_adapters(music_folder: Path, codes_cache: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(music_folder, data)
    (data / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    cfg = _cfg(data, codes_cache, tmp_path / "lora", lora=True, lora_rank=4, ema=True, ema_decay=0.5, steps=3)
    trainer = MusicGenTrainer(cfg)
    result = trainer.train()
    assert result.skipped_files == 1
    trained = {n for n in trainer.trainable}
    assert trained and all(".lora_A" in n or ".lora_B" in n for n in trained)
    pkg = torch.load(tmp_path / "lora" / "state_dict.bin", weights_only=True)["best_state"]
    base = torch.load(_base_file(), weights_only=True)["best_state"]
    assert set(pkg) == set(base)
    changed = {k for k in base if not torch.equal(pkg[k], base[k])}
    assert changed == {f"transformer.layers.{i}.{name}" for i in range(2) for name in (
        "self_attn.in_proj_weight", "self_attn.out_proj.weight", "cross_attention.in_proj_weight",
        "cross_attention.out_proj.weight", "linear1.weight", "linear2.weight")}
    key = "transformer.layers.1.linear2.weight"
    prefix = "transformer.layers.1.parametrizations.linear2.weight.0."
    shadow = trainer.ema.shadow
    expected = base[key] + (shadow["transformer.layers.1.linear2.parametrizations.weight.0.lora_B"]
                            @ shadow["transformer.layers.1.linear2.parametrizations.weight.0.lora_A"]) * (16.0 / 4)
    assert prefix  # naming of parametrized weights: module path, then parametrizations.<weight>
    assert torch.allclose(pkg[key], expected, atol=1e-6)


def _base_file() -> Path:
    from huggingface_hub import hf_hub_download
    return Path(hf_hub_download("facebook/musicgen-small", "state_dict.bin"))


def test_bad_data_is_one_clear_error(tmp_path: Path, codes_cache: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "bad.wav").write_bytes(b"nope")
    cfg = _cfg(tmp_path / "empty", codes_cache, tmp_path / "out")
    with pytest.raises(TrainError, match=r"No readable audio file in .* \(1 unreadable file\(s\) skipped\)"):
        MusicGenTrainer(cfg)
    cfg.data = str(tmp_path / "missing")
    with pytest.raises(TrainError, match="is neither a folder of audio files nor a JSONL manifest"):
        MusicGenTrainer(cfg)


def test_melody_model_trains_on_its_own_segments(music_folder: Path, codes_cache: Path, tmp_path: Path) -> None:
    """The melody model is conditioned on the segment itself (``self_wav``) and its export generates with chroma."""
    cfg = _cfg(music_folder, codes_cache, tmp_path / "melody", base="facebook/musicgen-melody", steps=2)
    trainer = MusicGenTrainer(cfg)
    wav, infos = next(trainer._batches())[0]
    attrs = trainer._attributes(wav, infos)
    assert [list(a.text) for a in attrs] == [["description"]] * 2
    assert all(torch.equal(a.wav["self_wav"].wav, wav[i:i + 1]) for i, a in enumerate(attrs))
    with pytest.warns(UserWarning, match="demucs is not installed"):
        result = trainer.train()
    assert result.step == 2 and all(np.isfinite(result.losses))
    model = _musicgen().get_pretrained(str(tmp_path / "melody"), device="cpu")
    model.set_generation_params(duration=0.2, use_sampling=False)
    with pytest.warns(UserWarning, match="demucs is not installed"):
        out = model.generate_with_chroma(["calm piano melody"], wav[:1], 32000)
    assert out.shape == (1, 1, 6400)


def test_stereo_model_finetunes_on_stereo_files(codes_cache: Path, tmp_path: Path) -> None:
    """A stereo base reads the files in stereo, encodes each channel with the mono codec (codes interleaved as its
    LM predicts them), trains, and exports a folder that generates stereo."""
    from audiocraft.models.loaders import load_compression_model
    from .synth import notes, write_wav

    folder = tmp_path / "stereo_music"
    for i in range(2):
        left = notes(1.0, 32000, [50 + 3 * i, 55, 59, 62], seed=i)[0]
        right = notes(1.0, 32000, [62 + 3 * i, 57, 53, 50], seed=10 + i)[0]
        write_wav(folder / f"track{i}.wav", np.stack([left, right]), 32000)
        (folder / f"track{i}.txt").write_text("wide stereo pads\n")
    write_wav(folder / "mono.wav", notes(1.0, 32000, [60, 64, 67, 72], seed=5), 32000)  # played on both sides
    (folder / "mono.txt").write_text("centred piano\n")
    cfg = _cfg(folder, codes_cache, tmp_path / "stereo", base="facebook/musicgen-stereo-small", steps=3,
               batch_size=3)
    trainer = MusicGenTrainer(cfg)
    assert trainer.compression_model.channels == 2 and trainer.compression_model.num_codebooks == 8
    wav, infos = next(trainer._batches())[0]
    assert wav.shape[:2] == (3, 2)
    with torch.no_grad():
        codes, _ = trainer.compression_model.encode(wav)
        left = load_compression_model("facebook/musicgen-stereo-small").encode(wav[:, :1])[0]
    assert codes.shape[1] == 8 and torch.equal(codes[:, 0::2], left)
    result = trainer.train()
    assert result.step == 3 and all(np.isfinite(result.losses))
    model = _musicgen().get_pretrained(str(tmp_path / "stereo"), device="cpu")
    base = _musicgen().get_pretrained("facebook/musicgen-stereo-small", device="cpu")
    assert not torch.equal(model.lm.state_dict()["linears.1.weight"], base.lm.state_dict()["linears.1.weight"])
    model.set_generation_params(duration=0.2, use_sampling=False)
    assert model.generate(["wide stereo pads"]).shape == (1, 2, 6400)
