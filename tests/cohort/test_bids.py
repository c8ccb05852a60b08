"""BIDS file-name parsing and the indexing of fMRIPrep derivatives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsxai.cohort import Cohort
from rsxai.cohort.bids import (
    BoldSeries,
    SeriesFilter,
    index_derivatives,
    parse_bids_name,
    read_sidecar_tr,
)
from rsxai.exceptions import InputError
from tests.fixtures.fmriprep import default_groups, make_fmriprep_tree


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "sub-01_ses-2_task-rest_acq-mb_run-1_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz",
            (
                {
                    "sub": "01",
                    "ses": "2",
                    "task": "rest",
                    "acq": "mb",
                    "run": "1",
                    "space": "MNI152NLin2009cAsym",
                    "res": "2",
                    "desc": "preproc",
                },
                "bold",
                ".nii.gz",
            ),
        ),
        (
            "sub-A1_task-rest_desc-confounds_timeseries.tsv",
            ({"sub": "A1", "task": "rest", "desc": "confounds"}, "timeseries", ".tsv"),
        ),
        ("sub-01_task-rest_bold.nii", ({"sub": "01", "task": "rest"}, "bold", ".nii")),
        ("sub-01_task-rest_space-fsLR_den-91k_bold.dtseries.nii", None),  # CIFTI
        ("sub-01_task-rest_hemi-L_space-fsaverage5_bold.func.gii", None),
        ("sub-01.html", None),
        ("task-rest_bold.json", None),  # no subject entity
        ("sub-01_task-rest_task-rest_bold.nii.gz", None),  # repeated entity
        ("sub-01_taskrest_bold.nii.gz", None),  # not key-value
        ("sub-01_task-_bold.nii.gz", None),
        ("bold.nii.gz", None),
    ],
)
def test_parse_bids_name(name, expected):
    assert parse_bids_name(name) == expected


def _series(**entities):
    pairs = tuple(entities.items())
    return BoldSeries(bold=Path("x_bold.nii.gz"), entities=pairs)


def test_series_filter():
    series = _series(sub="01", ses="1", task="rest", run="02", space="MNI152NLin6Asym", res="2")
    assert SeriesFilter(space="MNI152NLin6Asym").matches(series)
    assert SeriesFilter(space="MNI152NLin6Asym:res-2", run=2, session="ses-1").matches(series)
    assert SeriesFilter(task="task-rest", space="MNI152NLin6Asym:2").matches(series)
    assert not SeriesFilter().matches(series)  # default space is MNI152NLin2009cAsym
    assert not SeriesFilter(space="MNI152NLin6Asym:res-1").matches(series)
    assert not SeriesFilter(space="MNI152NLin6Asym", run=3).matches(series)
    assert not SeriesFilter(space=None, task="motor").matches(series)
    assert SeriesFilter(space=None, task=None).matches(series)
    no_run = _series(sub="01", task="rest", space="MNI152NLin6Asym")
    assert not SeriesFilter(space="MNI152NLin6Asym", run=1).matches(no_run)
    assert SeriesFilter(space="X:res-2", session="1").describe() == "task-rest space-X res-2 ses-1"


def test_index_derivatives_ignores_everything_else(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", default_groups(1), sessions=("1", None))
    (tree.derivatives / "sub-01" / "func" / "notes.txt").write_text("x")
    (tree.derivatives / "logs").mkdir()
    index = index_derivatives(tree.derivatives)
    assert sorted(index) == ["01", "02"]
    series = index["01"]
    # task-rest MNI (no session, then ses-1), task-motor MNI and task-rest T1w are preproc BOLD.
    names = [s.bold.name for s in series]
    assert names == [
        "sub-01_task-motor_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz",
        "sub-01_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz",
        "sub-01_task-rest_space-T1w_desc-preproc_bold.nii.gz",
        "sub-01_ses-1_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz",
    ]
    rest = series[1]
    assert rest.mask == tree.mask("01") and rest.confounds == tree.confounds("01")
    assert rest.sidecar == tree.sidecar("01")
    assert series[3].mask == tree.mask("01", "1") and series[3].confounds == tree.confounds(
        "01", "1"
    )
    # The T1w series shares the confounds of its acquisition but has no mask of its own here.
    assert series[2].mask is None and series[2].confounds == tree.confounds("01")


def test_read_sidecar_tr(tmp_path):
    path = tmp_path / "bold.json"
    path.write_text(json.dumps({"RepetitionTime": 0.8}))
    assert read_sidecar_tr(path) == (0.8, None)
    path.write_text(json.dumps({"TaskName": "rest"}))
    assert read_sidecar_tr(path) == (None, None)
    path.write_text(json.dumps({"RepetitionTime": 2000}))
    tr, problem = read_sidecar_tr(path)
    assert tr is None and "RepetitionTime is 2000; it must be the TR in seconds" in problem
    path.write_text("{not json")
    tr, problem = read_sidecar_tr(path)
    assert tr is None and problem.startswith(f"{path}: cannot read this JSON sidecar")
    # Found by fuzzing: JSON nested past Python's recursion limit raised RecursionError.
    path.write_text("[" * 100_000)
    tr, problem = read_sidecar_tr(path)
    assert tr is None and problem.startswith(f"{path}: cannot read this JSON sidecar (maximum")
    path.write_text(json.dumps({"RepetitionTime": float("nan")}))  # json writes NaN
    tr, problem = read_sidecar_tr(path)
    assert tr is None and "RepetitionTime is nan; it must be the TR in seconds" in problem


def test_bad_sidecar_is_reported_by_from_bids(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", default_groups(2), extras=False)
    tree.sidecar("03").write_text(json.dumps({"RepetitionTime": "2s"}))
    with pytest.raises(InputError) as error:
        Cohort.from_bids(tree.root)
    assert error.value.problems == [
        f"{tree.sidecar('03')}: RepetitionTime is '2s'; it must be the TR in seconds (e.g. 2.0). "
        "Correct the sidecar."
    ]


def test_unsafe_subject_folder_with_bold_is_an_error(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", default_groups(2), extras=False)
    folder = tree.derivatives / "sub-0 1"
    (folder / "func").mkdir(parents=True)
    name = "sub-0 1_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
    (folder / "func" / name).write_bytes(tree.bold("01").read_bytes())
    with pytest.raises(InputError, match="'0 1' is not a BIDS subject label"):
        Cohort.from_bids(tree.root)
    # Without a matching BOLD series, a stray folder is not a subject and is ignored.
    (folder / "func" / name).unlink()
    assert Cohort.from_bids(tree.root).n_subjects == 4
