"""Progress on long work, on stderr: a tqdm bar on a terminal, throttled plain lines elsewhere.

A bar redrawn with carriage returns is unreadable in a file or a pipe (a log, ``make demo |
tee``, a CI job), and a bar switched off there leaves minutes of silence. So where stderr is
not a terminal, :class:`Progress` prints whole lines instead: at most one every
:data:`INTERVAL` seconds (and, where asked, one for the first and the last step), each saying
where the work is (``3/12``), how long it has run, its throughput and the time left.
``quiet`` silences both.
"""

from __future__ import annotations

import sys
import time

INTERVAL = 30.0  # seconds between two progress lines where stderr is not a terminal


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``: a duration for people."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def is_terminal() -> bool:
    """Whether stderr is a terminal (a bar can be redrawn there)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False


def say(message: str, *, quiet: bool = False) -> None:
    """Print ``layerprobe: MESSAGE`` on stderr (flushed: it reaches a pipe at once)."""
    if not quiet:
        print(f"layerprobe: {message}", file=sys.stderr, flush=True)


class Progress:
    """``total`` steps of one piece of work, shown on stderr.

    Parameters
    ----------
    total : the number of steps (images, batches, units …).
    desc : what the work is, e.g. ``"probe"`` or ``"pre-training epoch 2/3"``.
    unit : the name of one step (``"step"``, ``"unit"``, ``"img"``).
    quiet : show nothing.
    initial : steps already done before this run (resumed work): shown, but not counted in
        the throughput or the time left.
    rate : ``(amount per step, label)`` to show a throughput other than steps per second,
        e.g. ``(batch_size, "img/s")``.
    first, last : where stderr is not a terminal, also print a line after the first step and
        one when the work is complete (besides one every :data:`INTERVAL` seconds).
    leave : keep the terminal's bar on screen when done (else it is cleared).

    Use as a context manager, or call :meth:`close`. ``update(n, note)`` counts ``n`` steps;
    ``note`` (e.g. the unit just done) is shown after the figures.
    """

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        unit: str = "step",
        quiet: bool = False,
        initial: int = 0,
        rate: tuple[float, str] | None = None,
        first: bool = False,
        last: bool = False,
        leave: bool = True,
    ):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.n = self.initial = int(initial)
        self.rate, self.first, self.last = rate, first, last
        self.quiet = quiet
        self.started = self.shown = time.monotonic()
        self.note = ""
        self.bar = None
        self.lines = 0  # plain lines printed
        if not quiet and is_terminal():
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=self.initial,
                desc=desc,
                unit=unit,
                file=sys.stderr,
                dynamic_ncols=True,
                leave=leave,
            )

    # ------------------------------------------------------------------ counting
    def update(self, n: int = 1, note: str = "") -> None:
        """Count ``n`` more steps done; ``note`` says which (shown after the figures)."""
        self.n += n
        self.note = note or self.note
        if self.quiet:
            return
        if self.bar is not None:
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(n)
            if self.rate is not None:
                self.bar.set_postfix_str(self._rate() + (f", {note}" if note else ""))
            return
        now = time.monotonic()
        due = now - self.shown >= INTERVAL
        if (
            due
            or (self.first and self.n - n == self.initial)
            or (self.last and self.n >= self.total)
        ):
            self.shown = now
            self.lines += 1
            say(self.line(now))

    def write(self, message: str) -> None:
        """A message of its own (``layerprobe: MESSAGE``), above the bar on a terminal."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(f"layerprobe: {message}", file=sys.stderr)
        else:
            say(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ text
    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at this run's pace; None before a step of this run is done."""
        done = self.n - self.initial
        if done <= 0:
            return None
        spent = (now or time.monotonic()) - self.started
        return spent / done * max(0, self.total - self.n)

    def _rate(self, now: float | None = None) -> str:
        spent = max((now or time.monotonic()) - self.started, 1e-9)
        per, label = self.rate or (1.0, f"{self.unit}/s")
        return f"{(self.n - self.initial) * per / spent:.1f} {label}"

    def line(self, now: float | None = None) -> str:
        """``probe: unit 3/12 (25%), 1 min 02 s elapsed, 0.1 unit/s, ETA 3 min 06 s — note``."""
        now = now or time.monotonic()
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        eta = self.eta(now)
        text = (
            f"{self.desc}: {self.unit} {self.n}/{self.total}{pct}, "
            f"{duration(now - self.started)} elapsed, {self._rate(now)}, "
            f"ETA {duration(eta) if eta is not None else '?'}"
        )
        return f"{text} — {self.note}" if self.note else text
