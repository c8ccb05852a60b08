"""The command line: ``rsxai run | simulate | demo | stats | classify | explain | report``."""

from rsxai.cli.commands import main

__all__ = ["main"]
