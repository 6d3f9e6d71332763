"""recipe.model_args: spec overrides recorded in the run directory, so eval and --resume rebuild the same network."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.registry import create_model
from cnnlab.train.recipe import Recipe, from_dict, load_recipe, parse_override

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DATA = "shapes:size=16,train=64,test=32,classes=4"
ARGS = {"block": "bottleneck", "depths": [1, 1, 1]}
TINY = {"model": "resnet20", "data": DATA, "epochs": 1, "batch_size": 32, "threads": 1, "progress": False,
        "plots": False}  # fmt: skip


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_model_args_round_trip_through_toml(tmp_path):
    r = Recipe(model="resnet20", model_args={"groups": 4, "depths": (2, 2, 2), "block": "bottleneck"})
    text = r.to_toml()
    assert 'model_args = { groups = 4, depths = [2, 2, 2], block = "bottleneck" }\n' in text
    assert text.index("model =") < text.index("model_args =") < text.index("data =")
    path = tmp_path / "r.toml"
    path.write_text(text)
    back = load_recipe(path)
    assert back == r and back.model_args == {"groups": 4, "depths": [2, 2, 2], "block": "bottleneck"}
    assert from_dict(tomllib.loads(text)) == r
    assert Recipe().to_toml().count("model_args = {}\n") == 1 and load_recipe(None).model_args == {}
    assert r.replace(lr=0.05).model_args == r.model_args and r.replace(model_args={}).model_args == {}
    assert hash(r) == hash(back)


def test_model_args_from_set():
    key, value = parse_override('model_args={groups=4, block="bottleneck", depths=[1, 1, 1]}')
    assert key == "model_args" and value == {"groups": 4, "block": "bottleneck", "depths": [1, 1, 1]}
    r = load_recipe(None, ['model_args={ groups = 4, block = "bottleneck" }'])
    assert r.model_args == {"groups": 4, "block": "bottleneck"}
    assert load_recipe(None, ["model_args={}"]).model_args == {}


@pytest.mark.parametrize("item", ["model_args={block=bottleneck}", "model_args=4", "model_args=[1, 2]"])
def test_model_args_must_be_a_table(item):
    with pytest.raises(CnnlabError, match="model_args must be a table"):
        load_recipe(None, [item])


def test_model_args_keys_must_be_strings():
    with pytest.raises(CnnlabError, match="string keys"):
        Recipe(model_args={1: 2})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from cnnlab.train.loop import train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("model_args") / "run"
    result = train(from_dict({**TINY, "model_args": ARGS}), out, device="cpu", log=lambda _: None)
    assert result.status == "finished"
    return out


def test_the_run_records_and_rebuilds_the_overridden_model(run, capsys):
    from cnnlab.train.evaluate import load_checkpoint
    from cnnlab.train.rundir import read_run

    recipe, run_info = read_run(run)
    assert recipe.model_args == ARGS and run_info["model_args"] == ARGS
    loaded = load_checkpoint(run)
    assert loaded.meta["model_args"] == ARGS
    overridden = create_model("resnet20", num_classes=4, in_chans=3, block="bottleneck", depths=(1, 1, 1))
    assert _params(loaded.model) == _params(overridden) != _params(create_model("resnet20", num_classes=4))
    assert main(["eval", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["top1"] == json.loads((run / "summary.json").read_text())["test_top1"]


def test_resume_rebuilds_the_overridden_model(run):
    from cnnlab.train.loop import train

    # The checkpoint loads strictly into the model rebuilt from recipe.toml's model_args (a plain resnet20's
    # state would not fit), and the finished run stays finished.
    logs: list[str] = []
    result = train(Recipe(progress=False), resume=run, device="cpu", log=logs.append)
    assert result.status == "finished", logs
    assert any("resumed" in line for line in logs), logs


def test_unknown_key_is_a_cnnlab_error_naming_it(tmp_path):
    from cnnlab.train.loop import train

    with pytest.raises(CnnlabError, match="unknown override 'grops'") as e:
        train(from_dict({**TINY, "model_args": {"grops": 4}}), tmp_path / "r", device="cpu", log=lambda _: None)
    assert "\n" not in str(e.value) and "groups" in str(e.value)  # did you mean groups?


def test_a_value_the_family_refuses_is_a_cnnlab_error(tmp_path):
    from cnnlab.train.loop import train

    with pytest.raises(CnnlabError, match="bottleneck blocks only"):  # resnet20 is a basic-block net
        train(from_dict({**TINY, "model_args": {"groups": 4}}), tmp_path / "r", device="cpu", log=lambda _: None)


def test_unknown_key_on_the_command_line_is_one_line_and_exit_code_2(tmp_path, capsys):
    argv = ["train", "resnet20", "--data", DATA, "--epochs", "1", "--no-progress", "--out", str(tmp_path / "r"),
            "--set", "batch_size=32", "--set", "threads=1", "--set", "model_args={grops=4}"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "unknown override 'grops'" in err, err
