"""`cnnlab train --weights/--freeze/--lr-mult/--unfreeze-at`, `cnnlab features` and `cnnlab reproduce transfer`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.train.checkpoint import CheckpointDir, load_weights
from cnnlab.train.finetune import part_of
from cnnlab.train.rundir import read_run
from cnnlab.weights import save_state_dict

TINY7 = "shapes:classes=7,size=32,train=70,test=14"
TINY4 = "shapes:classes=4,size=16,train=96,test=32"
FAST = ["--no-progress", "--set", "plots=false", "--set", "threads=1", "--set", "eval_batch_size=64"]


def _one_line_exit_2(capsys, argv: list[str], needle: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert needle in err, err


@pytest.fixture
def snapshot(monkeypatch):
    """The model's state as the run setup leaves it (after loading and freezing), before the first step."""
    import cnnlab.train.loop as loop

    seen: dict = {}
    real = loop.prepare_transfer

    def spy(recipe, model, *a, **k):
        transfer = real(recipe, model, *a, **k)
        seen["before"] = {n: t.detach().clone() for n, t in model.state_dict().items()}
        return transfer

    monkeypatch.setattr(loop, "prepare_transfer", spy)
    return seen


def test_torchvision_resnet18_frozen_backbone_is_bit_identical(tmp_path, snapshot, capsys):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    src = tv.models.resnet18(weights=None).state_dict()
    pth = tmp_path / "resnet18.pth"
    torch.save(src, pth)
    run = tmp_path / "run"
    argv = ["train", "resnet18", "--data", TINY7, "--weights", str(pth), "--freeze", "backbone"]
    argv += ["--epochs", "1", "--batch-size", "16", "--lr", "0.1", "--out", str(run), *FAST]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "head replaced: 1000 -> 7 classes" in out
    before = snapshot["before"]
    after, meta = CheckpointDir(run / "checkpoints").latest().load_weights()
    assert meta["num_classes"] == 7
    # The snapshot really holds torchvision's tensors under cnnlab's names (the BN statistics included).
    assert torch.equal(before["stem.conv.weight"], src["conv1.weight"])
    assert torch.equal(before["stem.bn.running_var"], src["bn1.running_var"])
    backbone = [k for k in before if part_of(k) != "head"]
    assert any(k.endswith("running_mean") for k in backbone) and len(backbone) > 100
    assert [k for k in backbone if not torch.equal(before[k], after[k])] == []
    head = [k for k in before if part_of(k) == "head"]
    assert head and all(not torch.equal(before[k], after[k]) for k in head)  # only the head trained
    assert read_run(run)[0].freeze == "backbone"  # recorded in recipe.toml


def test_optimizer_groups_in_the_run_follow_lr_mult(tmp_path):
    run = tmp_path / "run"
    argv = ["train", "resnet20", "--data", TINY4, "--lr-mult", "head=1,stages=0.1,stem=0.01,stage2=0.5"]
    argv += ["--epochs", "1", "--batch-size", "16", "--lr", "0.2", "--set", "schedule=constant", "--out", str(run)]
    # The generic weight decay rule, not the resnet family default's (1e-4 on every parameter).
    argv += ["--set", "weight_decay=5e-4", "--set", "decay_norm_and_bias=false"]
    assert main(argv + FAST) == 0
    groups = CheckpointDir(run / "checkpoints").latest().load_state()["optimizer"]["param_groups"]
    want = {"stem": 0.01, "stages.0": 0.1, "stages.1": 0.1, "stages.2": 0.5, "head": 1.0}
    model = cnnlab.create_model("resnet20", num_classes=4)
    names = []
    for g in groups:
        for name in g["names"]:
            assert g["lr_mult"] == want[part_of(name)], name
            assert g["lr"] == pytest.approx(0.2 * want[part_of(name)])  # the rate actually used (constant schedule)
            param = model.get_parameter(name)
            assert g["weight_decay"] == (5e-4 if param.ndim >= 2 else 0.0), name
        names += g["names"]
        assert len(g["names"]) == len(g["params"])
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())


def test_gradual_unfreezing_and_exact_resume(tmp_path, capsys):
    src = cnnlab.create_model("resnet20", num_classes=10)
    wfile = tmp_path / "src.safetensors"
    save_state_dict(src.state_dict(), wfile)
    run_a = tmp_path / "a"
    argv = ["train", "resnet20", "--data", TINY4, "--weights", str(wfile), "--freeze", "stages:2", "--unfreeze-at", "1"]
    argv += ["--epochs", "2", "--batch-size", "16", "--lr", "0.05", "--out", str(run_a), *FAST]
    assert main(argv) == 0
    assert "epoch 2: unfrozen stem, stages.0, stages.1" in capsys.readouterr().out
    ckpts = CheckpointDir(run_a / "checkpoints")
    manifests = sorted(p for p in (run_a / "checkpoints").glob("step-*.json"))
    assert len(manifests) == 2
    first = ckpts.latest().load_weights()[0]
    w1, _ = load_weights(manifests[0].with_name(manifests[0].stem + ".safetensors"))
    w0 = src.state_dict()
    for k in w1:
        if part_of(k) in ("stem", "stages.0", "stages.1"):
            assert torch.equal(w1[k], w0[k]), k  # frozen during epoch 1
    assert not torch.equal(first["stem.conv.weight"], w0["stem.conv.weight"])  # trained in epoch 2
    assert not torch.equal(w1["stages.2.0.conv1.weight"], w0["stages.2.0.conv1.weight"])

    # Resume from the epoch-1 checkpoint: the recorded settings rebuild the run, bit for bit.
    run_b = tmp_path / "b"
    shutil.copytree(run_a, run_b)
    last = manifests[1].name[: -len(".json")]
    for p in (run_b / "checkpoints").glob(last + ".*"):
        p.unlink()
    assert main(["train", "--resume", str(run_b), "--no-progress"]) == 0
    resumed = CheckpointDir(run_b / "checkpoints").latest().load_weights()[0]
    assert [k for k in first if not torch.equal(first[k], resumed[k])] == []


def test_features_are_the_pooled_backbone_output(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "resnet20", "--data", TINY4, "--epochs", "1", "--batch-size", "16", "--out", str(run), *FAST]
    assert main(argv) == 0
    out = tmp_path / "feats.npz"
    assert main(["features", str(run), "--data", TINY4, "--out", str(out), "--batch-size", "7"]) == 0
    z = np.load(out, allow_pickle=False)
    from cnnlab.data.dataset import load
    from cnnlab.train.evaluate import load_checkpoint, normalize

    loaded = load_checkpoint(run)
    ds = load(TINY4, split="test")
    assert z["features"].shape == (len(ds.y), 64)
    np.testing.assert_array_equal(z["labels"], ds.y.numpy())
    assert list(z["class_names"]) == list(ds.classes)
    with torch.no_grad():  # the oracle: average-pool features(x) by hand, all at once
        x = normalize(ds.x, loaded.meta["mean"], loaded.meta["std"])
        want = loaded.model.features(x).mean(dim=(2, 3))
        logits = loaded.model(x)
    np.testing.assert_allclose(z["features"], want.numpy(), rtol=1e-5, atol=1e-5)
    fc = loaded.model.head.fc
    with torch.no_grad():
        again = torch.from_numpy(z["features"]) @ fc.weight.T + fc.bias
    np.testing.assert_allclose(again.numpy(), logits.numpy(), atol=1e-4)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--freeze", "stages:4"], "only 3 stages"),
        (["--freeze", "top"], "none, backbone or stages:K"),
        (["--lr-mult", "stagse=0.1"], "did you mean stages"),
        (["--weights", "torchvision:resnet19"], "resnet18"),
        (["--unfreeze-at", "1"], "--unfreeze-at needs --freeze"),
        (["--weights", "WRONG_ARCH"], "does not fit resnet20"),
        (["--weights", "MISSING"], "not found"),
    ],
)
def test_bad_transfer_input_is_one_line_exit_2(capsys, tmp_path, extra, needle):
    if "torchvision:resnet19" in extra:
        pytest.importorskip("torchvision")
    if "WRONG_ARCH" in extra:
        wrong = tmp_path / "lenet.safetensors"
        save_state_dict(cnnlab.create_model("lenet5").state_dict(), wrong)
        extra = ["--weights", str(wrong)]
    if "MISSING" in extra:
        extra = ["--weights", str(tmp_path / "nope.pth")]
    argv = ["train", "resnet20", "--data", TINY4, "--epochs", "1", "--out", str(tmp_path / "r"), *FAST, *extra]
    _one_line_exit_2(capsys, argv, needle)


def test_resume_refuses_new_transfer_flags(capsys, tmp_path):
    _one_line_exit_2(capsys, ["train", "--resume", str(tmp_path), "--freeze", "backbone"], "drop the others")


def test_relaunch_argv_carries_the_transfer_flags():
    from cnnlab.cli import build_parser
    from cnnlab.cli.train import _relaunch_argv

    argv = ["train", "resnet20", "--weights", "w.pth", "--freeze", "stages:1", "--lr-mult", "head=1,stem=0.1"]
    args = build_parser().parse_args(argv)
    again = build_parser().parse_args(_relaunch_argv(args))
    for key in ("weights", "freeze", "lr_mult", "unfreeze_at", "model"):
        assert getattr(again, key) == getattr(args, key), key


# -- `cnnlab reproduce transfer` on the experiment framework ----------------------------------------------------

# Two source and two target classes; every trial a few steps, so the whole experiment takes seconds.
REPRO_DATA = "shapes:classes=4,size=16,train=240,test=80"
REPRO = ["--quick", "--data", REPRO_DATA, "--set", "train_images=0", "--set", "test_images=0", "--set", "sizes=[4, 8]",
         "--set", "source_per_class=40", "--set", "val_per_class=4", "--set", "source_steps=6", "--set",
         "batch_size=16", "--set", "target_steps=3", "--set", "target_batch=8", "--set", "checkpoint_every=2",
         "--set", "threads=1"]  # fmt: skip


@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("transfer") / "exp"
    assert main(["reproduce", "transfer", *REPRO, "--out", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_reproduce_transfer_runs_every_trial_through_the_engine(transfer_run):
    out, r = transfer_run
    methods = ("scratch", "linear", "discriminative", "full")
    assert list(r["arms"]) == ["source", *(f"{m}{n}" for n in (4, 8) for m in methods)]
    assert len(r["trials"]) == 2 * (1 + 2 * 4)  # seeds x (source + sizes x methods)
    # Seed-major, the source first: each seed's source has finished before the trials that start from it.
    assert [(t["seed"], t["arm"]) for t in r["trials"]][:2] == [(0, "source"), (0, "scratch4")]
    for seed in (0, 1):
        source = (out / "trials" / f"source-seed{seed}").resolve()
        for n in (4, 8):
            for m in methods:
                recipe = read_run(out / "trials" / f"{m}{n}-seed{seed}")[0]
                assert recipe.weights == ("" if m == "scratch" else str(source)), (m, n, seed)  # in recipe.toml
                assert recipe.data == f"npz:{(out / f'data-target{n}.npz').resolve()}"
                assert recipe.iterations == 3 and recipe.batch_size == 8  # the same budget for every target trial
                assert recipe.freeze == ("backbone" if m == "linear" else "none")
                assert recipe.lr_mult == ("head=1,stages=0.1,stem=0.01" if m == "discriminative" else "")
    # The table is computed from the trials, not typed in; transfer.png is drawn.
    accs = [1 - t["test_error"] for t in r["trials"] if t["arm"] == "linear4"]
    assert f"{100 * np.mean(accs):.1f} ± {100 * np.std(accs, ddof=1):.1f}" in (out / "report.md").read_text()
    assert (out / "transfer.png").read_bytes()[:4] == b"\x89PNG"
    assert [c["key"] for c in r["claims"]] == ["small_linear_scratch", "small_linear_discriminative",
                                               "small_linear_full", "small_pretrained", "large_discriminative",
                                               "large_full"]  # fmt: skip


def test_each_task_is_tested_on_its_own_classes(transfer_run):
    out, r = transfer_run
    files = r["data"]["datasets"]
    assert files["source"]["classes"] == r["data"]["classes"][:2]
    assert files["target4"]["classes"] == files["target8"]["classes"] == r["data"]["classes"][2:]
    assert (files["target4"]["train_images"], files["target8"]["train_images"]) == (4 * 2, 8 * 2)
    for name, meta in files.items():
        z = np.load(out / f"data-{name}.npz")
        assert sorted(set(z["y_test"].tolist())) == [0, 1] and len(z["y_test"]) == meta["test_images"]
    pool = np.load(out / "data.npz")
    for name, first in (("source", 0), ("target4", 2)):  # the same images as the pool's classes of that task
        z = np.load(out / f"data-{name}.npz")
        mine = pool["x_test"][np.isin(pool["y_test"], [first, first + 1])]
        assert np.array_equal(np.sort(z["x_test"].reshape(len(z["x_test"]), -1), 0),
                              np.sort(mine.reshape(len(mine), -1), 0))  # fmt: skip
    summary = json.loads((out / "trials" / "full8-seed0" / "summary.json").read_text())
    assert summary["test_images"] == files["target8"]["test_images"]
    assert set(files["target8"]) >= {"val_images", "sha256"}  # the target's own val set, recorded


def test_the_linear_probe_keeps_the_source_backbone_bit_identical(transfer_run):
    from cnnlab.weights import read_weights

    out, _ = transfer_run
    source = read_weights(out / "trials" / "source-seed1")[0]  # what the target trials load: its best checkpoint
    probe = CheckpointDir(out / "trials" / "linear8-seed1" / "checkpoints").latest().load_weights()[0]
    full = CheckpointDir(out / "trials" / "full8-seed1" / "checkpoints").latest().load_weights()[0]
    backbone = [k for k in source if part_of(k) != "head"]
    assert any(k.endswith("running_var") for k in backbone)
    assert [k for k in backbone if not torch.equal(source[k], probe[k])] == []
    assert any(not torch.equal(source[k], full[k]) for k in backbone)  # the full fine-tune did move it


def test_reproduce_transfer_resumes_after_a_kill_inside_a_source_trial(transfer_run, tmp_path, capsys):
    """What SIGKILL inside seed 1's source trial leaves: its older checkpoint, no later trial, no report."""
    out, _ = transfer_run
    cut = tmp_path / "cut"
    shutil.copytree(out, cut)
    for d in (cut / "trials").glob("*-seed1"):
        if d.name != "source-seed1":
            shutil.rmtree(d)
    source = cut / "trials" / "source-seed1"
    (source / "summary.json").unlink()
    newest = sorted((source / "checkpoints").glob("step-*.json"))[-1]
    for f in (source / "checkpoints").glob(newest.stem + ".*"):
        f.unlink()
    for f in ("results.json", "report.md"):
        (cut / f).unlink()
    older = sorted((source / "checkpoints").glob("step-*.json"))[-1].name  # where the resumed trial continues
    capsys.readouterr()
    assert main(["reproduce", "transfer", *REPRO, "--out", str(cut)]) == 0
    log = capsys.readouterr().out
    assert "source task (pretraining), seed 0: finished before, read back" in log
    assert f"resumed {source} from {older}" in log

    def comparable(path):
        r = json.loads(path.read_text())
        for key in ("provenance", "timing", "commands"):
            r.pop(key)
        return json.loads(json.dumps(r).replace(str(cut), str(out)))  # the recipes name their directory

    assert comparable(cut / "results.json") == comparable(out / "results.json")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["reproduce", "tranfer"], "did you mean transfer"),
        (["reproduce", "transfer", "--data", "shapes:classes=3,size=16,train=60,test=30"], "at least 4 classes"),
        (["reproduce", "transfer", "--set", "sizes=[10, x]"], "sizes must be int"),
        (["reproduce", "transfer", "--set", "sizes=[10]"], "two or more increasing positive sizes"),
        (["reproduce", "transfer", "--set", "epochs=5"], "counts steps, not epochs"),
        (["reproduce", "transfer", "--data", REPRO_DATA, "--set", "train_images=0", "--set", "sizes=[10, 100]"],
         "raise train_images"),
    ],
)  # fmt: skip
def test_reproduce_transfer_bad_input(capsys, tmp_path, argv, needle):
    _one_line_exit_2(capsys, [*argv, "--out", str(tmp_path / "x")], needle)


@pytest.mark.slow
def test_torchrun_two_processes_keep_the_frozen_part(tmp_path):
    """Through torchrun (2 CPU processes): the flags reach every worker and frozen tensors stay bit-identical."""
    from cnnlab.data.dataset import load

    load(TINY4, split="train")  # build the cache once, before two processes want it
    src = cnnlab.create_model("resnet20", num_classes=10)
    wfile = tmp_path / "src.safetensors"
    save_state_dict(src.state_dict(), wfile)
    run = tmp_path / "ddp"
    argv = ["train", "resnet20", "--data", TINY4, "--weights", str(wfile), "--freeze", "stages:2"]
    argv += ["--lr-mult", "stages=0.5", "--epochs", "1", "--batch-size", "16", "--out", str(run), "--nproc", "2"]
    assert main(argv + FAST) == 0
    after = CheckpointDir(run / "checkpoints").latest().load_weights()[0]
    w0 = src.state_dict()
    frozen = [k for k in w0 if part_of(k) in ("stem", "stages.0", "stages.1")]
    assert frozen and [k for k in frozen if not torch.equal(after[k], w0[k])] == []
    assert not torch.equal(after["stages.2.0.conv1.weight"], w0["stages.2.0.conv1.weight"])
    groups = CheckpointDir(run / "checkpoints").latest().load_state()["optimizer"]["param_groups"]
    assert {g["lr_mult"] for g in groups} == {0.5, 1.0}
    assert read_run(run)[0].lr_mult == "stages=0.5"  # recorded in recipe.toml


def _torchrun_cli(argv: list[str]) -> str:
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "cnnlab", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout
    return proc.stdout


@pytest.mark.slow
def test_torchrun_gradual_unfreezing_matches_one_process_and_resumes(tmp_path):
    """Under DDP the unfrozen backbone gets all-reduced gradients: 2 processes end where 1 process with the same
    global batch ends, and a run resumed after the unfreeze epoch ends where the uninterrupted one did."""
    from cnnlab.data.dataset import load

    data = "shapes:classes=4,size=32,train=96,test=32"
    load(data, split="train")  # build the cache once, before two processes want it
    src = cnnlab.create_model(
        "lenet5", num_classes=4, in_chans=3
    )  # no BatchNorm, no dropout: per-rank batches add up exactly
    wfile = tmp_path / "src.safetensors"
    save_state_dict(src.state_dict(), wfile)
    argv = ["train", "lenet5", "--data", data, "--weights", str(wfile), "--freeze", "backbone", "--unfreeze-at", "1"]
    argv += ["--epochs", "2", "--batch-size", "16", "--lr", "0.05", *FAST]
    out = _torchrun_cli([*argv, "--out", str(tmp_path / "ddp")])
    assert "epoch 2: unfrozen stem, stages.0, stages.1" in out, out
    assert main([*argv, "--out", str(tmp_path / "single")]) == 0

    manifests = sorted((tmp_path / "ddp" / "checkpoints").glob("step-*.json"))
    assert len(manifests) == 2
    w1 = load_weights(manifests[0].with_name(manifests[0].stem + ".safetensors"))[0]
    a = CheckpointDir(tmp_path / "ddp" / "checkpoints").latest().load_weights()[0]
    b = CheckpointDir(tmp_path / "single" / "checkpoints").latest().load_weights()[0]
    w0 = src.state_dict()
    backbone = [k for k in w0 if part_of(k) != "head"]
    assert backbone and [k for k in backbone if not torch.equal(w1[k], w0[k])] == []  # frozen in epoch 1
    assert all(not torch.equal(a[k], w1[k]) for k in backbone)  # trained in epoch 2
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"{k} differs between 2 and 1 processes")

    # Resumed at epoch 2 (already unfrozen): the first wrapper must already see the backbone as trained.
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "ddp", resumed)
    for p in (resumed / "checkpoints").glob(manifests[1].stem + ".*"):
        p.unlink()
    _torchrun_cli(["train", "--resume", str(resumed), "--no-progress"])
    c = CheckpointDir(resumed / "checkpoints").latest().load_weights()[0]
    assert [k for k in a if not torch.equal(a[k], c[k])] == []  # bit for bit, as with one process


def test_transfer_settings_are_recipe_fields_and_old_runs_transfer_json_is_read(tmp_path):
    from cnnlab.train.recipe import load_recipe
    from cnnlab.train.rundir import write_start

    run = tmp_path / "old"
    write_start(run, load_recipe(None, model="resnet20", data=TINY4), {"classes": []}, {})
    text = (run / "recipe.toml").read_text()
    # A run written before the fields existed: recipe.toml without them, the settings in transfer.json.
    (run / "recipe.toml").write_text("".join(line + "\n" for line in text.splitlines()
                                             if line.split(" ")[0] not in {"weights", "freeze", "lr_mult",
                                                                           "unfreeze_at"}))  # fmt: skip
    (run / "transfer.json").write_text(json.dumps({"weights": "/w.pth", "freeze": "stages:1", "lr_mult": "head=1",
                                                   "unfreeze_at": 2}))  # fmt: skip
    r = read_run(run)[0]
    assert (r.weights, r.freeze, r.lr_mult, r.unfreeze_at) == ("/w.pth", "stages:1", "head=1", 2)
    with pytest.raises(Exception, match="--unfreeze-at needs --freeze"):
        load_recipe(None, unfreeze_at=1)
