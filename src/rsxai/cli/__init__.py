"""The command line: ``rsxai run | simulate | demo | stats | classify | explain | report``.

The commands only parse and dispatch; the work is done by :mod:`rsxai.pipeline`
and the stage packages, which are usable from Python on their own.
"""

from rsxai.cli.commands import (
    DEMO_SETTINGS,
    EXIT_INPUT_ERROR,
    EXIT_INTERNAL_ERROR,
    EXIT_INTERRUPTED,
    main,
)
from rsxai.cli.parser import build_parser

__all__ = [
    "DEMO_SETTINGS",
    "EXIT_INPUT_ERROR",
    "EXIT_INTERNAL_ERROR",
    "EXIT_INTERRUPTED",
    "build_parser",
    "main",
]
