"""Tests of audiocraft.data.audio: audio_write / audio_read / audio_info round trips, goldens, atomicity."""
import math
import wave
from pathlib import Path

import julius
import numpy as np
import pytest
import torch

from audiocraft.data import audio as audio_mod
from audiocraft.data.audio import SOURCE_RATE_TAG, AudioFileInfo, audio_info, audio_metadata, audio_read, audio_write
from tests.conftest import load_golden

CASES = ('peak', 'clip', 'rms', 'loudness', 'loudness_compressor', 'peak_no_normalize')
SR = 32000


@pytest.fixture(scope='module')
def aw():
    return load_golden('audio_write')


def _signal(channels: int, seconds: float = 1.3, sample_rate: int = SR) -> torch.Tensor:
    """A chirp plus two tones, peak < 1: `[C, T]`."""
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    chans = [0.4 * torch.sin(2 * math.pi * (220 + 200 * t) * t) + 0.2 * torch.sin(2 * math.pi * (330 + 110 * c) * t)
             for c in range(channels)]
    return torch.stack(chans)


def _read_wav_stdlib(path: Path) -> tuple[torch.Tensor, int]:
    """16-bit PCM samples `[C, T]` int16 and the rate, read without PyAV."""
    with wave.open(str(path), 'rb') as f:
        assert f.getsampwidth() == 2
        data = np.frombuffer(f.readframes(f.getnframes()), dtype='<i2').reshape(-1, f.getnchannels())
        return torch.from_numpy(data.T.copy()), f.getframerate()


def _write_wav_stdlib(path: Path, samples: torch.Tensor, sample_rate: int) -> None:
    with wave.open(str(path), 'wb') as f:
        f.setnchannels(samples.shape[0])
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(samples.t().contiguous().numpy().astype('<i2').tobytes())


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith('.'))


# ------------------------------------------------------------------------------------------------ goldens
@pytest.mark.parametrize('case', CASES)
def test_audio_write_golden_file(aw, case, tmp_path):
    cmeta = aw['meta']['cases'][case]
    sr = aw['meta']['sample_rate']
    path = audio_write(tmp_path / case, aw['input_wav'].clone(), sr, format='wav', log_clipping=False,
                       **cmeta['audio_write_kwargs'])
    assert path == tmp_path / cmeta['file']
    samples, file_sr = _read_wav_stdlib(path)
    assert file_sr == sr
    want = aw[f'{case}_file_int16']
    assert samples.shape == want.shape
    max_lsb = (samples.int() - want.int()).abs().max().item()
    assert max_lsb <= (1 if case.startswith('loudness') else 0)
    assert _leftovers(tmp_path) == []


def test_audio_read_golden_files(aw, tmp_path):
    sr = aw['meta']['sample_rate']
    for case in CASES:
        want = aw[f'{case}_file_int16']
        _write_wav_stdlib(tmp_path / f'{case}.wav', want, sr)
        wav, read_sr = audio_read(tmp_path / f'{case}.wav')
        assert read_sr == sr and wav.dtype == torch.float32
        assert torch.equal(wav, want.float() / 2 ** 15)
        assert audio_info(tmp_path / f'{case}.wav') == AudioFileInfo(sr, want.shape[-1] / sr, 2)


# ------------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize('channels', [1, 2])
@pytest.mark.parametrize('fmt', ['wav', 'flac'])
def test_lossless_round_trip(fmt, channels, tmp_path):
    wav = _signal(channels)
    path = audio_write(tmp_path / 'x', wav, SR, format=fmt, strategy='none')
    assert path == tmp_path / f'x.{fmt}'
    out, sr = audio_read(path)
    assert sr == SR and out.shape == wav.shape
    assert (out - wav).abs().max().item() <= 0.5 / 2 ** 15 + 1e-7  # within half an LSB of the float input
    assert audio_info(path) == AudioFileInfo(SR, wav.shape[-1] / SR, channels)


@pytest.mark.parametrize('channels', [1, 2])
@pytest.mark.parametrize('fmt', ['mp3', 'ogg'])
def test_lossy_round_trip(fmt, channels, tmp_path):
    read_sr = SR  # Opus decodes at 48 kHz; audio_read gives it back at the rate it was written at
    wav = _signal(channels)
    path = audio_write(tmp_path / 'x', wav, SR, format=fmt, strategy='none')
    assert path.suffix == f'.{fmt}' and path.stat().st_size > 0
    out, sr = audio_read(path)
    assert sr == read_sr
    assert out.shape == (channels, round(wav.shape[-1] * read_sr / SR))
    info = audio_info(path)
    assert (info.sample_rate, info.channels) == (read_sr, channels)
    assert info.duration == pytest.approx(wav.shape[-1] / SR, abs=1e-3)
    ref = wav if read_sr == SR else julius.resample_frac(wav, SR, read_sr)
    for c in range(channels):
        assert np.corrcoef(out[c].numpy(), ref[c].numpy())[0, 1] > 0.99


def _music_like(seconds: float = 3.0, sample_rate: int = SR) -> torch.Tensor:
    """Plucked harmonic notes (2 per second), noise bursts (a hi-hat) and a bass line, peak 0.5: `[1, T]`."""
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    notes = torch.tensor([220.0, 277.18, 329.63, 440.0, 369.99, 293.66])[(t * 2).long() % 6]
    since = t % 0.5
    pluck = torch.exp(-3 * since) * (1 - torch.exp(-200 * since))
    wav = pluck * sum((0.6 / k) * torch.sin(2 * math.pi * notes * k * since + k) for k in range(1, 9))
    hat = torch.exp(-60 * (t % 0.25)) * (t % 0.25 < 0.05)
    wav = wav + 0.15 * torch.randn(len(t), generator=torch.Generator().manual_seed(0)) * hat
    wav = wav + 0.3 * torch.sin(2 * math.pi * 55 * t)
    return (0.5 * wav / wav.abs().max())[None]


def _snr_db(reference: torch.Tensor, decoded: torch.Tensor) -> float:
    n = min(reference.shape[-1], decoded.shape[-1])
    ref, out = reference[..., :n].double(), decoded[..., :n].double()
    return 10 * math.log10(float((ref ** 2).sum() / ((ref - out) ** 2).sum()))


@pytest.mark.parametrize('channels', [1, 2, 6])
@pytest.mark.parametrize('rate', [8000, 32000])
def test_ogg_is_opus_read_back_at_its_rate_with_its_channels(channels, rate, tmp_path):
    """'ogg' writes Ogg/Opus (Audiocraft: Ogg/Vorbis; see audio_write and the README's "Differences from
    Audiocraft"), which decodes at 48 kHz: the input's rate is recorded in a tag and the audio comes back at it,
    as Audiocraft's files do; channels and duration kept. Other readers see the 48 kHz stream."""
    import av
    path = audio_write(tmp_path / 'x', _signal(channels, 1.0, rate), rate, format='ogg', strategy='none')
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert (container.format.name, stream.codec_context.name) == ('ogg', 'opus')
        assert stream.codec_context.channels == channels and stream.codec_context.sample_rate in (rate, 48000)
    assert audio_metadata(path)[SOURCE_RATE_TAG] == str(rate)
    info = audio_info(path)
    assert (info.sample_rate, info.channels) == (rate, channels) and info.duration == pytest.approx(1.0, abs=1e-5)
    wav, sr = audio_read(path)
    assert (sr, wav.shape) == (rate, (channels, rate))
    part, sr = audio_read(path, 0.25, 0.5)
    assert (sr, part.shape) == (rate, (channels, rate // 2))


def test_ogg_from_another_writer_reads_at_48khz(tmp_path):
    """An Opus file without the tag (another program's) is read as decoded, at 48 kHz."""
    import av
    path = tmp_path / 'other.ogg'
    with av.open(str(path), mode='w', format='ogg') as container:
        stream = container.add_stream('libopus', rate=48000)
        stream.codec_context.layout = 'mono'
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4800), dtype=np.float32), format='flt', layout='mono')
        frame.sample_rate, frame.pts = 48000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert audio_info(path).sample_rate == 48000 and audio_read(path)[1] == 48000


def test_ogg_quality_on_music_and_ogg_rate(tmp_path):
    """SNR against the source on a music-like signal, back at 32 kHz: measured 25.1 dB at the default bit rate,
    26.8 dB with ogg_rate=96 (scripts/compare_ogg_codecs.py prints both codecs)."""
    wav = _music_like()
    snrs, sizes = {}, {}
    for kbps in (None, 96):
        path = audio_write(tmp_path / f'x{kbps}', wav, SR, format='ogg', ogg_rate=kbps, strategy='none')
        out, sr = audio_read(path)
        snrs[kbps], sizes[kbps] = _snr_db(wav, julius.resample_frac(out, sr, SR)), path.stat().st_size
    assert snrs[None] > 23.0
    assert snrs[96] > snrs[None] + 1.0 and sizes[96] > 1.2 * sizes[None]


def test_mp3_unsupported_rate_is_resampled(tmp_path):
    wav = _signal(1, 0.5, 20000)
    path = audio_write(tmp_path / 'x', wav, 20000, format='mp3', strategy='none')
    out, sr = audio_read(path)
    assert sr == 22050 and out.shape == (1, int(wav.shape[-1] * 22050 / 20000))


def test_mono_1d_input_and_peak_default(tmp_path):
    wav = _signal(1)[0] * 0.1
    path = audio_write(tmp_path / 'mono', wav, SR)
    out, _ = audio_read(path)
    assert out.shape == (1, wav.shape[-1])
    assert out.abs().max().item() == pytest.approx(10 ** (-1 / 20), abs=1 / 2 ** 15)


def test_suffix_and_parent_dir(tmp_path):
    wav = _signal(1, 0.1)
    path = audio_write(tmp_path / 'a' / 'b' / 'song.v1', wav, SR, add_suffix=False)
    assert path == tmp_path / 'a' / 'b' / 'song.v1' and path.is_file()
    assert audio_read(path)[0].shape == wav.shape
    with pytest.raises(FileNotFoundError, match=r'parent folder .* does not exist'):
        audio_write(tmp_path / 'missing' / 'x', wav, SR, make_parent_dir=False)
    assert not (tmp_path / 'missing').exists()


@pytest.mark.parametrize('fmt,key', [('mp3', 'generation_params'), ('ogg', 'generation_params'),
                                     ('flac', 'generation_params'), ('wav', 'comment')])
def test_metadata_round_trip(fmt, key, tmp_path):
    value = '{"cfg_coef": 3.0, "top_k": 250}'
    path = audio_write(tmp_path / 'x', _signal(1, 0.3), SR, format=fmt, metadata={key: value, 'title': 'demo'})
    tags = {k.lower(): v for k, v in audio_metadata(path).items()}
    assert tags[key] == value
    assert tags['title'] == 'demo'


# ------------------------------------------------------------------------------------------------ reading
@pytest.fixture(scope='module')
def long_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('long')
    wav = _signal(2, 2.5)
    return wav, {fmt: audio_write(folder / 'x', wav, SR, format=fmt, strategy='none')
                 for fmt in ('wav', 'mp3', 'ogg', 'flac')}


@pytest.mark.parametrize('fmt', ['wav', 'flac', 'mp3', 'ogg'])
@pytest.mark.parametrize('seek_time,duration', [(0.0, 1.0), (0.05, 0.5), (0.7, 1.0), (1.9, -1.0), (2.2, 1.0)])
def test_seek_and_duration(long_files, fmt, seek_time, duration):
    _, files = long_files
    full, sr = audio_read(files[fmt])
    wav, sr2 = audio_read(files[fmt], seek_time=seek_time, duration=duration)
    assert sr2 == sr
    start = int(seek_time * sr)
    stop = start + int(duration * sr) if duration > 0 else full.shape[-1]
    want = full[:, start:stop]
    assert wav.shape == want.shape
    # Lossless: identical samples. Lossy: the decoder restarts 0.1 s early, so only tiny differences.
    tol = 0.0 if fmt in ('wav', 'flac') else 1e-3
    assert (wav - want).abs().max().item() <= tol


def test_pad(long_files):
    wav, files = long_files
    out, sr = audio_read(files['wav'], seek_time=2.0, duration=1.0, pad=True)
    assert out.shape == (2, sr)
    valid = wav.shape[-1] - 2 * sr
    assert torch.equal(out[:, valid:], torch.zeros(2, sr - valid))
    unpadded, _ = audio_read(files['wav'], seek_time=2.0, duration=1.0)
    assert unpadded.shape == (2, valid)
    assert torch.equal(out[:, :valid], unpadded)
    past_end, _ = audio_read(files['wav'], seek_time=10.0, duration=0.5, pad=True)
    assert torch.equal(past_end, torch.zeros(2, sr // 2))


def test_read_m4a(tmp_path):
    av = pytest.importorskip('av')
    wav = _signal(2, 1.0)
    path = tmp_path / 'x.m4a'
    with av.open(str(path), 'w', format='ipod') as container:
        stream = container.add_stream('aac', rate=SR)
        stream.codec_context.layout = 'stereo'
        stream.codec_context.format = 'fltp'
        frame = av.AudioFrame.from_ndarray(wav.numpy(), format='fltp', layout='stereo')
        frame.sample_rate = SR
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    out, sr = audio_read(path)
    assert sr == SR and out.shape[0] == 2
    assert out.shape[-1] == pytest.approx(wav.shape[-1], abs=2048)
    assert audio_info(path).channels == 2


# ------------------------------------------------------------------------------------------------ atomicity
def test_failure_mid_write_keeps_old_file(tmp_path, monkeypatch):
    old = audio_write(tmp_path / 'song', _signal(1, 0.2), SR)
    old_bytes = old.read_bytes()
    calls = []
    real = audio_mod._to_encoder_array

    def flaky(wav, sample_fmt):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError('disk on fire')
        return real(wav, sample_fmt)

    monkeypatch.setattr(audio_mod, '_CHUNK', 1024)
    monkeypatch.setattr(audio_mod, '_to_encoder_array', flaky)
    with pytest.raises(RuntimeError, match='disk on fire'):
        audio_write(tmp_path / 'song', _signal(2, 0.5), SR)
    assert len(calls) == 2
    assert old.read_bytes() == old_bytes
    assert _leftovers(tmp_path) == []
    with pytest.raises(RuntimeError, match='disk on fire'):
        calls.clear()
        audio_write(tmp_path / 'new', _signal(2, 0.5), SR, format='mp3')
    assert not (tmp_path / 'new.mp3').exists()
    assert _leftovers(tmp_path) == []


def test_failure_at_sync_keeps_old_file(tmp_path, monkeypatch):
    old = audio_write(tmp_path / 'song', _signal(1, 0.2), SR, format='flac')
    old_bytes = old.read_bytes()

    def no_sync(fd):
        raise OSError('fsync failed')

    monkeypatch.setattr(audio_mod.os, 'fsync', no_sync)
    with pytest.raises(OSError, match='fsync failed'):
        audio_write(tmp_path / 'song', _signal(2, 0.4), SR, format='flac')
    assert old.read_bytes() == old_bytes
    assert _leftovers(tmp_path) == []


def test_overwrite_replaces_file(tmp_path):
    audio_write(tmp_path / 'song', _signal(1, 0.2), SR)
    path = audio_write(tmp_path / 'song', _signal(2, 0.3), SR)
    assert audio_info(path) == AudioFileInfo(SR, 0.3, 2)
    assert [p.name for p in tmp_path.iterdir()] == ['song.wav']


# ------------------------------------------------------------------------------------------------ errors
def test_read_errors(tmp_path):
    missing = tmp_path / 'nope.wav'
    with pytest.raises(FileNotFoundError, match=r'no such audio file: .*nope\.wav'):
        audio_read(missing)
    with pytest.raises(FileNotFoundError, match=r'nope\.wav'):
        audio_info(missing)
    path = audio_write(tmp_path / 'x', _signal(1, 0.1), SR)
    with pytest.raises(ValueError, match=r'seek_time must be >= 0 seconds, got -1'):
        audio_read(path, seek_time=-1)
    with pytest.raises(ValueError, match=r'duration must be a finite number of seconds, got nan'):
        audio_read(path, duration=float('nan'))
    with pytest.raises(TypeError, match=r'filepath must be a str or os.PathLike, got int'):
        audio_read(3)


@pytest.mark.parametrize('kwargs,exc,match', [
    (dict(format='aiff'), ValueError, r"unknown audio format 'aiff'; allowed: wav, mp3, ogg, flac"),
    (dict(wav=torch.zeros(1, 1, 10)), ValueError, r'\[C, T\] or \[T\], got 3 dims'),
    (dict(wav=torch.zeros(1, 10, dtype=torch.int16)), TypeError, r'floating point tensor, got dtype torch.int16'),
    (dict(wav=torch.tensor([[0.1, float('nan')]])), ValueError, r'NaN or infinite'),
    (dict(wav=np.zeros((1, 10))), TypeError, r'wav must be a torch.Tensor, got ndarray'),
    (dict(sample_rate=0), ValueError, r'sample_rate must be a positive integer \(Hz\), got 0'),
    (dict(sample_rate=-8000), ValueError, r'sample_rate must be a positive integer \(Hz\), got -8000'),
    (dict(strategy='loud'), ValueError, r"unknown normalization strategy 'loud'"),
    (dict(wav=torch.zeros(3, 100), format='mp3'), ValueError, r"'mp3' takes 1 to 2 channels, got .*3 channels"),
    (dict(wav=torch.zeros(100, 2)), ValueError, r"'wav' takes 1 to 8 channels, got wav of shape \[100, 2\]"),
    (dict(wav=torch.zeros(1, 0)), ValueError, r'wav is empty'),
    (dict(format='mp3', mp3_rate=0), ValueError, r'mp3_rate must be a positive integer \(kbps\), got 0'),
    (dict(format='ogg', ogg_rate=-5), ValueError, r'ogg_rate must be a positive integer \(kbps\), got -5'),
    (dict(metadata=['a']), TypeError, r'metadata must be a dict or None, got list'),
])
def test_write_errors(kwargs, exc, match, tmp_path):
    args = dict(stem_name=tmp_path / 'x', wav=0.1 * torch.ones(1, 100), sample_rate=SR)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        audio_write(**args)
    assert list(tmp_path.iterdir()) == []


def test_write_accepts_half_precision_and_grad(tmp_path):
    wav = (_signal(1, 0.2) * 0.5).requires_grad_()
    ref_path = audio_write(tmp_path / 'ref', wav, SR, strategy='none')
    for dtype in (torch.float16, torch.bfloat16):
        path = audio_write(tmp_path / str(dtype), wav.detach().to(dtype), SR, strategy='none')
        out, _ = audio_read(path)
        assert (out - audio_read(ref_path)[0]).abs().max().item() < 5e-3
