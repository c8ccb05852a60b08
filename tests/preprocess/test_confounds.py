"""load_confounds against nilearn's fMRIPrep confound loaders on fMRIPrep-named fixtures."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from nilearn.interfaces.fmriprep import load_confounds as nilearn_load_confounds
from nilearn.interfaces.fmriprep import load_confounds_strategy

from rsxai.exceptions import InputError
from rsxai.preprocess import load_confounds
from rsxai.preprocess.confounds import MOTION_BASE, confound_columns

N_VOLUMES = 60
BOLD_NAME = "sub-01_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
TSV_NAME = "sub-01_task-rest_desc-confounds_timeseries.tsv"
NILEARN_MOTION = {"6": "basic", "12": "derivatives", "24": "full"}


def fmriprep_table(seed=0, n_volumes=N_VOLUMES, fd=None, non_steady=0, cosines=True):
    """A confounds table laid out as fMRIPrep writes it (derivatives n/a at volume 0)."""
    rng = np.random.default_rng(seed)
    table = {}
    for base in (*MOTION_BASE, "white_matter", "csf", "global_signal"):
        values = np.cumsum(rng.normal(0, 0.1, n_volumes)) + rng.normal(0, 5)
        derivative = np.concatenate(([np.nan], np.diff(values)))
        table[base] = values
        table[f"{base}_derivative1"] = derivative
        table[f"{base}_power2"] = values**2
        table[f"{base}_derivative1_power2"] = derivative**2
    table["framewise_displacement"] = (
        np.concatenate(([np.nan], rng.uniform(0.05, 0.3, n_volumes - 1))) if fd is None else fd
    )
    table["std_dvars"] = np.concatenate(([np.nan], rng.uniform(0.8, 1.2, n_volumes - 1)))
    table["a_comp_cor_00"] = rng.normal(size=n_volumes)
    if cosines:
        for k in range(3):
            table[f"cosine{k:02d}"] = np.cos(np.pi * (k + 1) * np.arange(n_volumes) / n_volumes)
    for k in range(non_steady):
        table[f"non_steady_state_outlier{k:02d}"] = np.eye(n_volumes)[k]
    return pd.DataFrame(table)


def write_run(folder, table):
    """fMRIPrep file names, so that nilearn finds the TSV next to the BOLD file."""
    (folder / BOLD_NAME).touch()
    table.to_csv(folder / TSV_NAME, sep="\t", index=False, na_rep="n/a")
    return folder / BOLD_NAME, folder / TSV_NAME


def nilearn_loaded(bold, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nilearn_load_confounds(str(bold), **kwargs)


def assert_same_confounds(ours, columns, reference):
    assert sorted(columns) == sorted(reference.columns)
    np.testing.assert_allclose(ours, reference[columns].to_numpy(), rtol=1e-10, atol=1e-12)


def test_defaults_equal_nilearn_simple_strategy(tmp_path):
    bold, tsv = write_run(tmp_path, fmriprep_table(cosines=False))
    ours, sample_mask = load_confounds(tsv)
    reference, reference_mask = load_confounds_strategy(str(bold), "simple")
    assert ours.dtype == np.float64 and ours.shape == (N_VOLUMES, 26)
    assert sample_mask is None and reference_mask is None
    assert_same_confounds(ours, confound_columns(), reference)


@pytest.mark.parametrize("motion", ["6", "12", "24", "none"])
@pytest.mark.parametrize("global_signal", [False, True])
@pytest.mark.parametrize("wm_csf", [False, True])
def test_columns_and_values_equal_nilearn(tmp_path, motion, global_signal, wm_csf):
    bold, tsv = write_run(tmp_path, fmriprep_table())
    strategy = (
        (("motion",) if motion != "none" else ())
        + (("wm_csf",) if wm_csf else ())
        + (("global_signal",) if global_signal else ())
    )
    ours, _ = load_confounds(tsv, motion=motion, wm_csf=wm_csf, global_signal=global_signal)
    columns = confound_columns(motion=motion, wm_csf=wm_csf, global_signal=global_signal)
    assert ours.shape == (N_VOLUMES, len(columns))
    if not strategy:
        assert ours.shape[1] == 0
        return
    reference, _ = nilearn_loaded(
        bold,
        strategy=strategy,
        motion=NILEARN_MOTION.get(motion, "full"),
        wm_csf="basic",
        global_signal="basic",
    )
    assert_same_confounds(ours, columns, reference)


def test_missing_expansions_are_computed_like_fmriprep(tmp_path):
    full = fmriprep_table()
    bold, _ = write_run(tmp_path, full)
    reference, _ = load_confounds_strategy(str(bold), "simple")  # cosines included: drop them
    old = full.drop(columns=[c for c in full.columns if "_derivative1" in c or "_power2" in c])
    old_tsv = tmp_path / "old_fmriprep_confounds.tsv"
    old.to_csv(old_tsv, sep="\t", index=False, na_rep="n/a")
    ours, _ = load_confounds(old_tsv)
    assert_same_confounds(
        ours, confound_columns(), reference.drop(columns=["cosine00", "cosine01", "cosine02"])
    )


def test_first_row_derivative_takes_the_second_row_value_as_nilearn(tmp_path):
    table = fmriprep_table()
    _, tsv = write_run(tmp_path, table)
    ours, _ = load_confounds(tsv, motion="12", wm_csf=False)
    columns = confound_columns(motion="12", wm_csf=False)
    j = columns.index("trans_x_derivative1")
    raw = table["trans_x_derivative1"].to_numpy()
    expected = np.concatenate(([raw[1]], raw[1:]))
    np.testing.assert_allclose(ours[:, j], expected - expected.mean())


def scrub_fd_trace():
    """FD with outliers that leave short segments at the start, middle and end."""
    fd = np.full(N_VOLUMES, 0.1)
    fd[0] = np.nan
    fd[[3, 20, 23, 40, 41, 57]] = 0.9
    return fd


@pytest.mark.parametrize("min_contiguous", [0, 3, 5])
def test_scrubbing_equals_nilearn(tmp_path, min_contiguous):
    bold, tsv = write_run(tmp_path, fmriprep_table(fd=scrub_fd_trace()))
    ours, sample_mask = load_confounds(tsv, scrub_fd=0.5, min_contiguous=min_contiguous)
    reference, reference_mask = nilearn_loaded(
        bold,
        strategy=("motion", "wm_csf", "scrub"),
        motion="full",
        wm_csf="basic",
        scrub=min_contiguous,
        fd_threshold=0.5,
        std_dvars_threshold=1e9,  # FD only
    )
    np.testing.assert_array_equal(sample_mask, reference_mask)
    assert_same_confounds(ours, confound_columns(), reference)
    censored = np.setdiff1d(np.arange(N_VOLUMES), sample_mask)
    # Ground truth of the segment rule, written out by hand.
    expected = {
        0: [3, 20, 23, 40, 41, 57],
        3: [3, 20, 21, 22, 23, 40, 41, 57, 58, 59],
        5: [0, 1, 2, 3, 20, 21, 22, 23, 40, 41, 57, 58, 59],
    }[min_contiguous]
    np.testing.assert_array_equal(censored, expected)


def test_no_outlier_means_no_sample_mask(tmp_path):
    _, tsv = write_run(tmp_path, fmriprep_table())
    _, sample_mask = load_confounds(tsv, scrub_fd=0.5)
    assert sample_mask is None


def test_non_steady_state_volumes_are_censored_as_in_nilearn(tmp_path):
    bold, tsv = write_run(tmp_path, fmriprep_table(non_steady=2, cosines=False))
    ours, sample_mask = load_confounds(tsv)
    reference, reference_mask = load_confounds_strategy(str(bold), "simple")
    np.testing.assert_array_equal(sample_mask, np.arange(2, N_VOLUMES))
    np.testing.assert_array_equal(sample_mask, reference_mask)
    assert_same_confounds(ours, confound_columns(), reference)


def test_missing_column_names_file_column_and_strategy(tmp_path):
    table = fmriprep_table().drop(columns=["white_matter", "trans_y", "framewise_displacement"])
    _, tsv = write_run(tmp_path, table)
    with pytest.raises(InputError) as caught:
        load_confounds(tsv, scrub_fd=0.5)
    # One line for the file; trans_y once, not once per derivative/square.
    assert caught.value.problems == [
        f"{tsv}: column(s) 'trans_y', 'white_matter', 'framewise_displacement' are missing; "
        "motion='24', wm_csf=True, scrub_fd=0.5 need(s) them. Choose a strategy without them "
        "or give the fMRIPrep confounds file that has them."
    ]
    # The same file is fine for a strategy that does not need those columns.
    confounds, _ = load_confounds(tsv, motion="none", wm_csf=False, global_signal=True)
    assert confounds.shape == (N_VOLUMES, 1)


@pytest.mark.parametrize("motion", ["36", "full", 24.5])
def test_unknown_motion_value(tmp_path, motion):
    _, tsv = write_run(tmp_path, fmriprep_table())
    with pytest.raises(
        InputError, match=rf"motion must be one of '24', '12', '6', 'none'; got {motion!r}"
    ):
        load_confounds(tsv, motion=motion)


def test_bad_scrub_options_and_data(tmp_path):
    table = fmriprep_table(fd=np.full(N_VOLUMES, 2.0))
    _, tsv = write_run(tmp_path, table)
    with pytest.raises(InputError, match=r"scrub_fd must be .*got -1"):
        load_confounds(tsv, scrub_fd=-1)
    with pytest.raises(InputError, match=r"min_contiguous must be .*got 2.5"):
        load_confounds(tsv, min_contiguous=2.5)
    with pytest.raises(InputError, match=r"every one of the 60 volumes is censored"):
        load_confounds(tsv, scrub_fd=0.5)
    table.loc[10, "csf"] = np.nan
    table.to_csv(tsv, sep="\t", index=False, na_rep="n/a")
    with pytest.raises(
        InputError,
        match=r"'csf' have missing \(n/a, NaN or empty\) or infinite values "
        r"at volume\(s\) \[10\]",
    ):
        load_confounds(tsv)
    with pytest.raises(InputError, match=r"confounds file does not exist"):
        load_confounds(tmp_path / "absent.tsv")


# Regressions found by fuzzing (tests/test_input_fuzz.py): each once crashed or misled.
def test_text_in_a_column_used_is_named(tmp_path):
    # Squaring or differencing text raised TypeError; text in FD raised ValueError.
    table = fmriprep_table().drop(columns=["trans_x_power2", "trans_x_derivative1"])
    table["trans_x"] = table["trans_x"].astype(object)
    table.loc[3, "trans_x"] = "1,5"
    table["framewise_displacement"] = table["framewise_displacement"].astype(object)
    table.loc[7, "framewise_displacement"] = "high"
    _, tsv = write_run(tmp_path, table)
    with pytest.raises(InputError) as caught:
        load_confounds(tsv, scrub_fd=0.5)
    assert caught.value.problems == [
        f"{tsv}: column(s) 'trans_x' ('1,5' at volume 3), 'framewise_displacement' ('high' at "
        "volume 7) hold text; they must hold numbers (or n/a). Give fMRIPrep's confounds TSV "
        "unchanged."
    ]


def test_infinite_values_are_refused(tmp_path):
    # An Inf turned the demeaned regressors into NaN without a word.
    table = fmriprep_table()
    table.loc[4, "csf"] = np.inf
    _, tsv = write_run(tmp_path, table)
    with pytest.raises(
        InputError,
        match=r"'csf' have missing \(n/a, NaN or empty\) or infinite values "
        r"at volume\(s\) \[4\]",
    ):
        load_confounds(tsv)


def test_trailing_tabs_do_not_shift_columns(tmp_path):
    # pandas took the first column of rows one field longer than the header as an index.
    _, tsv = write_run(tmp_path, fmriprep_table())
    expected, _ = load_confounds(tsv)
    lines = tsv.read_text().splitlines()
    tsv.write_text("\n".join([lines[0], *(line + "\t" for line in lines[1:])]) + "\n")
    np.testing.assert_array_equal(load_confounds(tsv)[0], expected)
    tsv.write_text("\n".join([lines[0], *(line + "\t0.5" for line in lines[1:])]) + "\n")
    with pytest.raises(InputError, match=r"line\(s\) 2, 3, 4, 5, 6, \.\.\.: more values than"):
        load_confounds(tsv)
