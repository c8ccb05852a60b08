"""The classify stage's metrics: one decision rule for the accuracy and its permutation p.

Each model's ``y_pred`` is its own ``predict`` (decision value > 0 for the
linear baselines, not the SVM's Platt probability), and the permutation test
written beside the accuracy refits the same folds with the same seeds and
scores the same rule: its observed accuracy is the first repeat's. The
ensemble's rule is written to its metrics, which say that it has no
permutation test.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from rsxai.classify import ENSEMBLE_RULE
from rsxai.config import resolve_config
from rsxai.grid import Grid
from rsxai.outputs import output_path, read_json
from rsxai.stages import classify_maps, write_classification
from rsxai.stages.classify import FixedMaps


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Two weak networks of 24 subjects, classified over two repeats and written."""
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1], 12)
    maps = rng.normal(size=(y.size, 2, 80))
    maps[:, :, :10] += 0.4 * y[:, None, None]
    config = resolve_config(
        overrides={
            "classify.models": ["svm", "logistic"],
            "classify.cv_folds": 4,
            "classify.cv_repeats": 2,
            "classify.baseline_permutations": 9,
            "run.random_seed": 1,
        }
    )
    labels = [f"{i:02d}" for i in range(y.size)]
    cohort = SimpleNamespace(
        y=y,
        subjects=[SimpleNamespace(label=label) for label in labels],
        groups=np.where(y == 1, "ALS", "HC").tolist(),
    )
    grid = Grid(np.ones((4, 4, 5), dtype=bool), np.eye(4))
    result = classify_maps(
        FixedMaps(maps, ["a", "b"]),
        list(range(y.size)),
        y,
        labels,
        grid.mask,
        config,
        cv_scope="cohort",
    )
    out = tmp_path_factory.mktemp("classify")
    write_classification(out, config, cohort, grid, result, cv_scope="cohort")
    return out


def _predictions(out, network, model):
    return pd.read_csv(
        output_path(out, "cls_predictions", network=network, model=model),
        sep="\t",
        dtype={"subject": str},
    )


@pytest.mark.parametrize("model", ["svm", "logistic"])
def test_permutation_observed_accuracy_is_the_reported_first_repeat(written, model):
    for network in ("a", "b"):
        metrics = read_json(output_path(written, "cls_metrics", network=network, model=model))
        assert "decision value > 0" in metrics["decision_rule"]
        table = _predictions(written, network, model)
        first = table[table["repeat"] == 0]
        reported = float(np.mean(first["y_pred"] == first["y_true"]))
        permutation = metrics["permutation"]
        assert permutation["n_permutations"] == 9
        assert permutation["observed_accuracy"] == pytest.approx(reported, abs=1e-12)
        assert 0 < permutation["p_value"] <= 1
    if model == "svm":
        # The written labels are not the Platt probability's: they disagree somewhere.
        table = _predictions(written, "a", model)
        assert np.any((table["probability"] >= 0.5) != (table["y_pred"] == 1))


@pytest.mark.parametrize("model", ["svm", "logistic"])
def test_ensemble_metrics_name_its_rule_and_have_no_permutation_p(written, model):
    metrics = read_json(output_path(written, "cls_metrics", network="ensemble", model=model))
    assert metrics["decision_rule"] == ENSEMBLE_RULE
    assert metrics["permutation"] is None
    assert "no permutation test" in metrics["permutation_note"]
    table = _predictions(written, "ensemble", model)
    # The TSV keeps 6 significant digits: a mean just under 0.5 reads 0.5 there.
    clear = (table["probability"] - 0.5).abs() > 1e-5
    assert clear.mean() > 0.5
    np.testing.assert_array_equal(table["y_pred"][clear], table["probability"][clear] > 0.5)
    network_metrics = read_json(output_path(written, "cls_metrics", network="a", model=model))
    assert "permutation_note" not in network_metrics
