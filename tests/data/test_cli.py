from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from cnnlab.cli import main


def test_data_show_writes_a_labelled_grid(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "grid.png"
    assert main(["data", "show", "shapes:train=60,test=20", "--out", str(out), "-n", "20", "--augment", "cifar"]) == 0
    img = Image.open(out)
    assert img.size[0] > 10 * 64 and img.mode == "RGB"
    assert "wrote" in capsys.readouterr().out


def test_data_info(capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "info", "shapes:train=100,test=30", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["counts"] == {"train": 90, "val": 10, "test": 30}
    assert rep["classes"][:3] == ["circle", "ring", "square"] and len(rep["mean"]) == 3
    assert main(["data", "info", "shapes:train=100,test=30"]) == 0
    assert "mean (train, 0-1)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "info", "shapez"],
        ["data", "info", "npz:/nonexistent/file.npz"],
        ["data", "show", "shapes:size=x", "--out", "x.png"],
        ["data", "show", "shapes:train=20,test=5", "--out", "x.png", "--augment", "flop"],
    ],
)
def test_bad_input_is_one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab data: error:") and err.count("\n") == 1


def test_strict_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "imgs" / "train"
    (root / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(root / "a" / "ok.png")
    (root / "a" / "bad.png").write_bytes(b"")
    assert main(["data", "info", f"folder:{tmp_path / 'imgs'}"]) == 0
    assert "skipped 1 unreadable" in capsys.readouterr().out
    assert main(["data", "info", f"folder:{tmp_path / 'imgs'}", "--strict"]) == 2
    assert "strict: found 1 unreadable" in capsys.readouterr().err
