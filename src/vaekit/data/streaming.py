"""Training images streamed from disk: a ``folder:`` data set larger than memory is decoded batch by
batch by DataLoader workers (pinned memory on GPU), in the order the in-memory path uses, so a
streamed run folder holds the same numbers as an in-memory one. Only the training split streams;
the validation and test splits are decoded into memory (keep them small with
``data.valid_fraction``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from vaekit.config import Config
from vaekit.data.base import DataSet, Split
from vaekit.data.folder import GRAY_MODES, PIL_ERRORS, check_sizes, collect, open_all
from vaekit.data.splits import split_indices
from vaekit.errors import ConfigError, DataError

PREFIX = "folder:"


@dataclass(frozen=True)
class Header:
    """What an image file says about itself without decoding its pixels."""

    size: tuple[int, int]
    mode: str


class ImageFiles(Dataset):
    """Image files decoded on access: item i -> uint8 [C, H, W] (and its label, -1 when unlabelled)."""

    def __init__(self, files: list[Path], labels: list[int], mode: str) -> None:
        self.files, self.labels, self.mode = files, labels, mode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            with Image.open(self.files[i]) as im:
                a = np.array(im.convert(self.mode), dtype=np.uint8)
        except PIL_ERRORS as e:
            raise DataError(f"image file {self.files[i]} cannot be read ({type(e).__name__}: {e})",
                            "delete or replace it (it is corrupt or not an image)") from None
        a = a[None] if self.mode == "L" else a.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(a)), self.labels[i]


def _headers(files: list[Path]) -> list[Header]:
    out = []
    for f in files:
        try:
            with Image.open(f) as im:
                out.append(Header(im.size, im.mode))
        except PIL_ERRORS:
            open_all([f])  # names the file in a DataError
    return out


@dataclass
class FolderStream:
    """``data``: the DataSet the trainer sees (valid and test in memory; train a zero-stride
    placeholder with the right shape and length, never read); ``train``: the files behind it."""

    data: DataSet
    train: ImageFiles
    workers: int

    def batches(self, index_batches: list[torch.Tensor], device: torch.device) -> Iterator[torch.Tensor]:
        """The images of each index batch, in order, as uint8 on ``device``."""
        loader = DataLoader(
            self.train,
            batch_sampler=[b.tolist() for b in index_batches],
            num_workers=self.workers,
            pin_memory=device.type == "cuda",
            generator=torch.Generator(),  # its worker seeds must not consume the training stream
        )
        for x, _ in loader:
            yield x.to(device, non_blocking=True)


def open_folder_stream(
    cfg: Config, given: DataSet | None = None, seed: int = 0, test_fraction: float = 0.1
) -> FolderStream:
    """The streaming view of ``data.name = folder:PATH``, split exactly as ``load_folder`` splits it."""
    if given is not None:
        raise ConfigError(
            "train.streaming reads data.name from disk, but a DataSet in memory was passed too",
            "pass no DataSet (with data.name=folder:PATH), or set train.streaming=false",
        )
    spec = cfg.data.name
    if not spec.lower().startswith(PREFIX):
        raise ConfigError(
            f"train.streaming reads a folder of image files, but data.name is {spec!r}",
            "use data.name=folder:PATH, or train.streaming=false for data that fits in memory",
        )
    if cfg.data.binarize == "static":
        raise ConfigError(
            "data.binarize=static draws one binarization of the whole training set in memory, which "
            "train.streaming avoids",
            "use data.binarize=dynamic (or none) with train.streaming",
        )
    root = Path(spec[len(PREFIX):]).expanduser()
    if not root.is_dir():
        raise DataError(f"{root} is not a folder", "pass folder:PATH with PATH a folder of images")
    files, labels, classes = collect(root)
    heads = _headers(files)
    check_sizes(files, heads)
    mode = "L" if all(h.mode in GRAY_MODES for h in heads) else "RGB"
    train, valid, test = split_indices(len(files), seed, cfg.data.valid_fraction, test_fraction, str(root))
    y = None if classes is None else torch.tensor(labels)

    w, h = heads[0].size
    shape = (1 if mode == "L" else 3, h, w)

    def decoded(idx: np.ndarray) -> Split:
        items = ImageFiles([files[i] for i in idx], [labels[i] for i in idx], mode)
        x = torch.empty(0, *shape, dtype=torch.uint8)
        if len(items):
            x = torch.stack([items[i][0] for i in range(len(items))])
        return Split(x, None if y is None else y[idx])

    placeholder = torch.zeros((), dtype=torch.uint8).expand(len(train), *shape)
    data = DataSet(
        name=root.name,
        train=Split(placeholder, None if y is None else y[train]),
        valid=decoded(valid),
        test=decoded(test),
        kind="image",
        levels=256,
        num_classes=None if classes is None else len(classes),
    )
    files_train = ImageFiles([files[i] for i in train], [labels[i] for i in train], mode)
    return FolderStream(data, files_train, cfg.train.num_workers)


__all__ = ["FolderStream", "ImageFiles", "open_folder_stream"]
