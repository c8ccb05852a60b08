"""Stats and classification on the simulator: found where effects were planted, not elsewhere.

Runs `rsxai run` up to the classify stage on small simulated cohorts (20 + 20,
6 mm, 120 volumes; cohort scope and the linear baselines, to stay fast), once
with the default effect locations made a little stronger and wider than the
demo's so that 40 subjects suffice, and once with ``null=True`` (same seed).
"""

from __future__ import annotations

import json

import pytest

from rsxai.cli import main
from rsxai.simulate import DEFAULT_EFFECTS, Effect, simulate_cohort

RUN_FLAGS = [
    "--voxel-size",
    "6",
    "--n-components",
    "12",
    "--ica-restarts",
    "2",
    "--n-permutations",
    "100",
    "--min-per-group",
    "5",
    "--models",
    "svm",
    "logistic",
    "--cv-scope",
    "cohort",
    "--cv-folds",
    "4",
    "--baseline-permutations",
    "99",
    "--stop-after",
    "classify",
    "-q",
]


def _run(root, *, null: bool) -> dict:
    effects = tuple(
        Effect(e.network, e.center_mm, radius_mm=20.0, strength=0.9) for e in DEFAULT_EFFECTS
    )
    cohort = simulate_cohort(
        root / "data",
        n_patients=20,
        n_controls=20,
        n_volumes=120,
        voxel_size=6.0,
        effects=effects,
        null=null,
        seed=5,
        n_jobs=2,
        progress=False,
    )
    assert main(["run", str(cohort.bids_root), str(root / "out"), *RUN_FLAGS]) == 0
    return json.loads((root / "out" / "summary.json").read_text())


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("planted"), null=False)


@pytest.fixture(scope="module")
def null(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("null"), null=True)


def test_planted_effects_are_significant_where_they_were_planted(planted, null):
    import numpy as np

    for network in ("sensorimotor", "visual"):
        entry = planted["stats"]["networks"][network]["controls>patients"]
        assert entry["n_fwe_significant_voxels"] > 0 and entry["min_p_fwe"] < 0.05
        centres = [e.center_mm for e in DEFAULT_EFFECTS if e.network == network]
        distance = min(np.linalg.norm(np.subtract(entry["peak_mni"], c)) for c in centres)
        assert distance <= 16.0  # within the planted effect (radius 20 mm)
        # Patients' maps were only ever lowered: nothing on the other side.
        assert (
            planted["stats"]["networks"][network]["patients>controls"]["n_fwe_significant_voxels"]
            == 0
        )
        for contrast in ("patients>controls", "controls>patients"):
            assert null["stats"]["networks"][network][contrast]["n_fwe_significant_voxels"] == 0


def test_planted_effects_are_classified_above_chance(planted):
    planted = planted["classification"]["networks"]
    best = max(
        planted[network][model]["accuracy"]["value"]
        for network in ("sensorimotor", "visual")
        for model in ("svm", "logistic")
    )
    assert best >= 0.75
    p_values = [
        planted[network][model]["permutation_p_value"]
        for network in ("sensorimotor", "visual")
        for model in ("svm", "logistic")
    ]
    assert min(p_values) < 0.05
    # Every network's ensemble-free accuracy is at least chance.
    for network in ("sensorimotor", "visual"):
        assert planted[network]["svm"]["accuracy"]["value"] >= 0.5


def test_nothing_is_classified_where_nothing_was_planted(null):
    null = null["classification"]["networks"]
    for network in ("sensorimotor", "visual"):
        for model in ("svm", "logistic"):
            entry = null[network][model]
            assert entry["permutation_p_value"] > 0.05
            assert entry["accuracy"]["ci_low"] < 0.5 < entry["accuracy"]["ci_high"] + 1e-9
