"""Images of a report: a generator's output as PIL images, PNG bytes, data URIs, montages."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

TILE = 96

PILImage = Image.Image


def to_pil(image: torch.Tensor) -> PILImage:
    """A (3, H, W) image in [0, 1] as an 8-bit PIL image."""
    arr = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5
    return Image.fromarray(arr.astype(np.uint8))


def png_bytes(image: PILImage) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def montage(tiles: Sequence[tuple[PILImage, str]], tile: int = TILE, cols: int = 10) -> PILImage:
    """A grid of square thumbnails, each with a one-line caption under it."""
    cols = max(1, min(cols, len(tiles)))
    rows = max(1, math.ceil(len(tiles) / cols))
    caption_h, pad = 14, 4
    grid = Image.new(
        "RGB", (cols * (tile + pad) + pad, rows * (tile + caption_h + pad) + pad), "white"
    )
    draw = ImageDraw.Draw(grid)
    for i, (img, caption) in enumerate(tiles):
        r, c = divmod(i, cols)
        x, y = pad + c * (tile + pad), pad + r * (tile + caption_h + pad)
        grid.paste(img.convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS), (x, y))
        draw.text((x + 1, y + tile + 1), caption[: tile // 6], fill=(30, 30, 30))
    return grid


def _thumb(path: Path | None, size: int = 64) -> str:
    if path is None or not path.exists():
        return ""
    with Image.open(path) as im:
        img = im.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    return f'<img class="thumb" alt="best image" src="{data_uri(png_bytes(img))}">'
