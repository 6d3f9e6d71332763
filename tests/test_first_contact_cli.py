"""What a new user meets first: one-line errors, quiet pipes, flags with close matches, progress, plots that
read well, honest minimum input sizes. Each test is a reproduced report; runs and files are built in tmp_path."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.cli import main

DATA = "shapes:train=256,test=128,size=32"


def one_line_error(capsys, argv: list[str]) -> str:
    """Run argv expecting exit code 2 (returned, or raised by argparse); returns the one stderr line."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert code == 2, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


class FigureSpy:
    """The figures saved while it is installed (matplotlib's Figure.savefig wrapped), to read their axes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        from matplotlib.figure import Figure

        self.figures: list = []
        original = Figure.savefig

        def savefig(fig, *args, **kwargs):  # noqa: ANN001, ANN202
            self.figures.append(fig)
            return original(fig, *args, **kwargs)

        monkeypatch.setattr(Figure, "savefig", savefig)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch LeNet-5 run on 256 shapes (a few seconds), shared by the eval/features/plot tests."""
    out = tmp_path_factory.mktemp("fc") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE", str(out.parent / "cache"))
        argv = ["train", "lenet5", "--data", DATA, "--epochs", "1", "--out", str(out), "--no-progress"]
        assert main(argv) == 0
    return out


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path_factory.getbasetemp() / "fc-cache"))


# --- 1. analyze timm:foo_bar -------------------------------------------------------------------------------


def test_analyze_unknown_timm_model_is_one_line(capsys):
    err = one_line_error(capsys, ["analyze", "timm:foo_bar"])
    assert err.startswith("cnnlab analyze: error:") and "foo_bar" in err


def test_analyze_unknown_torchvision_model_suggests(capsys):
    pytest.importorskip("torchvision")
    err = one_line_error(capsys, ["analyze", "torchvision:resnet5"])
    assert "unknown torchvision model 'resnet5'; did you mean resnet50" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["analyze", "resnt18"], "did you mean resnet18"),
        (["analyze", "resnet18", "--input", "3x224x224x5"], "--input: expected CxHxW"),
        (["analyze", "resnet18", "--input", "garbage"], "--input: expected CxHxW"),
        (["analyze", "resnet18", "--batch", "-1"], "batch_size must be a positive integer"),
        (["analyze", "lenet5", "--input", "3x32x32"], "lenet5 takes 1-channel inputs"),
        (["analyze", "lenet5", "--input", "64x64"], "the smallest square input that works is 1x32x32"),
        (["compare", "resnt18"], "did you mean resnet18"),
        (["compare", "resnet18", "--input", "-1"], "--input: expected CxHxW"),
        (["models", "resnt*"], "unknown model pattern"),
    ],
)
def test_bad_input_is_one_line(capsys, argv, needle):
    assert needle in one_line_error(capsys, argv)


# --- 2. cnnlab models | head -1 ----------------------------------------------------------------------------


def test_models_into_a_closed_pipe_exits_quietly():
    """The reader goes away before cnnlab writes (as `| head -1` does once it has its line): no
    BrokenPipeError traceback, no message, the shell's SIGPIPE status."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "models", "lenet*"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before the first write: the write must fail with EPIPE
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 141)
    assert err.decode() == ""


# --- 3. unknown flags --------------------------------------------------------------------------------------


def test_unknown_flag_names_the_command_and_the_close_match(capsys):
    err = one_line_error(capsys, ["train", "lenet5", "--ephocs", "3"])
    assert err == "cnnlab train: error: unrecognized argument --ephocs; did you mean --epochs?"


def test_unknown_flags_and_commands_suggest(capsys):
    err = one_line_error(capsys, ["eval", "RUN", "--ensmble", "a", "--tta=flip", "--jsn"])
    assert err == "cnnlab eval: error: unrecognized arguments --ensmble, --jsn; did you mean --ensemble, --json?"
    err = one_line_error(capsys, ["models", "--nothing-like-it"])
    assert err == "cnnlab models: error: unrecognized argument --nothing-like-it"
    err = one_line_error(capsys, ["reproduce", "half", "--epochs", "3"])  # an experiment's settings go by --set
    assert err == "cnnlab reproduce: error: unrecognized argument --epochs; a setting is --set epochs=VALUE"
    err = one_line_error(capsys, ["reproduce", "half", "--seed", "1"])  # not an abbreviation of --seeds
    assert err.endswith("--seeds N sets N (there is no --seed)")
    err = one_line_error(capsys, ["trian"])
    assert err.startswith("cnnlab: error: argument COMMAND: invalid choice: 'trian'; did you mean train?")


# --- 4. --version ------------------------------------------------------------------------------------------


def test_version_names_cnnlab_and_torch(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"cnnlab {cnnlab.__version__} (torch {torch.__version__})\n"


# --- 5. warnings -------------------------------------------------------------------------------------------


def test_warnings_are_one_line_during_a_command_and_restored_after(capsys, monkeypatch):
    from cnnlab.cli import models
    from cnnlab.data import DataWarning

    def run(args):  # noqa: ANN001, ANN202
        warnings.warn("skipped 1 unreadable file(s): x/empty.png\nsecond line", DataWarning, stacklevel=2)
        return 0

    monkeypatch.setattr(models, "run", run)
    before = warnings.showwarning
    assert main(["models"]) == 0
    assert capsys.readouterr().err == "cnnlab models: warning: skipped 1 unreadable file(s): x/empty.png\n"
    assert warnings.showwarning is before
    with pytest.warns(DataWarning):  # library users (and pytest) still get real warnings
        warnings.warn("after the command", DataWarning, stacklevel=1)


def test_other_libraries_warnings_wait_for_success_and_go_with_an_error(capsys, monkeypatch):
    """A torch-style warning (raised outside cnnlab) is one line at the end of a command that succeeds, and
    is dropped when the command fails: its error stays the one line (`cnnlab weights evil.pt` met torch's
    pickle-protocol warning before its refusal)."""
    from cnnlab.cli import models
    from cnnlab.errors import CnnlabError

    def warn_from_elsewhere(fail: bool):  # noqa: ANN202
        def run(args):  # noqa: ANN001, ANN202
            code = compile("warnings.warn('Detected pickle protocol 4', UserWarning)", "/elsewhere/torch.py", "exec")
            exec(code, {"warnings": warnings})
            print("table")
            if fail:
                raise CnnlabError("refused")
            return 0

        return run

    monkeypatch.setattr(models, "run", warn_from_elsewhere(fail=False))
    assert main(["models"]) == 0
    assert capsys.readouterr().err == "cnnlab models: warning: Detected pickle protocol 4\n"
    monkeypatch.setattr(models, "run", warn_from_elsewhere(fail=True))
    assert one_line_error(capsys, ["models"]) == "cnnlab models: error: refused"


def test_a_real_data_warning_is_one_line(capsys, run_dir, tmp_path):
    from PIL import Image

    root = tmp_path / "imgs" / "train"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.new("RGB", (32, 32), (200, 10, 10)).save(root / cls / "good.png")
    (root / "a" / "empty.png").write_bytes(b"")
    out = tmp_path / "f.npz"
    argv = ["features", str(run_dir), "--data", f"folder:{tmp_path / 'imgs'}", "--split", "train"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab features: warning: folder:"), err
    assert "skipped 1 unreadable file(s)" in lines[0] and ".py:" not in err  # no file:line, no source line


# --- 6. progress -------------------------------------------------------------------------------------------


def test_eval_shows_progress_per_model_and_tta(capsys, run_dir, tmp_path):
    argv = ["eval", str(run_dir), "--out", str(tmp_path), "--tta", "flip", "--ensemble", str(run_dir)]
    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()  # not a terminal: one line per bar, at its end
    assert [line.split(" [")[0] for line in err] == ["eval 1/2 lenet5 (TTA flip)", "eval 2/2 lenet5 (TTA flip)"]
    assert main(["eval", str(run_dir), "--out", str(tmp_path), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_features_shows_progress(capsys, run_dir, tmp_path):
    assert main(["features", str(run_dir), "--data", DATA, "--out", str(tmp_path / "f.npz")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("features lenet5 [")


def test_eval_refuses_a_bad_batch_size(capsys, run_dir):
    err = one_line_error(capsys, ["eval", str(run_dir), "--batch-size", "0"])
    assert "--batch-size must be a positive integer" in err


# --- 7. make run prints the test accuracy once -------------------------------------------------------------


def test_main_job_prints_the_test_accuracy_once(capsys, tmp_path):
    argv = ["main", "--out", str(tmp_path / "run"), "--no-progress", "--set", 'model="lenet5"',
            "--set", f'data="{DATA}"', "--set", "augment=\"none\"", "--set", "epochs=1",
            "--set", "threads=1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("top-1") == 1 and "test accuracy: top-1" in out, out


# --- 8. plots ----------------------------------------------------------------------------------------------


def test_compare_plot_without_published_accuracy_writes_nothing(capsys, tmp_path):
    png = tmp_path / "chart.png"
    err = one_line_error(capsys, ["compare", "lenet5", "resnet20", "--plot", str(png)])
    assert "nothing to chart: none of lenet5, resnet20 has a published ImageNet top-1" in err
    assert list(tmp_path.iterdir()) == []


def test_compare_plot_names_what_it_left_out(capsys, tmp_path):
    png = tmp_path / "chart.png"
    assert main(["compare", "lenet5", "resnet18", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert f"chart written to {png}" in out and "left out of the chart (no published top-1): lenet5" in out
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_compare_plot_refuses_an_unknown_format_before_the_analysis(capsys, tmp_path):
    err = one_line_error(capsys, ["compare", "resnet18", "--plot", str(tmp_path / "chart.txt")])
    assert "--plot: cannot write '.txt' images" in err and capsys.readouterr().out == ""


def _renderer(fig):  # noqa: ANN001, ANN202
    """The renderer of a saved (and closed: its canvas detached) figure, drawn again as it was saved."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _boxes(fig) -> list:  # noqa: ANN001
    from matplotlib.text import Text

    renderer = _renderer(fig)
    return [Text.get_window_extent(t, renderer) for t in fig.axes[0].texts]  # the text, not its leader line


def test_busy_bubble_chart_has_no_overlapping_labels(tmp_path, monkeypatch):
    """Twelve models, five of them within 0.2 GMACs and 0.5 points of each other (the DenseNet/ResNet-101/
    Inception-v3 cluster of the lecture's chart): every label is drawn, and no two labels overlap."""
    from cnnlab.analysis.compare import Entry, plot_bubbles

    spy = FigureSpy(monkeypatch)
    points = [(7.7, 77.1), (7.8, 77.4), (5.7, 77.3), (7.6, 77.3), (7.9, 77.0), (4.1, 76.1), (3.7, 73.3),
              (1.8, 69.8), (15.5, 71.6), (19.6, 72.4), (0.3, 71.9), (0.7, 56.5)]  # fmt: skip
    entries = [Entry(f"model_{i:02d}", 10_000_000 * (i + 1), int(g * 1e9), (3, 224, 224), t)
               for i, (g, t) in enumerate(points)]  # fmt: skip
    assert plot_bubbles(entries, tmp_path / "busy.png") == []
    # Keep the chart to look at: pytest --basetemp=DIR keeps tmp_path.
    (fig,) = spy.figures
    boxes = _boxes(fig)
    assert len(boxes) == len(entries)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    frame = fig.axes[0].get_window_extent(_renderer(fig))
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)


def test_transfer_plot_has_plain_tick_labels(tmp_path, monkeypatch):
    from cnnlab.experiments.transfer import METHODS, plot

    spy = FigureSpy(monkeypatch)
    table = {n: {m: {"mean": 0.5, "std": 0.01, "runs": 2} for m in METHODS} for n in (6, 20, 60)}
    plot(table, tmp_path / "transfer.png", "test")
    (fig,) = spy.figures
    _renderer(fig)  # draw: tick labels are made at draw time
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
    assert labels == ["6", "20", "60"]
    assert [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()] == []


def test_one_epoch_curves_have_integer_epoch_ticks(tmp_path, monkeypatch):
    from cnnlab.train.rundir import plot_curves

    spy = FigureSpy(monkeypatch)
    rows = [{"epoch": 1, "train_loss": 2.3, "train_acc": 0.12, "val_loss": 2.29, "val_acc": 0.08}]
    assert plot_curves(tmp_path, rows, "one epoch") == tmp_path / "curves.png"
    (fig,) = spy.figures
    renderer = _renderer(fig)
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert (lo, hi) == (0.5, 1.5)
        assert [t for t in ax.get_xticks() if lo <= t <= hi] == [1.0]
        label = ax.yaxis.label.get_window_extent(renderer)
        assert label.x0 >= 0  # the y label is inside the figure, not clipped at its left edge


def test_confusion_matrix_title_names_model_tta_and_data(run_dir, tmp_path, monkeypatch):
    spy = FigureSpy(monkeypatch)
    assert main(["eval", str(run_dir), "--out", str(tmp_path), "--tta", "flip", "--no-progress"]) == 0
    (fig,) = spy.figures
    title = fig.axes[0].get_title()
    assert "lenet5" in title and "TTA flip" in title and DATA in title and "[test]" in title


# --- 9. inception_v3 below 299 in eval mode ----------------------------------------------------------------


def test_inception_v3_takes_75_px_in_eval_mode_and_says_why_299_in_training():
    with torch.device("meta"):
        model = cnnlab.create_model("inception_v3", num_classes=5)
    assert model.eval()(torch.empty(1, 3, 75, 75, device="meta")).shape == (1, 5)
    with pytest.raises(ValueError, match=r"at least 75x75 pixels, got 74x74"):
        model(torch.empty(1, 3, 74, 74, device="meta"))
    with pytest.raises(ValueError, match=r"299x299 .*training mode.*aux_logits=False \(or eval mode\) allows 75x75"):
        model.train()(torch.empty(2, 3, 298, 298, device="meta"))
    assert model.smallest_input(training=True) == 299 and model.smallest_input(training=False) == 75
    info = cnnlab.model_info("inception_v3")
    assert info.min_input_size == 299  # what training (aux head included) needs: train/loop.py's check


def test_inception_v3_eval_minimum_is_the_true_one():
    """75 is what the layers take without the aux head: found by raw forwards, the check switched off."""
    with torch.device("meta"):
        model = cnnlab.create_model("inception_v3").eval()
    model.min_input_size, model.min_eval_input_size = 1, 1
    model(torch.empty(1, 3, 75, 75, device="meta"))
    with pytest.raises(RuntimeError):
        model(torch.empty(1, 3, 74, 74, device="meta"))


def test_analyze_inception_v3_below_299_in_eval_mode(capsys):
    assert main(["analyze", "inception_v3", "--input", "3x100x100"]) == 0
    assert capsys.readouterr().out.startswith("inception_v3: input 1x3x100x100")


# --- 10. class-count mismatch ------------------------------------------------------------------------------


def test_class_count_mismatch_is_said_plainly(capsys, run_dir):
    err = one_line_error(capsys, ["eval", str(run_dir), "--data", f"{DATA},classes=11"])
    assert "has 10 classes but the data" in err and "has 11" in err and "nothing" not in err


def test_class_mismatch_wording():
    from cnnlab.train.evaluate import class_mismatch

    msg = class_mismatch("best.safetensors", ["a", "b", "c"], ["a", "b"], "npz:x.npz")
    want = "the checkpoint best.safetensors has 3 classes but the data npz:x.npz has 2 (only in the checkpoint: 'c')"
    assert msg == want
    msg = class_mismatch("best.safetensors", ["a", "b"], ["b", "a"], "npz:x.npz")
    assert "in a different order: class 0 is 'a' in the checkpoint and 'b' in the data" in msg


def test_a_path_that_cannot_be_used_is_one_line(monkeypatch, capsys):
    """PermissionError and friends (an unreadable folder: root cannot provoke one here) are bad input too."""
    from cnnlab.cli import models as models_cmd

    for exc in (PermissionError(13, "Permission denied", "/data/x"), IsADirectoryError(21, "Is a directory", "/d")):

        def boom(args, exc=exc):  # noqa: ANN001, ANN202
            raise exc

        monkeypatch.setattr(models_cmd, "run", boom)
        assert main(["models"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err and str(exc.strerror) in err, err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "lenet5"], ["eval", "RUN"], ["features", "RUN", "--out", "f.npz"], ["reproduce", "half"],
        ["conv", "bench"], ["models"], ["data", "info", "shapes"], ["data", "show", "shapes", "--out", "g.png"],
        ["export", "lenet5", "--onnx", "x.onnx"],
    ],
)  # fmt: skip
def test_every_command_that_draws_a_bar_takes_no_progress(argv):
    from cnnlab.cli import build_parser

    assert build_parser().parse_args([*argv, "--no-progress"]).no_progress


def test_no_progress_also_silences_the_cache_builds_bar(monkeypatch, tmp_path, capsys):
    """The bar over a cache build is drawn by the data code, which no flag reaches: --no-progress still stops it."""
    from cnnlab.train import progress

    bars: list[progress.Progress] = []
    init = progress.Progress.__init__

    def spy(self, *args, **kwargs):  # noqa: ANN001, ANN202
        init(self, *args, **kwargs)
        bars.append(self)

    monkeypatch.setattr(progress.Progress, "__init__", spy)
    for k, flags in enumerate(([], ["--no-progress"])):
        bars.clear()
        argv = [
            "data",
            "info",
            "shapes:train=64,test=32,size=32",
            "--size",
            "40",
            "--cache-dir",
            str(tmp_path / str(k)),
        ]
        assert main([*argv, *flags]) == 0
        caching = [b for b in bars if b.desc.startswith("caching")]
        assert caching and all(b.enabled is not bool(flags) for b in caching), [(b.desc, b.enabled) for b in bars]
    assert not progress._SILENCED  # the next command in this process is not silenced by this one
    capsys.readouterr()
