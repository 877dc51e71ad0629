"""Where the canonical data sets live on the internet, with the sha256 of every file.

The hashes are the published ones (the same values torchvision, tensorflow-datasets and others
check). A mirror can replace the base URL: pass ``mirror=`` or set the environment variable
named in ``Source.mirror_env`` (e.g. ``VAEKIT_MNIST_MIRROR=http://127.0.0.1:8000/``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: its name under the base URL and its sha256."""

    name: str
    sha256: str


@dataclass(frozen=True)
class Source:
    """The files of a named data set, the base URL they are fetched from, and its override."""

    name: str
    base_url: str
    mirror_env: str
    files: tuple[RemoteFile, ...]
    homepage: str

    def url(self, file: RemoteFile, mirror: str | None = None) -> str:
        """The URL of ``file``: ``mirror``, else $``mirror_env``, else the canonical base URL."""
        base = mirror or os.environ.get(self.mirror_env) or self.base_url
        return base.rstrip("/") + "/" + file.name

    def file(self, name: str) -> RemoteFile:
        """The entry called ``name``."""
        return next(f for f in self.files if f.name == name)


MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

SOURCES: dict[str, Source] = {
    "mnist": Source(
        name="mnist",
        base_url="https://ossci-datasets.s3.amazonaws.com/mnist",
        mirror_env="VAEKIT_MNIST_MIRROR",
        homepage="http://yann.lecun.com/exdb/mnist/",
        files=(
            RemoteFile(
                MNIST_FILES[0], "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
            ),
            RemoteFile(
                MNIST_FILES[1], "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
            ),
            RemoteFile(
                MNIST_FILES[2], "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
            ),
            RemoteFile(
                MNIST_FILES[3], "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
            ),
        ),
    ),
    "fashion-mnist": Source(
        name="fashion-mnist",
        # S3 website endpoints serve plain HTTP only; the sha256 check guards the content.
        base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
        mirror_env="VAEKIT_FASHION_MNIST_MIRROR",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        files=(
            RemoteFile(
                MNIST_FILES[0], "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
            ),
            RemoteFile(
                MNIST_FILES[1], "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
            ),
            RemoteFile(
                MNIST_FILES[2], "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
            ),
            RemoteFile(
                MNIST_FILES[3], "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
            ),
        ),
    ),
    "cifar10": Source(
        name="cifar10",
        base_url="https://www.cs.toronto.edu/~kriz",
        mirror_env="VAEKIT_CIFAR10_MIRROR",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        files=(
            RemoteFile(
                "cifar-10-python.tar.gz",
                "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            ),
        ),
    ),
}
