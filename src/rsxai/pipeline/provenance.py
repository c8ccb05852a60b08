"""provenance.json: what repeats a run (command, seed, configuration, versions, inputs).

Written last by ``rsxai run`` and by ``rsxai stats`` / ``rsxai classify``,
with one shape: the command line, when it started and finished, the seed,
the versions of rsxai, Python and the key dependencies, the platform, the
resolved configuration, the inputs and their checksums, and the stages'
timings. Every wall-clock time of a run is here, none in ``summary.json``
(which two runs of the same command and seed write byte-identically): a stage's
timing holds its ``start``, ``end`` and ``seconds`` and what it measured of
its parts (classify: ``feature_seconds``, the feature step of each fold,
one entry in cohort scope; explain: ``networks``, each network's seconds
per part).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from rsxai._version import __version__
from rsxai.outputs import output_path, write_json

KEY_PACKAGES = (
    "numpy",
    "scipy",
    "nibabel",
    "nilearn",
    "scikit-learn",
    "pandas",
    "joblib",
    "torch",
    "matplotlib",
)


def package_versions() -> dict[str, str | None]:
    """Versions of rsxai, Python and the key dependencies (None when not installed)."""
    versions: dict[str, str | None] = {"rsxai": __version__, "python": sys.version.split()[0]}
    for package in KEY_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _cuda_available() -> bool | None:
    """Whether PyTorch saw a GPU (what device="auto" chose); None when torch was not used."""
    torch = sys.modules.get("torch")  # never imported only to be asked
    return None if torch is None else bool(torch.cuda.is_available())


def iso_time(seconds: float) -> str:
    """A POSIX time as UTC ISO 8601, to the second."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="seconds")


def write_provenance(
    out_dir: Path,
    *,
    command: list[str] | None,
    started: float,
    random_seed: int,
    configuration: dict,
    inputs: str | dict,
    input_checksums: dict[str, str],
    stages: dict | None = None,
) -> Path:
    """Write ``OUTPUT_DIR/provenance.json`` (atomically); return its path.

    Parameters
    ----------
    out_dir : Path
    command : list of str or None
        The command line as typed.
    started : float
        POSIX time the run started; it finishes now.
    random_seed : int
    configuration : dict
        The resolved options (sections of ``rsxai.toml``, or flat keys).
    inputs : str or dict
        The input path, or named input paths.
    input_checksums : dict of str to str
        Path -> checksum of every input file read.
    stages : dict, optional
        Each stage's status and timing (with the parts it measured).
    """
    record = {
        "rsxai_version": __version__,
        "command": command,
        # Relative paths of the command are relative to this folder.
        "working_directory": os.getcwd(),
        "output_dir": str(Path(out_dir).resolve()),
        "started": iso_time(started),
        "finished": iso_time(time.time()),
        "random_seed": random_seed,
        "versions": package_versions(),
        "platform": {
            "system": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cuda_available": _cuda_available(),
        },
        "configuration": configuration,
        "input": inputs,
        "input_checksums": input_checksums,
    }
    if stages is not None:
        record["stages"] = stages
    return write_json(output_path(out_dir, "provenance"), record)
