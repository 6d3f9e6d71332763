"""Progress: a tqdm bar on a terminal; one summary line (same fields) when stderr is a log; nothing when off."""

from __future__ import annotations

import io
import re

import pytest

from cnnlab.train import progress
from cnnlab.train.progress import Progress, fmt_seconds


class Tty(io.StringIO):
    """A stream that says it is a terminal, so Progress draws its tqdm bar into it."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    """perf_counter reads 0, 1, 2, ...: one second per call (Progress calls it once at creation, once per step)."""
    ticks = iter(float(t) for t in range(10_000))
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(ticks))


def test_fmt_seconds():
    assert [fmt_seconds(s) for s in (-3, 0, 59.9, 61, 3599, 3600, 3661)] == [
        "0:00", "0:00", "0:59", "1:01", "59:59", "1:00:00", "1:01:01",
    ]  # fmt: skip


def test_a_log_gets_one_line_at_close_with_the_fields(clock):
    out = io.StringIO()
    bar = Progress(4, "epoch 2/3", stream=out, later=8)  # t0 = 0
    for _ in range(4):
        bar.update(32, 0.9, 0.5, force=True)  # t = 1..4
    assert out.getvalue() == ""  # nothing until the end: a log is not a terminal
    rate = bar.close(0.25, 0.625)  # t = 5
    assert rate == pytest.approx(128 / 5)
    # The exact line logs and experiment notes have always had (the hand-written bar's format).
    assert (
        out.getvalue()
        == "epoch 2/3 [========================] 4/4  loss 0.2500  acc 62.5%  26 img/s  0:05  run ETA 0:10\n"
    )
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_a_log_line_of_an_unfinished_bar_shows_its_eta(clock):
    out = io.StringIO()
    bar = Progress(10, "eval lenet5", stream=out)
    bar.update(100)
    bar.update(100)  # t = 2: 1 s a step
    bar.close()  # t = 3 (stopped early, e.g. SIGTERM)
    assert out.getvalue() == "eval lenet5 [====>                   ] 2/10  67 img/s  ETA 0:12\n"


def test_a_terminal_gets_tqdm_redraws_with_the_postfix(clock):
    out = Tty()
    bar = Progress(10, "epoch 1/10", stream=out, later=90)
    first = out.getvalue()
    assert first.startswith("\repoch 1/10") and "0/10" in first  # drawn at once, before the first step
    for _ in range(4):
        bar.update(8, 2.5, 0.125, force=True)
    frames = out.getvalue().split("\r")[1:]
    assert len(frames) == 5, frames  # carriage-return updates: the line is rewritten, not repeated
    last = frames[-1]
    assert re.search(r"epoch 1/10\s+40%\|.*\| 4/10", last), last  # tqdm's bar and counter
    for field in ("loss 2.5000", "acc 12.5%", "8 img/s", "ETA 0:06", "run ETA 1:36"):
        assert field in last, (field, last)
    bar.close(2.0, 0.25)
    end = out.getvalue().split("\r")[-1]
    assert end.endswith("\n") and "loss 2.0000" in end and "acc 25.0%" in end and "4/10" in end, end
    assert out.getvalue().count("\n") == 1  # one line kept on screen


def test_a_terminal_redraws_at_most_four_times_a_second(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    out = Tty()
    bar = Progress(1000, "epoch 1/1", stream=out)
    for _ in range(100):
        now[0] += 0.01  # 100 steps in one second
        bar.update(1)
    assert 3 <= out.getvalue().count("\r") - 1 <= 5, out.getvalue()


def test_a_resumed_epoch_starts_its_bar_where_it_stopped(clock):
    out = Tty()
    bar = Progress(10, "epoch 3/3", stream=out, start=6)
    bar.update(4, force=True)  # t = 1: one step timed
    last = out.getvalue().split("\r")[-1]
    assert "7/10" in last and "70%" in last and "ETA 0:03" in last, last  # ETA from the timed step only


def test_clear_erases_a_terminal_bar_and_prints_nothing_elsewhere(clock):
    out = Tty()
    bar = Progress(3, "counting MACs", stream=out)
    for _ in range(3):
        bar.update(0, force=True)
    assert "img/s" not in out.getvalue()  # a bar over models has no rate
    bar.close(clear=True)
    tail = out.getvalue().rsplit("3/3", 1)[1]
    assert "\n" not in out.getvalue() and tail.rstrip(" ").endswith("\r")
    assert re.search(r"\r +\r$", out.getvalue()), repr(out.getvalue()[-60:])  # the line overwritten by blanks
    log = io.StringIO()
    bar = Progress(3, "counting MACs", stream=log)
    bar.update(0)
    bar.close(clear=True)
    assert log.getvalue() == ""


@pytest.mark.parametrize("stream", [Tty, io.StringIO])
def test_disabled_prints_nothing(clock, stream):
    out = stream()
    bar = Progress(5, "epoch 1/1", enabled=False, stream=out)
    for _ in range(5):
        bar.update(10, 0.1, 0.9, force=True)
    assert bar.close(0.1, 0.9) == pytest.approx(50 / 6)  # still measures the rate (metrics.csv img_per_s)
    assert out.getvalue() == "" and not bar.tty


def test_summary_false_is_silent_in_a_log_and_a_bar_on_a_terminal(clock):
    log = io.StringIO()
    bar = Progress(2, "trials", stream=log, summary=False)
    bar.update(0)
    bar.update(0)
    bar.close()
    assert log.getvalue() == ""
    term = Tty()
    bar = Progress(2, "trials", stream=term, summary=False)
    bar.update(0, eta=125.0, force=True)  # the caller's own estimate (trials of unequal cost)
    assert "1/2" in term.getvalue().split("\r")[-1] and "ETA 2:05" in term.getvalue().split("\r")[-1]
    bar.update(0)
    bar.close()
    assert term.getvalue().endswith("\n") and "2/2" in term.getvalue().split("\r")[-1]


def test_delay_hides_short_work_and_shows_long_work(clock):
    out = Tty()
    bar = Progress(100, "caching", stream=out, delay=5)  # t0 = 0
    bar.update(10, force=True)  # t = 1: too early
    bar.close()  # t = 2: done before the delay: no trace
    assert out.getvalue() == ""
    out = Tty()
    bar = Progress(100, "caching", stream=out, delay=5)  # t0 = 3
    for _ in range(6):
        bar.update(10, force=True)  # t = 4..9: drawn from t = 8
    assert out.getvalue().count("\r") == 2 and "6/100" in out.getvalue().split("\r")[-1], repr(out.getvalue())
    bar.close()
    assert out.getvalue().endswith("\n")


def test_printer_lifts_the_bar_around_a_log_line(clock):
    out = Tty()
    lines: list[str] = []
    bar = Progress(3, "trials", stream=out)
    bar.update(0, force=True)
    say = bar.printer(lambda s: (lines.append(s), out.write(f"<{s}>\n")))
    say("trial 2/3: resnet20, seed 0")
    after = out.getvalue().split("<trial 2/3: resnet20, seed 0>\n")
    assert lines == ["trial 2/3: resnet20, seed 0"]
    assert after[0].endswith("\r") and "1/3" in after[1], after  # erased before the line, redrawn after it
    bar.close()
    plain: list[str] = []
    say = Progress(3, "trials", stream=io.StringIO(), summary=False).printer(plain.append)
    say("x")
    assert plain == ["x"]


def test_a_bar_left_open_does_not_push_the_next_one_down(clock):
    out = Tty()
    Progress(3, "epoch 1/2", stream=out).update(1, force=True)  # never closed: an exception went through it
    second = Tty()
    bar = Progress(3, "eval lenet5", stream=second)
    bar.update(1, force=True)
    bar.close()
    assert "\x1b[A" not in second.getvalue() and second.getvalue().count("\n") == 1, repr(second.getvalue())


@pytest.mark.parametrize("stream", [Tty, io.StringIO])
def test_closing_twice_ends_the_line_once(clock, stream):
    out = stream()
    with Progress(2, "export lenet5", stream=out) as bar:  # `with` for errors, an explicit close with the figures
        bar.update(8, force=True)
        bar.update(8, force=True)
        bar.close(0.5, 0.75)
    assert out.getvalue().count("\n") == 1 and out.getvalue().count("loss 0.5000") == 1, repr(out.getvalue())


@pytest.mark.parametrize("stream", [Tty, io.StringIO])
def test_silence_turns_off_every_bar_even_one_asked_for(clock, stream):
    out = stream()
    progress.silence()
    try:
        bar = Progress(3, "caching cifar10 at 224px", stream=out, summary=False, delay=1.0)  # a library's own bar
        for _ in range(3):
            bar.update(10, force=True)
        bar.close()
    finally:
        progress.silence(False)
    assert out.getvalue() == "" and not bar.tty
    assert Progress(3, "epoch 1/1", stream=Tty()).tty  # and back on


def test_due_says_when_update_redraws_and_none_keeps_the_last_figures(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    out = Tty()
    bar = Progress(100, "epoch 1/1", stream=out)
    assert not Progress(100, "epoch 1/1", stream=io.StringIO()).due()  # a log never redraws
    reads = 0
    for step in range(100):
        now[0] += 0.05  # 20 steps a second: a redraw is due every 5th step, and at the last
        if bar.due():
            reads += 1
            bar.update(1, loss=1.0 + step, acc=0.5)
        else:
            before = out.getvalue()
            bar.update(1)  # no figures read: no redraw either
            assert out.getvalue() == before
    assert 15 <= reads <= 22, reads  # the means were read ~20 times (float steps: some take 6), not 100
    last = out.getvalue().split("\r")[-1]
    assert "100/100" in last and "loss 100.0000" in last and "acc 50.0%" in last, last
    bar.close()  # no figures given: the last ones stay on the line
    assert "loss 100.0000" in out.getvalue().split("\r")[-1]
