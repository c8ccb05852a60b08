"""Tests for the classify stage's side of the output folder (rsxai.stages.classify)."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from rsxai.config import resolve_config
from rsxai.grid import Grid
from rsxai.outputs import output_path
from rsxai.stages import RunContext
from rsxai.stages.classify import _fold_estimator


def test_fold_scope_turns_a_forced_index_into_the_all_subject_map(tmp_path):
    grid = Grid.mni(8)
    visual = np.random.default_rng(0).standard_normal(grid.n_voxels).astype(np.float32)
    path = output_path(tmp_path, "network_map", network="visual")
    path.parent.mkdir(parents=True)
    nib.save(grid.to_img(visual), path)
    config = resolve_config(
        overrides={"networks.force_component": ["VN=3"], "classify.fold_ica_restarts": 2}
    )
    context = RunContext(config, cohort=None, out_dir=tmp_path, summary=None, progress=False)
    estimator = _fold_estimator(context, grid)
    # Index 3 names a component of the all-subject ICA only; each fold gets its map.
    assert estimator.force is None
    assert list(estimator.force_maps) == ["visual"]
    np.testing.assert_array_equal(estimator.force_maps["visual"], visual)
    assert estimator.n_restarts == 2 and estimator.progress is False
