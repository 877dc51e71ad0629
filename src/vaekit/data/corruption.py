"""Corruptions of data in [0, 1]: noise (``flip:0.1``, ``gaussian:0.3``, ``saltpepper:0.1``) and masks of
observed entries (``top``, ``bottom``, ``left``, ``right``, ``center``, ``random:0.5``, ``FILE.png``).

Both are given as short specs (the ``--noise`` / ``--mask`` options of ``vaekit denoise`` / ``vaekit
complete``, and ``objective.denoise``) and parsed here once, so a bad spec is refused with the same message
everywhere. Both draw from a ``torch.Generator`` when one is given (same seed, same corruption), else from
torch's global generator (training, whose generator state the checkpoints save).

Mask convention: ``True`` = observed. A named region is the part that is *missing*: ``bottom`` hides the
bottom half, ``center`` the central square of half the image's height and width. ``random:p`` hides each
pixel with probability p. A PNG mask has the image's height and width, white (>= 128) = observed, black =
missing. Image masks cover all channels of a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vaekit.errors import ConfigError, DataError

NOISE_KINDS = {
    "flip": "each entry becomes 1 - x with probability p (binary flip noise)",
    "gaussian": "x + sigma * N(0, 1), clipped to [0, 1]",
    "saltpepper": "each entry becomes 0 or 1 (half each) with probability p",
}
REGIONS = ("top", "bottom", "left", "right", "center")
NOISE_HELP = "flip:P | gaussian:SIGMA | saltpepper:P (e.g. flip:0.1, gaussian:0.3, saltpepper:0.1)"
MASK_HELP = ("top | bottom | left | right | center (the named region is missing) | random:P (each pixel "
             "missing with probability P) | FILE.png (image-sized, white = observed, black = missing)")


@dataclass(frozen=True)
class Noise:
    """A noise process p(x~ | x) on data in [0, 1]: ``kind`` one of NOISE_KINDS, ``amount`` its p or sigma."""

    kind: str
    amount: float

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.amount:g}"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A corrupted copy x~ ~ p(x~ | x), same shape and dtype; x is not changed."""
        u = _uniform(x, generator)
        if self.kind == "flip":
            return torch.where(u < self.amount, 1 - x, x)
        if self.kind == "saltpepper":
            salt = _uniform(x, generator) < 0.5
            return torch.where(u < self.amount, salt.to(x.dtype), x)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + self.amount * noise).clamp(0, 1)


def _uniform(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _amount(spec: str, text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        kind = spec.split(":")[0]
        raise ConfigError(f"the {what} {spec!r} has no number after ':'",
                          f"write it as e.g. {kind}:0.1") from None


def parse_noise(spec: str) -> Noise:
    """``KIND:AMOUNT`` -> Noise; a ConfigError names the problem and the valid specs."""
    kind, sep, amount = str(spec).strip().partition(":")
    if kind not in NOISE_KINDS or not sep:
        raise ConfigError(f"unknown noise {spec!r}", f"use one of: {NOISE_HELP}")
    value = _amount(spec, amount, "noise")
    if kind == "gaussian" and not value > 0:
        raise ConfigError(f"noise {spec!r}: the standard deviation must be > 0", "give e.g. gaussian:0.3")
    if kind != "gaussian" and not 0 < value <= 1:
        raise ConfigError(f"noise {spec!r}: the probability must be in (0, 1]", f"give e.g. {kind}:0.1")
    return Noise(kind, value)


@dataclass(frozen=True)
class MaskSpec:
    """A parsed mask spec: a region name, ``random`` with its missing fraction, or a PNG file's path."""

    kind: str  # one of REGIONS, "random" or "file"
    fraction: float = 0.0
    path: str = ""

    def __call__(
        self, event_shape: tuple[int, ...], n: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The observed-entries mask [n, *event_shape] (bool, True = observed) for n examples."""
        event_shape = tuple(event_shape)
        if self.kind == "random":
            pixel_shape = (1, *event_shape[1:]) if len(event_shape) == 3 else event_shape
            missing = torch.rand((n, *pixel_shape), generator=generator) < self.fraction
            return (~missing).expand(n, *event_shape).clone()
        if len(event_shape) != 3:
            raise ConfigError(
                f"the mask {self.spec!r} needs image data [channels, height, width]; the data's "
                f"examples have shape {event_shape}",
                "use --mask random:P for non-image data",
            )
        _, h, w = event_shape
        plane = self._file_plane(h, w) if self.kind == "file" else _region(self.kind, h, w)
        return plane.expand(n, *event_shape).clone()

    @property
    def spec(self) -> str:
        return {"random": f"random:{self.fraction:g}", "file": self.path}.get(self.kind, self.kind)

    def _file_plane(self, h: int, w: int) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.path) as img:
                plane = np.asarray(img.convert("L"))
        except FileNotFoundError:
            raise DataError(f"mask file {self.path!r} not found",
                            "give the path of an existing PNG") from None
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"mask file {self.path!r} cannot be read as an image ({e})",
                            "give a PNG: white = observed, black = missing") from None
        if plane.shape != (h, w):
            raise DataError(
                f"mask file {self.path!r} is {plane.shape[1]}x{plane.shape[0]} pixels (width x height), the "
                f"images are {w}x{h}",
                f"draw the mask at the images' size, {w}x{h} pixels (white = observed, black = missing)",
            )
        return torch.from_numpy(plane >= 128)


def _region(name: str, h: int, w: int) -> torch.Tensor:
    """[h, w] observed plane with the named region missing (halves round the missing part down)."""
    observed = torch.ones(h, w, dtype=torch.bool)
    if name == "top":
        observed[: h // 2] = False
    elif name == "bottom":
        observed[h - h // 2 :] = False
    elif name == "left":
        observed[:, : w // 2] = False
    elif name == "right":
        observed[:, w - w // 2 :] = False
    else:  # center: a square of half the height and width
        top, left = (h - h // 2) // 2, (w - w // 2) // 2
        observed[top : top + h // 2, left : left + w // 2] = False
    return observed


def parse_mask(spec: str) -> MaskSpec:
    """A mask spec -> MaskSpec (the file is read when the mask is made, so its size is checked then)."""
    text = str(spec).strip()
    if text in REGIONS:
        return MaskSpec(text)
    if text.startswith("random:"):
        value = _amount(text, text.partition(":")[2], "mask")
        if not 0 < value < 1:
            raise ConfigError(f"mask {text!r}: the missing fraction must be in (0, 1)",
                              "give e.g. random:0.5")
        return MaskSpec("random", fraction=value)
    if text.lower().endswith(".png"):
        return MaskSpec("file", path=text)
    raise ConfigError(f"unknown mask {spec!r}", f"use one of: {MASK_HELP}")


__all__ = [
    "MASK_HELP", "NOISE_HELP", "NOISE_KINDS", "REGIONS", "MaskSpec", "Noise", "parse_mask", "parse_noise",
]
