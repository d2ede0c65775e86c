"""Audio data helpers: file I/O (`audio`) and waveform utilities (`audio_utils`)."""
from . import audio, audio_utils  # noqa: F401
from .audio import AudioFileInfo, audio_info, audio_read, audio_write  # noqa: F401
from .audio_utils import convert_audio, convert_audio_channels, normalize_audio  # noqa: F401
