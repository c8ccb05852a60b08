"""The statistics stage on the output folder: permutation maps and cluster tables.

For each network's stack of dual-regression maps and each contrast, runs
:func:`rsxai.stats.permutation_glm`, corrects the FWE p-values over the voxels
and the contrasts of the network (:func:`rsxai.stats.fwe_over_contrasts`, as
``randomise --corrcon``: two one-sided contrasts each at 0.05 would otherwise
give a false positive in either with probability near 0.10), writes the t,
TFCE and -log10 p maps and the table of FWE-significant clusters with their
anatomical labels (:func:`rsxai.anatomy.clusters.cluster_table`), and records
them in ``summary.json``.
:func:`write_stats` does the work on maps already in memory; ``rsxai stats``
(:mod:`rsxai.pipeline.stack`) calls it on a user's own stack.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import pandas as pd

from rsxai.anatomy import atlas_data_dir, cluster_table
from rsxai.exceptions import InputError
from rsxai.grid import Grid
from rsxai.outputs import output_path, write_nifti, write_tsv
from rsxai.stats import DEFAULT_STEP_RULE, fwe_over_contrasts, permutation_glm

if TYPE_CHECKING:
    from rsxai.config import Config, Section
    from rsxai.stages.context import RunContext
    from rsxai.stats import ContrastFamilyFWE, PermutationGLMResult

# BIDS-safe labels of the contrasts in file names.
CONTRAST_LABELS = {
    "patients>controls": "patientsGTcontrols",
    "controls>patients": "controlsGTpatients",
    "two-sided": "twoSided",
}

#: FWE-corrected p below which a voxel is significant and enters the cluster table.
ALPHA = 0.05

#: Suffix of the ``stat`` of the -log10 FWE p maps corrected over one contrast's
#: voxels only (written when several contrasts are tested): not corrected over the
#: contrasts, unlike ``logpFWEt`` and ``logpFWEtfce``.
UNCORRECTED_CONTRASTS = "UncorrectedContrasts"

#: Neighbourhood of the cluster tables: FSL ``cluster``'s, faces, edges and corners.
CLUSTER_CONNECTIVITY = 26


def tfce_settings(options: Section) -> dict:
    """The TFCE parameters of the ``[stats]`` options, as recorded in summary.json.

    The defaults (``tfce_h`` 2, ``tfce_e`` 0.5, ``tfce_connectivity`` 6) are
    Smith & Nichols (2009)'s recommended H and E and FSL randomise's default
    neighbourhood.

    Returns
    -------
    dict
        ``{"H": float, "E": float, "connectivity": int}``.
    """
    return {"H": options.tfce_h, "E": options.tfce_e, "connectivity": options.tfce_connectivity}


def _minus_log10(p: np.ndarray) -> np.ndarray:
    return -np.log10(np.clip(p, 1e-300, 1.0))


def _load_nifti(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


def stats_covariates(
    options: Section, table: pd.DataFrame, source: str
) -> tuple[pd.DataFrame | None, np.ndarray | None]:
    """The covariates and exchangeability blocks named by the ``[stats]`` options.

    Parameters
    ----------
    options : Section
        The resolved ``[stats]`` options.
    table : DataFrame
        Every covariate, one row per subject in analysis order (``Cohort.covariates``).
    source : str
        The table's name, for messages.

    Returns
    -------
    covariates : DataFrame or None
        The chosen columns, index reset.
    blocks : ndarray of shape (n_subjects,) or None

    Raises
    ------
    InputError
        Listing every column named that the table lacks.
    """
    problems, covariates, blocks = [], None, None
    if options.covariates:
        unknown = sorted(set(options.covariates) - set(table.columns))
        if unknown:
            problems.append(
                f"--covariates: {', '.join(unknown)} not in {source}; available: "
                f"{', '.join(table.columns) or 'none'}."
            )
        else:
            covariates = table[list(options.covariates)].reset_index(drop=True)
    if options.exchangeability_blocks:
        column = options.exchangeability_blocks
        if column not in table.columns:
            problems.append(f"--exchangeability-blocks: no column {column!r} in {source}.")
        else:
            blocks = table[column].to_numpy()
    if problems:
        raise InputError(problems)
    return covariates, blocks


def run_stats(context: RunContext) -> list[Path]:
    """Permutation GLM with TFCE per network and contrast; FWE maps, cluster tables, summary."""
    config, cohort, out_dir = context.config, context.cohort, context.out_dir
    # Fail before the permutations, not after, when the atlases are missing.
    atlas_data_dir()
    grid = Grid.from_img(output_path(out_dir, "mask"))
    covariates, blocks = stats_covariates(config.stats, cohort.covariates, "participants.tsv")
    stacks = {
        network: lambda path=out_dir / entry["subject_maps"]: grid.from_img_data(_load_nifti(path))
        for network, entry in context.summary.data["networks"].items()
    }
    written, entry = write_stats(
        out_dir,
        grid,
        stacks,
        cohort.y,
        config,
        covariates=covariates,
        blocks=blocks,
        progress=context.progress,
    )
    context.summary.update("stats", entry)
    return written


def write_stats(
    out_dir: Path,
    grid: Grid,
    stacks: Mapping[str, Callable[[], np.ndarray]],
    y: np.ndarray,
    config: Config,
    *,
    covariates: pd.DataFrame | None = None,
    blocks: np.ndarray | None = None,
    progress: bool = True,
) -> tuple[list[Path], dict]:
    """Test every network and contrast; write the maps and cluster tables.

    Shared by the pipeline's stats stage and ``rsxai stats`` on a user's stack.

    Parameters
    ----------
    out_dir : Path
        The output folder.
    grid : Grid
        The analysis mask and affine of the maps.
    stacks : mapping of str to callable
        Per network, a function returning its subject maps, an ndarray of
        shape (n_subjects, n_voxels) in the order of ``y`` (loaded one network
        at a time).
    y : ndarray of shape (n_subjects,)
        1 for patients, 0 for controls.
    config : Config
        Its ``[stats]`` and ``[run]`` options are used.
    covariates, blocks
        From :func:`stats_covariates`.
    progress : bool
        Show progress bars.

    Returns
    -------
    written : list of Path
    entry : dict
        The ``stats`` entry of ``summary.json``.
    """
    options = config.stats
    tfce = tfce_settings(options)
    contrasts = list(options.contrasts)
    n_networks = len(stacks)
    written, results = [], {}
    coordinates = grid.world_coordinates()
    for network, load_maps in stacks.items():
        maps = load_maps()
        # The same seed, blocks and count draw the same permutations for every
        # contrast, which a maximum over the contrasts needs (fwe_over_contrasts checks).
        fitted = {
            contrast: permutation_glm(
                maps,
                y,
                grid,
                covariates=covariates,
                contrast=contrast,
                n_permutations=options.n_permutations,
                tfce=options.tfce,
                tfce_h=tfce["H"],
                tfce_e=tfce["E"],
                tfce_connectivity=tfce["connectivity"],
                exchangeability_blocks=blocks,
                random_state=config.run.random_seed,
                n_jobs=config.run.n_jobs,
                progress=progress,
            )
            for contrast in contrasts
        }
        family = fwe_over_contrasts(fitted)
        results[network] = {}
        for contrast, result in fitted.items():
            files, results[network][contrast] = _write_contrast(
                out_dir, grid, coordinates, network, contrast, result, family, n_networks
            )
            written += files
    entry = {
        "n_tests": n_networks * len(contrasts),
        "alpha": ALPHA,
        "fwe_contrasts": contrasts,
        "n_networks": n_networks,
        "correction": correction_text(contrasts, n_networks, options.tfce),
        "clusters": f"voxels with FWE p < {ALPHA} (corrected over the voxels and the "
        f"{len(contrasts)} contrast(s) of the network), {CLUSTER_CONNECTIVITY}-connected, "
        "each sign apart; peak_stat is the t statistic; labels from the Harvard-Oxford "
        "(maximum probability >= 25 %) and AAL2 atlases",
        "covariates": list(options.covariates),
        "networks": results,
    }
    if options.tfce:
        entry["tfce"] = {**tfce, "dh": f"{DEFAULT_STEP_RULE} (tfce_dh)"}
    return written, entry


def correction_text(contrasts: list[str], n_networks: int, tfce: bool) -> str:
    """What the FWE p-values and ``min_p_fwe_bonferroni_networks`` control, for summary.json."""
    if len(contrasts) == 1:
        text = (
            f"FWE over the voxels of each network's map (maximum statistic over voxels; one "
            f"contrast, {contrasts[0]})"
        )
    else:
        text = (
            f"FWE over the voxels and the {len(contrasts)} contrasts of each network "
            f"({', '.join(contrasts)}): the maximum statistic over voxels and contrasts, the "
            "same permutations for every contrast (as randomise --corrcon)"
            + ("; TFCE compared across contrasts as dh x TFCE" if tfce else "")
            + f"; the logpFWE*{UNCORRECTED_CONTRASTS} maps are FWE over one contrast's voxels "
            "only, not corrected over the contrasts"
        )
    return (
        f"{text}; min_p_fwe_bonferroni_networks: min_p_fwe x {n_networks} network(s) "
        "(Bonferroni over networks)"
    )


def _write_contrast(
    out_dir: Path,
    grid: Grid,
    coordinates: np.ndarray,
    network: str,
    contrast: str,
    result: PermutationGLMResult,
    family: ContrastFamilyFWE,
    n_networks: int,
) -> tuple[list[Path], dict]:
    """Maps and cluster table of one network and contrast; its summary.json entry."""
    label = CONTRAST_LABELS[contrast]
    images = {
        "t": result.t,
        "logpFWEt": _minus_log10(family.p_fwe_t[contrast]),
        "logpUncorrected": _minus_log10(result.p_uncorrected),
    }
    if family.n_contrasts > 1:
        images[f"logpFWEt{UNCORRECTED_CONTRASTS}"] = _minus_log10(result.p_fwe_t)
    if result.tfce is not None:
        images["tfce"] = result.tfce
        images["logpFWEtfce"] = _minus_log10(family.p_fwe_tfce[contrast])
        if family.n_contrasts > 1:
            images[f"logpFWEtfce{UNCORRECTED_CONTRASTS}"] = _minus_log10(result.p_fwe_tfce)
    written, paths = [], {}
    for stat, values in images.items():
        path = output_path(out_dir, "stat_map", network=network, contrast=label, stat=stat)
        written.append(write_nifti(path, grid.to_img(values)))
        paths[stat] = str(path.relative_to(out_dir))
    p_fwe = family.p_fwe_tfce[contrast] if result.tfce is not None else family.p_fwe_t[contrast]
    # A two-sided contrast gives clusters of both signs, one-sided ones positive.
    clusters = cluster_table(
        result.t, p_fwe < ALPHA, grid, connectivity=CLUSTER_CONNECTIVITY, p_fwe=p_fwe
    )
    clusters_path = write_tsv(
        output_path(out_dir, "clusters", network=network, contrast=label), clusters
    )
    written.append(clusters_path)
    # The contrast's own direction: result.t is already signed by the contrast.
    peak = int(np.argmax(np.abs(result.t) if contrast == "two-sided" else result.t))
    entry = {
        "n_permutations": int(result.n_permutations),
        "inference": "TFCE" if result.tfce is not None else "voxel t",
        "n_fwe_significant_voxels": int(np.sum(p_fwe < ALPHA)),
        "min_p_fwe": float(p_fwe.min()),
        "min_p_fwe_bonferroni_networks": float(min(1.0, p_fwe.min() * n_networks)),
        "peak_mni": [round(float(c), 1) for c in coordinates[peak]],
        "peak_t": float(result.t[peak]),
        "maps": paths,
        "n_clusters": len(clusters),
        "clusters": str(clusters_path.relative_to(out_dir)),
        **({"tfce_dh": float(result.tfce_dh)} if result.tfce is not None else {}),
    }
    return written, entry
