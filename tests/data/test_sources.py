from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab import data
from cnnlab.data.sources import cifar
from cnnlab.errors import CnnlabError

RNG = np.random.default_rng(0)


def _imgs(n: int, h: int = 8, c: int = 3) -> np.ndarray:
    return RNG.integers(0, 256, (n, h, h, c), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------- npz


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_reads_nhwc_and_splits(tmp_path: Path) -> None:
    xtr, xte = _imgs(50), _imgs(10)
    ytr, yte = np.arange(50) % 5, np.arange(10) % 5
    p = _npz(tmp_path / "d.npz", x_train=xtr, y_train=ytr.astype(np.uint8), x_test=xte, y_test=yte)
    tr = data.load(f"npz:{p}", split="train", val_fraction=0)
    te = data.load(f"npz:{p}", split="test", val_fraction=0)
    assert tr.x.dtype == torch.uint8 and tr.x.shape == (50, 3, 8, 8) and tr.y.dtype == torch.int64
    assert np.array_equal(tr.x.numpy(), xtr.transpose(0, 3, 1, 2)) and np.array_equal(te.y.numpy(), yte)
    assert tr.classes == tuple("01234")
    # Statistics are the training split's, in [0, 1] units, and every split carries them.
    assert np.allclose(tr.mean, xtr.reshape(-1, 3).mean(0) / 255, atol=1e-6)
    assert np.allclose(tr.std, xtr.reshape(-1, 3).std(0) / 255, atol=1e-6)
    assert te.mean == tr.mean


def test_npz_gray_and_class_names_from_json(tmp_path: Path) -> None:
    p = _npz(tmp_path / "g.npz", x_train=_imgs(6, c=1)[..., 0], y_train=np.array([0, 1, 2, 0, 1, 2]))
    p.with_suffix(".json").write_text('{"class_names": ["a", "b", "c"]}')
    ds = data.load(f"npz:{p}", val_fraction=0)
    assert ds.x.shape == (6, 1, 8, 8) and ds.classes == ("a", "b", "c")
    with pytest.raises(CnnlabError, match="no test split"):
        data.load(f"npz:{p}", split="test")


@pytest.mark.parametrize(
    ("arrays", "needle"),
    [
        ({"x_train": _imgs(5), "y_train": np.zeros(4, np.int64)}, "'y_train'.*lengths differ"),
        ({"x_train": _imgs(3), "y_train": np.array([0, -1, 1])}, "'y_train'.*out of range"),
        ({"x_train": _imgs(3), "y_train": np.array([0, 1, 3]), "class_names": np.array(["a", "b", "c"])}, "range"),
        ({"x_train": _imgs(3).astype(np.float32), "y_train": np.zeros(3, np.int64)}, "'x_train' must be uint8"),
        ({"x_train": _imgs(3), "y_train": np.zeros(3, np.float32)}, "'y_train'.*integers"),
        ({"x_train": _imgs(3)}, "no array 'y_train'"),
        ({"x_train": _imgs(3), "y_train": np.zeros(3, int), "x_test": _imgs(2)}, "must come together"),
        ({"x_train": RNG.integers(0, 255, (3, 8, 8, 2), dtype=np.uint8), "y_train": np.zeros(3, int)}, "C in 1"),
    ],
)
def test_npz_bad_input_names_the_array(tmp_path: Path, arrays: dict, needle: str) -> None:
    p = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CnnlabError, match=needle) as e:
        data.load(f"npz:{p}")
    assert "\n" not in str(e.value)


def test_npz_not_a_zip(tmp_path: Path) -> None:
    p = tmp_path / "junk.npz"
    p.write_bytes(b"not a zip file at all")
    with pytest.raises(CnnlabError, match="cannot read"):
        data.load(f"npz:{p}")
    with pytest.raises(CnnlabError, match="does not exist"):
        data.load(f"npz:{tmp_path / 'missing.npz'}")


# ----------------------------------------------------------------------------------------------- mnist


def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape) + arr.tobytes()


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_raw_and_gz(tmp_path: Path, gz: bool) -> None:
    x = {"train": _imgs(20, 28, 1)[..., 0], "t10k": _imgs(5, 28, 1)[..., 0]}
    y = {"train": np.arange(20, dtype=np.uint8) % 10, "t10k": np.arange(5, dtype=np.uint8)}
    for stem in ("train", "t10k"):
        for part, arr in (("images-idx3", x[stem]), ("labels-idx1", y[stem])):
            blob = _idx(arr)
            name = f"{stem}-{part}-ubyte" + (".gz" if gz else "")
            (tmp_path / name).write_bytes(gzip.compress(blob) if gz else blob)
    tr = data.load(f"mnist:{tmp_path}", val_fraction=0)
    te = data.load(f"mnist:{tmp_path}", split="test")
    assert tr.x.shape == (20, 1, 28, 28) and np.array_equal(tr.x.numpy()[:, 0], x["train"])
    assert np.array_equal(te.y.numpy(), y["t10k"]) and len(tr.classes) == 10


def test_mnist_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="no train-images"):
        data.load(f"mnist:{tmp_path}")
    good = _idx(np.zeros(3, np.uint8))
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        (tmp_path / name).write_bytes(_idx(np.zeros((3, 4, 4), np.uint8)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(good)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(CnnlabError, match="bad magic"):
        data.load(f"mnist:{tmp_path}")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx(np.zeros((3, 4, 4), np.uint8))[:-5])
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(good)
    with pytest.raises(CnnlabError, match="bytes of data"):
        data.load(f"mnist:{tmp_path}")


# ----------------------------------------------------------------------------------------------- cifar


def _official_style_pickle(obj: dict) -> bytes:
    """Pickle like the official files: numpy arrays named under numpy.core.multiarray (Python 2 era)."""
    blob = pickle.dumps(obj, protocol=3)  # protocol 2 would add _codecs.encode for bytes
    return blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def _cifar_py(root: Path, kind: str, n_per: int = 4) -> tuple[np.ndarray, list[int]]:
    root.mkdir()
    xs, ys = [], []
    if kind == "cifar10":
        names, key = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels"
        (root / "batches.meta").write_bytes(_official_style_pickle({b"label_names": [b"c%d" % i for i in range(10)]}))
    else:
        names, key = ["train", "test"], b"fine_labels"
    for n in names:
        x = RNG.integers(0, 256, (n_per, 3072), dtype=np.uint8)
        y = [int(v) for v in RNG.integers(0, 10, n_per)]
        (root / n).write_bytes(_official_style_pickle({b"data": x, key: y, b"batch_label": b"x"}))
        if "test" not in n:
            xs.append(x)
            ys += y
    return np.concatenate(xs).reshape(-1, 3, 32, 32), ys


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_python_pickles(tmp_path: Path, kind: str) -> None:
    sub = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
    x, y = _cifar_py(tmp_path / sub, kind)
    ds = data.load(f"{kind}:{tmp_path}", val_fraction=0)  # the parent of the extracted folder works too
    assert np.array_equal(ds.x.numpy(), x) and ds.y.tolist() == y
    assert len(ds.classes) == (10 if kind == "cifar10" else 100)
    if kind == "cifar10":
        assert ds.classes[3] == "c3"


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_binary(tmp_path: Path, kind: str) -> None:
    head = 1 if kind == "cifar10" else 2
    root = tmp_path / ("cifar-10-batches-bin" if kind == "cifar10" else "cifar-100-binary")
    root.mkdir()
    names = (
        [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
        if kind == "cifar10"
        else ["train.bin", "test.bin"]
    )
    want = []
    for n in names:
        rec = RNG.integers(0, 256, (3, head + 3072), dtype=np.uint8)
        rec[:, head - 1] = RNG.integers(0, 10, 3)
        rec.tofile(root / n)
        if "test" not in n:
            want.append(rec)
    want = np.concatenate(want)
    ds = data.load(f"{kind}:{root}", val_fraction=0)
    assert np.array_equal(ds.x.numpy().reshape(len(want), -1), want[:, head:])
    assert np.array_equal(ds.y.numpy(), want[:, head - 1])
    (root / names[0]).write_bytes(b"\x00" * 100)
    with pytest.raises(CnnlabError, match="whole number"):
        data.load(f"{kind}:{root}", cache_dir=tmp_path / "other")


class _RunsCode:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo pwned > /dev/null",))


def test_cifar_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    _cifar_py(tmp_path / "cifar-10-batches-py", "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps({"data": _RunsCode()}))
    with pytest.raises(CnnlabError, match=r"refusing to unpickle '(posix|os|nt)\.system'"):
        data.load(f"cifar10:{tmp_path}")
    # Each of the usual gadgets is refused, and the allowed numpy globals are exactly the official ones.
    for payload in (pickle.dumps(eval), pickle.dumps(getattr), b"cbuiltins\nexec\n(S'1'\ntR."):
        with pytest.raises(CnnlabError, match="refusing"):
            cifar.SafeUnpickler(io.BytesIO(payload)).load()
    assert {m for m, _ in cifar._ALLOWED} == {"numpy.core.multiarray", "numpy._core.multiarray", "numpy"}


def test_cifar_missing_files(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="holds neither"):
        data.load(f"cifar10:{tmp_path}")


# ---------------------------------------------------------------------------------------------- folder


def _save(path: Path, img, **kw) -> Path:  # noqa: ANN001
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    img.save(path, **kw)
    return path


def _rgb(h: int = 12, w: int = 12) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_folder_with_split_dirs(tmp_path: Path) -> None:
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for c in ("cat", "dog"):
            for i in range(n):
                _save(tmp_path / split / c / f"{i}.png", _rgb())
    (tmp_path / "train" / "cat" / ".DS_Store").write_bytes(b"\0\0")  # hidden files are not images: not reported
    tr = data.load(f"folder:{tmp_path}")
    assert not tr.skipped
    va = data.load(f"folder:{tmp_path}", split="val")
    te = data.load(f"folder:{tmp_path}", split="test")
    assert tr.classes == ("cat", "dog") and (len(tr), len(va), len(te)) == (8, 4, 4)  # val from val/, not carved
    assert tr.x.shape[1:] == (3, 12, 12) and tr.y.tolist() == [0] * 4 + [1] * 4


def test_folder_flat_split_by_hash_and_resize(tmp_path: Path) -> None:
    for c in ("a", "b", "c"):
        for i in range(30):
            _save(tmp_path / c / f"{i}.jpg", _rgb(20 + i % 3, 16))  # mixed sizes, non-square
    tr = data.load(f"folder:{tmp_path}", size=10, val_fraction=0)
    te = data.load(f"folder:{tmp_path}", size=10, split="test")
    assert len(tr) + len(te) == 90 and 5 <= len(te) <= 35
    assert tr.x.shape[1:] == (3, 10, 10)
    auto = data.load(f"folder:{tmp_path}", val_fraction=0)
    assert auto.x.shape[-1] == 256  # mixed sizes: the ImageNet-style default


def test_folder_converts_modes(tmp_path: Path) -> None:
    from PIL import Image

    base = _rgb(8, 8)
    gray = np.full((8, 8), 77, np.uint8)
    _save(tmp_path / "train" / "k" / "rgb.png", base)
    _save(tmp_path / "train" / "k" / "l.png", Image.fromarray(gray, "L"))
    _save(tmp_path / "train" / "k" / "la.png", Image.fromarray(np.stack([gray, gray], -1), "LA"))
    _save(tmp_path / "train" / "k" / "p.png", Image.fromarray(base).convert("P"))
    _save(
        tmp_path / "train" / "k" / "rgba.png",
        Image.fromarray(np.dstack([base, np.full((8, 8), 128, np.uint8)]), "RGBA"),
    )
    _save(tmp_path / "train" / "k" / "cmyk.jpg", Image.fromarray(base).convert("CMYK"), quality=95)
    _save(tmp_path / "train" / "k" / "i16.png", Image.fromarray(np.full((8, 8), 40000, np.uint16)))
    ds = data.load(f"folder:{tmp_path}", val_fraction=0)
    names = sorted(p.name for p in (tmp_path / "train" / "k").iterdir())
    got = {n: ds.x[i].numpy() for i, n in enumerate(names)}  # sorted order is kept
    assert not ds.skipped and len(ds) == 7
    assert (got["l.png"] == 77).all() and (got["la.png"] == 77).all()
    assert np.array_equal(got["rgba.png"].transpose(1, 2, 0), base)
    assert np.abs(got["p.png"].astype(int) - base.transpose(2, 0, 1)).mean() < 40  # palette quantization
    assert (got["i16.png"] == round(40000 / 257)).all()  # 16-bit rescaled, not clipped to 255
    assert got["cmyk.jpg"].shape == (3, 8, 8)


def _bad_folder(root: Path) -> None:
    root = root / "train"
    good = _save(root / "x" / "good.png", _rgb())
    _save(root / "y" / "good.png", _rgb())
    (root / "x" / "empty.png").write_bytes(b"")
    (root / "x" / "notes.txt").write_text("not an image")
    blob = good.read_bytes()
    (root / "y" / "truncated.png").write_bytes(blob[: len(blob) // 2])
    jpg = _save(root / "y" / "tmp.jpg", _rgb(64, 64), quality=90).read_bytes()
    (root / "y" / "tmp.jpg").unlink()
    corrupt = bytearray(jpg)
    corrupt[200:400] = b"\xff" * 200
    (root / "y" / "corrupt.jpg").write_bytes(bytes(corrupt[: len(corrupt) * 2 // 3]))


def test_folder_bad_files_are_skipped_and_reported(tmp_path: Path) -> None:
    _bad_folder(tmp_path / "d")
    with pytest.warns(data.DataWarning, match=r"skipped 4 unreadable file\(s\): .*empty\.png") as rec:
        ds = data.load(f"folder:{tmp_path / 'd'}", size=8, split="train", val_fraction=0)
    assert len(ds) == 2 and len(ds.skipped) == 4
    assert "\n" not in str(rec[0].message) and "and 1 more" in str(rec[0].message)
    assert {Path(p).name for p, _ in ds.skipped} == {"empty.png", "notes.txt", "truncated.png", "corrupt.jpg"}
    with pytest.raises(CnnlabError, match="strict: found 4 unreadable"):
        data.load(f"folder:{tmp_path / 'd'}", size=8, strict=True)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL's own; we report it as a skip
def test_folder_decompression_bomb_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    _save(tmp_path / "train" / "a" / "small.png", _rgb(8, 8))
    _save(tmp_path / "train" / "a" / "warn.png", np.zeros((12, 12, 3), np.uint8))  # over the limit: PIL only warns
    _save(tmp_path / "train" / "b" / "bomb.png", np.zeros((40, 40, 3), np.uint8))  # over twice the limit: PIL raises
    _save(tmp_path / "train" / "b" / "ok.png", _rgb(8, 8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # a small limit stands in for a 90-megapixel bomb
    with pytest.warns(data.DataWarning, match="decompression bomb"):
        ds = data.load(f"folder:{tmp_path}", size=8, split="train", val_fraction=0)
    assert len(ds) == 2
    assert sorted(Path(p).name for p, _ in ds.skipped) == ["bomb.png", "warn.png"]
    assert all(why.startswith("decompression bomb") for _, why in ds.skipped)


def test_folder_empty_class_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "train"
    _save(root / "full" / "a.png", _rgb())
    (root / "empty").mkdir()
    with pytest.raises(CnnlabError, match="class folder .*empty is empty"):
        data.load(f"folder:{tmp_path}")
    (root / "empty" / "junk.png").write_bytes(b"junk")  # a class of unreadable files only is empty too
    with pytest.raises(CnnlabError, match="'empty' has no readable images"):
        data.load(f"folder:{tmp_path}", size=8)
    with pytest.raises(CnnlabError, match="no class folders"):
        data.load(f"folder:{root / 'full'}")


# ----------------------------------------------------------------------------------------- shared data


def test_shared_npz_files(shared_data: Path, shared_cache: Path) -> None:
    import json

    for name, shape in (("digits8x8", (1, 8, 8)), ("mnist", (1, 28, 28)), ("cifar10", (3, 32, 32))):
        meta = json.loads((shared_data / f"{name}.json").read_text())
        te = data.load(f"npz:{shared_data / name}.npz", split="test", cache_dir=shared_cache)
        assert te.x.shape[1:] == shape and list(te.classes) == meta["class_names"]
        assert te.counts() == meta["counts"]["test"]
        if name == "cifar10":  # the training statistics match the ones the README records (train, 0-1)
            tr = data.load(f"npz:{shared_data / name}.npz", split="train", val_fraction=0, cache_dir=shared_cache)
            want_mean, want_std = meta["pixel_mean_std_0_1_per_channel"]["train"]
            assert np.allclose(tr.mean, want_mean, atol=1e-4) and np.allclose(tr.std, want_std, atol=1e-4)
