"""Reading weight files: formats, key layouts, refusal of code-carrying pickles, clear mismatch errors."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.weights import load_state_dict, save_state_dict


@pytest.fixture
def lenet():
    return cnnlab.create_model("lenet5")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth"])
def test_round_trip_all_formats(lenet, tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_state_dict(lenet.state_dict(), path)
    else:
        torch.save({"state_dict": lenet.state_dict()}, path)  # nested, as many training scripts save
    other = cnnlab.create_model("lenet5", weights=path)
    for (k, a), (_, b) in zip(lenet.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k


def test_class_count_taken_from_file(tmp_path):
    src = cnnlab.create_model("lenet5", num_classes=4)
    path = tmp_path / "w.safetensors"
    save_state_dict(src.state_dict(), path)
    assert cnnlab.create_model("lenet5", weights=path).num_classes == 4


def test_ddp_prefix_is_stripped(lenet, tmp_path):
    path = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in lenet.state_dict().items()}, path)
    cnnlab.create_model("lenet5", weights=path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": _Evil()}, f)
    with pytest.raises(CnnlabError, match="refused"):
        load_state_dict(path)


def test_other_architecture_names_first_mismatch(tmp_path):
    src = cnnlab.create_model("lenet5", widths=(8, 16))
    path = tmp_path / "w.safetensors"
    save_state_dict(src.state_dict(), path)
    with pytest.raises(CnnlabError) as e:
        cnnlab.create_model("lenet5", num_classes=10, weights=path)
    msg = str(e.value)
    assert "stages.0.0.weight (8, 1, 5, 5) vs (6, 1, 5, 5)" in msg
    assert "\n" not in msg


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CnnlabError, match="not a readable safetensors"):
        load_state_dict(bad)
    with pytest.raises(CnnlabError, match="not found"):
        load_state_dict(tmp_path / "nope.pt")


def test_cli_weights_errors_are_one_line(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": _Evil()}, f)
    assert main(["weights", "lenet5", str(path)]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and len(err.strip().splitlines()) == 1


def test_cli_weights_converts_to_safetensors(lenet, tmp_path, capsys):
    src = tmp_path / "w.pth"
    torch.save(lenet.state_dict(), src)
    out = tmp_path / "w.safetensors"
    assert main(["weights", "lenet5", str(src), "--out", str(out)]) == 0
    assert "fits lenet5" in capsys.readouterr().out
    assert torch.equal(load_state_dict(out)["head.fc.weight"], lenet.state_dict()["head.fc.weight"])
