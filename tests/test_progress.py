"""Progress: tqdm's bar on a terminal, at most 11 log lines per loop elsewhere."""

from __future__ import annotations

import io
import logging

import pytest

from rsxai.progress import progress_bar


class _Stream(io.StringIO):
    def __init__(self, terminal: bool):
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.fixture
def stderr_log(monkeypatch):
    """Redirected stderr, with the rsxai logger writing to it as the CLI's handler does."""

    def make(terminal: bool) -> _Stream:
        stream = _Stream(terminal)
        monkeypatch.setattr("sys.stderr", stream)
        handler = logging.StreamHandler(stream)
        rsxai_logger = logging.getLogger("rsxai")
        monkeypatch.setattr(rsxai_logger, "handlers", [handler])
        monkeypatch.setattr(rsxai_logger, "level", logging.INFO)
        monkeypatch.setattr(rsxai_logger, "propagate", False)
        return stream

    return make


def _lines(stream: _Stream) -> list[str]:
    return [line for line in stream.getvalue().replace("\r", "\n").split("\n") if line.strip()]


def test_non_terminal_writes_one_line_per_tenth(stderr_log):
    stream = stderr_log(terminal=False)
    assert list(progress_bar(range(100), desc="preprocess", unit="subject")) == list(range(100))
    lines = _lines(stream)
    assert 1 <= len(lines) <= 11
    assert lines[-1] == "preprocess: 100/100 subject (100%)"
    assert "\r" not in stream.getvalue()


def test_non_terminal_update_and_close(stderr_log):
    stream = stderr_log(terminal=False)
    bar = progress_bar(total=1000, desc="permutations", unit="perm")
    for _ in range(250):
        bar.update(4)
    bar.close()
    bar.close()
    lines = _lines(stream)
    assert len(lines) == 10  # 10 %, ..., 90 % and the end
    assert lines[0] == "permutations: 100/1000 perm (10%)"
    assert lines[-1] == "permutations: 1000/1000 perm (100%)"


def test_terminal_shows_the_bar(stderr_log):
    stream = stderr_log(terminal=True)
    for _ in progress_bar(range(100), desc="preprocess", unit="subject"):
        pass
    assert "\r" in stream.getvalue()  # tqdm redraws in place
    assert "100/100" in stream.getvalue()


@pytest.mark.parametrize("terminal", [True, False])
def test_disabled_writes_nothing(stderr_log, terminal):
    stream = stderr_log(terminal=terminal)
    assert sum(progress_bar(range(100), desc="x", enabled=False)) == sum(range(100))
    assert stream.getvalue() == ""
