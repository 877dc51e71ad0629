"""Tests of the data package on small files written here (no network, no real data needed)."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from vaekit import registry as parts_registry
from vaekit.data import DataSet, available_datasets, load_dataset, register
from vaekit.data.idx import read_idx, write_idx
from vaekit.data.mnist import valid_size
from vaekit.data.safe_pickle import safe_loads
from vaekit.data.sources import MNIST_FILES
from vaekit.errors import DataError

REAL_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist.npz"


# ---------------------------------------------------------------- fixtures written by the tests


def write_mnist(folder: Path, n_train: int, n_test: int, side: int = 4, gz: bool = True) -> None:
    """Four MNIST-style IDX files with pixel value = row index % 256 and label = row % 10."""
    folder.mkdir(parents=True, exist_ok=True)
    for (images, labels), n in zip(
        [(MNIST_FILES[0], MNIST_FILES[1]), (MNIST_FILES[2], MNIST_FILES[3])],
        [n_train, n_test],
        strict=True,
    ):
        rows = np.arange(n)
        x = np.broadcast_to((rows % 256).astype(np.uint8)[:, None, None], (n, side, side))
        suffix = "" if gz else ".gz"
        write_idx(folder / images.removesuffix(suffix), x)
        write_idx(folder / labels.removesuffix(suffix), (rows % 10).astype(np.uint8))


def py2_cifar_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled the way CIFAR-10's Python 2 files are (protocol 2, str data as BINSTRING)."""

    def s(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<I", len(b)) + b

    def i(v: int) -> bytes:
        return b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v)

    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        + i(0)
        + b"\x85"
        + s(b"b")
        + b"\x87R("
        + i(1)
        + i(data.shape[0])
        + i(data.shape[1])
        + b"\x86cnumpy\ndtype\n"
        + s(b"u1")
        + i(0)
        + i(1)
        + b"\x87R("
        + i(3)
        + s(b"|")
        + b"NNN"
        + i(-1)
        + i(-1)
        + i(0)
        + b"tb\x89"
        + s(data.tobytes())
        + b"tb"
    )
    label_list = b"](" + b"".join(i(v) for v in labels) + b"e"
    return b"\x80\x02}(" + s(b"data") + array + s(b"labels") + label_list + b"u."


def cifar_batches(per_batch: int, n_test: int) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    out = {}
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        out[name] = (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist())
    return out


def write_cifar_tar(path: Path, batches: dict, py2: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, (data, labels) in batches.items():
            raw = (
                py2_cifar_batch(data, labels)
                if py2
                else pickle.dumps({"data": data, "labels": labels}, protocol=2)
            )
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def save_image(path: Path, size=(6, 5), mode="L", value=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 0)).save(path)
    return path


def problem(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_roundtrip_uint8_images_and_labels(tmp_path: Path, name: str) -> None:
    images = np.arange(3 * 5 * 4, dtype=np.uint8).reshape(3, 5, 4)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / name, images)), images)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / ("l" + name), labels)), labels)
    assert read_idx(tmp_path / name).dtype == np.uint8


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_roundtrip_other_dtypes_native_endian(tmp_path: Path, dtype) -> None:
    a = np.arange(12).reshape(2, 6).astype(dtype)
    back = read_idx(write_idx(tmp_path / "x.idx", a))
    np.testing.assert_array_equal(back, a)
    assert back.dtype.isnative


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_data_is_a_data_error(tmp_path: Path, gz: bool) -> None:
    raw = write_idx(tmp_path / "full.idx", np.zeros((4, 3, 3), np.uint8)).read_bytes()[:-5]
    bad = tmp_path / ("cut.idx.gz" if gz else "cut.idx")
    bad.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError, match="truncated") as e:
        read_idx(bad)
    assert str(bad) in problem(e) and "needs 36 bytes" in problem(e)


def test_idx_truncated_gzip_stream_bad_magic_and_missing(tmp_path: Path) -> None:
    gz = write_idx(tmp_path / "a.idx.gz", np.zeros((50, 9), np.uint8)).read_bytes()
    (tmp_path / "cut.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(DataError, match="cut.gz"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "text").write_bytes(b"hello world")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "text")
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope.idx")
    (tmp_path / "long").write_bytes(write_idx(tmp_path / "b", np.zeros(3, np.uint8)).read_bytes() + b"x")
    with pytest.raises(DataError, match="longer than its header"):
        read_idx(tmp_path / "long")


# ---------------------------------------------------------------- MNIST / Fashion-MNIST from files


def test_mnist_from_data_dir_small_fixture(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_train=12, n_test=5)
    ds = load_dataset("mnist", data_dir=str(tmp_path))
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (10, 2, 5)
    assert ds.train.x.dtype == torch.uint8 and ds.train.x.shape == (10, 1, 4, 4)
    assert ds.event_shape == (1, 4, 4) and ds.levels == 256 and ds.num_classes == 10
    assert ds.kind == "image"
    # train is the head of the training file and valid its tail, in file order
    assert ds.train.x[:, 0, 0, 0].tolist() == list(range(10))
    assert ds.valid.x[:, 0, 0, 0].tolist() == [10, 11]
    assert ds.valid.y.tolist() == [0, 1] and ds.valid.y.dtype == torch.int64


def test_mnist_split_is_exactly_50k_10k_for_60k_training_images(tmp_path: Path) -> None:
    assert valid_size(60000) == 10000
    write_mnist(tmp_path, n_train=60000, n_test=10000, side=1, gz=False)  # plain files work too
    ds = load_dataset("mnist", data_dir=str(tmp_path))
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (50000, 10000, 10000)
    assert ds.valid.y[0].item() == 50000 % 10


def test_fashion_mnist_and_env_data_dir(tmp_path: Path, monkeypatch) -> None:
    write_mnist(tmp_path / "fashion-mnist", n_train=6, n_test=2)
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(tmp_path))
    ds = load_dataset("fashion-mnist")
    assert ds.name == "fashion-mnist" and (len(ds.train), len(ds.valid), len(ds.test)) == (5, 1, 2)


def test_mnist_label_count_mismatch_names_the_files(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_train=12, n_test=5)
    write_idx(tmp_path / MNIST_FILES[3], np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="t10k-labels") as e:
        load_dataset("mnist", data_dir=str(tmp_path))
    assert "t10k-images" in problem(e)


# ---------------------------------------------------------------- CIFAR-10 and the safe unpickler


def test_cifar10_from_archive_with_python2_pickles(tmp_path: Path) -> None:
    batches = cifar_batches(per_batch=4, n_test=3)
    write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", batches)
    ds = load_dataset("cifar10", data_dir=str(tmp_path))
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (18, 2, 3)
    assert ds.train.x.shape == (18, 3, 32, 32) and ds.train.x.dtype == torch.uint8
    data, labels = batches["data_batch_1"]
    # channel c of an image is values [1024c, 1024(c+1)) of its row, row-major 32x32
    for c in range(3):
        expected = data[0, 1024 * c : 1024 * (c + 1)].reshape(32, 32)
        np.testing.assert_array_equal(ds.train.x[0, c].numpy(), expected)
    assert ds.train.y[:4].tolist() == labels
    last, last_labels = batches["data_batch_5"]
    np.testing.assert_array_equal(ds.valid.x.reshape(2, -1).numpy(), last[2:])
    assert ds.valid.y.tolist() == last_labels[2:] and ds.num_classes == 10


def test_cifar10_from_extracted_folder_with_python3_pickles(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, (data, labels) in cifar_batches(per_batch=10, n_test=2).items():
        (folder / name).write_bytes(pickle.dumps({"data": data, "labels": labels}, protocol=2))
    ds = load_dataset("cifar10", data_dir=str(tmp_path))
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (45, 5, 2)


def test_cifar10_archive_without_a_member_or_not_a_tar(tmp_path: Path) -> None:
    batches = cifar_batches(per_batch=2, n_test=2)
    del batches["data_batch_3"]
    write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", batches)
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", data_dir=str(tmp_path))
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable tar.gz"):
        load_dataset("cifar10", data_dir=str(tmp_path))


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_safe_unpickler_refuses_code_and_garbage(capsys) -> None:
    with pytest.raises(DataError, match=r"builtin__\.print"):
        safe_loads(pickle.dumps({"data": _Evil()}, protocol=2), "evil")
    assert "never run" not in capsys.readouterr().out
    with pytest.raises(DataError, match="_codecs.encode"):
        safe_loads(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.", "z")
    with pytest.raises(DataError, match="not a readable pickle"):
        safe_loads(b"\x80\x02}(", "cut")
    loaded = safe_loads(pickle.dumps({"a": np.arange(3, dtype=np.uint8), "b": [1]}, 2), "ok")
    assert loaded["b"] == [1] and loaded["a"].tolist() == [0, 1, 2]
    # Python 2 pickles name builtins as __builtin__ (here: dict(), as cPickle writes it)
    assert safe_loads(b"\x80\x02c__builtin__\ndict\n)R.", "py2") == {}


def test_cifar10_batch_with_foreign_global_is_refused(tmp_path: Path) -> None:
    batches = cifar_batches(per_batch=2, n_test=2)
    write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", batches)
    folder = tmp_path / "x" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        payload = {"data": data, "labels": labels, "extra": _Evil()}
        (folder / name).write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError, match="refuses"):
        load_dataset("cifar10", data_dir=str(tmp_path / "x"))


# ---------------------------------------------------------------- npz:


def save_npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_npz_good_uint8_images_with_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    spec = save_npz(
        tmp_path / "d.npz",
        x_train=rng.integers(0, 256, (20, 7, 5), dtype=np.uint8),
        x_valid=rng.integers(0, 256, (4, 7, 5), dtype=np.uint8),
        x_test=rng.integers(0, 256, (3, 7, 5), dtype=np.uint8),
        y_train=np.arange(20) % 3,
        y_valid=np.array([0, 1, 2, 4]),
        y_test=np.array([0, 1, 1]),
    )
    ds = load_dataset(spec)
    assert isinstance(ds, DataSet) and ds.name == "d" and ds.kind == "image"
    assert ds.train.x.shape == (20, 1, 7, 5) and ds.train.x.dtype == torch.uint8
    assert ds.levels == 256 and ds.num_classes == 5 and ds.test.y.dtype == torch.int64


def test_npz_channels_last_float_table_and_binary(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).random((6, 4, 5, 3))
    ds = load_dataset(save_npz(tmp_path / "a.npz", x_train=rgb, x_valid=rgb, x_test=rgb))
    assert ds.train.x.shape == (6, 3, 4, 5) and ds.train.x.dtype == torch.float32
    np.testing.assert_allclose(ds.train.x[2, 1].numpy(), rgb[2, :, :, 1], rtol=1e-6)
    assert ds.levels is None
    table = np.random.default_rng(1).random((9, 4)).astype(np.float32)
    ds = load_dataset(save_npz(tmp_path / "t.npz", x_train=table, x_valid=table, x_test=table))
    assert ds.kind == "table" and ds.event_shape == (4,)
    b = np.zeros((3, 2, 2), bool)
    ds = load_dataset(save_npz(tmp_path / "b.npz", x_train=b, x_valid=b, x_test=b))
    assert ds.levels == 2 and ds.train.x.dtype == torch.float32


def test_npz_nan_rows_are_named(tmp_path: Path) -> None:
    x = np.full((10, 3, 3), 0.5)
    x[3, 0, 1] = np.nan
    x[7, 2, 2] = np.inf
    spec = save_npz(tmp_path / "n.npz", x_train=x[:8], x_valid=x, x_test=x[:2])
    with pytest.raises(DataError, match="x_train") as e:
        load_dataset(spec)
    assert "rows [3, 7]" in problem(e) and "NaN" in problem(e)


def test_npz_out_of_range_floats_suggest_rescaling(tmp_path: Path) -> None:
    x = np.linspace(0, 255, 5 * 4).reshape(5, 4)
    spec = save_npz(tmp_path / "r.npz", x_train=x, x_valid=x[:1] / 255, x_test=x[:1] / 255)
    with pytest.raises(DataError, match=r"x_train.*\[0, 255\]") as e:
        load_dataset(spec)
    assert "divide by 255" in problem(e)
    spec = save_npz(tmp_path / "s.npz", x_train=x - 1000, x_valid=x, x_test=x)
    with pytest.raises(DataError, match="rescale"):
        load_dataset(spec)
    spec = save_npz(tmp_path / "i.npz", x_train=np.full((3, 2), 300, np.int32))
    with pytest.raises(DataError, match="0..255"):
        load_dataset(spec)


def test_npz_missing_valid_is_carved_from_train_seeded(tmp_path: Path) -> None:
    x = np.arange(40, dtype=np.uint8).reshape(40, 1)
    spec = save_npz(
        tmp_path / "c.npz", x_train=x, y_train=np.arange(40) % 4, x_test=x[:5], y_test=np.zeros(5, int)
    )
    a = load_dataset(spec, seed=0, valid_fraction=0.25)
    b = load_dataset(spec, seed=0, valid_fraction=0.25)
    c = load_dataset(spec, seed=1, valid_fraction=0.25)
    assert (len(a.train), len(a.valid), len(a.test)) == (30, 10, 5)
    assert torch.equal(a.valid.x, b.valid.x) and not torch.equal(a.valid.x, c.valid.x)
    rows = sorted(a.train.x[:, 0].tolist() + a.valid.x[:, 0].tolist())
    assert rows == list(range(40))  # disjoint, nothing lost
    assert torch.equal(a.valid.y, a.valid.x[:, 0].long() % 4)  # labels travel with their rows


def test_npz_missing_valid_and_test_are_both_carved(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((50, 2))
    ds = load_dataset(save_npz(tmp_path / "o.npz", x_train=x), test_fraction=0.2)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (35, 5, 10)
    with pytest.raises(DataError, match="too few"):
        load_dataset(save_npz(tmp_path / "tiny.npz", x_train=x[:2]))


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x_valid": np.zeros((2, 2), np.uint8)}, "no array x_train"),
        ({"x_train": np.array([{"a": 1}], dtype=object)}, "object arrays are refused"),
        ({"x_train": np.zeros((4, 2), np.uint8), "x_test": np.zeros((4, 3), np.uint8)}, "x_test"),
        ({"x_train": np.zeros((4, 2), np.uint8), "x_test": np.zeros((4, 2))}, "same dtype"),
        (
            {
                "x_train": np.zeros((9, 2), np.uint8),
                "y_train": np.zeros(9, int),
                "x_valid": np.zeros((2, 2), np.uint8),
                "x_test": np.zeros((2, 2), np.uint8),
            },
            "lacks y_valid, y_test",
        ),
        ({"x_train": np.zeros((4, 2), np.uint8), "y_train": np.zeros(3, int)}, r"shape \(3,\)"),
        ({"x_train": np.zeros((4, 2), np.uint8), "y_train": np.full(4, 0.5)}, "non-integer"),
        ({"x_train": np.zeros((4, 2), np.uint8), "y_valid": np.zeros(4, int)}, "no x_valid"),
        ({"x_train": np.zeros((4,), np.uint8)}, "shape"),
        ({"x_train": np.zeros((4, 5, 6, 7), np.uint8)}, "channels"),
        ({"x_train": np.zeros((0, 5), np.uint8)}, "no rows"),
        ({"x_train": np.zeros((4, 2), np.complex64)}, "complex64"),
    ],
)
def test_npz_bad_contents_are_data_errors(tmp_path: Path, arrays: dict, match: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=match):
        load_dataset(f"npz:{path}")


def test_npz_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(f"npz:{tmp_path / 'junk.npz'}")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(DataError, match="single array"):
        load_dataset(f"npz:{tmp_path / 'one.npy'}")
    with pytest.raises(DataError, match="folder:"):
        load_dataset(f"npz:{tmp_path}")


_DTYPES = [
    np.uint8,
    np.int16,
    np.int64,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.bool_,
    np.complex64,
    np.dtype("U2"),
]
_KEYS = ["x_train", "x_valid", "x_test", "y_train", "y_valid", "y_test"]


@st.composite
def npz_contents(draw) -> dict[str, np.ndarray]:
    """Arrays under the npz names: wild (any shape and dtype), near (shared shapes, any dtype)
    or clean (shared shapes, valid values) so that both outcomes are exercised."""
    mode = draw(st.sampled_from(["wild", "near", "clean"]))
    keys = draw(st.lists(st.sampled_from(_KEYS), unique=True, max_size=6))
    if mode == "clean":
        keys = sorted(set(keys) | {"x_train"})
    event = draw(st.lists(st.integers(0 if mode == "near" else 1, 4), min_size=1, max_size=3))
    x_dtype = draw(st.sampled_from([np.uint8, np.bool_, np.float32]))
    out = {}
    for key in keys:
        if mode == "wild":
            shape = draw(hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4))
            out[key] = draw(hnp.arrays(draw(st.sampled_from(_DTYPES)), shape))
            continue
        n = draw(st.integers(0 if mode == "near" else 1, 12))
        if key == "x_train" and mode == "clean":
            n = draw(st.integers(3, 12))
        shape = (n,) if key.startswith("y") else (n, *event)
        if mode == "near":
            out[key] = draw(hnp.arrays(draw(st.sampled_from(_DTYPES)), shape))
        elif key.startswith("y"):
            out[key] = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 3)))
        elif x_dtype == np.float32:
            unit = st.floats(0, 1, width=32)
            out[key] = draw(hnp.arrays(np.float32, shape, elements=unit))
        else:
            out[key] = draw(hnp.arrays(x_dtype, shape))
    return out


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(contents=npz_contents())
def test_npz_property_dataset_or_data_error(contents: dict[str, np.ndarray]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.npz"
        np.savez(path, **contents)
        try:
            ds = load_dataset(f"npz:{path}")
        except DataError:
            return
    shapes = {tuple(ds.split(s).x.shape[1:]) for s in ("train", "valid", "test")}
    assert len(shapes) == 1 and len(ds.train) > 0
    for s in ("train", "valid", "test"):
        x = ds.split(s).x
        assert x.dtype in (torch.uint8, torch.float32)
        if x.dtype == torch.float32 and x.numel():
            assert 0 <= x.min() and x.max() <= 1
        assert x.ndim in (2, 4)


# ---------------------------------------------------------------- folder:


def test_folder_labels_from_subfolders(tmp_path: Path) -> None:
    for i in range(6):
        save_image(tmp_path / "cat" / f"{i}.png", value=10)
    for i in range(4):
        save_image(tmp_path / "dog" / "nested" / f"{i}.bmp", value=200)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    ds = load_dataset(f"folder:{tmp_path}", valid_fraction=0.2, test_fraction=0.2)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (6, 2, 2)
    assert ds.train.x.shape[1:] == (1, 5, 6) and ds.train.x.dtype == torch.uint8
    assert ds.num_classes == 2 and ds.levels == 256
    x = torch.cat([ds.train.x, ds.valid.x, ds.test.x])
    y = torch.cat([ds.train.y, ds.valid.y, ds.test.y])
    assert torch.equal(x[:, 0, 0, 0] == 200, y == 1) and int(y.sum()) == 4


def test_folder_unlabeled_mixed_modes_become_rgb(tmp_path: Path) -> None:
    for i in range(4):
        save_image(tmp_path / f"g{i}.png")
    save_image(tmp_path / "c.jpg", mode="RGB", value=255)
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.train.y is None and ds.num_classes is None
    assert ds.event_shape == (3, 5, 6)


def test_folder_mixed_sizes_names_two_files_and_sizes(tmp_path: Path) -> None:
    for i in range(3):
        save_image(tmp_path / f"a{i}.png", size=(8, 8))
    save_image(tmp_path / "odd.png", size=(10, 7))
    with pytest.raises(DataError, match="differ in size") as e:
        load_dataset(f"folder:{tmp_path}")
    assert "a0.png is 8x8" in problem(e) and "odd.png is 10x7" in problem(e)
    assert "resize" in problem(e)


def test_folder_corrupt_files_are_named(tmp_path: Path) -> None:
    for i in range(3):
        save_image(tmp_path / f"ok{i}.png")
    (tmp_path / "broken.png").write_bytes(b"definitely not a png")
    good = (tmp_path / "ok0.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="2 image file") as e:
        load_dataset(f"folder:{tmp_path}")
    assert "broken.png" in problem(e) and "cut.png" in problem(e)


def test_folder_empty_missing_and_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no images"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    save_image(tmp_path / "mix" / "loose.png")
    save_image(tmp_path / "mix" / "cls" / "a.png")
    with pytest.raises(DataError, match="both loose images"):
        load_dataset(f"folder:{tmp_path / 'mix'}")
    save_image(tmp_path / "cls" / "a" / "1.png")
    (tmp_path / "cls" / "b").mkdir()
    with pytest.raises(DataError, match="without images.*b"):
        load_dataset(f"folder:{tmp_path / 'cls'}")


# ---------------------------------------------------------------- digits and the registry


def test_digits_shapes_levels_and_fixed_split() -> None:
    ds = load_dataset("digits")
    assert ds.event_shape == (1, 8, 8) and ds.levels == 17 and ds.num_classes == 10
    assert ds.train.x.dtype == torch.float32 and float(ds.train.x.max()) == 1.0
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (1437, 180, 180)
    values = torch.unique(torch.cat([ds.train.x, ds.test.x]) * 16)
    assert torch.equal(values, torch.arange(17, dtype=torch.float32))
    other = load_dataset("digits", seed=123)  # the training seed never changes the split
    assert torch.equal(ds.test.x, other.test.x)


def test_unknown_spec_lists_names_and_suggests(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_dataset("fashion_mnst")
    assert "did you mean 'fashion-mnist'" in problem(e)
    assert "digits" in problem(e) and "npz:PATH" in problem(e) and "folder:PATH" in problem(e)
    with pytest.raises(DataError, match=f"folder:{tmp_path}"):
        load_dataset(str(tmp_path))
    with pytest.raises(DataError, match="has no path"):
        load_dataset("npz:")


def test_fractions_are_checked() -> None:
    for kw in (
        {"valid_fraction": -0.1},
        {"test_fraction": 1.5},
        {"valid_fraction": 0.6, "test_fraction": 0.5},
        {"valid_fraction": float("nan")},
    ):
        with pytest.raises(DataError, match="fraction"):
            load_dataset("digits", **kw)


def test_register_custom_loader(monkeypatch) -> None:
    monkeypatch.setitem(parts_registry._TABLE, "data", dict(parts_registry._TABLE["data"]))
    calls = []

    def tiny(data_dir, seed, valid_fraction, test_fraction):
        calls.append(seed)
        return load_dataset("digits")

    register("tiny", tiny)
    assert "tiny" in available_datasets()
    assert load_dataset("TINY", seed=5).name == "digits" and calls == [5]
    with pytest.raises(DataError, match="already registered"):
        register("tiny", tiny)
    register("tiny", lambda **kw: "not a data set", overwrite=True)
    with pytest.raises(DataError, match="not a DataSet"):
        load_dataset("tiny")
    register("echo:", lambda rest, **kw: load_dataset(rest))
    assert load_dataset("echo:digits").name == "digits"


# ---------------------------------------------------------------- the real file, when present


@pytest.mark.skipif(not REAL_MNIST.is_file(), reason=f"real data {REAL_MNIST} is absent")
def test_real_mnist_npz_has_the_iwae_split() -> None:
    ds = load_dataset(f"npz:{REAL_MNIST}")
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (50000, 10000, 10000)
    assert ds.train.x.dtype == torch.uint8 and ds.event_shape == (1, 28, 28)
    assert ds.levels == 256 and ds.num_classes == 10 and int(ds.train.x.max()) == 255
