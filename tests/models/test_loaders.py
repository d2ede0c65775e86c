import json
import os
import pickle
import re
import shutil
import sys
import types

from omegaconf import OmegaConf
import pytest
import torch
from torch import nn

import audiocraft
from audiocraft.models import loaders
from audiocraft.models.encodec import EncodecModel
from audiocraft.models.loaders import (
    _delete_param, _get_state_dict, get_audiocraft_cache_dir, load_compression_model, load_compression_model_ckpt,
    load_lm_model, load_lm_model_ckpt,
)
from audiocraft.utils import hub
from audiocraft.utils.checkpoint_io import CheckpointError

REFERENCE_DIR = os.path.join(os.path.dirname(__file__), "..", "reference")


def _snapshot(hf_cache_dir, repo):
    folder = hf_cache_dir / f"models--facebook--{repo}"
    commit = (folder / "refs" / "main").read_text().strip()
    return folder / "snapshots" / commit


def _expected_shapes(model_key):
    with open(os.path.join(REFERENCE_DIR, "golden", "state_dict_shapes.json")) as f:
        return [(k, shape, dtype) for k, shape, dtype in json.load(f)[model_key]]


def _shapes(model):
    return [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()]


@pytest.fixture
def small_package(hf_cache_dir):
    return torch.load(_snapshot(hf_cache_dir, "musicgen-small") / "compression_state_dict.bin", weights_only=True)


@pytest.fixture(autouse=True)
def _no_audiocraft_cache(monkeypatch):
    monkeypatch.delenv("AUDIOCRAFT_CACHE_DIR", raising=False)


# ---------------------------------------------------------------------------------------------- real checkpoints
@pytest.mark.parametrize("how", ["small", "melody", "folder", "file"])
def test_load_compression_model_state_dict(how, hf_cache_dir):
    source = {"small": "facebook/musicgen-small", "melody": "facebook/musicgen-melody",
              "folder": str(_snapshot(hf_cache_dir, "musicgen-small")),
              "file": _snapshot(hf_cache_dir, "musicgen-small") / "compression_state_dict.bin"}[how]
    model = load_compression_model(source, device="cpu")
    assert isinstance(model, EncodecModel) and not model.training
    key = "musicgen-melody.compression" if how == "melody" else "musicgen-small.compression"
    assert _shapes(model) == _expected_shapes(key)
    assert all(t.device.type == "cpu" for t in model.state_dict().values())


def test_loaded_tensors_equal_checkpoint(small_package):
    model = load_compression_model("facebook/musicgen-small")
    state = model.state_dict()
    for key, value in small_package["best_state"].items():
        assert torch.equal(state[key], value), key


def test_package_readers(hf_cache_dir):
    pkg = load_compression_model_ckpt("facebook/musicgen-small")
    assert {"best_state", "xp.cfg", "version", "exported"} <= set(pkg)
    assert pkg["version"] == "1.3.0"
    lm = load_lm_model_ckpt(str(_snapshot(hf_cache_dir, "musicgen-melody")))
    assert "best_state" in lm and "conditioners" in OmegaConf.create(lm["xp.cfg"])
    same = _get_state_dict(_snapshot(hf_cache_dir, "musicgen-small") / "state_dict.bin")
    assert set(same["best_state"]) == set(load_lm_model_ckpt("facebook/musicgen-small")["best_state"])


# ---------------------------------------------------------------------------------------------- finding files
def test_hub_download_arguments(monkeypatch, hf_cache_dir, tmp_path):
    import huggingface_hub
    calls = []
    real_file = _snapshot(hf_cache_dir, "musicgen-small") / "compression_state_dict.bin"

    def fake_download(**kwargs):
        calls.append(kwargs)
        return str(real_file)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    load_compression_model_ckpt("facebook/musicgen-small")
    assert calls[-1] == {"repo_id": "facebook/musicgen-small", "filename": "compression_state_dict.bin",
                         "library_name": "audiocraft", "library_version": audiocraft.__version__}
    load_compression_model_ckpt("facebook/musicgen-small", cache_dir=str(tmp_path))
    assert calls[-1]["cache_dir"] == str(tmp_path)
    monkeypatch.setenv("AUDIOCRAFT_CACHE_DIR", str(tmp_path / "env"))
    assert get_audiocraft_cache_dir() == str(tmp_path / "env")
    load_compression_model_ckpt("facebook/musicgen-small")
    assert calls[-1]["cache_dir"] == str(tmp_path / "env")


def test_url_download_into_cache(monkeypatch, hf_cache_dir, tmp_path):
    source = _snapshot(hf_cache_dir, "musicgen-small") / "compression_state_dict.bin"
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))
        shutil.copyfile(source, dst)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    monkeypatch.setenv("AUDIOCRAFT_CACHE_DIR", str(tmp_path / "cache"))
    url = "https://example.com/models/encodec-3fa2b1.bin?download=1"
    model = load_compression_model(url)
    assert isinstance(model, EncodecModel)
    assert calls == [(url, str(tmp_path / "cache" / "encodec-3fa2b1.bin"), "3fa2b1")]
    load_compression_model(url)  # second time: from the cache, no download
    assert len(calls) == 1
    pkg = load_compression_model_ckpt("http://example.com/x/plain.bin", cache_dir=str(tmp_path / "explicit"))
    assert "best_state" in pkg and calls[-1][1] == str(tmp_path / "explicit" / "plain.bin") and calls[-1][2] is None


def test_url_download_failure(monkeypatch, tmp_path):
    def failing(url, dst, hash_prefix=None, progress=True):
        raise RuntimeError("invalid hash value")
    monkeypatch.setattr(torch.hub, "download_url_to_file", failing)
    with pytest.raises(OSError, match="could not download 'https://example.com/a-12ab.bin'.*invalid hash"):
        load_compression_model("https://example.com/a-12ab.bin", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="does not end with a file name"):
        load_compression_model("https://example.com/", cache_dir=str(tmp_path))


def test_missing_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not in the local hub cache.*the hub is offline.*HF_HUB_CACHE"):
        load_compression_model("facebook/not-a-model")
    with pytest.raises(FileNotFoundError, match="neither an existing file or folder"):
        load_compression_model("not a valid id!!")
    with pytest.raises(FileNotFoundError, match="no such checkpoint file or folder"):
        load_compression_model(tmp_path / "nope.bin")
    with pytest.raises(FileNotFoundError, match="no such checkpoint file or folder"):
        load_compression_model("./nope/compression_state_dict.bin")
    with pytest.raises(FileNotFoundError, match="'compression_state_dict.bin' not found in folder"):
        load_compression_model(str(tmp_path))
    with pytest.raises(ValueError, match="filename is required"):
        _get_state_dict(str(tmp_path))
    with pytest.raises(TypeError, match="file_or_url_or_id must be a str or Path"):
        load_compression_model(123)


# ---------------------------------------------------------------------------------------------- bad files
class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer,detail", [("torch.save", "system"), ("pickle2", "system"), ("pickle4", "")])
def test_malicious_pickle_is_refused(tmp_path, writer, detail):
    marker = tmp_path / "pwned"
    path = tmp_path / "compression_state_dict.bin"
    payload = {"best_state": _RunsCode(marker), "xp.cfg": ""}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=int(writer[-1]))
    with pytest.raises(CheckpointError, match=re.escape(f"refused to load '{path}'") + ".*" + detail):
        load_compression_model(path)
    assert not marker.exists()


def test_truncated_and_non_torch_files(tmp_path, small_package):
    good = tmp_path / "good.bin"
    torch.save(small_package, good)
    data = good.read_bytes()
    for name, content in [("half.bin", data[:len(data) // 2]), ("tail.bin", data[:-40]), ("empty.bin", b""),
                          ("text.bin", b"this is not a checkpoint")]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=re.escape(f"could not read '{path}'") + ".*truncated"):
            load_compression_model(path)


def test_not_a_dict_and_missing_entries(tmp_path, small_package):
    path = tmp_path / "list.bin"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match=re.escape(f"'{path}' holds a list")):
        load_compression_model(path)
    path = tmp_path / "no_state.bin"
    torch.save({"xp.cfg": small_package["xp.cfg"]}, path)
    with pytest.raises(CheckpointError, match=r"missing \['best_state'\]"):
        load_compression_model(path)
    path = tmp_path / "no_cfg.bin"
    torch.save({"best_state": small_package["best_state"]}, path)
    with pytest.raises(CheckpointError, match=r"missing \['xp.cfg'\]"):
        load_lm_model(path)
    path = tmp_path / "bad_cfg.bin"
    torch.save({"best_state": {}, "xp.cfg": "compression_model: encodec\nencodec: {autoencoder: seanet}"}, path)
    with pytest.raises(CheckpointError, match="cannot build the compression model.*lacks 'quantizer'"):
        load_compression_model(path)


@pytest.mark.parametrize("change,message", [
    ("missing", r"1 missing key\(s\): decoder.model.15.conv.conv.bias"),
    ("unexpected", r"1 unexpected key\(s\): extra.weight"),
    ("shape", r"1 shape mismatch\(es\): quantizer.vq.layers.0._codebook.embed \[1024, 32\] \(model \[2048, 32\]\)"),
    ("not_tensor", r"1 non-tensor value\(s\): encoder.model.0.conv.conv.bias"),
])
def test_state_dict_mismatches_are_listed(tmp_path, small_package, change, message):
    state = dict(small_package["best_state"])
    if change == "missing":
        del state["decoder.model.15.conv.conv.bias"]
    elif change == "unexpected":
        state["extra.weight"] = torch.zeros(1)
    elif change == "shape":
        state["quantizer.vq.layers.0._codebook.embed"] = torch.zeros(1024, 32)
    else:
        state["encoder.model.0.conv.conv.bias"] = [0.0] * 4
    path = tmp_path / "compression_state_dict.bin"
    torch.save({**small_package, "best_state": state}, path)
    with pytest.raises(CheckpointError, match=re.escape(f"'{path}' (best_state) does not match") + ".*" + message):
        load_compression_model(path)


def test_float16_checkpoint_is_cast_to_float32(tmp_path, small_package):
    state = {k: v.half() for k, v in small_package["best_state"].items()}
    path = tmp_path / "compression_state_dict.bin"
    torch.save({**small_package, "best_state": state}, path)
    model = load_compression_model(path)
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())


def test_pretrained_entry_delegates(tmp_path):
    path = tmp_path / "compression_state_dict.bin"
    torch.save({"pretrained": "debug_compression_model"}, path)
    model = load_compression_model(str(tmp_path))
    assert isinstance(model, EncodecModel) and model.cardinality == 400 and not model.training


# ---------------------------------------------------------------------------------------------- language model
LM_CFG = """
device: cuda
dtype: float16
sample_rate: 32000
dora:
  dir: /checkpoint/${oc.env:USER}/experiments
conditioners:
  args:
    merge_text_conditions_p: 0.25
    drop_desc_p: 0.5
    keep_me: 1
  self_wav:
    model: chroma_stem
    chroma_stem:
      sample_rate: ${sample_rate}
      cache_path: /somewhere/cache
"""


class _TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(2, 3)


@pytest.fixture
def fake_lm_builder(monkeypatch):
    seen = []

    def get_lm_model(cfg, meta=False):
        seen.append(cfg)
        return _TinyLM()
    module = types.ModuleType("audiocraft.models.builders")
    module.get_lm_model = get_lm_model
    monkeypatch.setitem(sys.modules, "audiocraft.models.builders", module)
    return seen


def test_load_lm_model_applies_config_fixes(tmp_path, fake_lm_builder, monkeypatch):
    monkeypatch.delenv("USER", raising=False)
    torch.manual_seed(0)
    state = _TinyLM().state_dict()
    torch.save({"best_state": state, "xp.cfg": LM_CFG, "version": "1.3.0", "exported": True},
               tmp_path / "state_dict.bin")
    model = load_lm_model(str(tmp_path), device="cpu")
    cfg = fake_lm_builder[-1]
    assert cfg.device == "cpu" and cfg.dtype == "float32"
    assert "cache_path" not in cfg.conditioners.self_wav.chroma_stem
    assert cfg.conditioners.self_wav.chroma_stem.sample_rate == 32000
    assert set(cfg.conditioners.args) == {"keep_me"}
    assert not model.training and model.cfg is cfg
    assert torch.equal(model.proj.weight, state["proj.weight"])
    monkeypatch.setattr(_TinyLM, "to", lambda self, *args, **kwargs: self)  # no CUDA here; the config is checked
    load_lm_model(str(tmp_path), device="cuda:0")
    assert fake_lm_builder[-1].device == "cuda:0" and fake_lm_builder[-1].dtype == "float16"


def test_load_lm_model_strict(tmp_path, fake_lm_builder):
    torch.save({"best_state": {"proj.weight": torch.zeros(3, 2)}, "xp.cfg": LM_CFG}, tmp_path / "state_dict.bin")
    with pytest.raises(CheckpointError, match=r"missing key\(s\): proj.bias"):
        load_lm_model(str(tmp_path))


def test_delete_param():
    cfg = OmegaConf.create({"a": {"b": {"c": 1, "d": 2}}, "e": 3})
    OmegaConf.set_struct(cfg, True)
    _delete_param(cfg, "a.b.c")
    _delete_param(cfg, "a.x.y")  # absent: nothing happens
    _delete_param(cfg, "e.f")
    assert OmegaConf.to_container(cfg) == {"a": {"b": {"d": 2}}, "e": 3}
    assert OmegaConf.is_struct(cfg.a.b)


def test_loaders_module_does_not_import_transformers():
    assert loaders.COMPRESSION_FILENAME == "compression_state_dict.bin"
    assert loaders.LM_FILENAME == "state_dict.bin"


@pytest.fixture
def unreachable_hub(monkeypatch):
    """Offline mode off and the hub at a closed local port; counts the reachability probes."""
    import socket

    from huggingface_hub import constants
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(hub, "_HUB_REACHABLE", {})
    probes = []
    real_probe = hub._probe

    def counting_probe(url, timeout):
        probes.append(url)
        return real_probe(url, timeout)
    monkeypatch.setattr(hub, "_probe", counting_probe)
    return probes


def test_unreachable_hub_is_asked_once_and_the_cache_still_serves(unreachable_hub, tmp_path):
    """A closed port: no retries; cached files load, a missing one fails with what to do, the hub is probed once."""
    assert isinstance(load_compression_model("facebook/musicgen-small"), EncodecModel)  # from the cache
    assert "best_state" in load_lm_model_ckpt("facebook/musicgen-small")
    with pytest.raises(FileNotFoundError) as info:
        load_compression_model_ckpt("facebook/musicgen-small", cache_dir=str(tmp_path))
    message = str(info.value)
    assert "is not in the local hub cache" in message and "cannot be reached" in message
    assert "HF_HUB_OFFLINE=1" in message and "local folder" in message and "\n" not in message
    assert len(unreachable_hub) == 1


def test_reachable_hub_probe_counts_any_answer(monkeypatch):
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # answers 501 to HEAD
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert hub._probe(f"http://127.0.0.1:{server.server_address[1]}", 3.0)
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_hub_t5_comes_from_the_cache(unreachable_hub, monkeypatch):
    """T5 (loaded by transformers) is not asked of an unreachable hub either: no retries on cached files."""
    import transformers

    from audiocraft.models import MusicGen
    seen = []
    for cls in (transformers.T5Tokenizer, transformers.T5EncoderModel):
        real = cls.from_pretrained.__func__

        def spy(klass, name, *args, _real=real, **kwargs):
            seen.append((klass.__name__, kwargs.get("local_files_only")))
            return _real(klass, name, *args, **kwargs)
        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    model = MusicGen.get_pretrained("facebook/musicgen-small", device="cpu")
    assert model.sample_rate == 32000
    assert seen == [("T5Tokenizer", True), ("T5EncoderModel", True)] and len(unreachable_hub) == 1
