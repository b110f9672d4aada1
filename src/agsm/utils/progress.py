"""Progress of a long job: a tqdm bar in a terminal, whole lines now and then in a log.

    for batch in progress(batches, desc="generating", unit="batch"):
        ...
    with progress(total=n_images, desc="generating", unit="img") as bar:
        bar.update(len(images))

When stderr is a terminal this is a plain tqdm bar (redrawn in place, with its rate). When it is not (a redirected
log, CI), redrawing with carriage returns would pile thousands of updates onto one line of the file, so the bar
writes a whole line instead at every 10% of the total (or every 30 s, and once at the end):

    generating: 120/500 (24%), 3.1 img/s, elapsed 0:39, eta 2:03
"""
from __future__ import annotations

import sys
from contextlib import contextmanager

from tqdm.auto import tqdm as terminal_tqdm
from tqdm.std import tqdm

LINE_EVERY_PERCENT = 10
LINE_EVERY_SECONDS = 30.0


def progress(iterable=None, desc: str | None = None, total: int | None = None, *, unit: str = "it",
             disable: bool = False, file=None, **tqdm_kwargs) -> tqdm:
    """A tqdm bar over `iterable` (or `total` steps, advanced with .update()); tqdm's other options pass through.

    `file` defaults to stderr; whether it is a terminal picks the bar or the log lines.
    """
    stream = sys.stderr if file is None else file
    if disable or _is_terminal(stream):
        return terminal_tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, file=file, **tqdm_kwargs)
    tqdm_kwargs.setdefault("mininterval", 0.5)
    return LogLines(iterable, desc=desc, total=total, unit=unit, file=stream, **tqdm_kwargs)


@contextmanager
def library_bars_off_in_logs():
    """While active, and only when stderr is not a terminal, diffusers' and transformers' own bars (loading
    pipeline components, loading weights) stay off: in a log each would be a line of carriage-return redraws."""
    if _is_terminal(sys.stderr):
        yield
        return
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    were_on = [(lib, lib.is_progress_bar_enabled()) for lib in (diffusers_logging, transformers_logging)]
    for lib, _ in were_on:
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, on in were_on:
            if on:
                lib.enable_progress_bar()


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class LogLines(tqdm):
    """tqdm for a log: a whole line at the start, at every `percent_step` % of the total (every `seconds` s when the
    total is unknown or progress is slow) and at the end; never a carriage return."""

    def __init__(self, *args, percent_step: float = LINE_EVERY_PERCENT, seconds: float = LINE_EVERY_SECONDS,
                 **kwargs):
        self._percent_step, self._seconds = percent_step, seconds
        self._printed_n: int | None = None
        self._printed_at = 0.0
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        # tqdm passes a message only to clear or replace the redrawn line; a log has no such line.
        if msg is not None:
            return False
        now = self._time()
        if self._printed_n is None or self._due(now):
            self._write_line(now)
        return True

    def close(self):
        if not getattr(self, "disable", True) and self.n != self._printed_n:
            self._write_line(self._time())  # the final count and the overall rate
        # Our lines are whole already: tqdm's closing redraw and newline would repeat the last one.
        self.leave = False
        super().close()

    def _due(self, now: float) -> bool:
        if self.n == self._printed_n:
            return False
        if now - self._printed_at >= self._seconds:
            return True
        if not self.total:
            return False
        step = lambda n: int(100 * n / self.total // self._percent_step)  # noqa: E731 - the 10% mark n has passed
        return step(self.n) > step(self._printed_n)

    def _write_line(self, now: float) -> None:
        self._printed_n, self._printed_at = self.n, now
        self.fp.write(self.line() + "\n")
        self.fp.flush()

    def line(self) -> str:
        """'desc: 120/500 (24%), 3.1 img/s, elapsed 0:39, eta 2:03, loss=0.1' (rate: the mean since the start)."""
        elapsed = self._time() - self.start_t if hasattr(self, "start_t") else 0.0
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        parts = [f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"]
        if rate is not None:
            parts.append(f"{_number(rate)} {self.unit}/s" if rate >= 1 else f"{_number(1 / rate)} s/{self.unit}")
        parts.append(f"elapsed {self.format_interval(elapsed)}")
        if rate is not None and self.total and self.n < self.total:
            parts.append(f"eta {self.format_interval((self.total - self.n) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return f"{self.desc}: " + ", ".join(parts) if self.desc else ", ".join(parts)


def _number(x: float) -> str:
    """A rate without an exponent: 3 significant digits below 100 (0.25, 3.1, 97.8), else whole (13912)."""
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"
