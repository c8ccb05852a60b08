"""The explain stage of ``rsxai run`` (and ``rsxai explain``) on the output folder.

For each network with a cross-validated CNN
(:func:`rsxai.stages.explain_inputs.explained_networks`),
:func:`rsxai.stages.explain_network.explain_network` writes the subject and group
explanation maps, their top regions, their agreement with the group
statistics, the sanity checks and faithfulness curves under
``explanations/network-<name>/``. This module does the folder around them:
it reads the run's ``summary.json`` and ``rsxai.toml``, checks the options
and the folder before the attributions, finds the simulator's ground truth,
removes explanation files of an earlier configuration, summarises all of it
in ``summary.json`` under ``explanations`` and, for ``rsxai explain``, writes
the explain options back to ``rsxai.toml``. How long each part took is no
result: ``rsxai run`` records it with the stage's timing in ``provenance.json``
(``stages.explain.networks``), ``rsxai explain`` logs it.
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import tomli_w

from rsxai.anatomy import atlas_data_dir
from rsxai.config import EXPLAIN_KEYS, load_config_file, resolve_config
from rsxai.exceptions import InputError
from rsxai.explain import METHOD_LABELS
from rsxai.grid import Grid
from rsxai.outputs import Summary, output_path, write_text
from rsxai.stages.explain_inputs import (
    EXPLAINED_REPEAT,
    effect_regions,
    explained_networks,
    find_ground_truth,
)
from rsxai.stages.explain_network import explain_network

if TYPE_CHECKING:
    from rsxai.config import Config
    from rsxai.stages.context import RunContext

logger = logging.getLogger(__name__)

NORMALISATION = (
    "group maps: each subject's |relevance| divided by its sum over the brain mask (each "
    "voxel holds its share of the subject's relevance), then averaged (meancorrect, meanall) "
    "or tested voxelwise against the even share 1/n_voxels (tstat; 0 where undefined); "
    "subject maps are raw"
)


def run_explain(context: RunContext) -> list[Path]:
    """The explain stage of :func:`rsxai.pipeline.run` (which wrote rsxai.toml itself)."""
    return _explain_folder(
        Path(context.out_dir),
        context.config,
        context.summary,
        None,
        [context.cohort.source] if context.cohort.source else (),
        timing=context.timing,
    )


def explain_output_folder(
    out_dir: str | Path,
    *,
    config: Config | None = None,
    summary: Summary | None = None,
    ground_truth: str | Path | None = None,
    input_paths=(),
) -> list[Path]:
    """Explain every network's CNN in an output folder of ``rsxai run`` (classify stage done).

    Parameters
    ----------
    out_dir : str or Path
        The output folder.
    config : Config, optional
        None: the folder's ``rsxai.toml`` (options it lacks take their defaults).
    summary : Summary, optional
        None: the folder's ``summary.json``.
    ground_truth : str or Path, optional
        A simulator's ``ground_truth`` folder; None: looked for beside the
        run's input (:func:`rsxai.stages.explain_inputs.find_ground_truth`).
    input_paths : sequence of path, optional
        More places to look for the ground truth (the cohort's source).

    Returns
    -------
    list of Path
        Every file written. Then, as ``rsxai explain`` does, the folder's
        ``rsxai.toml`` is updated (atomically) with the explain options and
        ``run.device`` of ``config``, so that it describes the explanations in
        the folder; on an error nothing is written to it.
    """
    out_dir = Path(out_dir)
    toml = output_path(out_dir, "config")
    # Read first: a malformed file is refused before the attributions, not after.
    file_values = load_config_file(toml) if toml.exists() else None
    config = config if config is not None else resolve_config(file_values)
    summary = summary if summary is not None else Summary(out_dir)
    started = time.perf_counter()
    written = _explain_folder(out_dir, config, summary, ground_truth, input_paths)
    _write_explain_config(toml, config, file_values)
    logger.info("explain: done in %.1f s.", time.perf_counter() - started)
    return written


def _explain_folder(
    out_dir: Path,
    config: Config,
    summary: Summary,
    ground_truth: str | Path | None,
    input_paths,
    *,
    timing: dict | None = None,
) -> list[Path]:
    """:func:`explain_output_folder` without touching ``rsxai.toml``.

    ``timing`` (the stage's :attr:`RunContext.timing`), when given, receives
    under ``networks`` each network's seconds per part (attribution, group
    maps, checks), for ``provenance.json``.
    """
    options = config.explain
    if not 0 < options.top_fraction <= 1:
        raise InputError(
            "--top-fraction must be in (0, 1] (a share of the voxels); "
            f"got {options.top_fraction}."
        )
    mask_path = output_path(out_dir, "mask")
    networks = explained_networks(out_dir, summary.data) if mask_path.exists() else []
    if not networks:
        raise InputError(
            f"{out_dir}: no CNN results to explain (classification/network-*/"
            "desc-heldout_maps.nii.gz and model-cnn_predictions.tsv). Run `rsxai run` with the "
            "cnn model (--models cnn ...) up to the classify stage first."
        )
    atlas_data_dir()  # fail now, not after the attributions, when the atlases are missing
    grid = Grid.from_img(mask_path)
    truth_dir = Path(ground_truth) if ground_truth else find_ground_truth(out_dir, input_paths)
    regions = effect_regions(truth_dir, grid) if truth_dir else {}
    written: list[Path] = []
    entry = {
        "methods": [METHOD_LABELS[m] for m in options.methods],
        "method_names": {METHOD_LABELS[m]: m for m in options.methods},
        "targets": list(options.targets),
        "repeat": EXPLAINED_REPEAT,
        "normalisation": NORMALISATION,
        "options": dict(options),
        "ground_truth": str(truth_dir) if truth_dir else None,
        "networks": {},
        "flagged_methods": {},
    }
    for network in networks:
        network_entry, files, seconds = explain_network(
            out_dir, network, grid, config, summary.data, regions.get(network)
        )
        if timing is not None:
            timing.setdefault("networks", {})[network] = seconds
        entry["networks"][network] = network_entry
        entry["flagged_methods"][network] = network_entry["flagged_methods"]
        written += files
    _remove_stale(out_dir, written)
    summary.update("explanations", entry)
    return written


def _remove_stale(out_dir: Path, written: list[Path]) -> None:
    """Delete explanation files an earlier run wrote and this one did not (other methods...).

    Done after every new file is in place, so that an interrupted run loses nothing; the
    report finds outputs by name and would otherwise show results of another configuration.
    """
    root = output_path(out_dir, "xai_agreement", network="x").parent.parent
    kept = {Path(path).resolve() for path in written}
    stale = [p for p in root.rglob("*") if p.is_file() and p.resolve() not in kept]
    for path in stale:
        path.unlink()
    if stale:
        logger.info("explain: removed %d output(s) of an earlier run.", len(stale))


def _write_explain_config(path: Path, config: Config, file_values: dict | None) -> None:
    """Write ``rsxai.toml`` (atomically) with the explain options of ``config``.

    The folder's own options (of ``rsxai run``, or only those of ``rsxai classify``) are
    kept as they were, with its header comment; the explain options and the device are updated.
    Without a file, the whole resolved configuration is written, as ``rsxai run`` does.
    """
    if file_values is None:
        write_text(path, config.to_toml())
        return
    values = {section: dict(table) for section, table in file_values.items()}
    for key in EXPLAIN_KEYS:
        section, name = key.split(".")
        value = getattr(config, section)[name]
        if value is None:  # TOML has no null: "not set" is a left-out key
            values.get(section, {}).pop(name, None)
        else:
            values.setdefault(section, {})[name] = value
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = "".join(itertools.takewhile(lambda line: line.startswith("#"), lines))
    write_text(path, header + tomli_w.dumps(values))
