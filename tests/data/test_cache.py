from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab import data
from cnnlab.data import cache
from cnnlab.data.dataset import carve
from cnnlab.data.sources import npz as npz_source
from cnnlab.errors import CnnlabError


def _make(path: Path, n: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n, 6, 6, 3), dtype=np.uint8),
        y_train=np.arange(n) % 4,
        x_test=rng.integers(0, 256, (8, 6, 6, 3), dtype=np.uint8),
        y_test=np.arange(8) % 4,
    )
    return path


def test_second_load_never_decodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    p = _make(tmp_path / "d.npz")
    first = data.load(f"npz:{p}")

    def boom(path: Path) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(npz_source, "read", boom)
    again = data.load(f"npz:{p}")
    assert torch.equal(first.x, again.x)
    # The images are a memory map of an .npy in the cache directory.
    files = list(cache_dir.rglob("train.x.npy"))
    assert files and np.load(files[0], mmap_mode="r").dtype == np.uint8
    assert str(cache_dir) in str(again.cache_path)


def test_changed_content_rebuilds(tmp_path: Path, cache_dir: Path) -> None:
    p = _make(tmp_path / "d.npz", seed=0)
    a = data.load(f"npz:{p}", val_fraction=0)
    _make(p, seed=1)
    os.utime(p, ns=(1, 1))  # even with an old mtime, the content hash differs
    b = data.load(f"npz:{p}", val_fraction=0)
    assert not torch.equal(a.x, b.x)
    assert len([d for d in cache_dir.iterdir() if d.name.startswith("npz-")]) == 2


def test_resolution_is_part_of_the_key(tmp_path: Path) -> None:
    p = _make(tmp_path / "d.npz")
    assert data.load(f"npz:{p}", size=4).x.shape[-2:] == (4, 4)
    assert data.load(f"npz:{p}", size=12).x.shape[-2:] == (12, 12)
    assert data.load(f"npz:{p}").x.shape[-2:] == (6, 6)


def test_failed_build_leaves_no_entry(tmp_path: Path) -> None:
    entry = tmp_path / "c" / "entry"

    def writer(tmp: Path) -> None:
        (tmp / "train.x.npy").write_bytes(b"partial")
        raise RuntimeError("crash in the middle")

    with pytest.raises(RuntimeError):
        cache.build(entry, writer)
    assert not entry.exists() and list((tmp_path / "c").iterdir()) == []


def test_cache_dir_argument_and_env(tmp_path: Path, cache_dir: Path) -> None:
    assert cache.cache_root() == cache_dir
    assert cache.cache_root(tmp_path / "x") == tmp_path / "x"
    data.load("shapes:train=20,test=10", cache_dir=tmp_path / "x", val_fraction=0)
    assert any((tmp_path / "x").iterdir())


def test_val_is_carved_from_train_stratified_and_seeded(tmp_path: Path) -> None:
    p = _make(tmp_path / "d.npz", n=400)
    full = data.load(f"npz:{p}", val_fraction=0)
    tr = data.load(f"npz:{p}", split="train", val_fraction=0.25, val_seed=3)
    va = data.load(f"npz:{p}", split="val", val_fraction=0.25, val_seed=3)
    te = data.load(f"npz:{p}", split="test", val_fraction=0.25, val_seed=3)
    assert (len(tr), len(va), len(te)) == (300, 100, 8)
    assert va.counts() == [25, 25, 25, 25]  # stratified
    # train and val partition the original training images: match rows by content
    rows = {bytes(r) for r in full.x.reshape(len(full), -1).numpy()}
    got_tr = [bytes(r) for r in tr.x.reshape(len(tr), -1).numpy()]
    got_va = [bytes(r) for r in va.x.reshape(len(va), -1).numpy()]
    assert set(got_tr) | set(got_va) == rows and not set(got_tr) & set(got_va)
    assert va.mean == tr.mean and tr.mean != full.mean  # statistics of the carved training split
    other = data.load(f"npz:{p}", split="val", val_fraction=0.25, val_seed=4)
    assert not torch.equal(other.x, va.x)
    with pytest.raises(CnnlabError, match="no val split"):
        data.load(f"npz:{p}", split="val", val_fraction=0)


def test_carve_oracle() -> None:
    y = np.repeat(np.arange(5), [10, 20, 30, 1, 0][:5])
    tr, va = carve(y, 0.1, seed=0)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(len(y)))
    assert np.bincount(y[va], minlength=5).tolist() == [round(c * 0.1) for c in [10, 20, 30, 1, 0]]
    tr2, va2 = carve(y, 0.1, seed=0)
    assert np.array_equal(va, va2)


def test_bad_load_arguments() -> None:
    with pytest.raises(CnnlabError, match="did you mean val"):
        data.load("shapes", split="vall")
    with pytest.raises(CnnlabError, match="val_fraction"):
        data.load("shapes", val_fraction=1.0)
    with pytest.raises(CnnlabError, match="size"):
        data.load("shapes", size=0)
