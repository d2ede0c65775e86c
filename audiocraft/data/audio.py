"""Reading and writing audio files with PyAV (FFmpeg's libraries; no ffmpeg binary needed).

- `audio_info(path)` -> `AudioFileInfo(sample_rate, duration, channels)`.
- `audio_read(path, seek_time, duration, pad)` -> (float32 `[C, T]`, sample_rate); wav, mp3, ogg, flac, m4a
  and anything else FFmpeg decodes.
- `audio_write(stem_name, wav, sample_rate, format=...)` normalises (`audio_utils.normalize_audio`) and writes
  wav (16-bit PCM), mp3 (LAME), ogg (Opus, not Audiocraft's Vorbis: see `audio_write`) or flac (16-bit).
  Writes are atomic: the file is encoded with no name
  (Linux `O_TMPFILE`; elsewhere a hidden temporary file next to the target), synced to disk, then renamed onto
  the target, so a failure, even the process being killed, never leaves a partial file or a temporary file and
  never damages an existing one.
- `audio_metadata(path)` -> the tags of a file (what `audio_write(..., metadata=...)` stored).
"""
from __future__ import annotations

import errno
import math
import numbers
import os
import secrets
import typing as tp
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .audio_utils import (MAX_SAMPLE_RATE, _check_float_clip, _check_sample_rate, _shown, convert_audio, f32_pcm,
                          normalize_audio)
from ..utils.validation import ArgumentError, ArgumentTypeError

PathLike = tp.Union[str, os.PathLike]


@dataclass(frozen=True)
class AudioFileInfo:
    """What `audio_info` reports: sample rate (Hz), duration (s) and number of channels of a file."""
    sample_rate: int
    duration: float
    channels: int


@dataclass(frozen=True)
class _Format:
    container: str      # FFmpeg muxer name
    codec: str          # FFmpeg encoder name
    sample_fmt: str     # sample format handed to the encoder
    suffix: str
    max_channels: int
    rates: tuple[int, ...] | None = None  # sample rates the encoder accepts (None: any)


# Opus encodes only at these rates; its decoder always outputs 48 kHz. MP3 (LAME) has its own list.
_OPUS_RATES = (48000, 24000, 16000, 12000, 8000)
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_FORMATS = {
    'wav': _Format('wav', 'pcm_s16le', 's16', '.wav', 8),
    'mp3': _Format('mp3', 'libmp3lame', 'fltp', '.mp3', 2, _MP3_RATES),
    'ogg': _Format('ogg', 'libopus', 'flt', '.ogg', 8, _OPUS_RATES),
    'flac': _Format('flac', 'flac', 's16', '.flac', 8),
}
_LAYOUTS = {1: 'mono', 2: 'stereo', 3: '2.1', 4: 'quad', 5: '5.0', 6: '5.1', 7: '6.1', 8: '7.1'}
_CHUNK = 1 << 15  # samples per frame handed to the encoder
_MAX_SECONDS = 1e12
_MAX_PADDED = 2 ** 31 - 1  # samples per channel audio_read(pad=True) may allocate (13.5 h at 44.1 kHz)


# ------------------------------------------------------------------------------------------------ reading
def _existing_file(path: object, name: str = 'filepath') -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    fp = Path(path)
    if not fp.is_file():
        raise FileNotFoundError(errno.ENOENT, f"no such audio file: '{fp}'", str(fp))
    return fp


def _open_audio(fp: Path) -> tuple[tp.Any, tp.Any]:
    import av  # PyAV loads FFmpeg's libraries: imported on first use to keep `import audiocraft` light

    container = av.open(str(fp))
    if not container.streams.audio:
        container.close()
        raise ArgumentError(f"'{fp}' has no audio stream")
    return container, container.streams.audio[0]


# Ogg/Opus files decode at 48 kHz whatever rate their audio had: `audio_write` records that rate in this tag, and
# `audio_info` / `audio_read` give the audio back at it (as Audiocraft's Ogg/Vorbis files keep their rate).
SOURCE_RATE_TAG = 'ORIGINAL_SAMPLE_RATE'


def _source_rate(container: tp.Any, stream: tp.Any) -> int | None:
    """The rate an Opus stream's audio was written at (its `SOURCE_RATE_TAG`), None for other files."""
    if stream.codec_context.name != 'opus':
        return None
    tags = {str(k).upper(): v for k, v in {**container.metadata, **stream.metadata}.items()}
    try:
        rate = int(tags.get(SOURCE_RATE_TAG, ''))
    except ValueError:
        return None
    return rate if 0 < rate <= MAX_SAMPLE_RATE else None


def audio_info(filepath: PathLike) -> AudioFileInfo:
    """Sample rate, duration (seconds) and channel count of the first audio stream of `filepath` (for an Ogg/Opus
    file written by `audio_write`, the rate its audio was written at, which `audio_read` returns)."""
    fp = _existing_file(filepath)
    container, stream = _open_audio(fp)
    with container:
        ctx = stream.codec_context
        sample_rate = int(ctx.sample_rate)
        source_rate = _source_rate(container, stream)
        channels = int(ctx.channels)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
            if ctx.name == 'opus':  # Ogg/Opus durations count the decoder pre-skip, which is never output
                duration -= ctx.delay / sample_rate
        elif container.duration is not None:
            duration = container.duration / 1_000_000  # AV_TIME_BASE
        else:  # no duration in the headers: count the samples
            duration = sum(frame.samples for frame in container.decode(stream)) / sample_rate
    return AudioFileInfo(source_rate or sample_rate, duration, channels)


def _frame_to_tensor(frame: tp.Any, channels: int) -> torch.Tensor:
    """A decoded frame as a `[C, n]` tensor in its native dtype (int16, int32, float32, ...)."""
    array = frame.to_ndarray()
    if not frame.format.is_planar:  # packed: [1, n * C], interleaved
        array = array.reshape(-1, channels).T
    if array.dtype == np.uint8:
        array = (array.astype(np.float32) - 128) / 128
    elif array.dtype == np.float64:
        array = array.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(array))


def _frame_start(frame: tp.Any, stream: tp.Any, sample_rate: int) -> int | None:
    """Index of the first sample of `frame`, counted from the stream start (e.g. after MP3 encoder delay)."""
    if frame.pts is None or frame.time_base is None:
        return None
    seconds = frame.pts * frame.time_base
    if stream.start_time is not None and stream.time_base is not None:
        seconds -= stream.start_time * stream.time_base
    return int(round(seconds * sample_rate))


def _decode(fp: Path, seek_time: float, duration: float,
            seek: bool) -> tuple[list[torch.Tensor], int, int, bool]:
    """Decode `duration` s (<= 0: to the end) from `seek_time` s -> (chunks `[C, n]`, sample_rate, channels, ok).

    `ok` is False when a seek failed or landed after the first wanted sample (then decode again without seeking).
    """
    container, stream = _open_audio(fp)
    with container:
        sample_rate = int(stream.codec_context.sample_rate)
        channels = int(stream.codec_context.channels)
        first = int(seek_time * sample_rate)
        count = int(duration * sample_rate) if duration > 0 else -1
        # Seek 0.1 s early (decoders need some context); near the start, decode from the start instead.
        target = first / sample_rate - 0.1
        seek = seek and target > 0 and stream.time_base is not None
        if seek:
            import av
            try:
                container.seek(int(target / stream.time_base), stream=stream, backward=True)
            except (av.error.FFmpegError, OverflowError):  # some demuxers cannot seek in some files (e.g. short
                return [], sample_rate, channels, False    # FLAC), or far beyond int64 time stamps: no seek
        chunks: list[torch.Tensor] = []
        position: int | None = None if seek else 0
        length = 0
        for frame in container.decode(stream):
            if position is None:  # first frame after a seek: where are we?
                position = _frame_start(frame, stream, sample_rate)
                if position is None or position > first:
                    return [], sample_rate, channels, False
            chunk = _frame_to_tensor(frame, channels)
            start, position = position, position + chunk.shape[-1]
            if position <= first:
                continue
            chunk = chunk[:, max(0, first - start):]
            chunks.append(chunk)
            length += chunk.shape[-1]
            if 0 <= count <= length:
                break
    return chunks, sample_rate, channels, True


def _finite(value: numbers.Real) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int beyond the float range
        return False


def audio_read(filepath: PathLike, seek_time: float = 0., duration: float = -1.,
               pad: bool = False) -> tuple[torch.Tensor, int]:
    """Read `filepath` -> (wav float32 `[C, T]` in [-1, 1], sample_rate).

    Starts `seek_time` seconds in and reads `duration` seconds (`duration <= 0`: to the end). With `pad` and
    `duration > 0`, a short read is zero-padded to `int(duration * sample_rate)` samples. 16-bit files give
    exactly `int16 / 32768`. Opus (ogg) files decode at 48 kHz; those written by `audio_write` are resampled back
    to the rate their audio was written at (`audio_info` reports it), other Opus files come at 48 kHz.
    """
    fp = _existing_file(filepath)
    for name, value in (('seek_time', seek_time), ('duration', duration)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not _finite(value):
            raise ArgumentError(f"{name} must be a finite number of seconds, got {_shown(value)}")
    if seek_time < 0:
        raise ArgumentError(f"seek_time must be >= 0 seconds, got {seek_time!r}")
    # Beyond ~31,700 years every file has ended: clamp so that sample counts stay exact int64 values.
    seek_time, duration = min(float(seek_time), _MAX_SECONDS), min(float(duration), _MAX_SECONDS)
    source_rate = _opus_source_rate(fp)
    if source_rate is None:
        wav, sample_rate = _decoded(fp, seek_time, duration)
    else:
        wav, sample_rate = _read_resampled(fp, seek_time, duration, source_rate)
    if duration > 0:
        wav = wav[:, :int(duration * sample_rate)]
    if pad and duration > 0:
        if duration * sample_rate > _MAX_PADDED:
            raise ArgumentError(f"duration={duration!r} s with pad=True asks for {int(duration * sample_rate)} samples "
                                f"per channel; at most {_MAX_PADDED} can be padded")
        wav = F.pad(wav, (0, int(duration * sample_rate) - wav.shape[-1]))
    return wav.float().contiguous(), sample_rate


def _decoded(fp: Path, seek_time: float, duration: float) -> tuple[torch.Tensor, int]:
    """`duration` s (<= 0: to the end) from `seek_time` s, as decoded: (float32 `[C, T]`, rate)."""
    chunks, sample_rate, channels, ok = _decode(fp, seek_time, duration, seek=True)
    if not ok:
        chunks, sample_rate, channels, _ = _decode(fp, seek_time, duration, seek=False)
    return (f32_pcm(torch.cat(chunks, dim=-1)) if chunks else torch.zeros(channels, 0)), sample_rate


def _read_resampled(fp: Path, seek_time: float, duration: float, rate: int) -> tuple[torch.Tensor, int]:
    """Like `_decoded`, resampled to `rate` with the samples of a whole-file read: the decoded span starts on a
    sample both rates share and reaches 10 ms beyond both ends, so the resampler sees the same context."""
    decoded_rate = _decoded_rate(fp)
    if decoded_rate == rate:
        return _decoded(fp, seek_time, duration)
    step = rate // math.gcd(rate, decoded_rate)  # `rate` samples per sample both rates share
    margin = -(-max(step, rate // 100) // step) * step
    first = int(seek_time * rate)
    start = max(0, (first - margin) // step * step)
    start_seconds = (start * decoded_rate // rate + 0.5) / decoded_rate  # exactly that decoded sample
    span = (first - start + int(duration * rate) + margin) / rate if duration > 0 else -1.0
    wav, _ = _decoded(fp, start_seconds, span)
    if wav.shape[-1]:
        wav = convert_audio(wav, decoded_rate, rate, wav.shape[0])
    return wav[:, first - start:], rate


def _decoded_rate(fp: Path) -> int:
    container, stream = _open_audio(fp)
    with container:
        return int(stream.codec_context.sample_rate)


def _opus_source_rate(fp: Path) -> int | None:
    container, stream = _open_audio(fp)
    with container:
        return _source_rate(container, stream)


def audio_metadata(filepath: PathLike) -> dict[str, str]:
    """Tags of `filepath` (container tags, then those of its first audio stream) as a dict."""
    fp = _existing_file(filepath)
    container, stream = _open_audio(fp)
    with container:
        tags = dict(container.metadata)
        tags.update(stream.metadata)
    return tags


# ------------------------------------------------------------------------------------------------ writing
def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) <= 0:
        raise ArgumentError(f"{name} must be a positive integer (kbps), got {value!r}")
    return int(value)


def _encoder_rate(fmt: _Format, sample_rate: int) -> int:
    """The rate to encode at: `sample_rate` when the encoder takes it, else the closest higher one it takes."""
    if fmt.rates is None or sample_rate in fmt.rates:
        return sample_rate
    higher = [rate for rate in fmt.rates if rate > sample_rate]
    return min(higher) if higher else max(fmt.rates)


def _to_encoder_array(wav: torch.Tensor, sample_fmt: str) -> np.ndarray:
    """`[C, T]` float -> the array PyAV expects: int16 (rint(x * 32768), clipped) or float32, planar or packed."""
    if sample_fmt.startswith('s16'):
        data = (wav * 2 ** 15).round().clamp(-2 ** 15, 2 ** 15 - 1).to(torch.int16)
    else:
        data = wav.to(torch.float32)
    if sample_fmt.endswith('p'):
        return np.ascontiguousarray(data.numpy())  # planar: [C, T]
    return np.ascontiguousarray(data.t().numpy()).reshape(1, -1)  # packed: [1, T * C]


def _encode_to(target: Path | tp.BinaryIO, wav: torch.Tensor, sample_rate: int, fmt: _Format, bit_rate: int | None,
               metadata: dict[str, str]) -> None:
    """Encode `wav` `[C, T]` (float, normalised) with format `fmt` into a new file at `target` (a path, or a
    seekable binary file object)."""
    import av

    channels = wav.shape[0]
    layout = _LAYOUTS[channels]
    with av.open(str(target) if isinstance(target, Path) else target, mode='w', format=fmt.container) as container:
        container.metadata.update(metadata)
        stream: tp.Any = container.add_stream(fmt.codec, rate=sample_rate)
        stream.codec_context.layout = layout
        stream.codec_context.format = fmt.sample_fmt
        if bit_rate is not None:
            stream.codec_context.bit_rate = bit_rate
        stream.metadata.update(metadata)
        for start in range(0, wav.shape[-1], _CHUNK):
            array = _to_encoder_array(wav[:, start:start + _CHUNK], fmt.sample_fmt)
            frame = av.AudioFrame.from_ndarray(array, format=fmt.sample_fmt, layout=layout)
            frame.sample_rate = sample_rate
            frame.time_base = Fraction(1, sample_rate)
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _fsync_file(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unnamed_file(folder: Path) -> int | None:
    """A file descriptor of a new file with no name in `folder` (Linux `O_TMPFILE`), or None where unsupported."""
    flag = getattr(os, 'O_TMPFILE', None)
    if flag is None or not os.path.isdir('/proc/self/fd'):
        return None
    try:
        return os.open(str(folder), flag | os.O_RDWR, 0o666)
    except OSError:  # e.g. a filesystem without O_TMPFILE support
        return None


def _link_unnamed(fd: int, name: Path) -> None:
    """Give the unnamed file `fd` the name `name` (linkat of /proc/self/fd/<fd>, following that link)."""
    folder = os.open('/proc/self/fd', os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    try:  # with src_dir_fd, os.link calls linkat(..., AT_SYMLINK_FOLLOW); plain link() would not follow
        os.link(str(fd), name, src_dir_fd=folder, follow_symlinks=True)
    finally:
        os.close(folder)


def _write_atomically(path: Path, write: tp.Callable[[Path | tp.BinaryIO], None]) -> None:
    """Write the new file with `write(target)`, sync it, then put it in place of `path` in one rename.

    On Linux the file is written with no name at all (`O_TMPFILE`) and only linked into the folder once complete
    (under a hidden name renamed onto `path` right away): a process killed at any point (even by SIGKILL) leaves
    `path` as it was and no temporary file behind (except if killed between those two adjacent system calls).
    Elsewhere a hidden temporary file next to `path` is written then renamed. On any failure (including
    KeyboardInterrupt) the new data is discarded and `path` is left as it was.
    """
    tmp = path.with_name(f'.{path.name}.{secrets.token_hex(6)}.tmp')
    fd = _unnamed_file(path.parent)
    if fd is not None:
        with os.fdopen(fd, 'w+b') as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
            _link_unnamed(file.fileno(), tmp)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        _fsync_dir(path.parent)
        return
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def audio_write(stem_name: PathLike, wav: torch.Tensor, sample_rate: int, format: str = 'wav',
                mp3_rate: int = 320, ogg_rate: int | None = None, normalize: bool = True, strategy: str = 'peak',
                peak_clip_headroom_db: float = 1, rms_headroom_db: float = 18, loudness_headroom_db: float = 14,
                loudness_compressor: bool = False, log_clipping: bool = True, make_parent_dir: bool = True,
                add_suffix: bool = True, metadata: dict[str, tp.Any] | None = None) -> Path:
    """Normalise `wav` float `[C, T]` (or `[T]`, mono) and write it to `stem_name` + '.' + `format`.

    Formats: 'wav' (16-bit PCM, samples `rint(x * 32768)` clipped to int16), 'mp3' (LAME at `mp3_rate` kbps),
    'ogg' (Opus, at `ogg_rate` kbps or the encoder default) and 'flac' (16-bit). MP3 and Opus accept only some
    sample rates; other rates are resampled to the next one they accept.

    'ogg' is Ogg/Opus, where Audiocraft writes Ogg/Vorbis. Opus always decodes at 48 kHz, so the input's rate is
    recorded in the tag `ORIGINAL_SAMPLE_RATE` and `audio_info` / `audio_read` give the audio back at that rate,
    as Audiocraft's Vorbis files do (other readers see 48 kHz). Channels (1 to 8) are kept and `ogg_rate` is
    honoured. PyAV's FFmpeg has no
    libvorbis; FFmpeg's own Vorbis encoder is experimental, takes exactly 2 channels (mono would come back as
    stereo) and ignores the bit rate. On a music-like mono signal (`scripts/compare_ogg_codecs.py`) it gives
    27.5 dB SNR at 79 kbps; Opus 25.7 dB at the default (90 kbps) and 28.0 dB with `ogg_rate=96` (130 kbps).
    Normalisation arguments are those of `audio_utils.normalize_audio`. `metadata` tags are stored where the
    container allows (wav keeps only standard RIFF INFO keys such as 'title', 'artist', 'comment'; mp3, ogg
    and flac keep any key). The write is atomic (see the module docstring). Returns the path written.
    strategy='loudness' aims at -14 LUFS as Audiocraft measures it: its meter clips the K-weighted signal to
    [-1, 1], so a take with peaks above 1 comes out louder; with `loudness_compressor`'s tanh limiter such
    files measure about -13.2 LUFS.
    """
    if not isinstance(stem_name, (str, os.PathLike)):
        raise ArgumentTypeError(f"stem_name must be a str or os.PathLike, got {type(stem_name).__name__}")
    if not isinstance(format, str) or format.lower() not in _FORMATS:
        raise ArgumentError(f"unknown audio format {format!r}; allowed: {', '.join(_FORMATS)}")
    fmt = _FORMATS[format.lower()]
    wav = _check_float_clip(wav)
    if wav.dim() == 1:
        wav = wav[None]
    sample_rate = _check_sample_rate(sample_rate)
    if not 1 <= wav.shape[0] <= fmt.max_channels:
        raise ArgumentError(f"format {format!r} takes 1 to {fmt.max_channels} channels, got wav of shape "
                            f"{list(wav.shape)} ({wav.shape[0]} channels; wav must be [C, T])")
    if wav.shape[-1] == 0:
        raise ArgumentError("wav is empty (0 samples); nothing to write")
    if metadata is not None and not isinstance(metadata, dict):
        raise ArgumentTypeError(f"metadata must be a dict or None, got {type(metadata).__name__}")
    tags = {str(key): str(value) for key, value in (metadata or {}).items()}
    if fmt.codec == 'libopus':
        tags[SOURCE_RATE_TAG] = str(sample_rate)
    bit_rate = None
    if fmt.codec == 'libmp3lame':
        bit_rate = _check_positive_int(mp3_rate, 'mp3_rate') * 1000
    elif fmt.codec == 'libopus' and ogg_rate is not None:
        bit_rate = _check_positive_int(ogg_rate, 'ogg_rate') * 1000

    wav = normalize_audio(wav.detach().cpu().float(), normalize, strategy, peak_clip_headroom_db, rms_headroom_db,
                          loudness_headroom_db, loudness_compressor, log_clipping=log_clipping,
                          sample_rate=sample_rate, stem_name=str(stem_name))
    rate = _encoder_rate(fmt, sample_rate)
    if rate != sample_rate:
        wav = convert_audio(wav, sample_rate, rate, wav.shape[0])

    path = Path(str(stem_name) + (fmt.suffix if add_suffix else ''))
    if make_parent_dir:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"parent folder of '{path}' does not exist (make_parent_dir=False)",
                                str(path.parent))
    _write_atomically(path, lambda tmp: _encode_to(tmp, wav, rate, fmt, bit_rate, tags))
    return path


# ------------------------------------------------------------------------------------------------ Audiocraft names
def _av_read(filepath: PathLike, seek_time: float = 0, duration: float = -1.) -> tuple[torch.Tensor, int]:
    """Audiocraft's PyAV reader, kept for code that imports it: :func:`audio_read` without padding."""
    return audio_read(filepath, seek_time, duration)


def _av_info(filepath: PathLike) -> AudioFileInfo:
    """Audiocraft's PyAV probe, kept for code that imports it: :func:`audio_info`."""
    return audio_info(filepath)


_soundfile_info = _av_info  # Audiocraft probed wav files with soundfile; PyAV reads the same headers
