"""Find and load exported Audiocraft checkpoints (``compression_state_dict.bin``, ``state_dict.bin``).

``file_or_url_or_id`` may be a local file, a local folder (holding ``filename``), an ``http(s)://`` URL
(downloaded once into the cache folder) or a Hugging Face hub id such as ``'facebook/musicgen-small'``
(``huggingface_hub.hf_hub_download``, which honours ``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE``).
The cache folder is ``cache_dir``, else ``$AUDIOCRAFT_CACHE_DIR``, else the hub's (torch hub's for URLs).

An exported package is ``{'best_state': state dict, 'xp.cfg': YAML of the training config, ...}``; every file is
read with ``torch.load(..., map_location='cpu', weights_only=True)`` and every problem raises an error that
names the file (``FileNotFoundError``, or ``audiocraft.utils.checkpoint_io.CheckpointError``, a ``ValueError``).
No partially loaded model is ever returned.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
import re
import typing as tp
from urllib.parse import urlparse

import omegaconf
from omegaconf import OmegaConf
import torch
from torch import nn

from ..utils.checkpoint_io import CheckpointError, load_state_dict_checked, safe_torch_load
from ..utils.hub import hub_reachable
from ..utils.validation import ArgumentError
from .encodec import CompressionModel

COMPRESSION_FILENAME = "compression_state_dict.bin"
LM_FILENAME = "state_dict.bin"
_HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")  # torch.hub convention: name-<sha256 prefix>.ext


def get_audiocraft_cache_dir() -> tp.Optional[str]:
    """``$AUDIOCRAFT_CACHE_DIR`` if set (where checkpoints are downloaded), else None."""
    return os.environ.get("AUDIOCRAFT_CACHE_DIR", None)


# ---------------------------------------------------------------------------------------------- finding files
def _download_url(url: str, cache_dir: tp.Optional[str]) -> Path:
    name = os.path.basename(urlparse(url).path)
    if not name:
        raise ValueError(f"file_or_url_or_id={url!r}: the URL does not end with a file name")
    folder = Path(cache_dir) if cache_dir else Path(torch.hub.get_dir()) / "checkpoints"
    target = folder / name
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    match = _HASH_REGEX.search(name)
    try:
        torch.hub.download_url_to_file(url, str(target), match.group(1) if match else None, progress=True)
    except Exception as err:  # network errors, hash mismatch
        raise OSError(f"could not download {url!r} to '{target}': {err}") from err
    return target


OFFLINE_HINT = ("To run offline, set HF_HUB_OFFLINE=1 and HF_HUB_CACHE to a hub cache that holds the model, or "
                "pass a local folder holding state_dict.bin and compression_state_dict.bin.")


def _hub_download(repo_id: str, filename: str, cache_dir: tp.Optional[str]) -> Path:
    import huggingface_hub
    from huggingface_hub import constants, errors
    from .. import __version__
    kwargs: tp.Dict[str, tp.Any] = {}
    if cache_dir is not None:
        kwargs["cache_dir"] = cache_dir  # else HF_HUB_CACHE applies
    where = cache_dir or constants.HF_HUB_CACHE
    unreachable = not constants.HF_HUB_OFFLINE and not hub_reachable()
    if unreachable:
        kwargs["local_files_only"] = True  # the cached copy if there is one, without huggingface_hub's retries
    try:
        file = huggingface_hub.hf_hub_download(repo_id=repo_id, filename=filename, library_name="audiocraft",
                                               library_version=__version__, **kwargs)
    except errors.HFValidationError as err:
        raise FileNotFoundError(f"file_or_url_or_id={repo_id!r} is neither an existing file or folder, an "
                                f"http(s) URL, nor a valid hub id ({err})") from err
    except errors.LocalEntryNotFoundError as err:
        if unreachable:
            why = f"the hub ({constants.ENDPOINT}) cannot be reached"
        elif constants.HF_HUB_OFFLINE:
            why = "the hub is offline (HF_HUB_OFFLINE=1)"
        else:
            why = f"the hub could not be reached ({_one_line(err)})"
        raise FileNotFoundError(f"'{filename}' of {repo_id!r} is not in the local hub cache ('{where}') and {why}. "
                                f"{OFFLINE_HINT}") from err
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError, errors.EntryNotFoundError) as err:
        raise FileNotFoundError(f"'{filename}' of {repo_id!r} could not be found on the hub: "
                                f"{_one_line(err)}") from err
    return Path(file)


def _one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def _resolve_file(file_or_url_or_id: tp.Union[Path, str], filename: tp.Optional[str],
                  cache_dir: tp.Optional[str]) -> Path:
    """Local path of the checkpoint named by ``file_or_url_or_id`` (downloading it if needed)."""
    if not isinstance(file_or_url_or_id, (str, Path)):
        raise TypeError(f"file_or_url_or_id must be a str or Path, got {type(file_or_url_or_id).__name__}")
    name = str(file_or_url_or_id)
    if os.path.isfile(name):
        return Path(name)
    if os.path.isdir(name):
        if filename is None:
            raise ValueError(f"filename is required when file_or_url_or_id is a folder ('{name}')")
        path = Path(name) / filename
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint '{filename}' not found in folder '{name}'")
        return path
    if name.startswith(("https://", "http://")):
        return _download_url(name, cache_dir)
    if isinstance(file_or_url_or_id, Path) or name.startswith(("/", "./", "../", "~")) or os.sep + os.sep in name:
        raise FileNotFoundError(f"no such checkpoint file or folder: '{name}'")
    if filename is None:
        raise ValueError(f"filename needs to be defined to load {name!r} from the hub")
    return _hub_download(name, filename, cache_dir)


def _load_package(file_or_url_or_id: tp.Union[Path, str], filename: tp.Optional[str],
                  cache_dir: tp.Optional[str]) -> tp.Tuple[tp.Dict[str, tp.Any], Path]:
    if cache_dir is None:
        cache_dir = get_audiocraft_cache_dir()
    path = _resolve_file(file_or_url_or_id, filename, cache_dir)
    pkg = safe_torch_load(path)
    if not isinstance(pkg, dict):
        raise CheckpointError(f"'{path}' holds a {type(pkg).__name__}; an exported checkpoint is a dict "
                              "with 'best_state' and 'xp.cfg'")
    return pkg, path


def _get_state_dict(file_or_url_or_id: tp.Union[Path, str], filename: tp.Optional[str] = None,
                    device: tp.Union[torch.device, str] = "cpu",
                    cache_dir: tp.Optional[str] = None) -> tp.Dict[str, tp.Any]:
    """The dict stored in a checkpoint file (tensors on CPU; ``device`` is kept for API compatibility, models
    are moved after loading)."""
    return _load_package(file_or_url_or_id, filename, cache_dir)[0]


def _checkpoint_cfg(pkg: tp.Dict[str, tp.Any], path: Path) -> omegaconf.DictConfig:
    missing = [key for key in ("best_state", "xp.cfg") if key not in pkg]
    if missing:
        raise CheckpointError(f"'{path}' is not an exported Audiocraft checkpoint: missing {missing} "
                              f"(keys: {sorted(map(str, pkg))})")
    raw = pkg["xp.cfg"]
    try:
        cfg = OmegaConf.create(raw)
    except Exception as err:
        raise CheckpointError(f"'{path}': 'xp.cfg' is not a valid config ({type(err).__name__}: {err})") from err
    if not isinstance(cfg, omegaconf.DictConfig):
        raise CheckpointError(f"'{path}': 'xp.cfg' must describe a mapping, got {type(raw).__name__}")
    return cfg


def _delete_param(cfg: omegaconf.DictConfig, full_name: str) -> None:
    """Delete the dotted key ``full_name`` from ``cfg`` if present (struct mode is restored)."""
    parts = full_name.split(".")
    node: tp.Any = cfg
    for part in parts[:-1]:
        if isinstance(node, omegaconf.DictConfig) and part in node:
            node = node[part]
        else:
            return
    if not isinstance(node, omegaconf.DictConfig):
        return
    OmegaConf.set_struct(node, False)
    if parts[-1] in node:
        del node[parts[-1]]
    OmegaConf.set_struct(node, True)


# Errors a builder raises on a config it cannot use (wrong type, missing key, bad interpolation, inconsistent
# sizes); they are re-raised as CheckpointError naming the file.
_CONFIG_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, RuntimeError,
                  omegaconf.errors.OmegaConfBaseException)


def _describe(err: BaseException) -> str:
    text = str(err).strip()
    if isinstance(err, (KeyError, AttributeError)) or not text:
        return f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text


def _check_segment_duration(cfg: omegaconf.DictConfig, path: Path, required: bool) -> None:
    """``dataset.segment_duration`` (the generation window, seconds) must be a finite number > 0 when given (and
    be given when ``required``)."""
    dataset = cfg.get("dataset", None) if "dataset" in cfg else None
    if not isinstance(dataset, omegaconf.DictConfig) or "segment_duration" not in dataset:
        if required:
            raise CheckpointError(f"'{path}': 'xp.cfg' lacks dataset.segment_duration (the training segment "
                                  "length in seconds, used as the generation window)")
        return
    try:
        value = dataset.segment_duration
    except omegaconf.errors.OmegaConfBaseException as err:
        raise CheckpointError(f"'{path}': 'xp.cfg' dataset.segment_duration cannot be read: {err}") from err
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise CheckpointError(f"'{path}': 'xp.cfg' dataset.segment_duration={value!r} must be a finite number of "
                              "seconds > 0")


# ---------------------------------------------------------------------------------------------- compression
def load_compression_model_ckpt(file_or_url_or_id: tp.Union[Path, str],
                                cache_dir: tp.Optional[str] = None) -> tp.Dict[str, tp.Any]:
    """The exported package of a compression model (``compression_state_dict.bin``)."""
    return _get_state_dict(file_or_url_or_id, filename=COMPRESSION_FILENAME, cache_dir=cache_dir)


def load_compression_model(file_or_url_or_id: tp.Union[Path, str], device: tp.Union[torch.device, str] = "cpu",
                           cache_dir: tp.Optional[str] = None) -> CompressionModel:
    """The compression model of an exported checkpoint, strictly loaded, in eval mode, on ``device``.

    A package with a ``'pretrained'`` entry delegates to ``CompressionModel.get_pretrained`` of that name.
    """
    from .builders import get_compression_model
    pkg, path = _load_package(file_or_url_or_id, COMPRESSION_FILENAME, cache_dir)
    if "pretrained" in pkg:
        return CompressionModel.get_pretrained(pkg["pretrained"], device=device)
    cfg = _checkpoint_cfg(pkg, path)
    cfg.device = str(device)
    if cfg.device == "cpu":
        cfg.dtype = "float32"
    build_cfg = cfg.copy()
    build_cfg.device = "meta"
    try:
        with torch.device("meta"):  # no weight init: every tensor comes from the checkpoint
            model = get_compression_model(build_cfg)
    except (ValueError, TypeError, omegaconf.errors.OmegaConfBaseException) as err:
        raise CheckpointError(f"'{path}': cannot build the compression model from 'xp.cfg': {err}") from err
    load_state_dict_checked(model, pkg["best_state"], f"'{path}' (best_state)", assign=True)
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------- language model
def load_lm_model_ckpt(file_or_url_or_id: tp.Union[Path, str],
                       cache_dir: tp.Optional[str] = None) -> tp.Dict[str, tp.Any]:
    """The exported package of a MusicGen language model (``state_dict.bin``)."""
    return _get_state_dict(file_or_url_or_id, filename=LM_FILENAME, cache_dir=cache_dir)


def load_lm_model(file_or_url_or_id: tp.Union[Path, str], device: tp.Union[torch.device, str] = "cpu",
                  cache_dir: tp.Optional[str] = None, *, for_generation: bool = False,
                  on_state_loaded: tp.Optional[tp.Callable[[tp.Mapping[str, tp.Any]], None]] = None,
                  configure: tp.Optional[tp.Callable[[omegaconf.DictConfig], None]] = None) -> nn.Module:
    """The language model of an exported checkpoint, strictly loaded, in eval mode, with ``model.cfg`` set.

    Config fixes as Audiocraft: ``device`` overrides ``cfg.device``; ``cfg.dtype`` is ``float32`` on CPU and
    ``float16`` otherwise; obsolete conditioner options (``conditioners.self_wav.chroma_stem.cache_path``,
    ``conditioners.args.merge_text_conditions_p``, ``conditioners.args.drop_desc_p``) are deleted.

    ``dataset.segment_duration`` (the generation window) must be a finite number > 0 when present; with
    ``for_generation`` (as ``MusicGen.get_pretrained`` needs) it must be present. Any config the builders cannot
    use raises ``CheckpointError`` naming the file. ``on_state_loaded`` is called with the checkpoint's state dict
    as soon as it is read, before the model is built (e.g. to start preparing its weights meanwhile);
    ``configure(cfg)`` may complete the config before the model is built (its errors name the file too).
    """
    from .builders import get_lm_model
    pkg, path = _load_package(file_or_url_or_id, LM_FILENAME, cache_dir)
    if on_state_loaded is not None and isinstance(pkg.get("best_state"), tp.Mapping):
        on_state_loaded(pkg["best_state"])
    cfg = _checkpoint_cfg(pkg, path)
    cfg.device = str(device)
    cfg.dtype = "float32" if cfg.device == "cpu" else "float16"
    _delete_param(cfg, "conditioners.self_wav.chroma_stem.cache_path")
    _delete_param(cfg, "conditioners.args.merge_text_conditions_p")
    _delete_param(cfg, "conditioners.args.drop_desc_p")
    _check_segment_duration(cfg, path, required=for_generation)
    try:  # the LM body on the meta device: no random init, the checkpoint tensors are assigned
        if configure is not None:
            configure(cfg)
        model = get_lm_model(cfg, meta=True)
    except _CONFIG_ERRORS as err:
        raise CheckpointError(f"'{path}': cannot build the language model from 'xp.cfg': "
                              f"{_describe(err)}") from err
    load_state_dict_checked(model, pkg["best_state"], f"'{path}' (best_state)", assign=True)
    left = [name for name, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:  # a buffer computed at init that no checkpoint holds and that cannot recompute itself
        raise CheckpointError(f"'{path}': the checkpoint leaves {len(left)} tensor(s) unset: {left[:5]}")
    model.to(device)
    model.eval()
    setattr(model, "cfg", cfg)
    return model


def load_lm_model_magnet(file_or_url_or_id: tp.Union[Path, str], compression_model_frame_rate: int,
                         device: tp.Union[torch.device, str] = "cpu", cache_dir: tp.Optional[str] = None, *,
                         on_state_loaded: tp.Optional[tp.Callable[[tp.Mapping[str, tp.Any]], None]] = None
                         ) -> nn.Module:
    """The :class:`~audiocraft.models.lm_magnet.MagnetLMModel` of an exported MAGNeT checkpoint, as
    :func:`load_lm_model` loads it, with Audiocraft's MAGNeT settings: ``transformer_lm.compression_model_framerate
    = compression_model_frame_rate``, ``transformer_lm.segment_duration = dataset.segment_duration`` and
    ``transformer_lm.span_len = masking.span_len``.

    Raises ``CheckpointError`` (naming the file) when the checkpoint is not a MAGNeT one (``lm_model`` other than
    ``transformer_lm_magnet``) or lacks ``masking.span_len``.
    """
    if isinstance(compression_model_frame_rate, bool) or not isinstance(compression_model_frame_rate, int) \
            or compression_model_frame_rate < 1:
        raise ArgumentError("compression_model_frame_rate must be a positive int, got "
                            f"{compression_model_frame_rate!r}.")

    def configure(cfg: omegaconf.DictConfig) -> None:
        if cfg.get("lm_model") != "transformer_lm_magnet":
            raise ValueError(f"not a MAGNeT checkpoint: lm_model={cfg.get('lm_model')!r} (expected "
                             "'transformer_lm_magnet'); load MusicGen / AudioGen checkpoints with their own class")
        masking = cfg.get("masking")
        if not isinstance(masking, omegaconf.DictConfig) or masking.get("span_len") is None:
            raise ValueError("'xp.cfg' lacks masking.span_len (the length of MAGNeT's masked spans)")
        cfg.transformer_lm.compression_model_framerate = compression_model_frame_rate
        cfg.transformer_lm.segment_duration = cfg.dataset.segment_duration
        cfg.transformer_lm.span_len = masking.span_len

    return load_lm_model(file_or_url_or_id, device=device, cache_dir=cache_dir, for_generation=True,
                         on_state_loaded=on_state_loaded, configure=configure)


# ---------------------------------------------------------------------------------------------- diffusion (MBD)
if tp.TYPE_CHECKING:  # pragma: no cover
    from ..modules.diffusion_schedule import SampleProcessor
    from .unet import DiffusionUnet

MBD_FILENAME = "mbd_musicgen_32khz.th"


def _diffusion_allowed_globals() -> tp.List[tp.Any]:
    """The classes a MultiBandDiffusion checkpoint may hold besides tensors: its per-band configs are pickled
    omegaconf ``DictConfig`` trees (nodes, metadata, and the plain types their metadata names). Plain data
    containers whose unpickling runs no code of the file."""
    import collections

    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode
    return [omegaconf.DictConfig, omegaconf.ListConfig, ContainerMetadata, Metadata, AnyNode, tp.Any,
            collections.defaultdict, dict, list, int]


def load_mbd_ckpt(file_or_url_or_id: tp.Union[Path, str], filename: tp.Optional[str] = None,
                  cache_dir: tp.Optional[str] = None) -> tp.Dict[tp.Any, tp.Any]:
    """The package of a MultiBandDiffusion checkpoint: ``{'sample_rate', 'n_bands', 0: band, 1: band, ...}``,
    each band ``{'model_state', 'processor_state', 'cfg'}``. Read with ``weights_only=True`` plus an allow-list
    of omegaconf's config classes (:func:`_diffusion_allowed_globals`); any other pickled object is refused
    (``CheckpointError``) without being created."""
    return _load_mbd_package(file_or_url_or_id, filename, cache_dir)[0]


def _load_mbd_package(file_or_url_or_id: tp.Union[Path, str], filename: tp.Optional[str],
                      cache_dir: tp.Optional[str]) -> tp.Tuple[tp.Dict[tp.Any, tp.Any], Path]:
    if cache_dir is None:
        cache_dir = get_audiocraft_cache_dir()
    path = _resolve_file(file_or_url_or_id, filename, cache_dir)
    pkg = safe_torch_load(path, allowed_globals=_diffusion_allowed_globals())
    _check_mbd_package(pkg, path)
    return pkg, path


def _check_mbd_package(pkg: tp.Any, path: Path) -> None:
    if not isinstance(pkg, dict):
        raise CheckpointError(f"'{path}' holds a {type(pkg).__name__}; a MultiBandDiffusion checkpoint is a dict "
                              "with 'sample_rate', 'n_bands' and one entry per band")
    missing = [key for key in ("sample_rate", "n_bands") if key not in pkg]
    if missing:
        raise CheckpointError(f"'{path}' is not a MultiBandDiffusion checkpoint: missing {missing} "
                              f"(keys: {sorted(map(str, pkg))})")
    n_bands, sample_rate = pkg["n_bands"], pkg["sample_rate"]
    if isinstance(n_bands, bool) or not isinstance(n_bands, int) or n_bands < 1:
        raise CheckpointError(f"'{path}': n_bands={n_bands!r} must be an integer >= 1")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise CheckpointError(f"'{path}': sample_rate={sample_rate!r} must be an integer >= 1 (Hz)")
    absent = [i for i in range(n_bands) if i not in pkg]
    if absent:
        raise CheckpointError(f"'{path}': n_bands={n_bands} but band(s) {absent} are missing from the checkpoint")
    for i in range(n_bands):
        band = pkg[i]
        if not isinstance(band, dict):
            raise CheckpointError(f"'{path}': band {i} must be a dict, got {type(band).__name__}")
        lacking = [key for key in ("model_state", "processor_state", "cfg") if key not in band]
        if lacking:
            raise CheckpointError(f"'{path}': band {i} lacks {lacking}")
        if not isinstance(band["cfg"], omegaconf.DictConfig):
            raise CheckpointError(f"'{path}': band {i} 'cfg' must be an omegaconf DictConfig, got "
                                  f"{type(band['cfg']).__name__}")


def load_diffusion_models(file_or_url_or_id: tp.Union[Path, str], device: tp.Union[torch.device, str] = "cpu",
                          filename: tp.Optional[str] = None, cache_dir: tp.Optional[str] = None
                          ) -> tp.Tuple[tp.List["DiffusionUnet"], tp.List["SampleProcessor"],
                                        tp.List[omegaconf.DictConfig]]:
    """The diffusion U-Nets, sample processors and configs of every band of a MultiBandDiffusion checkpoint
    (e.g. ``('facebook/multiband-diffusion', filename='mbd_musicgen_32khz.th')``), strictly loaded, on ``device``.

    The U-Nets are left in TRAINING mode, as Audiocraft leaves them (their transformer's dropout is part of
    the official output). Every band is built and checked before anything is returned.

    Raises:
        FileNotFoundError: no such file / folder / hub entry.
        CheckpointError: unsafe or unreadable file, missing bands or keys, a config the builders cannot use,
            a state dict that does not match (all naming the file and the band).
    """
    from .diffusion_builders import get_diffusion_model, get_processor
    pkg, path = _load_mbd_package(file_or_url_or_id, filename, cache_dir)
    models: tp.List["DiffusionUnet"] = []
    processors: tp.List["SampleProcessor"] = []
    cfgs: tp.List[omegaconf.DictConfig] = []
    for i in range(pkg["n_bands"]):
        band = pkg[i]
        cfg = band["cfg"]
        try:
            with torch.device("meta"):  # no weight init: every tensor comes from the checkpoint
                model = get_diffusion_model(cfg)
            processor = get_processor(cfg.processor, sample_rate=pkg["sample_rate"])
        except _CONFIG_ERRORS as err:
            raise CheckpointError(f"'{path}': cannot build band {i} from its config: {_describe(err)}") from err
        load_state_dict_checked(model, band["model_state"], f"'{path}' (band {i} model_state)", assign=True)
        load_state_dict_checked(processor, band["processor_state"], f"'{path}' (band {i} processor_state)",
                                assign=False)
        models.append(model.to(device))
        processors.append(processor.to(device))
        cfgs.append(cfg)
    return models, processors, cfgs
