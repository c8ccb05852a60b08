"""Stats, classification and labelling on the simulator: found where effects were planted.

Runs `rsxai run` on two small simulated cohorts (20 + 20, 6 mm, 120 volumes),
once with the default effect locations made stronger and wider than the
demo's (strength 1.0, radius 30 mm) so that 40 subjects suffice, and once
with ``null=True`` (same seed). Each cohort is run twice into the same output
folder: first in cohort scope with the linear baselines up to the classify
stage (fast), then with the shipped default CNN in the default fold scope up
to the classify stage (null) or the explain stage (planted); the second run
reuses the preprocessing, group ICA, dual regression and stats of the first
and recomputes only classify (and explain).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import stats

from rsxai.cli import main
from rsxai.grid import Grid
from rsxai.networks import label_components
from rsxai.simulate import DEFAULT_EFFECTS, Effect, load_ground_truth, simulate_cohort
from tests.fixtures.templates import needs_reference, shirer_templates, yeo_templates

NETWORKS = ("sensorimotor", "visual")
EFFECTS = tuple(
    Effect(e.network, e.center_mm, radius_mm=30.0, strength=1.0) for e in DEFAULT_EFFECTS
)

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

# The shipped default CNN (cnn3d: stride-2 stem, 3 blocks, width 8, dropout 0.3,
# 40 epochs, patience 10, augmentation) in the default fold scope (group ICA,
# labelling and dual regression refitted on each training fold, 1 restart).
# Changed for time only: 4 folds instead of 10, plain saliency only, no
# sanity checks nor deletion curves. Later flags override RUN_FLAGS' ones.
CNN_FLAGS = [
    *RUN_FLAGS,
    "--models",
    "cnn",
    "--cv-scope",
    "fold",
    "--explain-methods",
    "saliency",
    "--explain-targets",
    "predicted",
    "--no-sanity-checks",
    "--n-faithfulness-subjects",
    "0",
]


def _simulate_and_run(root, *, null: bool):
    cohort = simulate_cohort(
        root / "data",
        n_patients=20,
        n_controls=20,
        n_volumes=120,
        voxel_size=6.0,
        effects=EFFECTS,
        null=null,
        seed=5,
        n_jobs=2,
        progress=False,
    )
    assert main(["run", str(cohort.bids_root), str(root / "out"), *RUN_FLAGS]) == 0
    return cohort, root / "out"


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    return _simulate_and_run(tmp_path_factory.mktemp("planted"), null=False)


@pytest.fixture(scope="module")
def null_run(tmp_path_factory):
    return _simulate_and_run(tmp_path_factory.mktemp("null"), null=True)


@pytest.fixture(scope="module")
def planted(planted_run):
    return _summary(planted_run[1])


@pytest.fixture(scope="module")
def null(null_run):
    return _summary(null_run[1])


def _run_cnn(cohort, out, *, stop_after: str) -> dict:
    flags = [*CNN_FLAGS, "--stop-after", stop_after]
    assert main(["run", str(cohort.bids_root), str(out), *flags]) == 0
    return _summary(out)


# The cohort-scope summaries are read before the CNN run rewrites summary.json.
@pytest.fixture(scope="module")
def planted_cnn(planted_run, planted):
    return _run_cnn(*planted_run, stop_after="explain")


@pytest.fixture(scope="module")
def null_cnn(null_run, null):
    return _run_cnn(*null_run, stop_after="classify")  # no explanations needed


def test_planted_effects_are_significant_where_they_were_planted(planted, null):
    for network in NETWORKS:
        entry = planted["stats"]["networks"][network]["controls>patients"]
        assert entry["n_fwe_significant_voxels"] > 0 and entry["min_p_fwe"] < 0.05
        centres = [e.center_mm for e in EFFECTS if e.network == network]
        distance = min(np.linalg.norm(np.subtract(entry["peak_mni"], c)) for c in centres)
        assert distance <= 16.0  # well within the planted effect (radius 30 mm)
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
        for network in NETWORKS
        for model in ("svm", "logistic")
    )
    assert best >= 0.75
    p_values = [
        planted[network][model]["permutation_p_value"]
        for network in NETWORKS
        for model in ("svm", "logistic")
    ]
    assert min(p_values) < 0.05
    # Every network's ensemble-free accuracy is at least chance.
    for network in NETWORKS:
        assert planted[network]["svm"]["accuracy"]["value"] >= 0.5


def test_nothing_is_classified_where_nothing_was_planted(null):
    null = null["classification"]["networks"]
    for network in NETWORKS:
        for model in ("svm", "logistic"):
            entry = null[network][model]
            assert entry["permutation_p_value"] > 0.05
            assert entry["accuracy"]["ci_low"] < 0.5 < entry["accuracy"]["ci_high"] + 1e-9


def _cnn_accuracy(summary, network) -> tuple[dict, float]:
    """The CNN's held-out accuracy entry and its one-sided binomial p against 1/2 (scipy)."""
    entry = summary["classification"]["networks"][network]["cnn"]
    accuracy = entry["accuracy"]
    assert accuracy["trials"] == 40  # every subject held out exactly once
    p = stats.binomtest(accuracy["successes"], accuracy["trials"], 0.5, "greater").pvalue
    assert entry["binomial_p_value"] == pytest.approx(p)
    return accuracy, p


def test_default_cnn_in_fold_scope_finds_each_planted_network(planted_run, planted_cnn):
    # Leak-free (fold scope): every fold refits group ICA, labelling and dual
    # regression on its 30 training subjects. Cohort seeds 5 (this one), 6 and
    # 7 gave CNN accuracies 0.975 / 0.975, 0.725 / 0.80 and 0.825 / 0.975
    # (SMN / VN; 4 folds, 40 epochs). With 20 epochs or 3 folds seed 6 or 7
    # fell to 0.575-0.60 on the SMN: those savings are not robust.
    assert planted_cnn["classification"]["cv"]["cv_scope"] == "fold"
    provenance = json.loads((planted_run[1] / "provenance.json").read_text())
    # Timings live in provenance.json, so that summary.json is the same for the same seed.
    assert len(provenance["stages"]["classify"]["feature_seconds"]) == 4  # one refit per fold
    for network in NETWORKS:
        accuracy, p = _cnn_accuracy(planted_cnn, network)
        assert accuracy["value"] > 0.5 and p < 0.05, (network, accuracy["value"], p)


def test_default_cnn_in_fold_scope_finds_nothing_where_nothing_was_planted(null_cnn):
    # Null cohorts of seeds 5 (this one), 6 and 7 gave 0.55 / 0.625,
    # 0.45 / 0.55 and 0.525 / 0.45 (one-sided binomial p >= 0.077). The check is
    # that chance (1/2) lies in the accuracy's 95 % Clopper-Pearson interval,
    # which a chance-level classifier fails 2.5 % of the time per network
    # (one-sided p > 0.05 would fail 5 %).
    assert null_cnn["classification"]["cv"]["cv_scope"] == "fold"
    for network in NETWORKS:
        accuracy, p = _cnn_accuracy(null_cnn, network)
        assert accuracy["ci_low"] < 0.5 < accuracy["ci_high"], (network, accuracy["value"], p)


def _saliency_inside_outside(cohort, out, network) -> float:
    """Mean saliency per voxel inside the planted effect over that outside it (group map)."""
    grid = Grid.from_img(out / "group" / "desc-brain_mask.nii.gz")
    truth = load_ground_truth(cohort.ground_truth_dir)
    np.testing.assert_allclose(truth.affine, grid.affine)  # the same 6 mm MNI grid
    rows = [k for k, name in enumerate(truth.effect_table["network"]) if name == network]
    change = grid.from_img_data(np.abs(truth.effects[..., rows]).sum(axis=-1))
    inside = change >= 0.25 * change.max()
    path = (
        out / f"explanations/network-{network}/method-saliency_target-predicted_desc-meanall"
        "_relevance.nii.gz"
    )
    relevance = grid.from_img_data(np.asarray(nib.load(path).dataobj))
    return float(relevance[inside].mean() / relevance[~inside].mean())


@needs_reference
@pytest.mark.filterwarnings("ignore:visual. chose component:UserWarning")
def test_real_templates_choose_the_same_networks_as_the_builtin_ones(planted_run, planted):
    # Group ICA of the simulated cohort, labelled by the built-in templates
    # (summary.json), then by Yeo 2011 (7 and 17 networks) and Shirer 2012.
    # Yeo 17 splits vision into VisualA / VisualB, and the simulated visual
    # network spans both: it warns that the chosen component matches VisualB
    # better (filtered above); the choice must still be the same component.
    _, out = planted_run
    grid = Grid.from_img(out / "group" / "desc-brain_mask.nii.gz")
    components = grid.from_img_data(
        np.asarray(nib.load(out / "group" / "desc-ica_components.nii.gz").dataobj)
    )
    builtin = {network: planted["networks"][network]["component"] for network in NETWORKS}
    for name, templates in [
        ("yeo7", yeo_templates(grid, 7)),
        ("yeo17", yeo_templates(grid, 17)),
        ("shirer14", shirer_templates(grid)),
    ]:
        labels = label_components(components, templates)
        assert labels.selected == builtin, name
        assert min(labels.selected_r.values()) > 0.15, (name, labels.selected_r)


def test_default_cnn_saliency_favours_the_planted_region(planted_run, planted_cnn):
    # Group saliency map (mean over all held-out subjects of the normalised
    # maps, each from its own fold's CNN): relevance per voxel inside the
    # planted effect (>= 1/4 of its peak change) over that outside.
    # Cohort seeds 5 (this one), 6 and 7 gave SMN / VN ratios of 2.7 / 4.0,
    # 1.7 / 2.2 and 2.1 / 4.1.
    for network in NETWORKS:
        ratio = _saliency_inside_outside(*planted_run, network)
        assert ratio > 1.2, (network, ratio)
