"""AAC in ADTS framing, encoded with PyAV: what a streaming ``gr.Audio`` plays while the music is generated.

gradio's streaming audio player takes AAC segments (HLS). gradio converts each yielded chunk on its own with
pydub, which needs an ``ffmpeg`` program on the PATH and restarts the encoder at every chunk (a click at each
boundary). ``AdtsEncoder`` keeps one encoder for the whole take instead, through PyAV (already a dependency,
with its own FFmpeg libraries), and frames each AAC packet with the 7-byte ADTS header (ISO/IEC 13818-7), so
every chunk it returns is a playable segment that continues the previous one seamlessly.
"""
from __future__ import annotations

from fractions import Fraction
import typing as tp

import numpy as np
import torch

# ADTS sampling_frequency_index -> rate (ISO/IEC 14496-3, table 1.18).
ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
SAMPLES_PER_FRAME = 1024  # AAC-LC
HEADER_BYTES = 7          # no CRC (protection_absent = 1)


def adts_header(payload_bytes: int, sample_rate: int, channels: int) -> bytes:
    """The 7-byte ADTS header of one AAC-LC frame carrying ``payload_bytes`` bytes of raw AAC data."""
    if sample_rate not in ADTS_RATES:
        raise ValueError(f"sample_rate must be one of {ADTS_RATES} for ADTS, got {sample_rate}.")
    if not 1 <= channels <= 7:
        raise ValueError(f"channels must be 1 to 7 for ADTS, got {channels}.")
    length = payload_bytes + HEADER_BYTES
    if length >= 1 << 13:
        raise ValueError(f"an ADTS frame holds at most {(1 << 13) - 1 - HEADER_BYTES} bytes, got {payload_bytes}.")
    rate_index = ADTS_RATES.index(sample_rate)
    profile = 1  # audio object type - 1: AAC-LC
    bits = 0xFFF                               # syncword (12)
    bits = bits << 1 | 0                       # MPEG-4 (1)
    bits = bits << 2 | 0                       # layer (2)
    bits = bits << 1 | 1                       # protection absent (1)
    bits = bits << 2 | profile                 # profile (2)
    bits = bits << 4 | rate_index              # sampling frequency index (4)
    bits = bits << 1 | 0                       # private bit (1)
    bits = bits << 3 | channels                # channel configuration (3)
    bits = bits << 4 | 0                       # original, home, copyright id bit and start (4)
    bits = bits << 13 | length                 # frame length, header included (13)
    bits = bits << 11 | 0x7FF                  # buffer fullness: variable bit rate (11)
    bits = bits << 2 | 0                       # one raw data block (2)
    return bits.to_bytes(HEADER_BYTES, "big")


def adts_duration(data: bytes) -> float:
    """Seconds of audio in a run of ADTS frames (1024 samples each, at the rate their headers give)."""
    position, samples, rate = 0, 0, 0
    while position + HEADER_BYTES <= len(data):
        header = int.from_bytes(data[position:position + HEADER_BYTES], "big")
        if header >> 44 != 0xFFF:
            raise ValueError(f"no ADTS syncword at byte {position}.")
        rate = ADTS_RATES[(header >> 34) & 0xF]
        length = (header >> 13) & 0x1FFF
        if length < HEADER_BYTES:
            raise ValueError(f"invalid ADTS frame length {length} at byte {position}.")
        samples += SAMPLES_PER_FRAME
        position += length
    return samples / rate if rate else 0.0


class AdtsEncoder:
    """Encode one take, chunk by chunk, to AAC-LC in ADTS frames.

    Args:
        sample_rate: one of ``ADTS_RATES`` (MusicGen's 32 kHz is).
        channels: 1 or 2.
        bit_rate: bits per second.
    """

    def __init__(self, sample_rate: int, channels: int, bit_rate: int = 128_000) -> None:
        import av  # lazy: PyAV is imported by the app only

        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {channels}.")
        adts_header(0, sample_rate, channels)  # check the rate
        self.sample_rate = sample_rate
        self.channels = channels
        self._av = av
        codec: tp.Any = av.CodecContext.create("aac", "w")
        codec.sample_rate = sample_rate
        codec.layout = "mono" if channels == 1 else "stereo"
        codec.format = "fltp"
        codec.bit_rate = bit_rate
        codec.time_base = Fraction(1, sample_rate)
        codec.open()
        self._codec = codec
        self._frame = int(codec.frame_size) or SAMPLES_PER_FRAME
        self._pending = np.zeros((channels, 0), dtype=np.float32)
        self._pts = 0
        self._closed = False

    def _packets(self, packets: tp.Iterable[tp.Any]) -> bytes:
        out = bytearray()
        for packet in packets:
            payload = bytes(packet)
            out += adts_header(len(payload), self.sample_rate, self.channels) + payload
        return bytes(out)

    def _encode_frame(self, samples: tp.Optional[np.ndarray]) -> bytes:
        if samples is None:
            return self._packets(self._codec.encode(None))
        frame = self._av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp",
                                                 layout=self._codec.layout.name)
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += samples.shape[-1]
        return self._packets(self._codec.encode(frame))

    def encode(self, wav: torch.Tensor) -> bytes:
        """ADTS bytes for the next ``wav`` ``[C, n]`` float (samples that fill no whole frame wait for more)."""
        if self._closed:
            raise RuntimeError("the encoder was flushed; start a new one for a new take.")
        if wav.dim() != 2 or wav.shape[0] != self.channels:
            raise ValueError(f"wav must have shape [{self.channels}, n], got {list(wav.shape)}.")
        samples = wav.detach().cpu().float().clamp(-1.0, 1.0).numpy()
        self._pending = np.concatenate([self._pending, samples], axis=-1)
        out = bytearray()
        while self._pending.shape[-1] >= self._frame:
            out += self._encode_frame(self._pending[:, :self._frame])
            self._pending = self._pending[:, self._frame:]
        return bytes(out)

    def flush(self) -> bytes:
        """The last samples and the encoder's delayed frames; the encoder cannot be used afterwards."""
        if self._closed:
            return b""
        out = bytearray()
        if self._pending.shape[-1]:
            out += self._encode_frame(self._pending)
            self._pending = self._pending[:, :0]
        out += self._encode_frame(None)
        self._closed = True
        return bytes(out)
