"""What every stage receives (:class:`RunContext`) and what a stage is (:class:`Stage`).

Below every stage module, so that the stages and :mod:`rsxai.pipeline`, which
orders them, never import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rsxai.cohort import Cohort, FSLDualRegression
from rsxai.config import Config
from rsxai.outputs import Summary


@dataclass
class RunContext:
    """What a stage receives: the configuration, the cohort and the output folder."""

    config: Config
    cohort: Cohort
    out_dir: Path
    summary: Summary
    progress: bool = True
    stage_keys: dict[str, str] = field(default_factory=dict)
    current_key: str = ""
    #: What the running stage measured of its own parts (wall-clock seconds), kept with
    #: its timing in its marker and provenance.json: never in summary.json, which two
    #: runs with the same seed write identically. The runner empties it before each stage.
    timing: dict = field(default_factory=dict)
    #: The FSL dual_regression folder the network maps come from (None: made by this run).
    fsl: FSLDualRegression | None = None


@dataclass(frozen=True)
class Stage:
    """A pipeline stage.

    Parameters
    ----------
    name : str
        One of :data:`rsxai.config.STAGES`.
    function : callable
        ``function(context) -> list of Path`` runs the stage and returns the
        outputs it wrote (relative to the output folder or absolute).
    sections : tuple of str
        Configuration sections whose values change the stage's outputs.
    uses_design : bool
        Whether the outputs depend on who is in which group (and the
        covariates): then a relabelled cohort redoes the stage.
    revision : int
        Raised when the stage's outputs change under the same settings, so
        that those of earlier code are not reused (e.g. the preprocessed
        cache, no longer z-scored).
    """

    name: str
    function: Callable[[RunContext], list[Path]]
    sections: tuple[str, ...]
    uses_design: bool = False
    revision: int = 0
