"""A user's first contact with bad input: every mistake is one line on stderr and exit code 2, never a traceback.

Each test builds its own small files in tmp_path (the autouse `cache_dir` fixture gives it an empty cache).
"""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab import data
from cnnlab.cli import main
from cnnlab.data import cache
from cnnlab.data.dataset import available_splits
from cnnlab.errors import CnnlabError

RNG = np.random.default_rng(0)


def _imgs(n: int, h: int = 8, c: int = 3) -> np.ndarray:
    return RNG.integers(0, 256, (n, h, h, c), dtype=np.uint8)


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _good(path: Path, **extra: np.ndarray) -> Path:
    arrays = {"x_train": _imgs(20), "y_train": np.arange(20) % 2, "x_test": _imgs(6), "y_test": np.arange(6) % 2}
    return _npz(path, **{**arrays, **extra})


def _one_line_exit_2(capsys: pytest.CaptureFixture, argv: list[str], *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


# ------------------------------------------------------------------------------------ 1-3: unreadable npz


def test_empty_npz_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = tmp_path / "empty.npz"
    p.write_bytes(b"")
    _one_line_exit_2(capsys, ["data", "info", f"npz:{p}"], "empty.npz", "empty (0 bytes)")


def test_empty_npz_through_the_console_script(tmp_path: Path) -> None:
    p = tmp_path / "empty.npz"
    p.write_bytes(b"")
    env = {**os.environ, "CNNLAB_CACHE": str(tmp_path / "cache")}
    r = subprocess.run(
        [sys.executable, "-m", "cnnlab", "data", "info", f"npz:{p}"], capture_output=True, text=True, env=env
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr


def _flip_member_byte(path: Path, member: str, at: int = 200) -> None:
    """Flip one byte inside a stored member's data, so the archive opens but its CRC check fails."""
    with zipfile.ZipFile(path) as z:
        off = z.getinfo(member).header_offset
    blob = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", blob[off + 26 : off + 30])  # the local file header's lengths
    blob[off + 30 + name_len + extra_len + at] ^= 0xFF
    path.write_bytes(bytes(blob))


def test_corrupt_npz_bad_crc_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = _good(tmp_path / "corrupt.npz")
    _flip_member_byte(p, "x_train.npy")
    with pytest.raises(zipfile.BadZipFile):  # the file really is damaged
        np.load(p)["x_train"]
    _one_line_exit_2(capsys, ["data", "info", f"npz:{p}"], "corrupt.npz", "'x_train'", "CRC")
    assert not list(Path(os.environ["CNNLAB_CACHE"]).iterdir())  # nothing half-built left in the cache


def test_npz_wrong_keys_names_expected_and_found(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = _npz(tmp_path / "keys.npz", images=_imgs(4), labels=np.zeros(4, int))
    err = _one_line_exit_2(capsys, ["data", "info", f"npz:{p}"], "keys.npz")
    assert "expected x_train, y_train" in err and "found images, labels" in err


# ---------------------------------------------------------------------------------------- 4: labels


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        ({"y_test": np.array([0, 1, 0, 1, 0, 99])}, ["'y_test'", "label 99", "0..1"]),
        ({"y_test": np.array([0, 1, 0, 1, 0, -1])}, ["'y_test'", "label -1", "0 or more"]),
        ({"y_train": np.arange(20) % 2 - 1}, ["'y_train'", "label -1"]),
        ({"y_train": (np.arange(20) % 2).astype(np.float32)}, ["'y_train'", "integers", "float32"]),
        ({"y_test": np.array(list("abcdef"))}, ["'y_test'", "integers"]),
        # A training label of 10**9 would size a class list or bincount by its value (8 GB): refused first.
        ({"y_train": np.r_[np.arange(19) % 2, 10**9]}, ["'y_train'", "up to 1000000000", "never occur", "'classes'"]),
        ({"y_test": np.array([0, 1, 0, 1, 0, 10**9])}, ["'y_test'", "label 1000000000", "0..1"]),
        (
            {"classes": np.array(["a", "b", "c"]), "y_test": np.array([0, 1, 2, 3, 0, 0])},
            ["'y_test'", "label 3", "0..2"],
        ),
    ],
)
def test_npz_labels_out_of_range_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: dict, needles: list[str]
) -> None:
    p = _good(tmp_path / "labels.npz", **extra)
    _one_line_exit_2(capsys, ["data", "info", f"npz:{p}"], "labels.npz", *needles)


def test_npz_classes_key_decides_the_class_list(tmp_path: Path) -> None:
    # Declared classes may outnumber the labels seen (class 2 has no image yet): the list is the file's.
    p = _good(tmp_path / "named.npz", classes=np.array(["cat", "dog", "emu"]))
    ds = data.load(f"npz:{p}", val_fraction=0)
    assert ds.classes == ("cat", "dog", "emu") and ds.counts() == [10, 10, 0]
    # Without names the training labels define the classes; test labels must fall inside them.
    q = _good(tmp_path / "plain.npz")
    assert data.load(f"npz:{q}", split="test").classes == ("0", "1")


def test_npz_keras_style_column_labels_are_accepted(tmp_path: Path) -> None:
    p = _good(tmp_path / "keras.npz", y_train=(np.arange(20) % 2)[:, None], y_test=(np.arange(6) % 2)[:, None])
    assert data.load(f"npz:{p}", split="test").y.tolist() == [0, 1, 0, 1, 0, 1]


def test_mnist_test_labels_checked_against_training_classes(tmp_path: Path) -> None:
    def idx(arr: np.ndarray) -> bytes:
        return bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.tobytes()

    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx(np.zeros((10, 4, 4), np.uint8)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx(np.arange(10, dtype=np.uint8)))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx(np.zeros((2, 4, 4), np.uint8)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx(np.array([3, 200], np.uint8)))
    with pytest.raises(CnnlabError, match=r"t10k-labels.*label 200 out of range 0\.\.9"):
        data.load(f"mnist:{tmp_path}")


# ------------------------------------------------------------------------------------- 5: absurd shapes


@pytest.mark.parametrize(
    ("spec", "needles"),
    [
        ("shapes:size=100000", ["size must be 8..512", "100000"]),
        ("shapes:size=2", ["size must be 8..512"]),
        ("shapes:train=100000000000", ["train must be", "TB of cache"]),
        ("shapes:train=0", ["train must be 1.."]),
        ("shapes:test=-5", ["test must be 0.."]),
        ("shapes:seed=99999999999", ["seed must be"]),
        ("shapes:classes=40", ["classes must be in 1..12"]),
    ],
)
def test_shapes_absurd_options_are_refused_before_allocating(
    capsys: pytest.CaptureFixture, spec: str, needles: list[str]
) -> None:
    _one_line_exit_2(capsys, ["data", "info", spec], *needles)


def test_size_option_is_range_checked(capsys: pytest.CaptureFixture) -> None:
    _one_line_exit_2(capsys, ["data", "info", "shapes:train=20,test=5", "--size", "100000"], "size must be 1..4096")


def test_build_larger_than_the_free_disk_is_refused_with_the_figure(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda p: _Usage(1_000_000))
    err = _one_line_exit_2(capsys, ["data", "info", "shapes:train=2000,test=100"], "needs about 6.5 MB", "1.0 MB free")
    assert "CNNLAB_CACHE" in err and str(cache_dir) in err
    assert not list(cache_dir.iterdir())


class _Usage:
    def __init__(self, free: int):
        self.total = self.used = self.free = free


# ------------------------------------------------------------------------------------- 6: predict


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A tiny lenet5 weights file with the metadata `cnnlab predict` reads (no training needed)."""
    from cnnlab.registry import create_model
    from cnnlab.train.checkpoint import save_weights

    model = create_model("lenet5", num_classes=3, in_chans=3)
    meta = {"model": "lenet5", "num_classes": 3, "in_chans": 3, "image_size": 32, "classes": ["a", "b", "c"]}
    meta |= {"mean": [0.5] * 3, "std": [0.25] * 3}
    path = tmp_path / "tiny.safetensors"
    save_weights(path, model.state_dict(), meta)
    return path


def _bad_images(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    # With MAX_IMAGE_PIXELS = 300 (a small limit stands in for a 90-megapixel bomb):
    Image.fromarray(RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(d / "good.png")  # 256 px: fine
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(d / "bomb.png")  # over twice the limit: PIL raises
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(d / "warn.png")  # over the limit: PIL only warns
    blob = (d / "good.png").read_bytes()
    (d / "truncated.png").write_bytes(blob[: len(blob) // 2])
    (d / "notes.png").write_text("not an image")
    return {p.stem: p for p in d.iterdir()}


UNREADABLE = [
    ("bomb", "decompression bomb"),
    ("warn", "decompression bomb"),
    ("truncated", "not a readable image"),
    ("notes", "not a readable image"),
]


@pytest.mark.parametrize(("name", "needle"), UNREADABLE)
def test_predict_one_unreadable_image_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, checkpoint: Path, name: str,
    needle: str,
) -> None:  # fmt: skip
    imgs = _bad_images(tmp_path / "imgs")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        err = _one_line_exit_2(capsys, ["predict", str(checkpoint), str(imgs[name])], f"{name}.png", needle)
    assert err.startswith("cnnlab predict: error:")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]  # no second report


def test_predict_skips_unreadable_images_and_classifies_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, checkpoint: Path
) -> None:
    imgs = _bad_images(tmp_path / "imgs")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    order = ["good", "bomb", "truncated", "notes", "missing"]
    argv = ["predict", str(checkpoint), *(str(imgs.get(n, tmp_path / f"{n}.png")) for n in order)]
    assert main(argv) == 2  # documented: some images were skipped
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and out.startswith(str(imgs["good"])) and "%" in out
    lines = err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("cnnlab predict: warning: skipped") for line in lines)
    assert "Traceback" not in err and "bomb.png" in lines[0] and "missing.png" in lines[3]


def test_predict_help_documents_the_skip_rule(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "skipped" in capsys.readouterr().out


# ------------------------------------------------------------------------- 7: skipped files reported once


def _folder_with_a_bad_file(root: Path, splits: tuple[str, ...] = ("train", "val", "test")) -> Path:
    for split in splits:
        for cls in ("a", "b"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / f"{i}.png")
    (root / "train" / "a" / "broken.png").write_bytes(b"")
    return root


def test_skipped_files_are_reported_once_per_entry(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = f"folder:{_folder_with_a_bad_file(tmp_path / 'imgs')}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for split in ("train", "val", "test"):  # what training does
            ds = data.load(spec, split=split)
        assert ds.skipped  # every split still carries the list
    found = [w for w in caught if issubclass(w.category, data.DataWarning)]
    assert len(found) == 1 and "skipped 1 unreadable file(s)" in str(found[0].message)
    # Another cache entry (another resolution) is reported on its own.
    with pytest.warns(data.DataWarning, match="skipped 1"):
        data.load(spec, size=16)


def test_data_info_prints_the_skip_warning_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "info", f"folder:{_folder_with_a_bad_file(tmp_path / 'imgs')}"]) == 0
    assert capsys.readouterr().out.count("skipped 1 unreadable") == 1


# ---------------------------------------------------------------------------------------- 8: full disk


def _raise_enospc_on_second_call(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> None:
    real, calls = getattr(module, name), []

    def flaky(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:  # mid-build: the first array is written, the second hits the full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)


@pytest.mark.parametrize(("module", "name"), [(cache, "finish"), (os, "posix_fallocate")])
def test_full_disk_stops_the_build_cleanly_and_a_later_build_succeeds(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, cache_dir: Path, module: object, name: str
) -> None:
    if not hasattr(module, name):
        pytest.skip(f"no {name} on this platform")
    spec = "shapes:train=200,test=20"
    with monkeypatch.context() as m:
        _raise_enospc_on_second_call(m, module, name)
        err = _one_line_exit_2(capsys, ["data", "info", spec], "full", str(cache_dir), "CNNLAB_CACHE")
        assert "--cache-dir" in err
    assert not list(cache_dir.iterdir())  # no entry, no temporary directory left behind
    assert main(["data", "info", spec]) == 0  # with space again, the build succeeds
    assert len(data.load(spec)) == 180  # 10% of each class carved to val


# ----------------------------------------------------------------------- 9: train/ + val/ but no test/


def test_imagenet_layout_has_its_own_val_and_no_test(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _folder_with_a_bad_file(tmp_path / "inet", splits=("train", "val"))
    spec = f"folder:{root}"
    assert available_splits(spec) == ("train", "val")
    assert available_splits(spec, val_fraction=0) == ("train", "val")  # its own val needs no carve
    with pytest.warns(data.DataWarning):
        tr = data.load(spec, split="train")
    va = data.load(spec, split="val")
    assert len(tr) == 6 and len(va) == 6 and va.counts() == [3, 3]  # the folder's val/, not carved from train/
    assert va.cache_path == tr.cache_path and tr.mean == va.mean
    with pytest.raises(CnnlabError, match=r"has no test split \(it has train, val\)"):
        data.load(spec, split="test")
    assert main(["data", "info", spec, "--json"]) == 0
    assert '"test"' not in capsys.readouterr().out


def test_available_splits_of_other_sources(tmp_path: Path) -> None:
    assert available_splits("shapes:train=30,test=10") == ("train", "val", "test")
    assert available_splits("shapes:train=30,test=10", val_fraction=0) == ("train", "test")
    p = _npz(tmp_path / "tv.npz", x_train=_imgs(4), y_train=np.arange(4) % 2, x_val=_imgs(2), y_val=np.arange(2))
    assert available_splits(f"npz:{p}", val_fraction=0) == ("train", "val")


# ------------------------------------------------------------------------------------ more bad input


@pytest.mark.parametrize(
    ("make", "needles"),
    [
        (lambda d: (d / "dir.npz").mkdir() or d / "dir.npz", ["dir.npz is a directory"]),
        (lambda d: d / "missing.npz", ["missing.npz does not exist"]),
        (lambda d: np.save(d / "one.npy", _imgs(3)) or d / "one.npy", ["single .npy array"]),
        (lambda d: _npz(d / "f.npz", x_train=_imgs(4).astype(np.float32), y_train=np.zeros(4, int)), ["uint8"]),
        (lambda d: _npz(d / "f.npz", x_train=np.zeros((4, 8), np.uint8), y_train=np.zeros(4, int)), ["(N,H,W,C)"]),
        (
            lambda d: _npz(d / "f.npz", x_train=_imgs(4).transpose(0, 3, 1, 2), y_train=np.zeros(4, int)),
            ["channel-first"],
        ),
        (lambda d: _npz(d / "f.npz", x_train=_imgs(4), y_train=np.zeros(3, int)), ["3 labels for 4 images"]),
        (lambda d: _npz(d / "f.npz", x_train=_imgs(0), y_train=np.zeros(0, int)), ["holds no images"]),
        (lambda d: _npz(d / "f.npz", x_train=_imgs(4), y_train=np.array([0, 0, 2, 2])), ["never occur (first: 1)"]),
        (
            lambda d: _npz(
                d / "f.npz", x_train=_imgs(4), y_train=np.zeros(4, int), x_test=_imgs(2, h=6), y_test=np.zeros(2, int)
            ),
            ["different image shapes"],
        ),  # fmt: skip
    ],
)
def test_more_bad_npz_inputs_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, make, needles) -> None:  # noqa: ANN001
    _one_line_exit_2(capsys, ["data", "info", f"npz:{make(tmp_path)}"], *needles)


def test_bad_output_and_home_paths_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = "shapes:train=20,test=5"
    _one_line_exit_2(capsys, ["data", "show", spec, "--out", str(tmp_path)], "is a directory")
    (tmp_path / "file").write_text("x")
    _one_line_exit_2(capsys, ["data", "show", spec, "--out", str(tmp_path / "file" / "g.png")], "cannot write")
    _one_line_exit_2(capsys, ["data", "info", "npz:~no-such-user-here/x.npz"], "cannot expand '~'")
    _one_line_exit_2(capsys, ["data", "info", spec, "--val-seed", "-1"], "val_seed")
