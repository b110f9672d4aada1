"""agsm.utils.progress: a redrawn tqdm bar in a terminal, whole lines in a log."""
import io
import re
import sys

from agsm.utils.progress import library_bars_off_in_logs, progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


LINE = re.compile(r"^work: (\d+)/100 \((\d+)%\), .*elapsed \d\d:\d\d")


def test_a_log_gets_a_whole_line_every_tenth_of_the_way():
    log = io.StringIO()
    with progress(total=100, desc="work", unit="img", file=log, mininterval=0) as bar:
        for _ in range(100):
            bar.update(1)
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert [int(LINE.match(line).group(1)) for line in lines] == list(range(0, 101, 10)), lines
    assert " img/s" in lines[-1] and "eta" in lines[5] and "eta" not in lines[-1]


def test_a_log_line_also_comes_after_a_while_and_at_the_end():
    log = io.StringIO()
    for _ in progress(range(7), desc="slow", file=log, mininterval=0, seconds=0):  # every update is "a while"
        pass
    lines = log.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [f"slow: {n}/7 ({100 * n / 7:.0f}%)" for n in range(8)]


def test_the_last_count_is_written_when_updates_came_too_fast_to_show():
    log = io.StringIO()
    bar = progress(total=1000, desc="fast", file=log)  # default mininterval: no redraw within the loop
    for _ in range(1000):
        bar.update(1)
    bar.close()
    bar.close()  # closing twice writes nothing more
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("fast: 0/1000 (0%)") and lines[-1].startswith("fast: 1000/1000 (100%)")
    assert len(lines) <= 12


def test_a_terminal_gets_a_redrawn_bar():
    screen = Terminal()
    with progress(total=10, desc="work", file=screen, mininterval=0) as bar:
        for _ in range(10):
            bar.update(1)
    text = screen.getvalue()
    assert "\r" in text and "10/10" in text and "|" in text  # tqdm's bar, redrawn in place


def test_disabled_progress_writes_nothing():
    log = io.StringIO()
    assert list(progress(range(3), desc="off", file=log, disable=True)) == [0, 1, 2]
    assert log.getvalue() == ""


def test_library_bars_are_off_while_loading_into_a_log(monkeypatch):
    from diffusers.utils import logging as diffusers_logging

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert diffusers_logging.is_progress_bar_enabled()
    with library_bars_off_in_logs():
        assert not diffusers_logging.is_progress_bar_enabled()
    assert diffusers_logging.is_progress_bar_enabled()
    monkeypatch.setattr(sys, "stderr", Terminal())
    with library_bars_off_in_logs():
        assert diffusers_logging.is_progress_bar_enabled()
