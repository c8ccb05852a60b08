"""The methods text gives each model's own number of label permutations."""

from __future__ import annotations

import re
import shutil

from rsxai.outputs import output_path, read_json, write_json
from rsxai.report import ReportFolder
from rsxai.report.classification import classification_section
from rsxai.report.methods import methods_section
from tests.fixtures.report import make_fabricated_output


def test_models_with_their_own_permutation_counts_are_stated_apart(tmp_path):
    out = make_fabricated_output(tmp_path / "out")
    svm = output_path(out, "cls_metrics", network="visual", model="svm")
    metrics = read_json(svm)
    metrics["permutation"] = {"p_value": 0.002, "n_permutations": 500}
    write_json(svm, metrics)
    # A third baseline, the screened one, with fewer permutations (it refits every fold).
    for kind in ("cls_metrics", "cls_predictions", "cls_folds"):
        shutil.copy(
            output_path(out, kind, network="visual", model="svm"),
            output_path(out, kind, network="visual", model="screened"),
        )
    screened = output_path(out, "cls_metrics", network="visual", model="screened")
    metrics["permutation"] = {"p_value": 0.005, "n_permutations": 200}
    write_json(screened, metrics)
    folder = ReportFolder(out)
    text = re.sub(r"<[^>]+>", "", methods_section(folder))
    assert (
        "classified by cnn, screened, svm under" in text
        and "for svm (500 permutations); screened (200 permutations); cnn (100 permutations)"
        in text
    )
    assert "averaged the voxels of largest and of smallest t into two features" in text
    # The classification section shows the screened baseline after the whole-brain ones.
    section = classification_section(folder)
    assert section.index(">svm<") < section.index(">screened<")
