"""The network-maps stage when the input is a finished FSL dual_regression folder.

It stands in for preprocess, group ICA and dual regression: the group maps
(MELODIC's ``melodic_IC.nii.gz`` given with ``--group-maps``, else the mean of
the subjects' stage-2 maps) are labelled with the network templates exactly
as rsxai's own components are, and each chosen network's subject maps are
written as the same stack, order and QC files as :func:`run_dual_regression`
writes, so statistics, classification, explanations and the report run
unchanged. Only the requested networks' maps are read, one component file at
a time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rsxai.exceptions import InputError
from rsxai.networks import check_networks_found, choose_networks, load_group_maps
from rsxai.outputs import output_path, write_json, write_nifti, write_tsv
from rsxai.stages.estimators import forced_components
from rsxai.stages.networks import write_network_stacks

if TYPE_CHECKING:
    from rsxai.cohort import FSLDualRegression
    from rsxai.stages.context import RunContext

logger = logging.getLogger(__name__)

#: What the group maps are when MELODIC's are not given.
MEAN_MAPS_SOURCE = "mean of the subjects' stage-2 maps (no --group-maps given)"


def group_maps_of(folder: FSLDualRegression, grid, group_maps: str | None) -> np.ndarray:
    """The group maps the subject maps were regressed onto, or their stand-in.

    Returns
    -------
    maps : ndarray of shape (n_components, n_voxels)
    """
    if group_maps is None:
        return folder.mean_maps(grid)
    maps = load_group_maps(group_maps, grid)
    if maps.shape[0] != folder.n_components:
        raise InputError(
            f"--group-maps {group_maps} has {maps.shape[0]} maps but the dual_regression "
            f"folder {folder.folder} has {folder.n_components} stage-2 maps per subject; give "
            "the melodic_IC.nii.gz that dual_regression was run with."
        )
    return maps


def run_fsl_networks(context: RunContext) -> list[Path]:
    """Label the group maps, write each chosen network's subject stack from FSL's maps."""
    folder: FSLDualRegression = context.fsl
    config, out_dir = context.config, context.out_dir
    grid = folder.grid()
    written = [write_nifti(output_path(out_dir, "mask"), grid.mask_img())]
    components = group_maps_of(folder, grid, config.ica.group_maps)
    labels = choose_networks(
        components,
        grid,
        templates=config.networks.templates,
        networks=config.networks.networks,
        force=forced_components(config.networks.force_component),
        min_r=config.networks.min_r,
    )
    written.append(write_nifti(output_path(out_dir, "components"), grid.to_img(components)))
    written.append(write_tsv(output_path(out_dir, "components_table"), labels.table))
    # After the table is written: it is what a user reads to force a component.
    check_networks_found(labels, config.networks.min_r)
    selection = {
        name: {"component": int(index), "r": float(labels.selected_r[name])}
        for name, index in labels.selected.items()
    }
    written.append(write_json(output_path(out_dir, "network_selection"), selection))
    group, stacks = {}, {}
    for name, entry in selection.items():
        group[name] = components[entry["component"]]
        written.append(
            write_nifti(
                output_path(out_dir, "network_map", network=name), grid.to_img(group[name])
            )
        )
        stacks[name] = folder.component_maps(entry["component"], grid)
        logger.info(
            "Network %s: FSL component %d (template r = %.2f).",
            name,
            entry["component"],
            entry["r"],
        )
    source = f"FSL dual_regression folder {folder.folder}"
    context.summary.update(
        "network_maps_source",
        {
            "kind": "FSL dual_regression",
            "folder": str(folder.folder.resolve()),
            "n_components": folder.n_components,
            "group_maps": config.ica.group_maps or MEAN_MAPS_SOURCE,
            "mask": str(folder.mask_file) if folder.mask_file else "voxels non-zero in every map",
        },
    )
    return written + write_network_stacks(context, grid, selection, group, stacks, source=source)
