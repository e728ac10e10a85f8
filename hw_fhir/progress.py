"""Progress of long command-line work: click's progress bar on a terminal, plain lines otherwise.

``with progress("Loading", total=n) as advance: ... advance(k)``. On a terminal this is
:func:`click.progressbar`; when the output is not a terminal (a log, CI, a pipe) it
prints ``Loading: 12 000 of 50 000 (24 %)`` at most every ``every_seconds`` and once at
the end, so long runs stay visible without filling the log.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

import click

__all__ = ["progress"]


def _figure(n: int) -> str:
    return f"{n:,}".replace(",", " ")


@contextmanager
def progress(label: str, *, total: int | None, file: IO[str] | None = None,
             every_seconds: float = 5.0,
             tty: bool | None = None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; show a bar (terminal) or periodic lines (anything else)."""
    out = file or sys.stderr
    interactive = out.isatty() if tty is None else tty
    if interactive:
        with click.progressbar(length=max(total or 0, 1), label=label, file=out,
                               show_pos=True) as bar:
            yield bar.update
        return
    done = [0]
    last = [time.monotonic()]

    def line() -> str:
        if total:
            share = min(100, round(100 * done[0] / total))
            return f"{label}: {_figure(done[0])} of {_figure(total)} ({share} %)"
        return f"{label}: {_figure(done[0])}"

    def advance(n: int) -> None:
        done[0] += n
        now = time.monotonic()
        if now - last[0] >= every_seconds:
            last[0] = now
            click.echo(line(), file=out)

    yield advance
    click.echo(line(), file=out)
