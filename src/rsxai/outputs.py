"""The output folder: atomic writes, the BIDS-derivatives description, summary and provenance.

Every file rsxai writes goes through :func:`atomic_path`, so an interrupted run
never leaves a half-written file that a later run could take as done. Every
file name is defined once, in :data:`OUTPUT_NAMES` (the habit of tedana's
output registry), so that the report and the stages agree on where things are.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from rsxai._version import __version__
from rsxai.exceptions import InputError, MachineFault

# Relative paths inside the output folder. Templates take str.format fields.
OUTPUT_NAMES: dict[str, str] = {
    "dataset_description": "dataset_description.json",
    "config": "rsxai.toml",
    "provenance": "provenance.json",
    "summary": "summary.json",
    "log": "rsxai.log",
    "report": "report.html",
    "participants": "participants.tsv",
    "state_dir": ".rsxai",
    "stage_marker": ".rsxai/stages/{stage}.json",
    "checksum_cache": ".rsxai/checksums.json",
    # preprocess
    "mask": "group/desc-brain_mask.nii.gz",
    "preprocessed_dir": ".rsxai/work/preprocess-{key}",
    # ica
    "components": "group/desc-ica_components.nii.gz",
    "components_table": "group/desc-ica_components.tsv",
    "network_map": "group/network-{network}_desc-ica_map.nii.gz",
    "network_selection": "group/desc-networks_selection.json",
    # dual regression
    "dr_timeseries": "sub-{label}/sub-{label}_desc-dr_timeseries.tsv",
    "dr_maps": "sub-{label}/sub-{label}_desc-dr_stat-effect_components.nii.gz",
    "dr_zmaps": "sub-{label}/sub-{label}_desc-dr_stat-z_components.nii.gz",
    "dr_qc": "group/desc-dr_qc.tsv",
    "network_stack": "group/network-{network}_desc-dr_stat-effect_subjects.nii.gz",
    "network_stack_order": "group/network-{network}_desc-dr_subjects.tsv",
    # stats ({stat}: t, tfce; -log10 p: logpUncorrected, logpFWEt and logpFWEtfce (FWE over
    # the voxels and contrasts of the network), logpFWEtUncorrectedContrasts and
    # logpFWEtfceUncorrectedContrasts (FWE over one contrast's voxels; several contrasts only))
    "stat_map": "stats/network-{network}_contrast-{contrast}_stat-{stat}_statmap.nii.gz",
    "clusters": "stats/network-{network}_contrast-{contrast}_clusters.tsv",
    # classify ({model}: cnn, svm, logistic, ensemble)
    "cls_predictions": "classification/network-{network}/model-{model}_predictions.tsv",
    "cls_metrics": "classification/network-{network}/model-{model}_metrics.json",
    "cls_folds": "classification/network-{network}/model-{model}_folds.tsv",
    "cls_null": "classification/network-{network}/model-{model}_null.tsv",
    "cls_heldout_maps": "classification/network-{network}/desc-heldout_maps.nii.gz",
    "cls_heldout_order": "classification/network-{network}/desc-heldout_subjects.tsv",
    "cls_training": "classification/network-{network}/model-cnn_training.tsv",
    "cls_weights": (
        "classification/network-{network}/weights/"
        "model-cnn_repeat-{repeat}_fold-{fold}.safetensors"
    ),
    # explain ({target}: predicted or patient; {desc}: meancorrect, meanall, tstat)
    "xai_subjects": (
        "explanations/network-{network}/method-{method}_target-{target}_desc-subjects_relevance.nii.gz"
    ),
    "xai_subjects_order": "explanations/network-{network}/desc-subjects_order.tsv",
    "xai_group": (
        "explanations/network-{network}/method-{method}_target-{target}_desc-{desc}_relevance.nii.gz"
    ),
    "xai_regions": "explanations/network-{network}/method-{method}_target-{target}_regions.tsv",
    "xai_agreement": "explanations/network-{network}/agreement.tsv",
    "xai_sanity": "explanations/network-{network}/sanity_checks.tsv",
    "xai_faithfulness": "explanations/network-{network}/faithfulness.tsv",
    "xai_localisation": "explanations/network-{network}/localisation.tsv",
}


#: In the name of every temporary file of :func:`atomic_path`
#: (``.<name>.<writer pid>-<random>.partial<suffixes>``), so that
#: :func:`remove_partial_files` can find what a killed process left behind.
PARTIAL_MARK = ".partial"
_PARTIAL_NAME = re.compile(r"\.[^.]+\.(?P<pid>\d+)-[^.]+" + re.escape(PARTIAL_MARK) + r"(\..+)?")


def _umask() -> int:
    # os.umask can only be read by setting it; done once, at import (single-threaded).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Mode of every file :func:`atomic_path` writes: what ``open()`` would give under the
#: umask (e.g. 0o644), not ``mkstemp``'s private 0o600, so that colleagues sharing the
#: output folder on a cluster can read the results.
FILE_MODE = 0o666 & ~_umask()


def output_path(out_dir: str | Path, name: str, **fields: Any) -> Path:
    """Path of a registered output inside ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        The output folder.
    name : str
        A key of :data:`OUTPUT_NAMES`.
    **fields
        Values for the template's fields (e.g. ``stage="ica"``).
    """
    if name not in OUTPUT_NAMES:
        raise KeyError(f"Unknown output name {name!r}; known: {sorted(OUTPUT_NAMES)}.")
    return Path(out_dir) / OUTPUT_NAMES[name].format(**fields)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file keeps the final suffixes (so ``.nii.gz`` writers compress)
    and is removed when the block raises, leaving any earlier ``path`` untouched.
    A full disk, a quota, a read-only or forbidden folder (:data:`MACHINE_ERRNOS
    <rsxai.exceptions.MACHINE_ERRNOS>`) raises :class:`~rsxai.exceptions.MachineFault`
    naming ``path``.
    A process killed mid-write leaves it behind under a name no reader takes for
    ``path``; :func:`remove_partial_files` deletes such leftovers.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = PARTIAL_MARK + ("".join(path.suffixes) or ".tmp")
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.name.split('.')[0]}.{os.getpid()}-", suffix=suffix, dir=path.parent
        )
        os.close(fd)
    except OSError as error:
        _raise_machine_fault(error, path)
        raise
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            _raise_machine_fault(error, path)
        raise


def _raise_machine_fault(error: OSError, path: Path) -> None:
    """Raise :class:`MachineFault` naming ``path`` when ``error`` is a full disk or the like."""
    # Named by the final path: the temporary file's name would mislead.
    fault = MachineFault.from_os_error(error, path)
    if fault is not None:
        raise fault from error


def check_writable(out_dir: str | Path) -> None:
    """Raise :class:`~rsxai.exceptions.InputError` unless files can be made in ``out_dir``.

    Checked by writing (and deleting) a small file, in ``out_dir`` or, when it does
    not exist yet, in the nearest folder above it that does: permission bits alone
    miss a read-only file system, and are no obstacle to root.
    """
    out_dir = Path(out_dir)
    folder = out_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".rsxai-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        where = "" if folder == out_dir else f" (it would be made in {folder})"
        raise InputError(
            f"OUTPUT_DIR {out_dir} is not writable{where}: {error.strerror or error}. "
            "Choose a writable folder or fix its permissions."
        ) from None


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_partial_files(out_dir: str | Path) -> list[Path]:
    """Delete the temporary files of writes whose process died before finishing them.

    Only :func:`atomic_path` makes such files, and never under a final name, so
    none is ever taken as a finished output; they only waste space (a killed
    preprocessing worker's can be as large as a subject's cleaned data). A file
    whose writer (the process id in its name) is still running on this machine
    is left alone.

    Returns
    -------
    list of Path
        The files deleted.
    """
    removed = []
    for path in sorted(Path(out_dir).rglob(f".*{PARTIAL_MARK}*")):
        match = _PARTIAL_NAME.fullmatch(path.name)
        if match and path.is_file() and not _process_alive(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_text(path: str | Path, text: str) -> Path:
    """Write text atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _json_ready(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically (keys in insertion order, 2-space indent, NaN as null)."""
    text = json.dumps(_json_ready(data), indent=2, allow_nan=False)
    return write_text(path, text + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_tsv(path: str | Path, table: pd.DataFrame, *, index: bool = False) -> Path:
    """Write a table as BIDS-style TSV (tab separated, ``n/a`` for missing) atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=index, na_rep="n/a", float_format="%.6g")
    return Path(path)


def write_nifti(path: str | Path, img: nib.Nifti1Image) -> Path:
    """Save a NIfTI image atomically."""
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return Path(path)


def write_dataset_description(out_dir: str | Path, *, source: str | None = None) -> Path:
    """Write the BIDS-derivatives ``dataset_description.json``."""
    description: dict[str, Any] = {
        "Name": "rsxai outputs",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "rsxai",
                "Version": __version__,
                "Description": "Group ICA, dual regression, permutation statistics, "
                "3D CNN classification and explanation maps.",
            }
        ],
    }
    if source:
        description["SourceDatasets"] = [{"URL": Path(source).resolve().as_uri()}]
    return write_json(output_path(out_dir, "dataset_description"), description)


class Summary:
    """The machine-readable results, ``summary.json``, which every stage extends.

    Each stage owns one top-level key; :meth:`update` rewrites the whole file
    atomically so the file on disk is always complete.

    Parameters
    ----------
    out_dir : str or Path
        The output folder.
    """

    def __init__(self, out_dir: str | Path):
        self.path = output_path(out_dir, "summary")
        self.data: dict[str, Any] = read_json(self.path) if self.path.exists() else {}

    def update(self, key: str, value: Any) -> None:
        """Set one top-level key and write the file."""
        self.data["rsxai_version"] = __version__
        self.data[key] = value
        write_json(self.path, self.data)


def file_checksum(path: str | Path, *, chunk_size: int = 1 << 22) -> str:
    """SHA-256 of a file, as ``sha256:<hex>``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def input_checksums(paths: list[Path], cache_path: Path, *, n_jobs: int = 1) -> dict[str, str]:
    """Checksums of input files, reusing earlier ones while size and mtime are unchanged.

    Hashing a large cohort's BOLD files is slow, so the result of each file is
    kept in ``cache_path`` keyed by its resolved path, size and mtime.

    Returns
    -------
    checksums : dict
        Resolved path (str) -> ``sha256:<hex>``.
    """
    cache: Mapping[str, Any] = read_json(cache_path) if cache_path.exists() else {}
    result: dict[str, str] = {}
    to_hash: list[tuple[str, str]] = []
    for path in paths:
        resolved = str(Path(path).resolve())
        stat = Path(path).stat()
        key = f"{stat.st_size}:{stat.st_mtime_ns}"
        cached = cache.get(resolved)
        if cached and cached.get("key") == key:
            result[resolved] = cached["sha256"]
        else:
            to_hash.append((resolved, key))
    hashed = Parallel(n_jobs=n_jobs)(delayed(file_checksum)(p) for p, _ in to_hash)
    new_cache = dict(cache)
    for (resolved, key), digest in zip(to_hash, hashed, strict=True):
        result[resolved] = digest
        new_cache[resolved] = {"key": key, "sha256": digest}
    if to_hash:
        write_json(cache_path, new_cache)
    return result
