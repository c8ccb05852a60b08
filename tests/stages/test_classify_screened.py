"""The classify stage runs the screened baseline beside the whole-brain ones, with its own p."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from rsxai.config import resolve_config
from rsxai.grid import Grid
from rsxai.outputs import output_path, read_json
from rsxai.stages import classify_maps, write_classification
from rsxai.stages.classify import FixedMaps
from rsxai.stages.estimators import configured_models


def _config(**overrides):
    return resolve_config(
        overrides={
            "classify.models": ["logistic", "screened"],
            "classify.cv_folds": 4,
            "classify.baseline_permutations": 9,
            "classify.screened_permutations": 19,
            "classify.screened_fwhm": 12.0,
            "classify.screened_voxels": 10,
            "run.random_seed": 1,
            **overrides,
        }
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One network of 32 subjects on an 8 mm grid with a local effect, classified and written."""
    grid = Grid.mni(8)
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1], 16)
    maps = rng.normal(size=(y.size, 1, grid.n_voxels))
    centre = np.argwhere(grid.mask).mean(axis=0)
    ball = np.linalg.norm(np.argwhere(grid.mask) - centre, axis=1) <= 2.0
    maps[np.ix_(y == 1, [0], ball)] += 1.0
    config = _config()
    labels = [f"{i:02d}" for i in range(y.size)]
    cohort = SimpleNamespace(
        y=y,
        subjects=[SimpleNamespace(label=label) for label in labels],
        groups=np.where(y == 1, "ALS", "HC").tolist(),
    )
    result = classify_maps(
        FixedMaps(maps, ["a"]),
        list(range(y.size)),
        y,
        labels,
        grid.mask,
        config,
        cv_scope="cohort",
        voxel_size=grid.voxel_size,
    )
    out = tmp_path_factory.mktemp("classify")
    write_classification(out, config, cohort, grid, result, cv_scope="cohort")
    return out


def test_screened_metrics_carry_their_own_permutation_test(written):
    metrics = read_json(output_path(written, "cls_metrics", network="a", model="screened"))
    table = pd.read_csv(
        output_path(written, "cls_predictions", network="a", model="screened"), sep="\t"
    )
    reported = float(np.mean(table["y_pred"] == table["y_true"]))
    assert "ScreenedBaseline.predict" in metrics["decision_rule"]
    permutation = metrics["permutation"]
    assert permutation["n_permutations"] == 19
    assert permutation["observed_accuracy"] == pytest.approx(reported, abs=1e-12)
    assert reported >= 0.75 and permutation["p_value"] == pytest.approx(1 / 20)
    # The whole-brain baseline keeps its own count.
    logistic = read_json(output_path(written, "cls_metrics", network="a", model="logistic"))
    assert logistic["permutation"]["n_permutations"] == 9


def test_configured_screened_model_follows_the_options():
    mask = np.ones((3, 3, 3), dtype=bool)
    y = np.repeat([0, 1], 10)
    model = configured_models(_config(), y, mask, voxel_size=(2.0, 2.0, 3.0))["screened"]
    assert model.smoothing_fwhm == 12.0 and model.n_voxels == 10
    assert tuple(model.voxel_size) == (2.0, 2.0, 3.0) and model.mask is mask
    with pytest.raises(ValueError, match="the screened model smooths in mm; give voxel_size"):
        configured_models(_config(), y, mask)
    assert "screened" in resolve_config().classify.models
