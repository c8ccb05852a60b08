"""What the classify stage's outputs claim: the scope of the features and what the headline is.

Imported group maps serve every fold as they are, so a fold-scope run with
them is reported as "external maps" (possibly transductive), with one
warning; the fold-scope description says what every subject's data touched
(the common mask, the CNN's crop box) and that training subjects are
projected on maps they shaped; with repeated cross-validation the headline
metrics are those of the first repeat, the quantity the permutation p is of.
The cohorts are small and random (8 mm MNI grid, or 80-voxel maps): nothing
here is about accuracy.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from rsxai.cohort import Cohort, Subject
from rsxai.config import resolve_config
from rsxai.grid import Grid
from rsxai.outputs import Summary, output_path, read_json, write_nifti
from rsxai.stages import RunContext, classify_maps, run_classify, write_classification
from rsxai.stages import classify as classify_stage
from rsxai.stages.classify import FixedMaps

N_SUBJECTS = 12
N_VOLUMES = 30
N_MAPS = 5


# Random maps match no template well: the labelling says so, which is not under test.
@pytest.mark.filterwarnings("ignore:.*matches .* better:UserWarning")
def test_imported_group_maps_in_fold_scope_are_reported_as_external(tmp_path, monkeypatch, caplog):
    grid = Grid.mni(8)
    rng = np.random.default_rng(0)
    maps_path = tmp_path / "melodic_IC.nii.gz"
    write_nifti(maps_path, grid.to_img(rng.standard_normal((N_MAPS, grid.n_voxels))))
    out = tmp_path / "out"
    write_nifti(output_path(out, "mask"), grid.mask_img())
    config = resolve_config(
        overrides={
            "ica.group_maps": str(maps_path),
            "networks.min_r": -1.0,
            "classify.models": ["logistic"],
            "classify.cv_folds": 3,
            "classify.baseline_permutations": 0,
        }
    )
    assert config.classify.cv_scope == "fold"  # the default, asked for
    subjects = [Subject(f"{i:02d}", "ALS" if i % 2 else "HC", runs=()) for i in range(N_SUBJECTS)]
    context = RunContext(
        config, Cohort(subjects, positive_label="ALS"), out, Summary(out), progress=False
    )
    series = [
        rng.standard_normal((N_VOLUMES, grid.n_voxels)).astype(np.float32)
        for _ in range(N_SUBJECTS)
    ]
    monkeypatch.setattr(classify_stage, "preprocessed_subjects", lambda _: (grid, series))
    with caplog.at_level(logging.WARNING, logger="rsxai"):
        run_classify(context)
    cv = read_json(output_path(out, "summary"))["classification"]["cv"]
    # The same maps in every fold: not the fold scope, and not known to be leak-free.
    assert cv["cv_scope"] == "external maps"
    assert cv["transductive"] is None
    assert "POSSIBLY TRANSDUCTIVE" in cv["description"]
    assert "--group-maps" in cv["description"]
    for network in ("sensorimotor", "visual"):
        metrics = read_json(output_path(out, "cls_metrics", network=network, model="logistic"))
        assert metrics["cv"] == cv
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    about_maps = [message for message in warned if "ica.group_maps" in message]
    assert len(about_maps) == 1, warned
    assert str(maps_path) in about_maps[0] and "external maps" in about_maps[0]


def _written(tmp_path, *, scope: str, n_repeats: int = 1, n_permutations: int = 0, seed=0):
    """Two weak networks of 24 subjects, classified and written: the folder, summary entry."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], 12)
    maps = rng.normal(size=(y.size, 2, 80))
    maps[:, :, :10] += 0.5 * y[:, None, None]
    config = resolve_config(
        overrides={
            "classify.models": ["logistic"],
            "classify.cv_folds": 4,
            "classify.cv_repeats": n_repeats,
            "classify.baseline_permutations": n_permutations,
            "run.random_seed": 3,
        }
    )
    labels = [f"{i:02d}" for i in range(y.size)]
    cohort = SimpleNamespace(
        y=y,
        subjects=[SimpleNamespace(label=label) for label in labels],
        groups=np.where(y == 1, "ALS", "HC").tolist(),
    )
    grid = Grid(np.ones((4, 4, 5), dtype=bool), np.eye(4))
    features = FixedMaps(maps, ["a", "b"])
    result = classify_maps(
        features, list(range(y.size)), y, labels, grid.mask, config, cv_scope="cohort"
    )
    out = tmp_path / "out"
    return out, write_classification(out, config, cohort, grid, result, cv_scope=scope)[1]


def test_fold_scope_says_what_every_subject_touched(tmp_path):
    out, summary = _written(tmp_path, scope="fold")
    cv = summary["cv"]
    assert read_json(output_path(out, "cls_metrics", network="a", model="logistic"))["cv"] == cv
    description = cv["description"]
    assert cv["transductive"] is False
    # The label-free parts every subject shaped, held-out ones included.
    assert "brain mask" in description and "crop box" in description
    assert "every subject's brain mask, held-out subjects included" in description
    # Training subjects are projected on maps they shaped, held-out ones are not.
    assert "pessimistic shift" in description
    cohort_description = _written(tmp_path / "c", scope="cohort")[1]["cv"]["description"]
    assert cohort_description.startswith("cohort (TRANSDUCTIVE)")
    assert "optimistic" in cohort_description and "pessimistic shift" in cohort_description


def test_repeated_cv_headline_and_its_p_are_of_the_first_repeat(tmp_path):
    out, summary = _written(tmp_path, scope="cohort", n_repeats=2, n_permutations=19)
    assert summary["cv"]["headline"].startswith("first repeat")
    told_apart = []
    for network in ("a", "b"):
        metrics = read_json(output_path(out, "cls_metrics", network=network, model="logistic"))
        table = pd.read_csv(
            output_path(out, "cls_predictions", network=network, model="logistic"),
            sep="\t",
            dtype={"subject": str},
        )
        correct = table.assign(right=table["y_pred"] == table["y_true"])
        per_repeat = correct.groupby("repeat")["right"].mean()
        # The old headline, a majority vote over repeats (ties to the mean probability).
        by_subject = table.groupby("subject")
        votes = by_subject["y_pred"].mean()
        vote = np.where(votes == 0.5, by_subject["probability"].mean() >= 0.5, votes > 0.5)
        voted = float(np.mean(vote == by_subject["y_true"].first()))
        told_apart.append(
            per_repeat[0] != pytest.approx(voted)
            and per_repeat[0] != pytest.approx(per_repeat.mean())
        )
        headline = metrics["accuracy"]["value"]
        assert headline == pytest.approx(per_repeat[0])
        assert metrics["accuracy"]["trials"] == 24  # one prediction per subject
        assert metrics["repeats"]["mean"]["accuracy"] == pytest.approx(per_repeat.mean())
        # The p beside it is of that very number.
        permutation = metrics["permutation"]
        assert permutation["observed_accuracy"] == pytest.approx(headline)
        assert "first cross-validation repeat" in permutation["of"]
        assert metrics["cv"]["headline"] == summary["cv"]["headline"]
        written = summary["networks"][network]["logistic"]
        assert written["accuracy"]["value"] == headline
        assert written["permutation_p_value"] == permutation["p_value"]
    # In one network at least the first repeat, the mean and the vote differ: only the
    # first repeat passes there.
    assert any(told_apart)
