"""A picture of a waveform (min/max envelope per pixel column), drawn with Pillow (a gradio dependency)."""
from __future__ import annotations

import typing as tp

import torch

if tp.TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

BACKGROUND = (255, 255, 255)
ENVELOPE = (249, 115, 22)      # orange, gradio's default accent
AXIS = (203, 213, 225)
LABEL = (71, 85, 105)


def envelope(wav: torch.Tensor, columns: int) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Per-column (min, max) of the channel mean of ``wav`` ``[C, T]`` (or ``[T]``), each ``[min(columns, T)]``."""
    if wav.dim() == 1:
        wav = wav[None]
    if wav.dim() != 2 or wav.shape[-1] == 0:
        raise ValueError(f"wav must be a non-empty [C, T] tensor, got shape {list(wav.shape)}.")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}.")
    mono = wav.detach().float().cpu().mean(dim=0)
    columns = min(columns, mono.shape[-1])
    # Sample t falls in column floor(t * columns / T): nearly equal, contiguous, never empty buckets.
    length = mono.shape[-1]
    bucket = torch.div(torch.arange(length) * columns, length, rounding_mode="floor")
    low = torch.full((columns,), float("inf")).scatter_reduce(0, bucket, mono, reduce="amin")
    high = torch.full((columns,), float("-inf")).scatter_reduce(0, bucket, mono, reduce="amax")
    return low, high


def waveform_image(wav: torch.Tensor, sample_rate: int, width: int = 800, height: int = 200) -> "Image":
    """Draw ``wav`` ``[C, T]`` as an RGB picture of ``width`` x ``height`` with its duration written under it.

    Stereo audio gets one lane per channel (left on top, marked L and R); other channel counts are drawn as their
    mean in one lane.
    """
    from PIL import Image, ImageDraw

    if width < 16 or height < 32:
        raise ValueError(f"the picture must be at least 16 x 32 pixels, got {width} x {height}.")
    if wav.dim() == 1:
        wav = wav[None]
    label_height = 14
    plot_height = height - label_height
    lanes = [wav[:1], wav[1:2]] if wav.dim() == 2 and wav.shape[0] == 2 else [wav]
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    lane_height = plot_height // len(lanes)
    for index, lane in enumerate(lanes):
        _draw_lane(draw, lane, index * lane_height, lane_height, width)
        if len(lanes) > 1:
            draw.text((4, index * lane_height + 1), "LR"[index], fill=LABEL)
    seconds = wav.shape[-1] / sample_rate
    draw.text((4, plot_height + 1), "0 s", fill=LABEL)
    end_label = f"{seconds:.2f} s"
    text_width = draw.textlength(end_label)
    draw.text((width - 4 - text_width, plot_height + 1), end_label, fill=LABEL)
    return image


def _draw_lane(draw: tp.Any, wav: torch.Tensor, top: int, lane_height: int, width: int) -> None:
    """The envelope of ``wav`` ``[C, T]`` (channel mean) in the rows ``top .. top + lane_height``."""
    low, high = envelope(wav, width)
    columns = low.shape[0]
    middle = top + (lane_height - 1) // 2
    draw.line([(0, middle), (width - 1, middle)], fill=AXIS)
    scale = (lane_height - 1) // 2 - 2
    for i in range(columns):
        x = i * width // columns
        x_end = max(x, (i + 1) * width // columns - 1)
        upper = middle - float(high[i].clamp(-1, 1)) * scale
        lower = middle - float(low[i].clamp(-1, 1)) * scale
        draw.rectangle([(x, round(upper)), (x_end, round(lower))], fill=ENVELOPE)
