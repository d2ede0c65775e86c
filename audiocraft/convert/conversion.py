"""Convert MusicGen checkpoints between the Audiocraft format and Hugging Face transformers' format.

- Audiocraft: a folder (or hub id) with ``state_dict.bin`` (LM) and ``compression_state_dict.bin`` (EnCodec),
  each ``{'best_state', 'xp.cfg', 'version', 'exported'}``; the T5 text encoder is referred to by name
  (``conditioners.description.t5.name``) and loaded from the hub.
- transformers: a ``save_pretrained`` folder of ``MusicgenForConditionalGeneration`` (text models) or
  ``MusicgenMelodyForConditionalGeneration`` (melody models): ``config.json`` (``text_encoder`` /
  ``audio_encoder`` / ``decoder``), ``generation_config.json``, ``model.safetensors`` (T5 encoder + EnCodec +
  decoder) and the T5 tokenizer / processor files.

Weights are moved, never recomputed: converting there and back gives bit-identical state dicts. Text and
melody models convert (any size), mono or stereo (transformers' ``audio_channels=2``: the same interleaved left /
right codebooks, decoded by the same mono EnCodec); options transformers' MusicGen cannot express raise
:class:`ConversionError` naming them. Outputs are built in a temporary folder next to ``out_dir`` and moved in
place file by file (``os.replace``), so a failed conversion leaves no partial file behind.

    >>> to_transformers('facebook/musicgen-small', 'musicgen-small-hf')     # doctest: +SKIP
    >>> from_transformers('musicgen-small-hf', 'musicgen-small-audiocraft')  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
import shutil
import tempfile
import typing as tp

import omegaconf
from omegaconf import OmegaConf
import torch

from . import configs as cfgs
from . import weights
from .weights import ConversionError

__all__ = ["ConversionError", "to_transformers", "from_transformers"]

PathLike = tp.Union[str, "os.PathLike[str]"]
LM_FILENAME = "state_dict.bin"
COMPRESSION_FILENAME = "compression_state_dict.bin"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
# Older transformers keep MusicGen's sinusoidal positions as weights (until 4.51) and EnCodec's old weight_norm
# names (until 4.44): their classes expect other state dicts. The rest of the package runs on 4.40.
MIN_TRANSFORMERS = "4.52"


# ---------------------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _quiet_transformers() -> tp.Iterator[None]:
    """transformers logs about unused T5 decoder weights and generation flags; keep conversions quiet."""
    from transformers.utils import logging as hf_logging
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def _transformers_version() -> str:
    from importlib import metadata
    return metadata.version("transformers")


def _check_transformers() -> None:
    """Refuse a transformers older than :data:`MIN_TRANSFORMERS`, saying which is installed."""
    from packaging.version import Version
    installed = _transformers_version()
    if Version(installed) < Version(MIN_TRANSFORMERS):
        raise ConversionError(f"converting to / from transformers needs transformers >= {MIN_TRANSFORMERS}, "
                              f"installed: {installed} (pip install -U 'transformers>={MIN_TRANSFORMERS}')")


def _check_output(out_dir: PathLike, overwrite: bool, sources: tp.Sequence[PathLike]) -> Path:
    """``out_dir`` as a Path, after checking it can receive the converted files."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConversionError(f"output '{out}' exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConversionError(f"output folder '{out}' is not empty (use --overwrite / overwrite=True to replace "
                              "its files)")
    for source in sources:
        if os.path.isdir(source) and out.resolve() == Path(source).resolve():
            raise ConversionError(f"output folder '{out}' is the input folder; choose another one")
    return out


@contextlib.contextmanager
def _staging(out_dir: PathLike, overwrite: bool, sources: tp.Sequence[PathLike]) -> tp.Iterator[Path]:
    """A temporary folder next to ``out_dir`` whose files are moved into ``out_dir`` on success."""
    out = _check_output(out_dir, overwrite, sources)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        out.mkdir(exist_ok=True)
        for item in sorted(tmp.iterdir()):
            item.chmod(0o644)  # temporary files may be private; the model folder is not
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _xp_cfg(pkg: tp.Mapping[str, tp.Any], what: str) -> omegaconf.DictConfig:
    if not isinstance(pkg, dict) or "best_state" not in pkg or "xp.cfg" not in pkg:
        keys = sorted(map(str, pkg)) if isinstance(pkg, dict) else type(pkg).__name__
        raise ConversionError(f"{what} is not an exported Audiocraft checkpoint (needs 'best_state' and 'xp.cfg', "
                              f"found {keys})")
    try:
        cfg = OmegaConf.create(pkg["xp.cfg"])
    except Exception as err:
        raise ConversionError(f"{what}: 'xp.cfg' is not a valid config ({type(err).__name__}: {err})") from err
    if not isinstance(cfg, omegaconf.DictConfig):
        raise ConversionError(f"{what}: 'xp.cfg' must describe a mapping")
    return cfg


def _looks_like_transformers(source: PathLike) -> bool:
    return os.path.isdir(source) and (Path(source) / "config.json").is_file() and \
        not (Path(source) / LM_FILENAME).is_file()


def _load_audiocraft(source: PathLike) -> tp.Tuple[tp.Dict[str, tp.Any], tp.Dict[str, tp.Any]]:
    """The LM and compression packages of an Audiocraft folder / hub id."""
    from ..models.loaders import load_compression_model_ckpt, load_lm_model_ckpt
    if _looks_like_transformers(source):
        raise ConversionError(f"'{source}' holds a transformers model (config.json), not an Audiocraft checkpoint; "
                              "use from-transformers")
    name = source if isinstance(source, str) else str(source)
    return load_lm_model_ckpt(name), load_compression_model_ckpt(name)


# ---------------------------------------------------------------------------------------------- to transformers
def _codec_for_transformers(pkg: tp.Mapping[str, tp.Any]) -> tp.Tuple[tp.Dict[str, tp.Any], weights.StateDict]:
    """(EncodecConfig kwargs with 'n_q', transformers EnCodec weights) of a compression package."""
    if "pretrained" in pkg:  # a reference, resolved as CompressionModel.get_pretrained does
        name = str(pkg["pretrained"])
        if os.path.exists(name):  # an Audiocraft compression checkpoint (file or folder)
            from ..models.loaders import load_compression_model_ckpt
            referenced = load_compression_model_ckpt(name)
            if "pretrained" in referenced:
                raise ConversionError(f"compression checkpoint '{name}' is itself a reference; give the real one")
            return _codec_for_transformers(referenced)
        from transformers import EncodecModel  # a transformers EnCodec hub id, e.g. 'facebook/encodec_32khz'
        try:
            model = EncodecModel.from_pretrained(name)
        except OSError as err:
            raise ConversionError(f"the compression model {name!r} the checkpoint refers to cannot be loaded as a "
                                  f"transformers EncodecModel: {err}") from err
        kwargs = cfgs.encodec_kwargs_from_transformers(model.config.to_dict())
        return kwargs, dict(model.state_dict())
    cfg = _xp_cfg(dict(pkg), f"'{COMPRESSION_FILENAME}'")
    return cfgs.encodec_kwargs_from_cfg(cfg), weights.codec_to_transformers(pkg["best_state"])


def _t5_for_transformers(spec: cfgs.LMSpec, finetuned: weights.StateDict) -> tp.Tuple[tp.Any, weights.StateDict]:
    from transformers import AutoConfig, T5EncoderModel
    config = AutoConfig.from_pretrained(spec.t5_name)
    if spec.t5_finetune:
        if not finetuned:
            raise ConversionError("conditioners.description.t5.finetune is true but the checkpoint holds no T5 "
                                  "weights (condition_provider.conditioners.description.t5.*)")
        state = dict(finetuned)
    else:
        if finetuned:
            raise ConversionError("the checkpoint holds T5 weights but conditioners.description.t5.finetune is false")
        state = dict(T5EncoderModel.from_pretrained(spec.t5_name).state_dict())
    if "encoder.embed_tokens.weight" not in state and "shared.weight" in state:
        state["encoder.embed_tokens.weight"] = state["shared.weight"]
    if int(config.d_model) == spec.dim:
        raise ConversionError(f"transformer_lm.dim={spec.dim} equals the T5 width: transformers' MusicGen then has "
                              "no enc_to_dec_proj, but Audiocraft always projects the text encoder output")
    return config, state


def _composite_config(cls: tp.Any, text_encoder: tp.Any, audio_encoder: tp.Any, decoder: tp.Any,
                      **kwargs: tp.Any) -> tp.Any:
    """A MusicGen config from its three sub-configs. Passed as dicts, the one form transformers 4.x
    (``from_sub_models_config``) and 5.x (which removed that method) both accept."""
    return cls(text_encoder=text_encoder.to_dict(), audio_encoder=audio_encoder.to_dict(), decoder=decoder.to_dict(),
               **kwargs)


def _write_processor(folder: Path, spec: cfgs.LMSpec, t5_name: str, sample_rate: int, channels: int) -> None:
    from transformers import EncodecFeatureExtractor, MusicgenProcessor, T5Tokenizer
    tokenizer = T5Tokenizer.from_pretrained(t5_name)
    if spec.melody is None:
        extractor = EncodecFeatureExtractor(feature_size=channels, sampling_rate=sample_rate, padding_value=0.0)
        MusicgenProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
        return
    # MusicgenMelodyFeatureExtractor needs torchaudio to be built: write its config directly.
    tokenizer.save_pretrained(folder)
    n_fft = 2 ** spec.melody.radix2_exp
    config = {"feature_extractor_type": "MusicgenMelodyFeatureExtractor", "processor_class": "MusicgenMelodyProcessor",
              "feature_size": spec.melody.n_chroma, "num_chroma": spec.melody.n_chroma, "sampling_rate": sample_rate,
              "n_fft": n_fft, "hop_length": n_fft // 4, "chunk_length": int(math.ceil(spec.segment_duration)),
              "padding_value": 0.0, "padding_side": "right", "return_attention_mask": False, "stem_indices": [3, 2]}
    (folder / "preprocessor_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def to_transformers(source: PathLike, out_dir: PathLike, overwrite: bool = False) -> Path:
    """Convert an Audiocraft MusicGen (folder or hub id) to a transformers ``save_pretrained`` folder.

    Text models become ``MusicgenForConditionalGeneration``, melody models
    ``MusicgenMelodyForConditionalGeneration``; the T5 encoder weights and tokenizer come from the model the
    text conditioner names (``t5-base``, ...), loaded with ``from_pretrained`` (hub cache honoured).

    Returns:
        the output folder.
    Raises:
        ConversionError: unsupported model or options, inconsistent checkpoint, or ``out_dir`` not empty.
        FileNotFoundError, audiocraft.utils.checkpoint_io.CheckpointError: unreadable checkpoint.
    """
    _check_transformers()
    _check_output(out_dir, overwrite, [source])
    lm_pkg, codec_pkg = _load_audiocraft(source)
    spec = cfgs.lm_spec_from_cfg(_xp_cfg(lm_pkg, f"'{LM_FILENAME}'"))
    from transformers import (EncodecConfig, GenerationConfig, MusicgenConfig, MusicgenDecoderConfig,
                              MusicgenForConditionalGeneration, MusicgenMelodyConfig, MusicgenMelodyDecoderConfig,
                              MusicgenMelodyForConditionalGeneration)
    codec_kwargs, codec_state = _codec_for_transformers(codec_pkg)
    codec_n_q = codec_kwargs.pop("n_q")
    per_channel = spec.n_q // spec.audio_channels  # a stereo LM's codebooks: both channels', interleaved
    if codec_kwargs["codebook_size"] != spec.card or codec_n_q < per_channel:
        raise ConversionError(f"the LM predicts {per_channel} x {spec.card} codes per channel but the codec has "
                              f"{codec_n_q} x {codec_kwargs['codebook_size']}")
    if codec_kwargs["audio_channels"] != 1:
        raise ConversionError(f"the codec has {codec_kwargs['audio_channels']} channels: only mono codecs convert "
                              "(stereo models encode each channel with a mono codec)")
    lm_state, t5_finetuned = weights.lm_to_transformers(lm_pkg["best_state"])

    with _quiet_transformers():
        t5_config, t5_state = _t5_for_transformers(spec, t5_finetuned)
        frame_rate = codec_kwargs["sampling_rate"] / math.prod(codec_kwargs["upsampling_ratios"])
        audio_config = EncodecConfig(target_bandwidths=cfgs.target_bandwidths(
            [per_channel, codec_n_q], frame_rate, spec.card), **codec_kwargs)
        if audio_config.num_quantizers != codec_n_q:
            raise ConversionError(f"cannot express {codec_n_q} codebooks as a transformers EnCodec bandwidth")
        decoder_kwargs: tp.Dict[str, tp.Any] = dict(
            vocab_size=spec.card, hidden_size=spec.dim, num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads, ffn_dim=spec.ffn_dim, num_codebooks=spec.n_q,
            activation_function=spec.activation, dropout=spec.dropout, attention_dropout=0.0,
            activation_dropout=0.0, pad_token_id=spec.card, bos_token_id=spec.card,
            decoder_start_token_id=spec.card, audio_channels=spec.audio_channels)
        model_cls: tp.Any
        if spec.melody is None:
            config: tp.Any = _composite_config(MusicgenConfig, t5_config, audio_config,
                                               MusicgenDecoderConfig(**decoder_kwargs))
            model_cls = MusicgenForConditionalGeneration
        else:
            config = _composite_config(MusicgenMelodyConfig, t5_config, audio_config,
                                       MusicgenMelodyDecoderConfig(**decoder_kwargs),
                                       num_chroma=spec.melody.n_chroma, chroma_length=spec.melody.chroma_len)
            model_cls = MusicgenMelodyForConditionalGeneration
        state = {**lm_state, **{weights.AUDIO_PREFIX + k: v for k, v in codec_state.items()},
                 **{weights.TEXT_PREFIX + k: v for k, v in t5_state.items()}}
        with torch.device("meta"):
            model = model_cls(config)
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        shapes = sorted(k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape))
        if missing or unexpected or shapes:
            few = weights.few_names
            raise ConversionError(f"weights do not fit {model_cls.__name__}: missing {few(missing)}; "
                                  f"unexpected {few(unexpected)}; wrong shapes {few(shapes)}")
        model.load_state_dict(state, strict=True, assign=True)
        model.generation_config = GenerationConfig(
            decoder_start_token_id=spec.card, pad_token_id=spec.card, bos_token_id=spec.card, do_sample=True,
            top_k=250, guidance_scale=spec.cfg_coef, max_length=int(round(spec.segment_duration * frame_rate)))
        with _staging(out_dir, overwrite, [source]) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            _write_processor(tmp, spec, spec.t5_name, codec_kwargs["sampling_rate"], spec.audio_channels)
    return Path(out_dir)


# ---------------------------------------------------------------------------------------------- from transformers
def _transformers_folder(source: PathLike) -> Path:
    if os.path.isdir(source):
        if not (Path(source) / "config.json").is_file():
            hint = "; it holds an Audiocraft checkpoint: use to-transformers" \
                if (Path(source) / LM_FILENAME).is_file() else ""
            raise ConversionError(f"'{source}' has no config.json: not a transformers model folder{hint}")
        return Path(source)
    name = str(source)
    looks_local = isinstance(source, os.PathLike) or name.startswith(("/", "./", "../", "~"))
    if os.path.exists(name) or looks_local or name.count("/") > 1:
        raise FileNotFoundError(f"no such transformers model folder: '{name}'")
    import huggingface_hub
    from huggingface_hub import errors
    patterns = ["*.json", "*.safetensors", "pytorch_model*.bin", "spiece.model"]
    try:
        downloaded = huggingface_hub.snapshot_download(repo_id=name, allow_patterns=patterns)
    except (errors.HFValidationError, errors.LocalEntryNotFoundError, errors.RepositoryNotFoundError,
            errors.RevisionNotFoundError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(f"'{name}' is neither a local folder nor a reachable hub model ({first})") from err
    return _transformers_folder(downloaded)


def _read_state(folder: Path) -> weights.StateDict:
    """All tensors of a transformers folder (single or sharded safetensors, or pytorch_model.bin)."""
    from safetensors.torch import load_file
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            break
    else:
        files = [name for name in ("model.safetensors", "pytorch_model.bin") if (folder / name).is_file()][:1]
    if not files:
        raise ConversionError(f"'{folder}' holds no weights (looked for {', '.join(_WEIGHT_FILES)})")
    state: weights.StateDict = {}
    for name in files:
        path = folder / name
        if name.endswith(".safetensors"):
            state.update(load_file(str(path)))
        else:
            from ..utils.checkpoint_io import safe_torch_load
            state.update(safe_torch_load(path))
    return state


def _read_json(path: Path) -> tp.Dict[str, tp.Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _feature_extractor_config(folder: Path) -> tp.Dict[str, tp.Any]:
    """The feature extractor's settings: ``preprocessor_config.json`` (transformers 4.x, and ours), else the
    ``feature_extractor`` entry of ``processor_config.json`` (where transformers 5.x saves a processor)."""
    legacy = _read_json(folder / "preprocessor_config.json")
    if legacy:
        return legacy
    nested = _read_json(folder / "processor_config.json").get("feature_extractor", {})
    return nested if isinstance(nested, dict) else {}


_OptionalCfg = tp.Optional[omegaconf.DictConfig]


def _template_cfgs(template: tp.Optional[PathLike]) -> tp.Tuple[_OptionalCfg, _OptionalCfg]:
    if template is None:
        return None, None
    lm_pkg, codec_pkg = _load_audiocraft(template)
    codec_cfg = None if "pretrained" in codec_pkg else _xp_cfg(codec_pkg, f"template '{COMPRESSION_FILENAME}'")
    return _xp_cfg(lm_pkg, f"template '{LM_FILENAME}'"), codec_cfg


def _t5_name(config: tp.Any, t5_name: tp.Optional[str]) -> str:
    from ..modules.conditioners.text import T5Conditioner
    name = t5_name or getattr(config.text_encoder, "_name_or_path", "") or ""
    if name not in T5Conditioner.MODELS:
        raise ConversionError(f"text encoder {name!r} is not one of Audiocraft's T5 models {T5Conditioner.MODELS}; "
                              "pass the one it was made from with --t5-name / t5_name")
    width = T5Conditioner.MODELS_DIMS[name]
    if int(config.text_encoder.d_model) != width:
        raise ConversionError(f"the text encoder is {config.text_encoder.d_model} wide but {name!r} is {width} wide; "
                              "pass the right --t5-name / t5_name")
    return name


def from_transformers(source: PathLike, out_dir: PathLike, overwrite: bool = False,
                      template: tp.Optional[PathLike] = None, t5_name: tp.Optional[str] = None,
                      keep_t5: bool = False) -> Path:
    """Convert a transformers MusicGen folder (or hub id) to an Audiocraft folder (``state_dict.bin`` +
    ``compression_state_dict.bin``) that ``MusicGen.get_pretrained(out_dir)`` loads.

    Args:
        source: ``save_pretrained`` folder or hub id of ``MusicgenForConditionalGeneration`` /
            ``MusicgenMelodyForConditionalGeneration``.
        out_dir: output folder (created; must be empty unless ``overwrite``).
        template: Audiocraft checkpoint (folder or hub id) whose ``xp.cfg`` files are the starting point of the
            written configs (sizes are overridden); default: a built-in official layout.
        t5_name: the T5 the text encoder is (default: the text encoder config's ``_name_or_path``).
        keep_t5: store the T5 weights in the LM (``finetune: true``) instead of referring to ``t5_name``.
    Returns:
        the output folder.
    """
    from transformers import AutoConfig
    from .. import __version__
    from ..models.builders import get_compression_model
    from ..utils.checkpoint_io import load_state_dict_checked
    _check_transformers()
    folder = _transformers_folder(source)
    _check_output(out_dir, overwrite, [folder])
    with _quiet_transformers():
        try:
            config = AutoConfig.from_pretrained(str(folder))
        except (OSError, ValueError) as err:
            raise ConversionError(f"'{folder}/config.json' is not a transformers config ({err})") from err
    if config.model_type not in ("musicgen", "musicgen_melody"):
        raise ConversionError(f"'{source}' is a {config.model_type!r} model: only 'musicgen' and 'musicgen_melody' "
                              "convert")
    generation = _read_json(folder / "generation_config.json")
    n_fft = _feature_extractor_config(folder).get("n_fft", 2 ** 14)
    radix2_exp = int(round(math.log2(n_fft)))
    name = _t5_name(config, t5_name)
    spec = cfgs.lm_spec_from_transformers(config, generation, name, keep_t5, radix2_exp)
    lm_part, codec_part, t5_part = weights.split_transformers_state(_read_state(folder))
    lm_state = weights.lm_from_transformers(lm_part)
    missing = sorted(cfgs.expected_lm_keys(spec) - set(lm_state) - {weights.CHROMA_WINDOW_KEY})
    if missing:
        raise ConversionError(f"the transformers weights lack {len(missing)} decoder tensor(s): "
                              f"{weights.few_names(missing)}")
    if spec.melody is not None:
        lm_state[weights.CHROMA_WINDOW_KEY] = torch.hann_window(2 ** spec.melody.radix2_exp, periodic=True)
    if keep_t5:
        if "encoder.embed_tokens.weight" not in t5_part and "shared.weight" in t5_part:
            t5_part["encoder.embed_tokens.weight"] = t5_part["shared.weight"]
        lm_state.update({weights.T5_KEY + k: v for k, v in t5_part.items()})
    codec_kwargs = cfgs.encodec_kwargs_from_transformers(config.audio_encoder.to_dict())
    transposed = weights.transposed_conv_layers(len(codec_kwargs["upsampling_ratios"]),
                                                codec_kwargs["num_residual_layers"])
    codec_state = weights.codec_from_transformers(codec_part, transposed)

    lm_template, codec_template = _template_cfgs(template)
    lm_yaml = OmegaConf.to_yaml(cfgs.lm_cfg(spec, lm_template))
    codec_cfg = cfgs.compression_cfg(codec_kwargs, codec_template)
    codec_yaml = OmegaConf.to_yaml(codec_cfg)
    build_cfg = codec_cfg.copy()
    build_cfg.device = "meta"
    with torch.device("meta"):
        codec_model = get_compression_model(build_cfg)
    load_state_dict_checked(codec_model, codec_state, "the converted EnCodec weights", assign=True)
    with _staging(out_dir, overwrite, [folder]) as tmp:
        outputs = [(LM_FILENAME, lm_state, lm_yaml), (COMPRESSION_FILENAME, codec_state, codec_yaml)]
        for filename, state, yaml in outputs:
            pkg = {"best_state": state, "xp.cfg": yaml, "version": __version__, "exported": True}
            torch.save(pkg, tmp / filename)
    return Path(out_dir)
