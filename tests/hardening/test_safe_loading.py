"""Safe loading: checkpoints never run code, and every broken checkpoint is refused with an error that names
the file and says what is wrong, through the public entry points (``MusicGen.get_pretrained`` on a local
folder, ``loaders.load_lm_model`` / ``load_compression_model``). Folders are crafted in ``tmp_path`` from the
tiny reference checkpoints."""
from __future__ import annotations

import ast
import io
import os
from pathlib import Path
import pickle
import re
import shlex
import shutil
import typing as tp
import zipfile

from omegaconf import OmegaConf
import pytest
import torch

from audiocraft.models import MusicGen
from audiocraft.models.loaders import load_compression_model, load_lm_model
from audiocraft.utils.checkpoint_io import CheckpointError, load_state_dict_checked
from tests.conftest import HF_CACHE_DIR

PACKAGE = Path(__file__).resolve().parents[2] / "audiocraft"
LM_FILE = "state_dict.bin"
COMPRESSION_FILE = "compression_state_dict.bin"


def _snapshot(repo: str) -> Path:
    folder = HF_CACHE_DIR / f"models--{repo.replace('/', '--')}"
    return folder / "snapshots" / (folder / "refs" / "main").read_text().strip()


SMALL = _snapshot("facebook/musicgen-small")


# ---------------------------------------------------------------------------------------------- helpers
def _folder(tmp_path: Path) -> Path:
    """A local copy of the tiny musicgen-small (both files)."""
    folder = tmp_path / "model"
    folder.mkdir()
    for name in (LM_FILE, COMPRESSION_FILE):
        shutil.copy(SMALL / name, folder / name)
    return folder


def _package(name: str) -> dict:
    return torch.load(SMALL / name, map_location="cpu", weights_only=True)


def _edit_cfg(folder: Path, name: str, edit: tp.Callable[[tp.Any], None]) -> Path:
    """Rewrite ``folder/name`` with its ``xp.cfg`` changed by ``edit(cfg)``."""
    pkg = _package(name)
    cfg = OmegaConf.create(pkg["xp.cfg"])
    OmegaConf.set_struct(cfg, False)
    edit(cfg)
    pkg["xp.cfg"] = OmegaConf.to_yaml(cfg)
    torch.save(pkg, folder / name)
    return folder / name


def _edit_state(folder: Path, name: str, edit: tp.Callable[[dict], None]) -> Path:
    pkg = _package(name)
    edit(pkg["best_state"])
    torch.save(pkg, folder / name)
    return folder / name


def _set(key: str, value: tp.Any) -> tp.Callable[[tp.Any], None]:
    return lambda cfg: OmegaConf.update(cfg, key, value, force_add=True)


def _delete(key: str) -> tp.Callable[[tp.Any], None]:
    def edit(cfg: tp.Any) -> None:
        *parents, last = key.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        OmegaConf.set_struct(node, False)
        del node[last]
    return edit


def _names_file(path: Path) -> str:
    return re.escape(f"'{path}'")


def _load(folder: Path, target: str) -> tp.Any:
    """Load the crafted folder the cheapest public way that reads ``target``: ``MusicGen.get_pretrained`` for
    the LM file (read first, so it fails before anything is built), ``load_compression_model`` for the codec
    (get_pretrained would build the whole LM and T5 first; a few tests below go through it end to end)."""
    if target == LM_FILE:
        return MusicGen.get_pretrained(str(folder), device="cpu")
    return load_compression_model(str(folder))


# ---------------------------------------------------------------------------------------------- torch.load use
def _calls(tree: ast.AST) -> tp.Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return _dotted(node.value) + "." + node.attr
    if isinstance(node, ast.Name):
        return node.id
    return "?"


def test_every_torch_load_in_the_package_is_weights_only():
    """Static check of the whole package: torch.load always with weights_only=True; no pickle.load(s), no
    numpy allow_pickle=True, no torch.load imported under another name."""
    checked, problems = 0, []
    for file in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        where = file.relative_to(PACKAGE.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "torch" and any(a.name == "load" for a in
                                                                                   node.names):
                problems.append(f"{where}:{node.lineno}: 'from torch import load' hides the weights_only check")
        for call in _calls(tree):
            name = _dotted(call.func)
            keywords = {kw.arg: kw.value for kw in call.keywords}
            if name in ("torch.load", "torch.serialization.load"):
                checked += 1
                value = keywords.get("weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    problems.append(f"{where}:{call.lineno}: {name} without weights_only=True")
            elif name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "joblib.load",
                          "cloudpickle.load", "torch.jit.load"):
                problems.append(f"{where}:{call.lineno}: {name} can run code from the file")
            elif name.endswith("load") and "allow_pickle" in keywords:
                value = keywords["allow_pickle"]
                if not (isinstance(value, ast.Constant) and value.value is False):
                    problems.append(f"{where}:{call.lineno}: {name}(allow_pickle=...) can run code")
    assert checked >= 3, "the scan found no torch.load call: is the package path right?"
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------- code in a pickle
class _RunsShell:
    """Unpickling this calls os.system (creates the marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


class _RunsEval:
    """Unpickling this evaluates Python code (creates the marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",)


def _write_payload(path: Path, payload: tp.Any, how: str) -> None:
    if how == "zip":
        torch.save(payload, path)
    elif how == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:  # a bare pickle, not a torch file at all
        path.write_bytes(pickle.dumps(payload, protocol=2))


@pytest.mark.parametrize("how", ["zip", "legacy", "pickle"])
@pytest.mark.parametrize("evil", [_RunsShell, _RunsEval])
@pytest.mark.parametrize("target", [LM_FILE, COMPRESSION_FILE])
def test_code_in_a_checkpoint_is_refused_and_never_runs(tmp_path, how, evil, target):
    folder = _folder(tmp_path)
    marker = tmp_path / "PWNED"
    pkg = _package(target)
    pkg["extra"] = evil(marker)  # next to perfectly valid weights
    path = folder / target
    _write_payload(path, pkg, how)

    with pytest.raises(CheckpointError) as info:
        if how == "zip":
            MusicGen.get_pretrained(str(folder), device="cpu")
        else:
            _load(folder, target)
    message = str(info.value)
    assert f"'{path}'" in message
    if how == "pickle":  # not a torch file: refused as unreadable (nothing gets unpickled)
        assert "refused to load" in message or "not a torch checkpoint" in message
    else:
        assert "refused to load" in message and "could run code" in message
    assert not marker.exists()
    loader = load_lm_model if target == LM_FILE else load_compression_model
    with pytest.raises(CheckpointError, match=_names_file(path)):
        loader(str(path))
    assert not marker.exists()


def test_the_payload_is_real(tmp_path):
    """Guard for the test above: with weights_only=False, the same file does run its code."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.bin"
    torch.save({"x": _RunsShell(marker)}, path)
    torch.load(path, weights_only=False)
    assert marker.exists()


# ---------------------------------------------------------------------------------------------- unreadable files
def _not_checkpoints(tmp_path: Path) -> tp.Dict[str, bytes]:
    good = (SMALL / LM_FILE).read_bytes()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("hello.txt", "not a torch archive")
    return {
        "empty": b"",
        "truncated-half": good[: len(good) // 2],
        "truncated-head": good[:200],
        "truncated-tail": good[:-64],
        "text": b"this is not a checkpoint\n",
        "json": b'{"best_state": {}, "xp.cfg": ""}',
        "random": bytes(range(256)) * 64,
        "wav": b"RIFF$\x00\x00\x00WAVEfmt " + bytes(32),
        "zip": archive.getvalue(),
    }


@pytest.mark.parametrize("kind", ["empty", "truncated-half", "truncated-head", "truncated-tail", "text", "json",
                                  "random", "wav", "zip"])
@pytest.mark.parametrize("target", [LM_FILE, COMPRESSION_FILE])
def test_unreadable_files(tmp_path, kind, target):
    folder = _folder(tmp_path)
    path = folder / target
    path.write_bytes(_not_checkpoints(tmp_path)[kind])
    name = _names_file(path)
    with pytest.raises(CheckpointError, match=f"(could not read {name}: the file is truncated, corrupted or not a "
                                              f"torch checkpoint|refused to load {name})"):
        _load(folder, target)


@pytest.mark.parametrize("kind", ["json", "random", "text", "wav"])
def test_garbage_is_not_called_dangerous(tmp_path, kind):
    path = tmp_path / LM_FILE
    path.write_bytes(_not_checkpoints(tmp_path)[kind])
    with pytest.raises(CheckpointError, match=_names_file(path) + ".*not a torch checkpoint"):
        load_lm_model(str(path))


def test_missing_file_in_folder(tmp_path):
    folder = _folder(tmp_path)
    (folder / COMPRESSION_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"'{COMPRESSION_FILE}' not found in folder")):
        MusicGen.get_pretrained(str(folder), device="cpu")


# ---------------------------------------------------------------------------------------------- wrong content
@pytest.mark.parametrize("target", [LM_FILE, COMPRESSION_FILE])
@pytest.mark.parametrize("content, message", [
    ([1, 2, 3], r"holds a list; an exported checkpoint is a dict"),
    (torch.zeros(3), r"holds a Tensor"),
    ({"xp.cfg": "a: 1"}, r"missing \['best_state'\]"),
    ({"best_state": {}}, r"missing \['xp.cfg'\]"),
    ({"foo": 1}, r"missing \['best_state', 'xp.cfg'\]"),
    ({"best_state": {}, "xp.cfg": 42}, r"'xp.cfg' is not a valid config"),
    ({"best_state": {}, "xp.cfg": "[1, 2]"}, r"'xp.cfg' must describe a mapping"),
    ({"best_state": {}, "xp.cfg": "a: [1, 2\nb: {"}, r"'xp.cfg' is not a valid config"),
])
def test_not_an_exported_package(tmp_path, target, content, message):
    folder = _folder(tmp_path)
    path = folder / target
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=_names_file(path) + ".*" + message):
        _load(folder, target)


@pytest.mark.parametrize("edit, message", [
    (_set("compression_model", "foo"), r"compression_model='foo' is not supported; allowed: \['encodec'\]"),
    (_set("seanet.bogus", 1), r"unknown option\(s\) \['bogus'\]"),
    (_set("seanet.ratios", "abc"), r"cannot build the compression model"),
])
def test_compression_config_errors_name_the_file(tmp_path, edit, message):
    folder = _folder(tmp_path)
    path = _edit_cfg(folder, COMPRESSION_FILE, edit)
    with pytest.raises(CheckpointError, match=_names_file(path) + ".*" + message):
        _load(folder, COMPRESSION_FILE)


def test_unknown_quantizer_is_refused(tmp_path):
    """The quantizer is named by ``encodec.quantizer`` (official configs have no root ``quantizer`` key: a root
    key of that name is an unrelated option, ignored like the rest of the training config)."""
    folder = _folder(tmp_path)
    path = _edit_cfg(folder, COMPRESSION_FILE, _set("encodec.quantizer", "foo"))
    with pytest.raises(CheckpointError, match=_names_file(path) + ".*quantizer.*'foo'"):
        load_compression_model(str(folder))


# LM config problems: each must be a CheckpointError naming the file and the offending value.
LM_CONFIG_CASES = [
    ("lm_model", _set("lm_model", "foo"), r"Unknown lm_model 'foo'"),
    ("conditioner", _set("conditioners.description.model", "foo"), r"conditioning model 'foo'"),
    ("t5-name", _set("conditioners.description.t5.name", "foo"), r"Unknown T5 model name 'foo'"),
    ("pattern", _set("codebooks_pattern.modeling", "foo"), r"Unknown codebooks pattern 'foo'"),
    ("transformer-key", _set("transformer_lm.bogus", 1), r"Unknown transformer_lm keys \['bogus'\]"),
    ("fuser-key", _set("fuser.bogus", 1), r"Unknown fuser config keys \['bogus'\]"),
    ("no-fuser", _delete("fuser"), r"cfg.fuser is missing"),
    ("activation", _set("transformer_lm.activation", "foo"), r"Unknown activation 'foo'"),
    ("heads", _set("transformer_lm.num_heads", 3), r"num_heads=3"),
    ("t5-kwarg", _set("conditioners.description.t5.bogus", 1), r"bogus"),
    ("no-n_q", _delete("transformer_lm.n_q"), r"n_q"),
    ("no-transformer_lm", _delete("transformer_lm"), r"transformer_lm"),
    ("interpolation", _set("transformer_lm.dim", "${nowhere.x}"), r"nowhere.x"),
    ("no-dataset", _delete("dataset"), r"lacks dataset.segment_duration"),
    ("segment-zero", _set("dataset.segment_duration", 0), r"dataset.segment_duration=0 must be a finite number"),
    ("segment-text", _set("dataset.segment_duration", "abc"), r"dataset.segment_duration='abc'"),
    ("segment-null", _set("dataset.segment_duration", None), r"dataset.segment_duration=None"),
    ("segment-inf", _set("dataset.segment_duration", float("inf")), r"dataset.segment_duration=inf"),
]


@pytest.mark.parametrize("case, edit, message", LM_CONFIG_CASES,
                         ids=[c[0] if isinstance(c, tuple) else c.id for c in LM_CONFIG_CASES])
def test_lm_config_errors_name_the_file(tmp_path, case, edit, message):
    folder = _folder(tmp_path)
    path = _edit_cfg(folder, LM_FILE, edit)
    with pytest.raises(CheckpointError, match=_names_file(path) + ".*" + message):
        MusicGen.get_pretrained(str(folder), device="cpu")


def test_segment_duration_required_for_generation(tmp_path):
    """load_lm_model(for_generation=True) requires dataset.segment_duration; a bare LM load does not."""
    folder = _folder(tmp_path)
    path = _edit_cfg(folder, LM_FILE, _delete("dataset"))
    with pytest.raises(CheckpointError, match=_names_file(path) + r": 'xp.cfg' lacks dataset.segment_duration"):
        load_lm_model(str(folder), for_generation=True)
    assert "dataset" not in load_lm_model(str(folder)).cfg


# ---------------------------------------------------------------------------------------------- state dicts
STATE_CASES = [
    ("missing", lambda s: s.pop("out_norm.weight"), r"1 missing key\(s\): out_norm.weight"),
    ("unexpected", lambda s: s.update({"foo.bar": torch.zeros(1)}), r"1 unexpected key\(s\): foo.bar"),
    ("shape", lambda s: s.update({"out_norm.weight": torch.zeros(3)}),
     r"1 shape mismatch\(es\): out_norm.weight \[3\] \(model \[64\]\)"),
    ("not-tensor", lambda s: s.update({"out_norm.weight": 3}), r"1 non-tensor value\(s\): out_norm.weight"),
    ("several", lambda s: (s.pop("out_norm.weight"), s.update({"a": torch.zeros(1), "b": torch.zeros(1)})),
     r"1 missing key\(s\): out_norm.weight; 2 unexpected key\(s\): a, b"),
    ("many", lambda s: [s.pop(k) for k in [k for k in s if k.startswith("transformer.")]],
     r"24 missing key\(s\): transformer.layers.0.self_attn.in_proj_weight, .*, \.\.\. \(\+16 more\)$"),
]


@pytest.mark.parametrize("case, edit, message", STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_lm_state_dict_mismatches_are_listed(tmp_path, case, edit, message):
    folder = _folder(tmp_path)
    path = _edit_state(folder, LM_FILE, edit)
    expected = _names_file(path) + r" \(best_state\) does not match the model LMModel: " + message
    with pytest.raises(CheckpointError, match=expected):
        MusicGen.get_pretrained(str(folder), device="cpu")


def _first_conv_bias(state: dict) -> str:
    return next(k for k in state if k.endswith("conv.conv.bias"))


@pytest.mark.parametrize("case, edit, message", [
    ("missing", lambda s: s.pop(_first_conv_bias(s)), r"1 missing key\(s\): encoder.model.0.conv.conv.bias"),
    ("unexpected", lambda s: s.update({"quantizer.extra": torch.zeros(1)}), r"1 unexpected key\(s\): quantizer.extra"),
    ("shape", lambda s: s.update({"quantizer.vq.layers.0._codebook.embed": torch.zeros(16, 32)}),
     r"1 shape mismatch\(es\): quantizer.vq.layers.0._codebook.embed \[16, 32\] \(model \[2048, 32\]\)"),
], ids=["missing", "unexpected", "shape"])
def test_compression_state_dict_mismatches_are_listed(tmp_path, case, edit, message):
    folder = _folder(tmp_path)
    path = _edit_state(folder, COMPRESSION_FILE, edit)
    expected = _names_file(path) + r" \(best_state\) does not match the model EncodecModel: " + message
    with pytest.raises(CheckpointError, match=expected):
        if case == "missing":  # once end to end
            MusicGen.get_pretrained(str(folder), device="cpu")
        else:
            _load(folder, COMPRESSION_FILE)


@pytest.mark.parametrize("dtype", [torch.long, torch.bool, torch.complex64])
def test_integer_tensor_for_a_float_parameter(tmp_path, dtype):
    folder = _folder(tmp_path)
    key = "decoder.model.0.conv.conv.bias"
    path = _edit_state(folder, COMPRESSION_FILE, lambda s: s.update({key: s[key].to(dtype)}))
    name = str(dtype).replace("torch.", "")
    with pytest.raises(CheckpointError, match=_names_file(path) + r".*1 dtype mismatch\(es\): " + re.escape(key)
                       + rf" {name} \(model float32\)"):
        _load(folder, COMPRESSION_FILE)


def test_integer_tensor_checked_when_copying(small_model):
    """Also with ``assign=False`` (copy into an existing model), before anything is copied."""
    lm = small_model.lm
    state = dict(lm.state_dict())
    state["out_norm.weight"] = state["out_norm.weight"].long()
    with pytest.raises(CheckpointError, match=r"test state does not match the model LMModel: 1 dtype "
                                              r"mismatch\(es\): out_norm.weight int64 \(model float32\)"):
        load_state_dict_checked(lm, state, "test state", assign=False)


def test_float64_weights_are_cast(tmp_path):
    """A float64 (or float16) checkpoint is fine: tensors become the model's float32."""
    folder = _folder(tmp_path)
    _edit_state(folder, LM_FILE, lambda s: s.update({k: v.double() for k, v in s.items() if v.is_floating_point()}))
    _edit_state(folder, COMPRESSION_FILE, lambda s: s.update({k: v.half() for k, v in s.items()
                                                              if v.is_floating_point()}))
    model = MusicGen.get_pretrained(str(folder), device="cpu")
    assert {p.dtype for p in model.lm.parameters()} == {torch.float32}
    assert {p.dtype for p in model.compression_model.parameters()} == {torch.float32}


# ---------------------------------------------------------------------------------------------- nothing half-built
def test_failed_load_changes_nothing_in_an_existing_model(small_model):
    """load_state_dict_checked checks everything before touching the model: a failing load leaves it as it was."""
    lm = small_model.lm
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    state = {k: torch.full_like(v, 7.0) if v.is_floating_point() else v for k, v in before.items()}
    state.pop("out_norm.weight")
    with pytest.raises(CheckpointError, match="missing key"):
        load_state_dict_checked(lm, state, "test state", assign=False)
    after = lm.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_good_lm_with_broken_codec_returns_nothing(tmp_path, monkeypatch):
    """get_pretrained loads the LM first: a broken compression file must still fail the whole call (no model
    object with an LM but no codec), and the same folder loads once repaired."""
    folder = _folder(tmp_path)
    (folder / COMPRESSION_FILE).write_bytes(b"broken")
    result = None
    with pytest.raises(CheckpointError):
        result = MusicGen.get_pretrained(str(folder), device="cpu")
    assert result is None
    shutil.copy(SMALL / COMPRESSION_FILE, folder / COMPRESSION_FILE)
    model = MusicGen.get_pretrained(str(folder), device="cpu")
    assert model.sample_rate == 32000


def test_crafted_folder_matches_the_hub_model(tmp_path, small_model):
    """Sanity check of the crafting helpers: an unchanged copy loads into the same weights."""
    model = MusicGen.get_pretrained(str(_folder(tmp_path)), device="cpu")
    mine, ref = model.lm.state_dict(), small_model.lm.state_dict()
    assert mine.keys() == ref.keys() and all(torch.equal(mine[k], ref[k]) for k in ref)
