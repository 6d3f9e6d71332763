"""The experiment runner's bar over trials: on a terminal only, above which its log lines print unchanged."""

from __future__ import annotations

import io
import sys

from cnnlab.experiments import runner
from cnnlab.experiments.base import make_config
from cnnlab.experiments.degradation import EXPERIMENT

TINY = {"data": "shapes:size=32,classes=10,train=300,test=100", "seeds": 1, "epochs": 1, "train_images": 128,
        "test_images": 64, "shallow": 20, "deep": 32}  # fmt: skip


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_over_the_trials_and_a_log_only_its_lines(tmp_path, monkeypatch):
    cfg = make_config(EXPERIMENT, "quick", TINY)
    term = Tty()
    monkeypatch.setattr(sys, "stderr", term)
    lines: list[str] = []
    assert runner.run(EXPERIMENT, cfg, tmp_path / "a", log=lines.append) is not None
    frames = [f for f in term.getvalue().split("\r") if f.startswith("degradation trials")]  # (and a cache bar)
    assert "0/4" in frames[0] and frames[0].startswith("degradation trials   0%"), frames[:3]
    assert "4/4" in frames[-1] and frames[-1].endswith("\n"), frames[-3:]  # left on screen, ended
    assert any("1/4" in f and "ETA" in f for f in frames), frames  # the runner's weighted ETA, once a trial is done
    assert [s.split(":")[0] for s in lines if s.startswith("trial ")] == [f"trial {k}/4" for k in range(1, 5)]
    assert not any("degradation trials" in s for s in lines)  # the bar is not in the log

    log = io.StringIO()  # not a terminal: not one character of bar, the log lines as they were
    monkeypatch.setattr(sys, "stderr", log)
    again: list[str] = []
    assert runner.run(EXPERIMENT, cfg, tmp_path / "a", log=again.append) is not None  # every trial read back
    assert log.getvalue() == "" and sum("finished before, read back" in s for s in again) == 4
