"""Pictures: image grids (Pillow) and metric curves (matplotlib, headless)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from vaekit.runs.metrics import train_terms


def upscale(height: int, min_side: int = 28) -> int:
    """The whole factor ``grid_image`` scales images of this height by (nearest), to reach min_side."""
    return max(1, math.ceil(min_side / height))


def grid_image(
    images: torch.Tensor, nrow: int | None = None, min_side: int = 28, pad: int = 2
) -> Image.Image:
    """[N, C, H, W] in [0, 1] -> one PIL image; small images are scaled up (nearest) to min_side."""
    x = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    canvas = torch.ones(c, ncol * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[:, top : top + h, left : left + w] = x[i]
    arr = (canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr[..., 0] if c == 1 else arr[..., :3])
    scale = upscale(h, min_side)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> None:
    grid_image(images, nrow).save(path)


def labelled_rows(rows: torch.Tensor, labels: list[str], pad: int = 2) -> Image.Image:
    """[R, S, C, H, W] in [0, 1] -> ``grid_image`` with one row of S images per r, and row r's label
    written left of it, in a white margin as wide as the longest label (Pillow's built-in font)."""
    r, s, _, h, _ = rows.shape
    grid = grid_image(rows.reshape(r * s, *rows.shape[2:]), nrow=s, pad=pad)
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(grid)
    margin = math.ceil(max(measure.textlength(label, font=font) for label in labels)) + 2 * pad
    out = Image.new(grid.mode, (grid.width + margin, grid.height), 255 if grid.mode == "L" else (255,) * 3)
    out.paste(grid, (margin, 0))
    draw, scale, ink = ImageDraw.Draw(out), upscale(h), 0 if grid.mode == "L" else (0, 0, 0)
    for i, label in enumerate(labels):
        middle = scale * (pad + i * (h + pad) + h / 2)
        draw.text((pad, middle), label, fill=ink, font=font, anchor="lm")
    return out


def save_pairs(originals: torch.Tensor, recons: torch.Tensor, path: str | Path, n: int = 16) -> None:
    """Reconstruction grid: rows alternate originals and their reconstructions."""
    save_row_groups([originals[:n], recons[:n]], path)


def save_row_groups(groups: list[torch.Tensor], path: str | Path, per_row: int = 8) -> None:
    """Grid of interleaved rows: ``per_row`` examples of the first tensor, the same examples of the second,
    and so on, then the next ``per_row`` examples (e.g. corrupted / restored / original)."""
    groups = [g.cpu() for g in groups]
    rows = []
    for i in range(0, groups[0].shape[0], per_row):
        rows += [g[i : i + per_row] for g in groups]
    save_grid(torch.cat(rows), path, nrow=per_row)


def curve_panels(records: list[dict]) -> list[str]:
    """The curves' panels: the ELBO first (train and validation), then the loss and every other term
    the objective logged, each with its validation value where the records have one (recon, kl)."""
    terms = [t for t in train_terms(records) if t != "elbo"]
    return ["elbo", *terms]


def save_curves(records: list[dict], path: str | Path) -> None:
    """Plot every logged term against epoch, one panel each (their scales differ), train and
    validation together, with whole-epoch ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = curve_panels(records)
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, term in zip(axes.flat, panels, strict=False):
        name = "ELBO" if term == "elbo" else term
        for key, label in ((f"train_{term}", f"train {name}"), (term, f"validation {name}")):
            pts = [(r["epoch"], r[key]) for r in records if isinstance(r.get(key), int | float)]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o" if len(pts) <= 50 else None, label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("ELBO (nats per example)" if term == "elbo" else name)  # a term's unit is its own
        ax.set_title("ELBO per epoch (higher is better)" if term == "elbo" else f"{name} per epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
