"""The command line: ``rsxai run | simulate | demo | stats | classify | explain | report``.

The commands only parse and dispatch; the work is done by :mod:`rsxai.pipeline`
and the stage packages, which are usable from Python on their own.

Exit codes: 0 done; 1 a bug (one line, the traceback in a log file);
2 bad input, a read-only or forbidden OUTPUT_DIR included (one line per problem);
3 a fault of the machine while writing, e.g. no space left on device (one line naming
the file and the fix; finished work is kept and a rerun resumes); 130 interrupted.
"""

from rsxai.cli.commands import (
    DEMO_SETTINGS,
    EXIT_INPUT_ERROR,
    EXIT_INTERNAL_ERROR,
    EXIT_INTERRUPTED,
    EXIT_MACHINE_FAULT,
    main,
)
from rsxai.cli.parser import build_parser

__all__ = [
    "DEMO_SETTINGS",
    "EXIT_INPUT_ERROR",
    "EXIT_INTERNAL_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_MACHINE_FAULT",
    "build_parser",
    "main",
]
