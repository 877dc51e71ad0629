"""Images in and out of the explorer: tensors as small PNG data URLs, uploads as model inputs.

An upload becomes what evaluation sees: greyscale or RGB to match the model's channels (transparency
flattened onto black, the background of MNIST-like data), optionally inverted (dark strokes on a light
page), resized to H x W, scaled to [0, 1] and binarized with the run's fixed evaluation draw when the
run's ``data.binarize`` is not ``none``.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from vaekit.data.transforms import eval_view

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM")
MAX_PIXELS = 4096 * 4096
UNREADABLE = (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError)


class ImageInputError(ValueError):
    """An upload that is not a usable image; the message says why and what to send instead."""


def to_png_data_url(image: torch.Tensor) -> str:
    """[C, H, W] in [0, 1] (C = 1 or 3) -> 'data:image/png;base64,...' at native resolution."""
    x = torch.nan_to_num(image.detach().float(), nan=0.0).clamp(0, 1).cpu().numpy()
    arr = np.rint(x * 255).astype(np.uint8)
    pil = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0)[..., :3])
    buf = io.BytesIO()
    pil.save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def to_data_urls(images: torch.Tensor) -> list[str]:
    return [to_png_data_url(im) for im in images]


def open_image(data: bytes) -> Image.Image:
    """Decode bytes of an image file (one of FORMATS), refusing empty, unknown or huge images."""
    if not data:
        raise ImageInputError("the request body is empty: send the bytes of an image file (PNG, JPEG, ...)")
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
    except UNREADABLE as e:
        raise _unreadable(e) from None
    if img.width * img.height > MAX_PIXELS:
        raise ImageInputError(
            f"the image is {img.width} x {img.height} pixels; at most {MAX_PIXELS} pixels are accepted"
        )
    try:
        img.load()
    except UNREADABLE as e:
        raise _unreadable(e) from None
    return img


def _unreadable(e: Exception) -> ImageInputError:
    return ImageInputError(
        f"the body is not a readable image ({type(e).__name__}); send a PNG, JPEG, GIF, BMP, WEBP, TIFF "
        "or PPM file"
    )


def image_to_input(
    img: Image.Image, event_shape: tuple[int, ...], binarize: str, seed: int, invert: bool = False
) -> torch.Tensor:
    """A PIL image -> one model input [1, C, H, W] as evaluation sees it (see the module docstring)."""
    c, h, w = event_shape
    if img.mode.startswith("I;16"):  # 16-bit grey: Pillow's convert("L") would clip, not scale
        img = Image.fromarray(np.rint(np.asarray(img, dtype=np.float64) / 257).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(flat, rgba)
    img = img.convert("L" if c == 1 else "RGB")
    if invert:
        img = ImageOps.invert(img)
    img = img.resize((w, h), Image.Resampling.LANCZOS)
    arr = np.array(img, dtype=np.uint8)
    arr = arr[None] if c == 1 else arr.transpose(2, 0, 1)
    x = torch.from_numpy(np.ascontiguousarray(arr))[None]
    return eval_view(x, binarize, seed)
