"""Building a Cohort from BIDS / fMRIPrep derivatives and from manifests."""

from __future__ import annotations

import json
import shutil
import time
import warnings

import numpy as np
import pandas as pd
import pytest

from rsxai.cohort import Cohort, Run, Subject
from rsxai.exceptions import InputError
from tests.fixtures.fmriprep import (
    SPACE,
    default_groups,
    make_empty_tree,
    make_fmriprep_tree,
    write_bold,
    write_confounds,
    write_mask,
    write_participants,
)


def test_from_bids_reads_fmriprep_tree(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds")
    cohort = Cohort.from_bids(tree.root)
    assert cohort.labels == [f"{i:02d}" for i in range(1, 11)]
    assert cohort.groups == ["ALS"] * 5 + ["HC"] * 5
    # HC is a usual control name, so the other group is the positive one.
    assert cohort.positive_label == "ALS" and cohort.negative_label == "HC"
    np.testing.assert_array_equal(cohort.y, [1] * 5 + [0] * 5)
    assert cohort.group_counts == {"ALS": 5, "HC": 5}
    assert cohort.warnings == [] and cohort.excluded == []
    run = cohort.subjects[2].runs[0]
    assert run == Run(
        bold=tree.bold("03"),
        mask=tree.mask("03"),
        confounds=tree.confounds("03"),
        tr=2.0,
        n_volumes=None,
    )
    assert len(cohort.subjects[0].runs) == 1
    covariates = cohort.covariates
    assert list(covariates.index) == cohort.labels
    assert covariates["age"].dtype == np.float64
    assert covariates["age"].tolist() == [40.0 + i for i in range(10)]
    assert isinstance(covariates["sex"].dtype, pd.CategoricalDtype)
    assert covariates.loc["02", "sex"] == "F"
    assert cohort.summary() == {
        "n": 10,
        "groups": {"ALS": 5, "HC": 5},
        "positive_label": "ALS",
        "negative_label": "HC",
        "excluded": [],
    }


def test_simulated_cohort_is_read_without_warning(tmp_path):
    from rsxai.simulate import simulate_cohort

    simulated = simulate_cohort(
        tmp_path / "sim", n_patients=3, n_controls=3, n_volumes=30, voxel_size=10, progress=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cohort = Cohort.from_path(simulated.bids_root).validate(min_volumes=20, min_per_group=3)
    assert cohort.warnings == []
    assert cohort.labels == list(simulated.subjects)
    assert cohort.groups == list(simulated.groups)
    assert cohort.tr == pytest.approx(2.0)
    assert "ground_truth" not in " ".join(str(r.bold) for s in cohort for r in s.runs)


@pytest.mark.parametrize("where", ["derivatives_root", "fmriprep_root", "explicit"])
def test_derivatives_folder_given_directly(tmp_path, where):
    tree = make_fmriprep_tree(tmp_path / "ds", extras=False)
    if where == "derivatives_root":
        cohort = Cohort.from_bids(tree.root / "derivatives")
    elif where == "fmriprep_root":
        cohort = Cohort.from_bids(tree.derivatives)
    else:
        moved = tmp_path / "elsewhere" / "fmriprep_out"
        shutil.move(tree.derivatives, moved)
        cohort = Cohort.from_bids(tree.root, derivatives=moved)
        assert cohort.subjects[0].runs[0].bold.is_relative_to(moved)
    assert cohort.n_subjects == 10


def test_participants_tsv_in_derivatives_and_labels_without_prefix(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", participants_in="derivatives", extras=False)
    text = tree.participants.read_text().replace("sub-", "")
    tree.participants.write_text(text)
    cohort = Cohort.from_bids(tree.root)
    assert cohort.labels[:2] == ["01", "02"] and cohort.positive_label == "ALS"


def test_positive_label_cannot_be_guessed(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", {"01": "ALS", "02": "PLS"}, extras=False)
    with pytest.raises(InputError) as error:
        Cohort.from_bids(tree.root)
    message = str(error.value)
    assert "--positive-label" in message and "'ALS' (1)" in message and "'PLS' (1)" in message
    cohort = Cohort.from_bids(tree.root, positive_label="PLS")
    assert cohort.positive_label == "PLS" and cohort.negative_label == "ALS"
    np.testing.assert_array_equal(cohort.y, [0, 1])


def test_positive_label_not_a_group(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", extras=False)
    with pytest.raises(InputError, match=r"positive_label: 'als' is not a value .*'ALS' \(5\)"):
        Cohort.from_bids(tree.root, positive_label="als")


def test_third_group_is_reported_per_subject(tmp_path):
    groups = {"01": "ALS", "02": "ALS", "03": "HC", "04": "PLS"}
    tree = make_fmriprep_tree(tmp_path / "ds", groups, extras=False)
    with pytest.raises(InputError) as error:
        Cohort.from_bids(tree.root, positive_label="ALS")
    assert len(error.value.problems) == 1
    assert "sub-04: group 'PLS'" in error.value.problems[0]
    assert "--exclude-label 04" in error.value.problems[0]
    cohort = Cohort.from_bids(tree.root, positive_label="ALS", exclude_label="sub-04")
    assert cohort.labels == ["01", "02", "03"]
    assert cohort.excluded == [("04", "left out by exclude_label")]


def test_sessions_and_runs(tmp_path):
    tree = make_fmriprep_tree(
        tmp_path / "ds", default_groups(2), sessions=("2", "1"), runs=("10", "2"), extras=False
    )
    first = Cohort.from_bids(tree.root)
    assert [(r.session, r.run) for r in first.subjects[0].runs] == [("1", "2")]
    assert len(first.warnings) == 1 and "multi_run='first'" in first.warnings[0]
    assert "4 subject(s)" in first.warnings[0]
    every = Cohort.from_bids(tree.root, multi_run="concatenate")
    # Sorted by session, then run number (2 before 10).
    assert [(r.session, r.run) for r in every.subjects[0].runs] == [
        ("1", "2"),
        ("1", "10"),
        ("2", "2"),
        ("2", "10"),
    ]
    assert every.subjects[0].runs[1].bold == tree.bold("01", "1", "10")
    assert every.subjects[0].runs[1].confounds == tree.confounds("01", "1", "10")
    assert every.warnings == []
    chosen = Cohort.from_bids(tree.root, session="ses-2", run=10)
    assert [(r.session, r.run) for r in chosen.subjects[3].runs] == [("2", "10")]
    assert chosen.warnings == []
    with pytest.raises(InputError, match="multi_run must be one of first, concatenate"):
        Cohort.from_bids(tree.root, multi_run="all")


def test_resolutions_must_be_chosen(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", default_groups(2), res="2", extras=False)
    for label in tree.participants.read_text().split("sub-")[1:]:
        label = label.split("\t")[0]
        for path in (tree.bold(label), tree.mask(label), tree.sidecar(label)):
            shutil.copy(path, str(path).replace("res-2", "res-1"))
    with pytest.raises(InputError) as error:
        Cohort.from_bids(tree.root)
    assert len(error.value.problems) == 4
    assert "space='MNI152NLin2009cAsym:res-1' (--space)" in error.value.problems[0]
    cohort = Cohort.from_bids(tree.root, space=f"{SPACE}:res-1")
    run = cohort.subjects[0].runs[0]
    assert "res-1" in run.bold.name and "res-1" in run.mask.name
    assert run.confounds == tree.confounds("01")


def test_older_fmriprep_confounds_name(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", default_groups(2), extras=False)
    old = tree.confounds("01").with_name("sub-01_task-rest_desc-confounds_regressors.tsv")
    tree.confounds("01").rename(old)
    cohort = Cohort.from_bids(tree.root)
    assert cohort.subjects[0].runs[0].confounds == old


def test_participant_without_bold_is_excluded_with_a_warning(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", extras=False)
    shutil.rmtree(tree.derivatives / "sub-03")
    tree.bold("05").rename(str(tree.bold("05")).replace("task-rest", "task-motor"))
    cohort = Cohort.from_bids(tree.root)
    assert "03" not in cohort.labels and "05" not in cohort.labels
    reasons = dict(cohort.excluded)
    assert reasons["03"] == f"no sub-03 folder in {tree.derivatives}"
    assert "no preprocessed BOLD matching task-rest" in reasons["05"]
    assert "task-motor" in reasons["05"]
    assert len(cohort.warnings) == 1
    assert "sub-03" in cohort.warnings[0] and "sub-05" in cohort.warnings[0]
    assert cohort.summary()["excluded"][0] == {"label": "03", "reason": reasons["03"]}
    with pytest.raises(InputError, match="sub-03 was asked for but has no sub-03 folder"):
        Cohort.from_bids(tree.root, participant_label=["01", "03", "06"])


def test_bold_without_participant_row_or_group(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", extras=False)
    lines = tree.participants.read_text().splitlines()
    lines = [line for line in lines if not line.startswith("sub-02\t")]
    lines = [line.replace("sub-07\tHC", "sub-07\tn/a") for line in lines]
    tree.participants.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as error:
        Cohort.from_bids(tree.root)
    problems = error.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("sub-02: BOLD series found") and "no row in" in problems[0]
    assert problems[1].startswith("sub-07: no value in column 'group'")


def test_participant_label_and_exclude_label(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", extras=False)
    cohort = Cohort.from_bids(
        tree.root, participant_label=["sub-01", "02", "06", "07"], exclude_label="sub-07"
    )
    assert cohort.labels == ["01", "02", "06"]
    assert cohort.excluded == [("07", "left out by exclude_label")]
    with pytest.raises(InputError) as error:
        Cohort.from_bids(tree.root, participant_label=["01", "99"], exclude_label=["42"])
    assert any("participant_label: sub-99 is neither in" in p for p in error.value.problems)
    assert any("exclude_label: sub-42 is neither in" in p for p in error.value.problems)


@pytest.mark.parametrize("label", ["../01", "01_a", "sub-0 1", "a-b", ".."])
def test_unsafe_participant_label_is_rejected(tmp_path, label):
    tree = make_fmriprep_tree(tmp_path / "ds", extras=False)
    with pytest.raises(InputError, match="is not a BIDS label"):
        Cohort.from_bids(tree.root, participant_label=[label])


def test_unsafe_and_duplicate_ids_in_participants_tsv(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", extras=False)
    with open(tree.participants, "a") as stream:
        stream.write("sub-03\tHC\t50\tM\nsub-../x\tHC\t50\tM\n")
    with pytest.raises(InputError) as error:
        Cohort.from_bids(tree.root)
    problems = error.value.problems
    assert "line 12: subject sub-03 already appears on line 4" in problems[0]
    assert "line 13: subject label '../x' is not a BIDS label" in problems[1]


def test_covariates_with_missing_values(tmp_path):
    groups = default_groups(3)
    covariates = {
        label: {"age": 30 + i, "site": "A", "iq": "n/a"} for i, label in enumerate(groups)
    }
    covariates["02"]["age"] = "n/a"
    covariates["05"]["site"] = ""
    covariates["04"]["iq"] = "110"
    covariates["06"]["iq"] = "unknown"
    tree = make_fmriprep_tree(tmp_path / "ds", groups, covariates=covariates, extras=False)
    cohort = Cohort.from_bids(tree.root)
    frame = cohort.covariates
    assert frame["age"].dtype == np.float64 and np.isnan(frame.loc["02", "age"])
    assert frame.loc["03", "age"] == 32.0
    assert frame["site"].isna().tolist() == [False] * 4 + [True, False]
    assert frame.loc["06", "iq"] == "unknown"
    text = "\n".join(cohort.warnings)
    assert "column 'age' has no value (n/a or empty) for 1 subject(s): sub-02" in text
    assert "column 'site' has no value (n/a or empty) for 1 subject(s): sub-05" in text
    assert "column 'iq' mixes numbers and text (sub-06: 'unknown')" in text
    assert cohort.subjects[1].covariates["age"] != cohort.subjects[1].covariates["age"]  # NaN


def test_missing_confounds_for_some_runs_is_an_error(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", extras=False)
    tree.confounds("04").unlink()
    with pytest.raises(InputError, match=r"sub-04: no confounds file for .*while other runs"):
        Cohort.from_bids(tree.root)
    for label in [f"{i:02d}" for i in range(1, 11) if i != 4]:
        tree.confounds(label).unlink()
    cohort = Cohort.from_bids(tree.root)
    assert cohort.warnings == [
        f"{tree.derivatives}: no confounds file for any run; no confound regression will be done."
    ]
    assert all(run.confounds is None for subject in cohort for run in subject.runs)


def test_missing_mask_for_some_runs_is_a_warning(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", extras=False)
    tree.mask("02").unlink()
    cohort = Cohort.from_bids(tree.root)
    assert cohort.subjects[1].runs[0].mask is None and cohort.subjects[0].runs[0].mask
    assert cohort.warnings == [
        f"{tree.derivatives}: no brain mask for 1 of 10 runs (sub-02); the common brain mask is "
        "made from the other runs' masks."
    ]


def test_nothing_matching_names_what_was_found(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", default_groups(2))
    with pytest.raises(InputError) as error:
        Cohort.from_bids(tree.root, task="motr")
    message = str(error.value)
    assert "matching task-motr space-MNI152NLin2009cAsym" in message
    assert "task-rest space-MNI152NLin2009cAsym (4)" in message
    assert "task-motor space-MNI152NLin2009cAsym (4)" in message
    tree.participants.unlink()
    with pytest.raises(InputError, match=r"no participants\.tsv at the BIDS root"):
        Cohort.from_bids(tree.root)


def test_missing_root_or_subject_folders(tmp_path):
    with pytest.raises(InputError, match="is not a folder"):
        Cohort.from_bids(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no sub-\\* folders"):
        Cohort.from_bids(tmp_path / "empty")


def _write_manifest(tmp_path, delimiter=",", name="manifest.csv", n_per_group=3):
    rows = []
    for index, (label, group) in enumerate(default_groups(n_per_group).items()):
        folder = tmp_path / "data" / label
        write_bold(folder / "bold.nii.gz", seed=index)
        write_mask(folder / "mask.nii.gz")
        write_confounds(folder / "confounds.tsv", 20)
        rows.append(
            {
                "subject": label,
                "bold": f"data/{label}/bold.nii.gz",
                "group": "patient" if group == "ALS" else "control",
                "confounds": f"data/{label}/confounds.tsv",
                "mask": str(folder / "mask.nii.gz"),
                "tr": "2.0",
                "age": str(50 + index),
            }
        )
    lines = [delimiter.join(rows[0])] + [delimiter.join(row.values()) for row in rows]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("delimiter", "name"), [(",", "manifest.csv"), ("\t", "m.tsv"), (";", "m.txt")]
)
def test_from_manifest(tmp_path, delimiter, name):
    path = _write_manifest(tmp_path, delimiter, name)
    cohort = Cohort.from_path(path)
    assert cohort.labels == ["01", "02", "03", "04", "05", "06"]
    assert cohort.positive_label == "patient" and cohort.negative_label == "control"
    run = cohort.subjects[0].runs[0]
    assert run.bold == tmp_path / "data" / "01" / "bold.nii.gz"
    assert run.confounds == tmp_path / "data" / "01" / "confounds.tsv"
    assert run.tr == 2.0 and run.session is None
    assert cohort.covariates["age"].tolist() == [50.0, 51.0, 52.0, 53.0, 54.0, 55.0]
    validated = cohort.validate(min_volumes=10, min_per_group=3)
    assert validated.tr == 2.0 and validated.subjects[0].runs[0].n_volumes == 20


def test_manifest_problems_are_all_reported(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(
        "subject,bold,group,tr\n01,a.nii.gz,ALS,2\n01,b.nii.gz,HC,2\n02,,HC,2\n03,c.nii.gz,HC,x\n"
    )
    with pytest.raises(InputError) as error:
        Cohort.from_manifest(path)
    problems = error.value.problems
    # The three bad rows, and the one row left cannot make two groups.
    assert len(problems) == 4
    assert "line 3: subject sub-01 already appears on line 2" in problems[0]
    assert "line 4: sub-02 has no bold path" in problems[1]
    assert "line 5: tr 'x' is not a TR in seconds" in problems[2]
    assert "groups found: 'ALS' (1)" in problems[3]
    path.write_text("subject,group\n01,ALS\n")
    with pytest.raises(InputError, match="no column 'bold'"):
        Cohort.from_manifest(path)


def test_manifest_tr_from_sidecar(tmp_path):
    path = _write_manifest(tmp_path)
    path.write_text(path.read_text().replace(",2.0,", ",,"))
    (tmp_path / "data" / "01" / "bold.json").write_text(json.dumps({"RepetitionTime": 2.5}))
    cohort = Cohort.from_manifest(path, positive_label="patient")
    assert cohort.subjects[0].runs[0].tr == 2.5 and cohort.subjects[1].runs[0].tr is None


def test_from_path_dispatch_and_bids_only_options(tmp_path):
    path = _write_manifest(tmp_path)
    # The defaults of BIDS-only options are accepted with a manifest (one set of options).
    cohort = Cohort.from_path(path, task="rest", session=None, derivatives=None)
    assert cohort.n_subjects == 6
    with pytest.raises(InputError, match="options task='motor' apply to BIDS folders only"):
        Cohort.from_path(path, task="motor")
    with pytest.raises(InputError, match="does not exist"):
        Cohort.from_path(tmp_path / "missing.tsv")
    tree = make_fmriprep_tree(tmp_path / "ds", default_groups(2), extras=False)
    assert Cohort.from_path(tree.root, positive_label="ALS").n_subjects == 4


def test_cohort_built_by_hand():
    runs = (Run("a.nii.gz", None, None, None, None),)
    cohort = Cohort(
        [Subject("01", "PD", runs, {"age": 3}), Subject("02", "HC", runs, {"age": 4.5})],
        positive_label="PD",
    )
    assert cohort.labels == ["01", "02"] and cohort.negative_label == "HC"
    assert cohort.covariates["age"].tolist() == [3.0, 4.5]
    assert isinstance(cohort.subjects[0].runs[0].bold, type(cohort.subjects[0].runs[0].bold))
    with pytest.raises(ValueError, match="call validate"):
        _ = cohort.tr
    one_group = Cohort([Subject("01", "PD", runs)], positive_label="PD")
    with pytest.raises(ValueError, match="no single control group"):
        _ = one_group.negative_label
    assert one_group.summary()["negative_label"] is None


def test_discovery_of_2000_subjects_is_fast(tmp_path):
    make_empty_tree(tmp_path / "big", 2000)
    start = time.perf_counter()
    cohort = Cohort.from_bids(tmp_path / "big")
    elapsed = time.perf_counter() - start
    assert cohort.n_subjects == 2000 and cohort.group_counts == {"ALS": 1000, "HC": 1000}
    assert cohort.subjects[-1].runs[0].mask.name.endswith("desc-brain_mask.nii.gz")
    assert elapsed < 5.0, f"indexing 2,000 subjects took {elapsed:.2f} s"


def test_participants_written_by_helper_round_trip(tmp_path):
    # The fixture's writer and the reader agree on an odd but valid table.
    rows = [
        {"participant_id": "sub-A1", "group": "NA", "x": "n/a"},
        {"participant_id": "B2", "group": "hc", "x": "1"},
    ]
    path = write_participants(tmp_path / "ds" / "participants.tsv", rows)
    from rsxai.cohort.participants import read_participants

    table, columns, problems = read_participants(path)
    assert problems == [] and columns == ["x"]
    assert table["A1"].group == "NA" and table["A1"].values == {"x": None}
    assert table["B2"].group == "hc" and table["B2"].values == {"x": "1"}


# Regressions found by fuzzing (tests/test_input_fuzz.py): each once crashed or misled.
def test_trailing_tabs_in_participants_tsv_do_not_shift_columns(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", default_groups(2), extras=False)
    expected = Cohort.from_bids(tree.root)
    lines = tree.participants.read_text().splitlines()
    # On the rows only, pandas read 'ALS' as participant_id (the labels as an index).
    tree.participants.write_text("\n".join([lines[0], *(f"{line}\t" for line in lines[1:])]))
    cohort = Cohort.from_bids(tree.root)
    assert cohort.labels == expected.labels and cohort.groups == expected.groups
    # On every line, the nameless empty column is no covariate.
    tree.participants.write_text("".join(f"{line}\t\n" for line in lines))
    assert list(Cohort.from_bids(tree.root).covariates.columns) == ["age", "sex"]


def test_participants_tsv_layout_problems(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", default_groups(2), extras=False)
    lines = tree.participants.read_text().splitlines()
    tree.participants.write_text("\n".join([lines[0], lines[1] + "\t1.80", *lines[2:]]))
    with pytest.raises(InputError) as error:
        Cohort.from_bids(tree.root)
    assert error.value.problems == [
        f"{tree.participants} line(s) 2: more values than the header has columns (4). Check "
        "the delimiter ('\\t') and quoting, or name the extra columns in the header."
    ]
    tree.participants.write_text(
        "\n".join([lines[0] + "\tgroup", *(f"{r}\tx" for r in lines[1:])])
    )
    with pytest.raises(InputError, match=r"column\(s\) 'group' appear more than once"):
        Cohort.from_bids(tree.root)


def test_manifest_path_that_cannot_be_used(tmp_path):
    # A name longer than the file system allows raised OSError from Path.is_file().
    path = _write_manifest(tmp_path, "\t", "m.tsv")
    long_name = "x" * 3000
    path.write_text(path.read_text().replace("data/01/bold.nii.gz", long_name, 1))
    with pytest.raises(InputError) as error:
        Cohort.from_manifest(path)
    assert error.value.problems[0] == (
        f"{path} line 2: the bold path '{'x' * 57}...' cannot be used (File name too long). "
        "Correct the cell."
    )
    # A quote left open makes a cell of several lines, which would split the message.
    path.write_text('subject\tbold\tgroup\n01\t"a.nii\tALS\n02\t"b.nii\tHC\n')
    with pytest.raises(InputError) as error:
        Cohort.from_manifest(path)
    assert error.value.problems == [
        f"{path} line 2: the bold path 'a.nii\\tALS\\n02\\tb.nii' cannot be used (it holds a "
        "line break or another control character). Correct the cell."
    ]
