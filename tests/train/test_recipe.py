"""Recipes: TOML -> frozen dataclass, typed `--set` overrides, bad keys and values rejected."""

from __future__ import annotations

import dataclasses

import pytest

from cnnlab.errors import CnnlabError, UnknownNameError
from cnnlab.registry import list_models
from cnnlab.train.recipe import Recipe, builtin_recipes, from_dict, load_recipe, parse_override, to_toml


def test_defaults_are_frozen():
    r = Recipe()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.lr = 1.0  # type: ignore[misc]


def test_paper_recipe_resnet_cifar():
    r = load_recipe("resnet_cifar")
    assert (r.lr, r.weight_decay, r.batch_size, r.momentum) == (0.1, 1e-4, 128, 0.9)
    assert r.schedule == "step" and r.milestone_unit == "iteration"
    assert r.milestones == (32000.0, 48000.0) and r.iterations == 64000


def test_every_packaged_recipe_loads_and_names_a_registered_model():
    names = builtin_recipes()
    assert {"alexnet2012", "vgg", "resnet_cifar", "resnet_imagenet", "mobilenet", "main"} <= set(names)
    models = set(list_models())
    for name in names:
        r = load_recipe(name)
        assert r.model in models, name


def test_alexnet_recipe_matches_the_lecture():
    r = load_recipe("alexnet2012")
    assert (r.lr, r.momentum, r.weight_decay, r.dropout, r.batch_size, r.schedule) == (
        0.01, 0.9, 5e-4, 0.5, 128, "plateau"
    )  # fmt: skip


def test_overrides_are_typed():
    r = load_recipe("resnet_cifar", ["lr=0.05", "nesterov=true", "milestones=[10, 20]", "optimizer=adamw", "epochs=3"])
    assert r.lr == 0.05 and r.nesterov is True and r.milestones == (10.0, 20.0)
    assert r.optimizer == "adamw" and r.epochs == 3 and isinstance(r.epochs, int)
    assert load_recipe(None, ["lr=1"]).lr == 1.0  # an int widens to a float
    assert load_recipe(None, ["iterations=64e3"]).iterations == 64000


@pytest.mark.parametrize(
    "item, message",
    [
        ("epochs=2.5", "epochs must be int"),
        ("nesterov=1", "nesterov must be bool"),
        ("lr=fast", "lr must be float"),
        ("milestones=[1, 'a']", "milestones must be a list of floats"),
        ("batch_size=0", "batch_size must be at least 1"),
        ("lr=-0.1", "lr must be positive"),
        ("label_smoothing=1.5", "label_smoothing"),
        ("noequals", "key=value"),
    ],
)
def test_bad_values_are_one_line_errors(item, message):
    with pytest.raises(CnnlabError, match=message):
        load_recipe(None, [item])


def test_unknown_key_suggests_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean weight_decay"):
        load_recipe(None, ["weight_decya=0.1"])
    with pytest.raises(UnknownNameError, match="unknown recipe key 'lr_rate'"):
        from_dict({"lr_rate": 0.1})


def test_unknown_choice_and_recipe_name():
    with pytest.raises(UnknownNameError, match="did you mean sgd"):
        load_recipe(None, ["optimizer=sdg"])
    with pytest.raises(UnknownNameError, match="did you mean resnet_cifar"):
        load_recipe("resnet_cifra")


def test_toml_round_trip(tmp_path):
    r = load_recipe("main", ["lr=0.05", "milestones=[3]", "schedule=step"])
    path = tmp_path / "r.toml"
    path.write_text(to_toml(r))
    assert load_recipe(path) == r


def test_bare_words_are_strings_and_toml_strings_work():
    assert parse_override("data=shapes:train=100") == ("data", "shapes:train=100")
    assert parse_override('model="resnet20"') == ("model", "resnet20")


def test_channels_last_is_auto_and_takes_toml_bools():
    import torch

    from cnnlab.train.numerics import use_channels_last

    assert Recipe().channels_last == "auto"
    assert load_recipe(None, ["channels_last=true"]).channels_last == "true"  # a TOML bool, as before
    assert load_recipe(None, ["channels_last=false"]).channels_last == "false"
    assert from_dict({"channels_last": False}).channels_last == "false"  # old run directories' recipe.toml
    with pytest.raises(KeyError, match="channels_last.*did you mean auto"):
        load_recipe(None, ["channels_last=autp"])
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_channels_last(Recipe(), cpu)
    assert not use_channels_last(Recipe(), cuda)  # fp32 on a GPU without tensor cores gains nothing
    assert use_channels_last(Recipe(precision="fp16"), cuda)
    assert not use_channels_last(Recipe(channels_last="false"), cpu)
    assert use_channels_last(Recipe(channels_last="true"), cuda)
