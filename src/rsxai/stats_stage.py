"""The statistics stage on the output folder: permutation maps and cluster tables.

For each network's stack of dual-regression maps and each contrast, runs
:func:`rsxai.stats.permutation_glm`, writes the t, TFCE and -log10 p maps and
the table of FWE-significant clusters with their anatomical labels
(:func:`rsxai.clusters.cluster_table`), and records them in ``summary.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

from rsxai.exceptions import InputError
from rsxai.grid import Grid
from rsxai.outputs import output_path, write_nifti, write_tsv

if TYPE_CHECKING:
    from rsxai.pipeline import RunContext

# BIDS-safe labels of the contrasts in file names.
CONTRAST_LABELS = {
    "patients>controls": "patientsGTcontrols",
    "controls>patients": "controlsGTpatients",
    "two-sided": "twoSided",
}

#: FWE-corrected p below which a voxel is significant and enters the cluster table.
ALPHA = 0.05

#: Neighbourhood of the cluster tables: FSL ``cluster``'s, faces, edges and corners.
CLUSTER_CONNECTIVITY = 26


def _minus_log10(p: np.ndarray) -> np.ndarray:
    return -np.log10(np.clip(p, 1e-300, 1.0))


def _load_nifti(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


def run_stats(context: RunContext) -> list[Path]:
    """Permutation GLM with TFCE per network and contrast; FWE maps, cluster tables, summary."""
    from rsxai.atlas import atlas_data_dir
    from rsxai.clusters import cluster_table
    from rsxai.stats import permutation_glm

    config, cohort, out_dir = context.config, context.cohort, context.out_dir
    options = config.stats
    # Fail before the permutations, not after, when the atlases are missing.
    atlas_data_dir()
    grid = Grid.from_img(output_path(out_dir, "mask"))
    networks = context.summary.data["networks"]
    covariates = None
    if options.covariates:
        unknown = sorted(set(options.covariates) - set(cohort.covariates.columns))
        if unknown:
            raise InputError(
                f"--covariates: {', '.join(unknown)} not in participants.tsv; available: "
                f"{', '.join(cohort.covariates.columns) or 'none'}."
            )
        covariates = cohort.covariates[list(options.covariates)].reset_index(drop=True)
    blocks = None
    if options.exchangeability_blocks:
        column = options.exchangeability_blocks
        if column not in cohort.covariates.columns:
            raise InputError(
                f"--exchangeability-blocks: no column {column!r} in participants.tsv."
            )
        blocks = cohort.covariates[column].to_numpy()
    n_tests = len(networks) * len(options.contrasts)
    written, results = [], {}
    coordinates = grid.world_coordinates()
    for network, entry in networks.items():
        maps = grid.from_img_data(_load_nifti(out_dir / entry["subject_maps"]))
        results[network] = {}
        for contrast in options.contrasts:
            result = permutation_glm(
                maps,
                cohort.y,
                grid,
                covariates=covariates,
                contrast=contrast,
                n_permutations=options.n_permutations,
                tfce=options.tfce,
                exchangeability_blocks=blocks,
                random_state=config.run.random_seed,
                n_jobs=config.run.n_jobs,
                progress=context.progress,
            )
            label = CONTRAST_LABELS[contrast]
            images = {
                "t": result.t,
                "logpFWEt": _minus_log10(result.p_fwe_t),
                "logpUncorrected": _minus_log10(result.p_uncorrected),
            }
            if result.tfce is not None:
                images["tfce"] = result.tfce
                images["logpFWEtfce"] = _minus_log10(result.p_fwe_tfce)
            paths = {}
            for stat, values in images.items():
                path = output_path(out_dir, "stat_map", network=network, contrast=label, stat=stat)
                written.append(write_nifti(path, grid.to_img(values)))
                paths[stat] = str(path.relative_to(out_dir))
            p_fwe = result.p_fwe_tfce if result.tfce is not None else result.p_fwe_t
            # A two-sided contrast gives clusters of both signs, one-sided ones positive.
            clusters = cluster_table(
                result.t,
                p_fwe < ALPHA,
                grid,
                connectivity=CLUSTER_CONNECTIVITY,
                p_fwe=p_fwe,
            )
            clusters_path = write_tsv(
                output_path(out_dir, "clusters", network=network, contrast=label), clusters
            )
            written.append(clusters_path)
            # The contrast's own direction: result.t is already signed by the contrast.
            peak = int(np.argmax(np.abs(result.t) if contrast == "two-sided" else result.t))
            results[network][contrast] = {
                "n_permutations": int(result.n_permutations),
                "inference": "TFCE" if result.tfce is not None else "voxel t",
                "n_fwe_significant_voxels": int(np.sum(p_fwe < ALPHA)),
                "min_p_fwe": float(p_fwe.min()),
                "min_p_fwe_bonferroni_networks": float(min(1.0, p_fwe.min() * n_tests)),
                "peak_mni": [round(float(c), 1) for c in coordinates[peak]],
                "peak_t": float(result.t[peak]),
                "maps": paths,
                "n_clusters": len(clusters),
                "clusters": str(clusters_path.relative_to(out_dir)),
            }
    context.summary.update(
        "stats",
        {
            "n_tests": n_tests,
            "correction": "FWE by the max-statistic permutation distribution within each map; "
            "min_p_fwe_bonferroni_networks also corrects for the number of networks "
            "x contrasts tested",
            "clusters": f"voxels with FWE p < {ALPHA}, {CLUSTER_CONNECTIVITY}-connected, "
            "each sign apart; peak_stat is the t statistic; labels from the Harvard-Oxford "
            "(maximum probability >= 25 %) and AAL2 atlases",
            "covariates": list(options.covariates),
            "networks": results,
        },
    )
    return written
