"""Distributed training with torchrun (2 CPU processes, gloo): DDP and FSDP against one-process training.

Both launches happen in one torchrun call (see ``dist_runs.py``): each run is ``-m audiocraft.train ARGS``.
"""
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest
import torch

from audiocraft.train import TrainConfig, train
from audiocraft.train.checkpoint import load_checkpoint

from .synth import make_music_folder

REPO = Path(__file__).resolve().parents[2]


def _args(music_folder: Path, codes_cache: Path, out: Path, steps: int = 3) -> list:
    return ["--data", str(music_folder), "--out", str(out), "--steps", str(steps), "--batch-size", "4", "--lr", "1e-3",
            "--warmup", "0", "--segment-duration", "1.0", "--no-condition-dropout", "--num-workers", "0",
            "--no-progress", "--codes-cache", str(codes_cache), "--device", "cpu", "--seed", "7"]


@pytest.fixture(scope="module")
def runs(codes_cache: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    # One description for every track: MusicGen's cross-attention sees the T5 padding of the batch (no key
    # padding mask, as in Audiocraft), so texts of different token lengths would make a batch of 4 and two
    # batches of 2 differ by design. With one text the only difference left is the gradient all-reduce.
    music_folder = root / "music"
    make_music_folder(music_folder, count=4, seconds=1.0, sample_rate=32000, descriptions=["calm piano melody"])
    # Reference: one process, the same global batch (and the same data order, seeds and token cache).
    train(TrainConfig(data=str(music_folder), out=str(root / "single"), steps=3, batch_size=4, lr=1e-3, warmup=0,
                      segment_duration=1.0, condition_dropout=False, num_workers=0, progress=False,
                      codes_cache=str(codes_cache), device="cpu", seed=7))
    spec = root / "runs.json"
    train(TrainConfig(data=str(music_folder), out=str(root / "single_lora"), steps=3, batch_size=4, lr=1e-2,
                      warmup=0, segment_duration=1.0, condition_dropout=False, num_workers=0, progress=False,
                      codes_cache=str(codes_cache), device="cpu", seed=7, lora=True, lora_rank=2))
    # A one-process checkpoint resumed by two processes (and, for reference, by one).
    shutil.copytree(root / "single", root / "resumed_by_2")
    shutil.copytree(root / "single", root / "resumed_by_1")
    train(TrainConfig(data=str(music_folder), out=str(root / "resumed_by_1"), steps=4, batch_size=4, lr=1e-3,
                      warmup=0, segment_duration=1.0, condition_dropout=False, num_workers=0, progress=False,
                      codes_cache=str(codes_cache), device="cpu", seed=7, resume=True))
    lora = ["--lora", "--lora-rank", "2", "--lr", "1e-2"]
    spec.write_text(json.dumps([_args(music_folder, codes_cache, root / "ddp"),
                                _args(music_folder, codes_cache, root / "fsdp") + ["--fsdp"],
                                _args(music_folder, codes_cache, root / "fsdp_lora") + ["--fsdp", *lora],
                                _args(music_folder, codes_cache, root / "resumed_by_2", steps=4) + ["--resume"]]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(Path(__file__).with_name("dist_runs.py")), str(spec)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "EXIT_CODES [0, 0, 0, 0]" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root


@pytest.mark.parametrize("mode", ["ddp", "fsdp", "fsdp_lora"])
def test_two_processes_match_one(runs: Path, mode: str) -> None:
    summary = json.loads((runs / mode / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 3
    digests = summary["param_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both ranks hold identical parameters
    reference = "single_lora" if mode.endswith("lora") else "single"
    single = load_checkpoint(runs / reference / "checkpoint.th")["model"]
    dist = load_checkpoint(runs / mode / "checkpoint.th")["model"]
    assert set(single) == set(dist)
    # Observed: ~5e-6 (float32 reduction order, amplified by Adam's normalisation of tiny gradients); a missing
    # or wrong gradient all-reduce moves weights by ~lr = 1e-3.
    worst = max((single[k] - dist[k]).abs().max().item() for k in single)
    assert worst < 5e-5, worst
    exported = torch.load(runs / mode / "state_dict.bin", weights_only=True)["best_state"]
    base = torch.load(_base_file(), weights_only=True)["best_state"]
    if mode.endswith("lora"):  # adapters only; compare the merged exports
        assert all(".lora_" in k for k in dist)
        single_export = torch.load(runs / reference / "state_dict.bin", weights_only=True)["best_state"]
        assert max((single_export[k] - exported[k]).abs().max().item() for k in base) < 5e-5
        moved = max((exported[k] - base[k]).abs().max().item() for k in base)
    else:
        assert all(torch.equal(exported[k], dist[k]) for k in dist)
        moved = max((single[k] - base[k]).abs().max().item() for k in single)
    assert moved > 1e-3  # the comparison is not trivial: training moved the weights far more than the tolerance


def _base_file() -> Path:
    from huggingface_hub import hf_hub_download
    return Path(hf_hub_download("facebook/musicgen-small", "state_dict.bin"))


def test_one_process_checkpoint_resumes_on_two(runs: Path) -> None:
    """Checkpoints are the same whatever the parallelism: 3 steps in one process, then 1 more on two processes."""
    one = load_checkpoint(runs / "resumed_by_1" / "checkpoint.th")
    two = load_checkpoint(runs / "resumed_by_2" / "checkpoint.th")
    assert one["step"] == two["step"] == 4 and two["world_size"] == 2
    worst = max((one["model"][k] - two["model"][k]).abs().max().item() for k in one["model"])
    assert worst < 5e-5, worst
