"""Progress bars on a terminal; a few log lines elsewhere.

tqdm redraws its bar with carriage returns, which a terminal overwrites in
place but a log file (stderr redirected, a cluster job's output) keeps: hundreds
of partial lines per stage. :func:`progress_bar` shows tqdm's bar only when
stderr is a terminal; otherwise it logs one line each time another tenth of the
work is done (at most 11 lines per loop) through the ``rsxai`` logger, so they
reach the console handler and the run's log file alike.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

#: On a non-terminal, one line each time this fraction of the total is passed.
LINE_STEP = 0.1


def _stderr_is_terminal() -> bool:
    # A Jupyter kernel's stderr is no terminal, yet tqdm.auto draws a widget there.
    if type(sys.stderr).__module__.startswith("ipykernel"):
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class _LineProgress:
    """The part of tqdm's interface rsxai uses (iterate, ``update``, ``close``), as log lines."""

    def __init__(self, iterable: Iterable | None, total: int | None, desc: str, unit: str):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = 0
        self._next_line = 1  # in tenths of the total
        self._closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.total:
            return
        done = int(self.n / self.total / LINE_STEP + 1e-9)
        if done >= self._next_line and self.n < self.total:
            self._next_line = done + 1
            self._log()

    def _log(self) -> None:
        if self.total:
            logger.info(
                "%s: %d/%d %s (%d%%)",
                self.desc,
                self.n,
                self.total,
                self.unit,
                round(100 * self.n / self.total),
            )
        else:
            logger.info("%s: %d %s", self.desc, self.n, self.unit)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n:
                self._log()

    def __enter__(self) -> _LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str = "it",
    enabled: bool = True,
) -> Any:
    """A tqdm bar on a terminal, a log line per tenth of the work elsewhere, or nothing.

    Parameters
    ----------
    iterable : iterable, optional
        What to loop over; without it, call ``update(n)`` and ``close()``.
    total : int, optional
        Number of items (default: ``len(iterable)`` when it has one).
    desc : str
        What is counted, e.g. ``"preprocess"``.
    unit : str, default="it"
        The item's name, e.g. ``"subject"``.
    enabled : bool, default=True
        False: no bar and no lines (``--quiet``, or a loop inside a worker).

    Returns
    -------
    tqdm or _LineProgress
        Iterable, with ``update`` and ``close``.
    """
    if not enabled or _stderr_is_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled)
    return _LineProgress(iterable, total, desc, unit)
