"""Native CPU kernels of :file:`audiocraft/backends/cpu/csrc`, compiled once on first use with the machine's C compiler.

The decoding step of the language model multiplies 2-16 rows of activations by every weight matrix: the speed is
set by how fast a kernel streams the weights from memory. :func:`linear` is a matrix-vector kernel written for
that shape (float32, bfloat16 or int8 weights, float32 activations and accumulation), threaded with the OpenMP
runtime PyTorch already loaded, so ``torch.set_num_threads`` applies to it.

The shared library is built with ``-O3 -march=native`` into ``$AUDIOCRAFT_CACHE_DIR/kernels`` (else
``~/.cache/audiocraft/kernels``), named by a hash of the source, the compiler, its flags and the CPU's feature
flags, so a machine never loads a build made for another CPU. Building takes about a second. Without a C
compiler (``$CC``, ``cc``, ``gcc`` or ``clang``), or with ``AUDIOCRAFT_NATIVE_KERNELS=0``, :func:`available` is
False and callers use PyTorch's own kernels instead.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
from pathlib import Path
import platform
import shutil
import subprocess
import tempfile
import threading
import typing as tp

import torch

from ...utils.checkpoint_io import FilePages

logger = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = (CSRC / "linear_kernels.cpp", CSRC / "step_kernels.cpp", CSRC / "sampling.cpp")
HEADERS = (CSRC / "simd.h", CSRC / "matvec.h", CSRC / "attention.h")
KINDS = {torch.float32: 0, torch.bfloat16: 1, torch.int8: 2}
_FLAGS = ["-O3", "-march=native", "-ffp-contract=fast", "-std=gnu++17", "-shared", "-fPIC"]
_prepacking: tp.List["Prepacking"] = []


def _cache_dir() -> Path:
    root = os.environ.get("AUDIOCRAFT_CACHE_DIR")
    if root:
        return Path(root) / "kernels"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "audiocraft" / "kernels"


def _compiler() -> tp.Optional[str]:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _cpu_signature() -> str:
    """Machine and CPU feature flags: a build with ``-march=native`` is only valid for the CPU it was made on."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()} {platform.system()} {flags}"


def _build(compiler: str, openmp: bool, paths: tp.Sequence[Path] = SOURCES,
           headers: tp.Sequence[Path] = HEADERS) -> Path:
    """The shared library of the C++ files ``paths`` (which include ``headers``) for this machine, built once and
    cached under a hash of the sources, headers, compiler and flags; named after the first file."""
    sources = [path.read_bytes() for path in (*paths, *headers)]
    stem = paths[0].stem
    flags = _FLAGS + (["-fopenmp"] if openmp else [])
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256(b"\0".join([*sources, version.encode(), " ".join(flags).encode(),
                                     _cpu_signature().encode()])).hexdigest()[:16]
    folder = _cache_dir()
    target = folder / f"{stem}-{key}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}-", suffix=".so", dir=folder)
    os.close(fd)
    try:
        result = subprocess.run([compiler, *flags, *map(str, paths), "-o", tmp], capture_output=True,
                                text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {result.stderr.strip()[-2000:]}")
        os.replace(tmp, target)  # atomic: concurrent builders each write their own file, the last one wins
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load() -> tp.Optional[ctypes.CDLL]:
    if os.environ.get("AUDIOCRAFT_NATIVE_KERNELS", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    compiler = _compiler()
    if compiler is None:
        logger.info("No C compiler found: native CPU kernels are off.")
        return None
    errors = []
    for openmp in (True, False):  # without OpenMP (e.g. Apple clang) the kernels run on one thread
        try:
            lib = ctypes.CDLL(str(_build(compiler, openmp)))
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            errors.append(str(exc))
            continue
        lib.audiocraft_linear_packed.restype = ctypes.c_int
        lib.audiocraft_linear_packed.argtypes = [ctypes.c_int, ctypes.c_int] + [
            ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
        lib.audiocraft_pack.restype = ctypes.c_int
        lib.audiocraft_pack.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int,
                                        ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        lib.audiocraft_pack_many.restype = ctypes.c_int
        lib.audiocraft_pack_many.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 8 + [ctypes.c_int]
        lib.audiocraft_attend.restype = ctypes.c_int
        ptr, i64 = ctypes.c_void_p, ctypes.c_int64
        lib.audiocraft_attend.argtypes = [ptr, i64, i64, ptr, i64, i64, i64, ptr, i64, i64, i64, ptr, i64, i64,
                                          i64, i64, i64, i64, ctypes.c_float, ctypes.c_int]
        lib.audiocraft_block_rows.restype = ctypes.c_int
        lib.audiocraft_block_rows.argtypes = [ctypes.c_int]
        lib.audiocraft_chunk.restype = ctypes.c_int
        lib.audiocraft_chunk.argtypes = [ctypes.c_int]
        lib.audiocraft_decoder_layer.restype = ctypes.c_int
        lib.audiocraft_decoder_layer.argtypes = [ptr, ptr, ptr, i64, ptr, i64, i64, i64, ptr, i64, i64, i64, i64, i64,
                                                 ptr, i64, i64, i64, ptr, i64, i64, i64, i64, ctypes.c_int]
        lib.audiocraft_decoder_stack.restype = ctypes.c_int
        lib.audiocraft_decoder_stack.argtypes = [i64, ptr, ptr, ptr, ptr, i64, i64, i64, ctypes.c_int]
        lib.audiocraft_multinomial_one.restype = ctypes.c_int
        lib.audiocraft_multinomial_one.argtypes = [ptr, i64, i64, ptr, i64, ptr]
        lib.audiocraft_kth_largest.restype = ctypes.c_int
        lib.audiocraft_kth_largest.argtypes = [ptr, i64, i64, i64, ptr]
        lib.audiocraft_normalize.restype = ctypes.c_int
        lib.audiocraft_normalize.argtypes = [ptr, i64, i64, i64, ptr, ptr, ctypes.c_float, ctypes.c_int, ptr, i64,
                                             ctypes.c_int]
        lib.audiocraft_to_half.restype = ctypes.c_int
        lib.audiocraft_to_half.argtypes = [ptr, i64, ptr]
        lib.audiocraft_activate.restype = ctypes.c_int
        lib.audiocraft_activate.argtypes = [ptr, i64, ctypes.c_int]
        lib.audiocraft_linear.restype = ctypes.c_int
        lib.audiocraft_linear.argtypes = [
            ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
            ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
        return lib
    logger.info("Native CPU kernels could not be built; using PyTorch's kernels. %s", " | ".join(errors))
    return None


class LazyLibrary:
    """A native library built and loaded once, on the first call from any thread; None where it cannot be."""

    def __init__(self, load: tp.Callable[[], tp.Optional[ctypes.CDLL]]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._loaded = False
        self._lib: tp.Optional[ctypes.CDLL] = None

    def __call__(self) -> tp.Optional[ctypes.CDLL]:
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._lib = self._load()
                    self._loaded = True
        return self._lib


_library = LazyLibrary(_load)


def library() -> tp.Optional[ctypes.CDLL]:
    """The loaded kernel library (built on first call), or None where it cannot be built."""
    return _library()


def available() -> bool:
    """Whether the native kernels can be used on this machine (builds them on first call)."""
    return library() is not None


def _require() -> ctypes.CDLL:
    lib = library()
    if lib is None:
        raise RuntimeError("The native CPU kernels are not available on this machine.")
    return lib


def _check(code: int) -> None:
    if code != 0:
        raise ValueError("The native kernel refused its arguments (shape, layout or scale).")


def _rows(x: torch.Tensor, in_features: int) -> torch.Tensor:
    """``x`` as ``[rows, in]`` float32 rows with unit stride (a view where it can be)."""
    if x.shape[-1:] != (in_features,) or x.device.type != "cpu":
        raise ValueError(f"x must be a CPU tensor [..., {in_features}], got {tuple(x.shape)} on {x.device}.")
    x2 = x.reshape(-1, in_features)
    if x2.dtype != torch.float32 or x2.stride(-1) != 1 or x2.stride(0) < in_features:
        x2 = x2.float().contiguous()
    return x2


def _check_vectors(kind: int, out_features: int, bias: tp.Optional[torch.Tensor],
                   scale: tp.Optional[torch.Tensor]) -> None:
    if (scale is None) == (kind == KINDS[torch.int8]):
        raise ValueError("scale is required for int8 weights, and only for them.")
    for name, vec in (("bias", bias), ("scale", scale)):
        if vec is not None and (vec.shape != (out_features,) or vec.dtype != torch.float32
                                or not vec.is_contiguous() or vec.device.type != "cpu"):
            raise ValueError(f"{name} must be a contiguous float32 CPU tensor [{out_features}], got {vec.dtype} "
                             f"{tuple(vec.shape)} on {vec.device}.")


def _ptr(t: tp.Optional[torch.Tensor]) -> tp.Optional[int]:
    return None if t is None else t.data_ptr()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: tp.Optional[torch.Tensor] = None,
           scale: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
    """``(x @ weight.T) * scale + bias`` on the CPU with the native kernel.

    float32 and bfloat16 weights: float32 products and sums. int8 weights: each row of ``x`` is quantized to int16
    (scale ``max|row| / 32767``), the products summed exactly in integers, then scaled back.
    Each output is summed in one fixed order: results do not depend on the number of rows or threads.

    Args:
        x: float32 ``[..., in]``.
        weight: contiguous ``[out, in]``, float32, bfloat16 or int8.
        bias: None or float32 ``[out]``.
        scale: float32 ``[out]``, a factor per output row, for int8 weights (and only for them).
    Returns:
        float32 ``[..., out]``.
    """
    lib = _require()
    kind = KINDS.get(weight.dtype)
    if kind is None or weight.dim() != 2 or not weight.is_contiguous() or weight.device.type != "cpu":
        raise ValueError(f"weight must be a contiguous 2-D CPU tensor of {tuple(KINDS)}, got {weight.dtype} "
                         f"{tuple(weight.shape)} on {weight.device}.")
    out_features, in_features = weight.shape
    x2 = _rows(x, in_features)
    _check_vectors(kind, out_features, bias, scale)
    y = torch.empty(x.shape[:-1] + (out_features,), dtype=torch.float32)
    _check(lib.audiocraft_linear(kind, x2.data_ptr(), x2.stride(0), x2.shape[0], weight.data_ptr(), out_features,
                                 in_features, _ptr(scale), _ptr(bias), y.data_ptr(), out_features,
                                 torch.get_num_threads()))
    return y


def layout(dtype: torch.dtype) -> tp.Tuple[int, int]:
    """``(block, chunk)``: the packed layout of weights of ``dtype`` on this machine, blocks of ``block`` rows
    stored ``chunk`` columns at a time (float32 / bfloat16: 8 x 16 with AVX-512; int8: 4 x 32)."""
    lib = _require()
    kind = KINDS[dtype]
    return int(lib.audiocraft_block_rows(kind)), int(lib.audiocraft_chunk(kind))


def can_pack(shape: tp.Tuple[int, ...], dtype: torch.dtype) -> bool:
    """Whether a weight ``[out, in]`` of ``dtype`` fits the packed layout (whole blocks and chunks)."""
    block, chunk = layout(dtype)
    return len(shape) == 2 and shape[0] % block == 0 and shape[1] % chunk == 0


def pack(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` ``[out, in]`` rearranged so that :func:`linear_packed` reads each block of rows as one stream:
    ``[out / block, in / chunk, block, chunk]`` (see :func:`layout`)."""
    block, chunk = layout(weight.dtype)
    out_features, in_features = weight.shape
    if out_features % block or in_features % chunk:
        raise ValueError(f"Cannot pack a [{out_features}, {in_features}] weight in blocks of {block} rows x {chunk}.")
    weight = weight.contiguous()
    for job in list(_prepacking):
        found = job.lookup(weight, block)
        if found is not None:
            return found
    packed = torch.empty((out_features // block, in_features // chunk, block, chunk), dtype=weight.dtype)
    _check(_require().audiocraft_pack(weight.element_size(), weight.data_ptr(), out_features, in_features, block,
                                      chunk, packed.data_ptr(), torch.get_num_threads()))
    return packed


def unpack(packed: torch.Tensor) -> torch.Tensor:
    """The ``[out, in]`` weight of a :func:`pack`-ed one (a copy)."""
    nblocks, nchunks, block, chunk = packed.shape
    return packed.permute(0, 2, 1, 3).reshape(nblocks * block, nchunks * chunk)


def linear_packed(x: torch.Tensor, packed: torch.Tensor, bias: tp.Optional[torch.Tensor] = None,
                  scale: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`linear` with a weight made by :func:`pack` (``[out / block, in / chunk, block, chunk]``); the same
    results as :func:`linear` with the plain weight."""
    lib = _require()
    kind = KINDS[packed.dtype]
    nblocks, nchunks, block, chunk = packed.shape
    out_features, in_features = nblocks * block, nchunks * chunk
    x2 = _rows(x, in_features)
    y = torch.empty(x.shape[:-1] + (out_features,), dtype=torch.float32)
    _check(lib.audiocraft_linear_packed(kind, block, x2.data_ptr(), x2.stride(0), x2.shape[0], packed.data_ptr(),
                                        out_features, in_features, _ptr(scale), _ptr(bias), y.data_ptr(),
                                        out_features, torch.get_num_threads()))
    return y


def bind(weight: torch.Tensor, scale: tp.Optional[torch.Tensor] = None,
         packed: bool = False) -> tp.Callable[[torch.Tensor, tp.Optional[torch.Tensor]], torch.Tensor]:
    """A fast ``f(x, bias)`` for one weight (plain, or made by :func:`pack` when ``packed``): the same results as
    :func:`linear` / :func:`linear_packed`, for contiguous float32 ``x [..., in]`` and contiguous float32 ``bias``
    (the caller checks; the weight must stay alive and unchanged)."""
    lib = _require()
    kind = KINDS[weight.dtype]
    if packed:
        nblocks, nchunks, block, chunk = weight.shape
        out_features, in_features = nblocks * block, nchunks * chunk
        fn = lib.audiocraft_linear_packed
        head: tp.Tuple[int, ...] = (kind, block)
    else:
        out_features, in_features = weight.shape
        fn = lib.audiocraft_linear
        head = (kind,)
    _check_vectors(kind, out_features, None, scale)
    w_ptr, s_ptr = weight.data_ptr(), _ptr(scale)
    get_threads, empty = torch.get_num_threads, torch.empty

    def call(x: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
        y = empty(x.shape[:-1] + (out_features,), dtype=torch.float32)
        code = fn(*head, x.data_ptr(), in_features, x.numel() // in_features, w_ptr, out_features, in_features,
                  s_ptr, None if bias is None else bias.data_ptr(), y.data_ptr(), out_features, get_threads())
        if code != 0:
            _check(code)
        return y

    return call


class Prepacking:
    """Packs weights on a background thread (one native call, without the GIL) while the caller goes on, e.g.
    importing and building the rest of a model; :func:`pack` of one of those weights, or of a slice of whole
    blocks of rows of one, then returns the result instead of packing again. Used as a context manager: the
    shortcut lasts until exit, which also waits for the thread.

    Only for tensors nobody modifies meanwhile (a checkpoint just loaded). With ``release_sources``, the pages of
    each weight mapped from a file are released once it is packed (see
    :class:`audiocraft.utils.checkpoint_io.FilePages`), so that memory holds one copy of the weights."""

    def __init__(self, weights: tp.Iterable[torch.Tensor], threads: int = 1, release_sources: bool = False) -> None:
        lib = _require()
        pages = FilePages() if release_sources else None
        self._entries: tp.List[tp.Tuple[int, int, int, torch.dtype, torch.Tensor, torch.Tensor]] = []
        args: tp.List[tp.List[int]] = [[] for _ in range(8)]
        for weight in weights:
            if weight.dim() != 2 or weight.dtype not in KINDS or not weight.is_contiguous() or \
                    weight.device.type != "cpu":
                continue
            block, chunk = layout(weight.dtype)
            out_features, in_features = weight.shape
            if out_features % block or in_features % chunk:
                continue
            packed = torch.empty((out_features // block, in_features // chunk, block, chunk), dtype=weight.dtype)
            start = weight.data_ptr()
            self._entries.append((start, start + weight.numel() * weight.element_size(), in_features, weight.dtype,
                                  weight, packed))
            release = pages is not None and pages.is_file_mapped(weight)
            for values, value in zip(args, (weight.element_size(), start, out_features, in_features, block, chunk,
                                            packed.data_ptr(), int(release))):
                values.append(value)
        arrays = [(ctypes.c_int * len(v))(*v) if k in (0, 4, 5, 7) else
                  (ctypes.c_int64 * len(v))(*v) if k in (2, 3) else (ctypes.c_void_p * len(v))(*v)
                  for k, v in enumerate(args)]
        self._result: tp.List[int] = []
        self._thread = threading.Thread(
            target=lambda: self._result.append(lib.audiocraft_pack_many(len(self._entries), *arrays, threads)),
            name="audiocraft-prepack", daemon=True)
        self._thread.start()

    def lookup(self, weight: torch.Tensor, block: int) -> tp.Optional[torch.Tensor]:
        """The packed rows of ``weight`` (contiguous ``[rows, in]``), or None if they are not being packed here."""
        first = weight.data_ptr()
        last = first + weight.numel() * weight.element_size()
        for start, end, in_features, dtype, _, packed in self._entries:
            if start <= first and last <= end and dtype == weight.dtype and weight.shape[1] == in_features:
                row0, rows = (first - start) // (in_features * weight.element_size()), weight.shape[0]
                if (first - start) % (in_features * weight.element_size()) or row0 % block or rows % block:
                    return None
                self.wait()
                return packed[row0 // block:(row0 + rows) // block]
        return None

    def wait(self) -> None:
        self._thread.join()
        if self._result != [0]:
            raise RuntimeError("Packing weights on the background thread failed.")

    def __enter__(self) -> "Prepacking":
        _prepacking.append(self)
        return self

    def __exit__(self, *exc: tp.Any) -> None:
        self._thread.join()
        _prepacking.remove(self)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of a single query step: ``softmax(q k^T / sqrt(D)) v`` for ``q [B, H, 1, D]`` and keys / values
    ``[B, H, S, D]`` (float32 CPU tensors, any strides but a contiguous last dimension, e.g. views of a key/value
    cache); what ``F.scaled_dot_product_attention`` computes without a mask, reading each key and value once.
    Returns ``[B, H, 1, D]``."""
    lib = _require()
    B, H, T, D = q.shape
    S = k.shape[2]
    if T != 1 or k.shape != (B, H, S, D) or v.shape != (B, H, S, D) or S < 1:
        raise ValueError(f"attend needs q [B, H, 1, D] and k, v [B, H, S >= 1, D], got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}.")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dtype != torch.float32 or t.device.type != "cpu" or t.stride(-1) != 1:
            raise ValueError(f"{name} must be a float32 CPU tensor with a contiguous last dimension.")
    out = torch.empty((B, H, 1, D), dtype=torch.float32)
    _check(lib.audiocraft_attend(q.data_ptr(), q.stride(0), q.stride(1),
                                 k.data_ptr(), k.stride(0), k.stride(1), k.stride(2),
                                 v.data_ptr(), v.stride(0), v.stride(1), v.stride(2),
                                 out.data_ptr(), out.stride(0), out.stride(1), B, H, S, D, D ** -0.5,
                                 torch.get_num_threads()))
    return out


def normalize(x: torch.Tensor, weight: tp.Optional[torch.Tensor] = None, bias: tp.Optional[torch.Tensor] = None,
              eps: float = 1e-5, rms: bool = False) -> torch.Tensor:
    """LayerNorm (``rms=False``: ``(x - mean) / sqrt(var + eps) * weight + bias``) or RMSNorm (``rms=True``:
    ``x / sqrt(mean(x^2) + eps) * weight``) over the last dimension of a float32 CPU ``x [..., n]``, on the native
    kernel of the fused decoding step. ``weight`` / ``bias``: None or contiguous float32 ``[n]``."""
    lib = _require()
    n = x.shape[-1]
    x2 = _rows(x, n)
    for name, vec in (("weight", weight), ("bias", bias)):
        if vec is not None and (vec.shape != (n,) or vec.dtype != torch.float32 or not vec.is_contiguous()):
            raise ValueError(f"{name} must be None or a contiguous float32 tensor [{n}], got {tuple(vec.shape)}.")
    y = torch.empty(x.shape, dtype=torch.float32)
    _check(lib.audiocraft_normalize(x2.data_ptr(), x2.stride(0), x2.shape[0], n, _ptr(weight), _ptr(bias), eps,
                                    int(rms), y.data_ptr(), n, torch.get_num_threads()))
    return y


ACTIVATIONS = {"relu": 0, "gelu": 1}


def activate(x: torch.Tensor, activation: str) -> torch.Tensor:
    """``activation`` (``'gelu'``: the exact erf form, within 3e-7 x max(1, |x|) of it; ``'relu'``) of a float32 CPU
    tensor, as the fused decoding step computes it (a new tensor)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}.")
    if x.dtype != torch.float32 or x.device.type != "cpu":
        raise ValueError(f"x must be a float32 CPU tensor, got {x.dtype} on {x.device}.")
    y = x.contiguous().clone()
    _check(_require().audiocraft_activate(y.data_ptr(), y.numel(), ACTIVATIONS[activation]))
    return y


def to_half(x: torch.Tensor) -> torch.Tensor:
    """A float32 CPU tensor in float16 as the fused decoding step caches keys and values: rounded to nearest even
    like ``x.half()``, but saturating at +-65504 instead of overflowing to infinity (a new tensor)."""
    if x.dtype != torch.float32 or x.device.type != "cpu":
        raise ValueError(f"x must be a float32 CPU tensor, got {x.dtype} on {x.device}.")
    x = x.contiguous()
    y = torch.empty(x.shape, dtype=torch.float16)
    _check(_require().audiocraft_to_half(x.data_ptr(), x.numel(), y.data_ptr()))
    return y
