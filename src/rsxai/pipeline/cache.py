"""Stage keys, and what they guard in ``OUT/.rsxai``: stage markers and keyed work folders.

A stage's key digests everything its outputs depend on (rsxai version, the
stage's revision, the configuration sections it reads, the seed, the input
checksums, the design when it uses it, and the keys of the stages above it). A stage is reused when
its marker records that key and every output it listed still exists.

Some stages keep an internal cache in a work folder named after their key
(``.rsxai/work/<stage>-<key>``, e.g. the preprocessed data of
``preprocess-<key>``), so that a stage interrupted part-way resumes with what
it finished under the very same settings. Folders of other keys are the
caches of earlier settings: :func:`remove_stale_work_folders` deletes them once
the stage has outputs for its current key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from rsxai._version import __version__
from rsxai.outputs import OUTPUT_NAMES, read_json

if TYPE_CHECKING:
    from rsxai.cohort import Cohort
    from rsxai.stages import RunContext, Stage

__all__ = ["digest", "inputs_key", "is_reusable", "remove_stale_work_folders", "stage_key"]

logger = logging.getLogger(__name__)

#: Where the keyed work folders are, relative to the output folder.
WORK_DIR = ".rsxai/work"


def digest(value: object) -> str:
    """A short hexadecimal digest (16 characters) of a JSON-serialisable ``value``."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def inputs_key(cohort: Cohort, checksums: dict[str, str]) -> dict[str, str]:
    """Digests of the cohort's data (``data``) and of its design (``design``).

    Parameters
    ----------
    cohort : Cohort
    checksums : dict of str to str
        Input file -> checksum, from :func:`rsxai.outputs.input_checksums`.

    Returns
    -------
    dict
        ``data``: subjects and file checksums; ``design``: groups, positive
        label and covariates.
    """
    return {
        "data": digest([cohort.labels, sorted(checksums.items())]),
        "design": digest([cohort.groups, cohort.positive_label, cohort.covariates.to_json()]),
    }


def stage_key(stage: Stage, context: RunContext, inputs: dict[str, str]) -> str:
    """The key of ``stage`` in this run (see the module notes).

    Parameters
    ----------
    stage : Stage
    context : RunContext
        Its configuration and the keys of the stages already run or reused.
    inputs : dict
        From :func:`inputs_key`.

    Returns
    -------
    str
    """
    # Preprocessing draws nothing at random: another seed must not redo it.
    seeded = stage.name != "preprocess"
    return digest(
        {
            "rsxai": __version__,
            "stage": stage.name,
            "revision": stage.revision,
            "config": context.config.fingerprint(*stage.sections),
            "seed": context.config.run.random_seed if seeded else None,
            "inputs": inputs["data"],
            "design": inputs["design"] if stage.uses_design else None,
            "upstream": dict(context.stage_keys),
        }
    )


def is_reusable(marker: Path, key: str, out_dir: Path) -> bool:
    """Whether the stage marker records ``key`` and every output it lists exists."""
    if not marker.exists():
        return False
    try:
        recorded = read_json(marker)
    except (OSError, ValueError):
        return False
    return recorded.get("key") == key and all(
        (out_dir / relative).exists() for relative in recorded.get("outputs", [])
    )


def _work_folder_stages() -> set[str]:
    """Stages with a keyed work folder, from the registered ``<WORK_DIR>/<stage>-{key}`` names."""
    suffix = "-{key}"
    return {
        template[len(WORK_DIR) + 1 : -len(suffix)]
        for template in OUTPUT_NAMES.values()
        if template.startswith(WORK_DIR + "/") and template.endswith(suffix)
    }


def remove_stale_work_folders(out_dir: Path, stage: str, key: str) -> list[Path]:
    """Delete the work folders of ``stage`` made under other keys; log what was freed.

    Call it only once the stage's outputs for ``key`` are complete (its marker
    written, or found valid): until then an earlier folder may still be the
    one a resumed run needs. A run killed while this deletes leaves only
    whole files (each is unlinked, never truncated), valid for their own key.

    Parameters
    ----------
    out_dir : Path
        The output folder.
    stage : str
        A stage name; nothing is done for a stage without a keyed work folder.
    key : str
        The stage's current key, whose folder is kept.

    Returns
    -------
    removed : list of Path
        The folders deleted.
    """
    if stage not in _work_folder_stages():
        return []
    # Only names this module could have made (a 16-digit key): nothing else is touched.
    stale_name = re.compile(re.escape(stage) + r"-[0-9a-f]{16}")
    work = Path(out_dir) / WORK_DIR
    stale = sorted(
        folder
        for folder in (work.iterdir() if work.is_dir() else ())
        if folder.is_dir()
        and stale_name.fullmatch(folder.name)
        and folder.name != f"{stage}-{key}"
    )
    if not stale:
        return []
    freed = sum(
        path.stat().st_size for folder in stale for path in folder.rglob("*") if path.is_file()
    )
    for folder in stale:
        shutil.rmtree(folder)
    logger.info(
        "Stage %s: removed %d work folder(s) of earlier settings (%s), %s freed.",
        stage,
        len(stale),
        ", ".join(folder.name for folder in stale),
        _size(freed),
    )
    return stale


def _size(n_bytes: int) -> str:
    """``n_bytes`` for people: 512 B, 3.4 MB, 1.2 GB (powers of 1000, as ``df -H``)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            break
        n_bytes /= 1000
    if unit == "B":
        return f"{int(n_bytes)} B"
    return f"{n_bytes:.1f} {unit}"
