"""Image data sets from a folder: sub-folders are classes, loose files are unlabeled images.

``PATH/cat/*.png, PATH/dog/*.png`` gives labels 0 (cat) and 1 (dog), sorted by folder name;
``PATH/*.png`` gives unlabeled images. Images are converted to "L" when all are grayscale,
else to "RGB" (alpha dropped), must share one size, and are split train/valid/test by a
permutation seeded by ``seed``.
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from vaekit.data.base import DataSet
from vaekit.data.splits import split_indices, take
from vaekit.errors import DataError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
PIL_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    struct.error,
    Image.DecompressionBombError,
)
_SHOWN = 5


def load_folder(
    path: str | Path, seed: int = 0, valid_fraction: float = 0.1, test_fraction: float = 0.1
) -> DataSet:
    """Load every image under ``path`` as uint8 [N, C, H, W] with labels from sub-folder names."""
    root = Path(path).expanduser()
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is a file, not a folder"
        raise DataError(f"{root} {what}", "pass folder:PATH with PATH a folder of images")
    files, labels, classes = collect(root)
    images = open_all(files)
    check_sizes(files, images)
    mode = "L" if all(im.mode in GRAY_MODES for im in images) else "RGB"
    x = np.stack([np.asarray(im.convert(mode), dtype=np.uint8) for im in images])
    x = x[:, None] if mode == "L" else x.transpose(0, 3, 1, 2)
    y = None if classes is None else np.asarray(labels, dtype=np.int64)
    train, valid, test = split_indices(len(x), seed, valid_fraction, test_fraction, str(root))
    return DataSet(
        name=root.name,
        train=take(x, y, train),
        valid=take(x, y, valid),
        test=take(x, y, test),
        kind="image",
        levels=256,
        num_classes=None if classes is None else len(classes),
    )


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")


def collect(root: Path) -> tuple[list[Path], list[int], list[str] | None]:
    """Image files, their class indices, and the class names (None when unlabeled)."""
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    loose = [p for p in entries if _is_image(p)]
    class_dirs = [p for p in entries if p.is_dir()]
    per_class = {d.name: sorted(p for p in d.rglob("*") if _is_image(p)) for d in class_dirs}
    labeled = any(per_class.values())
    if not loose and not labeled:
        found = sum(1 for p in root.rglob("*") if p.is_file())
        raise DataError(
            f"{root} holds no images ({found} other files; looked for {', '.join(SUFFIXES)})",
            "put image files into the folder, or into one sub-folder per class",
        )
    if loose and labeled:
        raise DataError(
            f"{root} holds both loose images (e.g. {loose[0].name}) and class sub-folders "
            f"({', '.join(sorted(k for k, v in per_class.items() if v))})",
            "move the loose images into a class sub-folder, or the class folders out",
        )
    if not labeled:
        return loose, [0] * len(loose), None
    empty = [name for name, files in per_class.items() if not files]
    if empty:
        raise DataError(
            f"class folders without images in {root}: {', '.join(empty)}",
            "add images to them or remove them (each sub-folder is one class)",
        )
    classes = sorted(per_class)
    files = [f for c in classes for f in per_class[c]]
    labels = [i for i, c in enumerate(classes) for _ in per_class[c]]
    return files, labels, classes


def open_all(files: list[Path]) -> list[Image.Image]:
    """Decode every file fully (first frame of animations); name all that fail."""
    images, bad = [], []
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                images.append(im.copy())
        except PIL_ERRORS as e:
            bad.append(f"{f} ({type(e).__name__}: {e})")
    if bad:
        more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        raise DataError(
            f"{len(bad)} image file(s) cannot be read: {'; '.join(bad[:_SHOWN])}{more}",
            "delete or replace these files (they are corrupt or not images)",
        )
    return images


def check_sizes(files: list[Path], images: list[Image.Image]) -> None:
    """All images must share one (width, height)."""
    sizes = Counter(im.size for im in images)
    if len(sizes) == 1:
        return
    common = sizes.most_common(1)[0][0]
    first = next(i for i, im in enumerate(images) if im.size == common)
    other = next(i for i, im in enumerate(images) if im.size != common)
    (w, h), (w2, h2) = common, images[other].size
    raise DataError(
        f"images differ in size: {files[first]} is {w}x{h} but {files[other]} is {w2}x{h2} "
        f"({len(images) - sizes[common]} of {len(images)} images are not {w}x{h})",
        f"resize all images to one size first, e.g. with Pillow: Image.open(f).resize(({w}, {h})).save(f)",
    )
