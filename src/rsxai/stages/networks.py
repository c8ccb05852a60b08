"""The ica and dual_regression stages on the output folder: group maps, subject maps, stacks.

:class:`rsxai.networks.NetworkMaps` and :func:`rsxai.decomposition.dual_regression`
work on arrays and know nothing of the output folder; the functions here stream
the preprocessed subjects from disk and write the results under the names of
:data:`rsxai.outputs.OUTPUT_NAMES`. Each returns the files it wrote, which the
pipeline records to decide on reuse.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from rsxai.decomposition import dual_regression, spatial_pseudo_inverse
from rsxai.exceptions import InputError
from rsxai.grid import Grid
from rsxai.outputs import output_path, read_json, write_json, write_nifti, write_tsv
from rsxai.progress import progress_bar
from rsxai.stages.estimators import network_maps_estimator
from rsxai.stages.preprocess import preprocessed_subjects

if TYPE_CHECKING:
    from rsxai.stages.context import RunContext

logger = logging.getLogger(__name__)


def run_ica(context: RunContext) -> list[Path]:
    """Group ICA on all subjects, components labelled; the group maps of dual regression."""
    out_dir = context.out_dir
    grid, subjects = preprocessed_subjects(context)
    model = network_maps_estimator(context, grid)
    try:
        model.fit(subjects)
    except InputError:
        if hasattr(model, "components_"):  # keep the maps a user needs to force a choice
            write_nifti(output_path(out_dir, "components"), grid.to_img(model.components_))
            write_tsv(output_path(out_dir, "components_table"), model.labels_.table)
        raise
    components_path = write_nifti(
        output_path(out_dir, "components"), grid.to_img(model.components_)
    )
    table = model.labels_.table.copy()
    if model.ica_ is not None:
        table["stability"] = model.ica_.stability_
        table["explained_variance"] = model.ica_.explained_variance_ratio_  # component order
    table_path = write_tsv(output_path(out_dir, "components_table"), table)
    if model.ica_ is not None:  # what the defaults came to, for the methods text
        context.summary.update(
            "group_ica",
            {
                "n_components": int(model.ica_.n_components_),
                "migp_dim": int(model.ica_.migp_components_.shape[0]),
            },
        )
    selection = {
        name: {"component": index, "r": float(model.labels_.selected_r[name])}
        for name, index in model.network_components_.items()
    }
    written = [components_path, table_path]
    for name, index in model.network_components_.items():
        written.append(
            write_nifti(
                output_path(out_dir, "network_map", network=name),
                grid.to_img(model.components_[index]),
            )
        )
    written.append(write_json(output_path(out_dir, "network_selection"), selection))
    return written


# ----------------------------------------------------------------------------- dual regression
def _dual_regress_one(components, maps_pinv, load, options, grid, targets, rows):
    """One subject's dual regression, written by the worker that computed it.

    Returns only the network rows (float32) and the files written: were whole
    results sent back, they would queue in the parent faster than it writes
    them (1.9 GB at 600 subjects in benchmarks/scale.py).
    """
    with threadpool_limits(1, user_api="blas"):  # as _preprocess_one: results equal anywhere
        result = dual_regression(components, load(), maps_pinv=maps_pinv, **options)
    columns = [f"IC{index:02d}" for index in range(len(components))]
    written = [
        write_tsv(targets["dr_timeseries"], pd.DataFrame(result.timecourses, columns=columns))
    ]
    # float32 on disk, as FSL writes its maps: float64 doubles the files for no
    # meaningful digit.
    for name, maps in (("dr_maps", result.maps), ("dr_zmaps", result.z_maps)):
        written.append(write_nifti(targets[name], grid.to_img(maps.astype(np.float32))))
    return np.array(result.maps[rows], dtype=np.float32), written


def run_dual_regression(context: RunContext) -> list[Path]:
    """Stage 1 and 2 for every subject; one 4D stack per network; QC correlations."""
    out_dir, cohort = context.out_dir, context.cohort
    grid, subjects = preprocessed_subjects(context)
    components = grid.from_img_data(_load_nifti(output_path(out_dir, "components")))
    selection = read_json(output_path(out_dir, "network_selection"))
    rows = [entry["component"] for entry in selection.values()]
    maps_pinv = spatial_pseudo_inverse(components)  # shared by every subject
    results = Parallel(n_jobs=context.config.run.n_jobs, return_as="generator")(
        delayed(_dual_regress_one)(
            components,
            maps_pinv,
            load,
            {
                "des_norm": context.config.dual_regression.des_norm,
                "variance_normalise": context.config.dual_regression.variance_normalise,
            },
            grid,
            {
                name: output_path(out_dir, name, label=subject.label)
                for name in ("dr_timeseries", "dr_maps", "dr_zmaps")
            },
            rows,
        )
        for subject, load in zip(cohort.subjects, subjects, strict=True)
    )
    network_rows, written = [], []
    for subject_rows, files in progress_bar(
        results,
        total=len(subjects),
        desc="dual regression",
        unit="subject",
        enabled=context.progress,
    ):
        network_rows.append(subject_rows)
        written += files
    stacked = np.stack(network_rows)  # (n_subjects, n_networks, n_voxels), float32
    stacks = {name: stacked[:, i] for i, name in enumerate(selection)}
    group_maps = {name: components[entry["component"]] for name, entry in selection.items()}
    return written + write_network_stacks(context, grid, selection, group_maps, stacks)


def write_network_stacks(
    context: RunContext,
    grid: Grid,
    selection: dict,
    group_maps: dict[str, np.ndarray],
    stacks: dict[str, np.ndarray],
    *,
    source: str | None = None,
) -> list[Path]:
    """Write each network's subject stack and order, the QC table and summary ``networks``.

    Parameters
    ----------
    context : RunContext
    grid : Grid
    selection : dict
        Network name -> ``{"component": int, "r": float}``.
    group_maps : dict of str to ndarray of shape (n_voxels,)
        Each network's group map.
    stacks : dict of str to ndarray of shape (n_subjects, n_voxels)
        Each network's stage-2 maps, rows in cohort order.
    source : str, optional
        Where the subject maps come from, when not from this run.

    Returns
    -------
    list of Path
        The files written.
    """
    out_dir, cohort = context.out_dir, context.cohort
    labels = [f"sub-{s.label}" for s in cohort.subjects]
    qc = pd.DataFrame({"participant_id": labels})
    flags = []
    for name, maps in stacks.items():
        centred = maps - maps.mean(axis=1, keepdims=True, dtype=np.float64)
        reference = group_maps[name] - group_maps[name].mean(dtype=np.float64)
        norms = np.linalg.norm(centred, axis=1) * np.linalg.norm(reference)
        values = (centred @ reference) / np.maximum(norms, 1e-12)
        qc[f"r_{name}"] = values
        # Robust outliers: far below the cohort's median similarity to the group map.
        median = np.median(values)
        mad = 1.4826 * np.median(np.abs(values - median)) or 1e-12
        qc[f"outlier_{name}"] = (median - values) / mad > 3.5
        flags.extend(qc.loc[qc[f"outlier_{name}"], "participant_id"].tolist())
    written = [write_tsv(output_path(out_dir, "dr_qc"), qc)]
    order = pd.DataFrame({"participant_id": labels, "group": cohort.groups})
    networks_summary = {}
    for name, maps in stacks.items():
        stack_path = write_nifti(
            output_path(out_dir, "network_stack", network=name), grid.to_img(maps)
        )
        order_path = write_tsv(output_path(out_dir, "network_stack_order", network=name), order)
        written += [stack_path, order_path]
        networks_summary[name] = {
            **selection[name],
            "template": context.config.networks.templates or "built-in (Seitzman et al. 2018)",
            "group_map": str(
                output_path(out_dir, "network_map", network=name).relative_to(out_dir)
            ),
            "subject_maps": str(stack_path.relative_to(out_dir)),
            "subject_order": str(order_path.relative_to(out_dir)),
            **({"source": source} if source else {}),
        }
    outliers = sorted(set(flags))
    if outliers:
        logger.warning(
            "Dual regression QC: %s far from the group maps (see %s).",
            ", ".join(outliers),
            output_path(out_dir, "dr_qc").relative_to(out_dir),
        )
    context.summary.update("networks", networks_summary)
    context.summary.update("dual_regression_qc", {"outliers": outliers})
    return written


def _load_nifti(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)
