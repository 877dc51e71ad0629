"""Tests of download.py and of loaders that download, against an HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from vaekit.data import load_dataset
from vaekit.data import sources as sources_module
from vaekit.data.download import download
from vaekit.data.idx import write_idx
from vaekit.data.sources import MNIST_FILES, RemoteFile
from vaekit.errors import DownloadError


class LocalServer:
    """Serves ``files`` (path -> bytes) on 127.0.0.1 and counts the requests per path.

    A path listed in ``short`` announces more bytes than it sends, like a dropped connection.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.short: set[str] = set()
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                server.hits[self.path] += 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                extra = 1000 if self.path in server.short else 0
                self.send_header("Content-Length", str(len(body) + extra))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = LocalServer()
    yield s
    s.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_file_is_downloaded_cached_and_not_fetched_again(server, tmp_path: Path) -> None:
    body = bytes(range(256)) * 5000  # > 1 MiB, so several chunks
    server.files["/f.bin"] = body
    dest = tmp_path / "cache" / "sub" / "f.bin"
    assert download(f"{server.url}/f.bin", dest, sha(body)) == dest
    assert dest.read_bytes() == body and leftovers(dest.parent) == ["f.bin"]
    download(f"{server.url}/f.bin", dest, sha(body).upper())
    assert server.hits["/f.bin"] == 1


def test_stale_file_at_dest_is_replaced(server, tmp_path: Path) -> None:
    server.files["/f.bin"] = b"new content"
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old, damaged content")
    download(f"{server.url}/f.bin", dest, sha(b"new content"))
    assert dest.read_bytes() == b"new content" and leftovers(tmp_path) == ["f.bin"]


def test_wrong_checksum_leaves_nothing_behind(server, tmp_path: Path) -> None:
    server.files["/f.bin"] = b"tampered"
    expected = sha(b"original")
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError) as e:
        download(f"{server.url}/f.bin", dest, expected)
    message = str(e.value)
    assert f"{server.url}/f.bin" in message and expected in message and sha(b"tampered") in message
    assert str(dest) in message and "yourself" in message
    assert leftovers(tmp_path) == []


def test_http_404_is_a_download_error(server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{server.url}/missing.bin", tmp_path / "m.bin", sha(b""))
    assert leftovers(tmp_path) == []


def test_cut_connection_and_refused_connection(server, tmp_path: Path) -> None:
    server.files["/cut.bin"] = b"x" * 100
    server.short.add("/cut.bin")
    with pytest.raises(DownloadError, match="cut.bin"):
        download(f"{server.url}/cut.bin", tmp_path / "cut.bin", sha(b"x" * 1100))
    assert leftovers(tmp_path) == []
    closed = LocalServer()
    url = closed.url
    closed.close()
    with pytest.raises(DownloadError, match="download of"):
        download(f"{url}/x", tmp_path / "x", sha(b""), timeout=5)
    assert leftovers(tmp_path) == []


def _serve_fake_mnist(server: LocalServer, tmp_path: Path, monkeypatch) -> None:
    """Put small IDX files on the server and make the mnist source trust their hashes."""
    src = tmp_path / "src"
    src.mkdir()
    files = []
    for name, n in zip(MNIST_FILES, (12, 12, 4, 4), strict=True):
        shape = (n, 5, 5) if "images" in name else (n,)
        path = write_idx(src / name, (np.arange(np.prod(shape)) % 10).astype(np.uint8).reshape(shape))
        server.files[f"/mirror/{name}"] = path.read_bytes()
        files.append(RemoteFile(name, sha(path.read_bytes())))
    fake = replace(sources_module.SOURCES["mnist"], files=tuple(files))
    monkeypatch.setitem(sources_module.SOURCES, "mnist", fake)
    monkeypatch.setenv("VAEKIT_MNIST_MIRROR", f"{server.url}/mirror/")


def test_mnist_downloads_into_an_empty_cache(server, tmp_path: Path, monkeypatch) -> None:
    _serve_fake_mnist(server, tmp_path, monkeypatch)
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(tmp_path / "cache"))
    ds = load_dataset("mnist")
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (10, 2, 4)
    assert ds.train.x.shape == (10, 1, 5, 5)
    assert leftovers(tmp_path / "cache" / "mnist") == sorted(MNIST_FILES)
    load_dataset("mnist")  # cached: no second request
    assert all(server.hits[f"/mirror/{n}"] == 1 for n in MNIST_FILES)


def test_mnist_download_failure_says_where_to_put_the_file(server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VAEKIT_MNIST_MIRROR", f"{server.url}/nothing-here")
    with pytest.raises(DownloadError, match="HTTP 404") as e:
        load_dataset("mnist", data_dir=str(tmp_path / "c"))
    assert str(tmp_path / "c" / MNIST_FILES[0]) in str(e.value)
    assert leftovers(tmp_path / "c") == []


def test_canonical_urls_and_hashes() -> None:
    mnist = sources_module.SOURCES["mnist"]
    first = mnist.file(MNIST_FILES[0])
    assert mnist.url(first) == ("https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz")
    assert mnist.url(first, mirror="http://127.0.0.1:1/m/") == (
        "http://127.0.0.1:1/m/train-images-idx3-ubyte.gz"
    )
    for source in sources_module.SOURCES.values():
        for f in source.files:
            assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0
    cifar = sources_module.SOURCES["cifar10"]
    assert cifar.url(cifar.files[0]) == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
