"""A streaming ``gr.Audio`` output that takes ready-made AAC (ADTS) segments, with no ``ffmpeg`` program.

Handlers yield the bytes of ``aac.AdtsEncoder`` (one encoder per take, so segments join without clicks).
Stock gradio would re-encode every yielded chunk through pydub, which needs an ``ffmpeg`` executable on the
PATH; here the bytes are already AAC, so they go to the player's HLS playlist as they are.
"""
from __future__ import annotations

import typing as tp
import uuid

import gradio as gr
from gradio.data_classes import FileData

from .aac import adts_duration


class StreamingAudio(gr.Audio):
    """``gr.Audio`` fed with ADTS bytes; shown by gradio's own audio player. Create it with ``streaming=True``.

    (No ``__init__`` of its own: gradio reads the page properties from ``gr.Audio.__init__``'s signature.)
    """

    def get_block_name(self) -> str:
        return "audio"  # the stock front-end component

    async def stream_output(self, value: tp.Any, output_id: str, first_chunk: bool) -> tp.Tuple[tp.Any, tp.Any]:
        if not isinstance(value, bytes):
            return await super().stream_output(value, output_id, first_chunk)
        output_file = {"path": output_id, "is_stream": True, "orig_name": "generated.aac",
                       "meta": {"_type": "gradio.FileData"}}
        if not value:
            return None, output_file
        return {"data": value, "duration": adts_duration(value), "extension": ".aac"}, output_file

    async def combine_stream(self, stream: tp.List[bytes], desired_output_format: tp.Optional[str] = None,
                             only_file: bool = False) -> FileData:
        # The segments are one continuous ADTS stream: joined, they are the whole take as an .aac file.
        from gradio import processing_utils

        path = processing_utils.save_bytes_to_cache(b"".join(stream), f"{uuid.uuid4().hex[:8]}.aac",
                                                    cache_dir=self.GRADIO_CACHE)
        return FileData(path=path, is_stream=False, orig_name="generated.aac")
