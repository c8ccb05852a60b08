"""Runs too short for the band-pass filter are refused at input validation.

The minimum is checked against its ground truth, :func:`scipy.signal.sosfiltfilt`
itself (which refuses a series not longer than its padding), and against
:func:`rsxai.preprocess.signal.clean_signals`, so that validation and
preprocessing agree: one volume below the minimum is refused by both, exactly
the minimum is accepted by both.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sp_signal

from rsxai.cohort import Run, Subject
from rsxai.cohort.checks import check_runs, filter_length_problems
from rsxai.exceptions import InputError
from rsxai.preprocess import clean_signals, filter_min_volumes, load_confounds
from rsxai.preprocess.signal import butterworth_sos
from tests.fixtures.fmriprep import write_bold

TR = 2.0
NO_REGRESSORS = {"motion": "none", "wm_csf": False, "global_signal": False, "scrub_fd": None}
SCRUBBING = NO_REGRESSORS | {"scrub_fd": 0.5}
BANDS = {"band-pass": (0.01, 0.1), "high-pass": (0.01, None), "low-pass": (None, 0.1)}


def _confounds(path, n_volumes, *, moving=slice(0, 0), non_steady=0):
    """fMRIPrep-like confounds: framewise displacement 0.1 mm, 0.9 mm in the ``moving`` volumes."""
    fd = np.full(n_volumes, 0.1)
    fd[moving] = 0.9
    outlier = (np.arange(n_volumes) < non_steady).astype(int)
    rows = ["framewise_displacement\tnon_steady_state_outlier00"]
    rows += [("n/a" if i == 0 else f"{fd[i]:.2f}") + f"\t{outlier[i]}" for i in range(n_volumes)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _subject(folder, label, n_volumes, *, tr=TR, **confounds):
    bold = write_bold(folder / f"sub-{label}_bold.nii.gz", n_volumes=n_volumes, tr=tr)
    table = _confounds(folder / f"sub-{label}_confounds.tsv", n_volumes, **confounds)
    return Subject(label, "ALS", (Run(bold, None, table, None, None),))


def _problems(subjects, band, strategy=NO_REGRESSORS):
    checked = check_runs(subjects, min_volumes=3, check_data=False, confounds_strategy=strategy)
    assert all(not check.problems for *_, check in checked)
    high_pass, low_pass = band
    return filter_length_problems(
        checked, high_pass=high_pass, low_pass=low_pass, confounds_strategy=strategy
    )


@pytest.mark.parametrize("band", BANDS)
def test_minimum_is_sosfiltfilt_s(band):
    high_pass, low_pass = BANDS[band]
    minimum = filter_min_volumes(tr=TR, high_pass=high_pass, low_pass=low_pass)
    sos = butterworth_sos(tr=TR, high_pass=high_pass, low_pass=low_pass)
    sp_signal.sosfiltfilt(sos, np.zeros(minimum))  # accepted
    with pytest.raises(ValueError, match="padlen"):
        sp_signal.sosfiltfilt(sos, np.zeros(minimum - 1))
    assert minimum == {"band-pass": 34, "high-pass": 19, "low-pass": 19}[band]
    assert filter_min_volumes(tr=TR, high_pass=None, low_pass=None) == 0


@pytest.mark.parametrize("band", ["band-pass", "high-pass"])
def test_one_volume_short_is_refused_exactly_the_minimum_is_not(tmp_path, band):
    minimum = filter_min_volumes(tr=TR, high_pass=BANDS[band][0], low_pass=BANDS[band][1])
    short = _subject(tmp_path, "01", minimum - 1)
    enough = _subject(tmp_path, "02", minimum)
    problems = _problems([short, enough], BANDS[band])
    assert len(problems) == 1
    problem = problems[0]
    assert problem.startswith(f"sub-01: {short.runs[0].bold} has {minimum - 1} volumes;")
    assert f"needs at least {minimum} volumes." in problem and "--exclude-label 01" in problem
    assert ("--high-pass 0 the low-pass filter alone needs 19" in problem) is (band == "band-pass")
    # Preprocessing agrees: the short run fails there, the other is cleaned.
    rng = np.random.default_rng(0)
    for n_volumes, fails in ((minimum - 1, True), (minimum, False)):
        signals = rng.standard_normal((n_volumes, 5))
        try:
            clean_signals(signals, tr=TR, high_pass=BANDS[band][0], low_pass=BANDS[band][1])
        except InputError:
            assert fails
        else:
            assert not fails


def test_volumes_censored_at_the_ends_count_against_the_filter(tmp_path):
    # 40 volumes, the last 8 moving: the filter runs over 32 < 34.
    moving = _subject(tmp_path, "01", 40, moving=slice(32, 40))
    # 36 volumes, the first 3 non-steady-state: 33 < 34, with or without scrubbing.
    settling = _subject(tmp_path, "02", 36, non_steady=3)
    # 38 volumes, a moving stretch in the middle: interpolated, all 38 filtered.
    middle = _subject(tmp_path, "03", 38, moving=slice(15, 23))
    problems = _problems([moving, settling, middle], BANDS["band-pass"], SCRUBBING)
    assert len(problems) == 2
    assert (
        "sub-01" in problems[0]
        and "has 40 volumes, 32 from the first to the last" in (problems[0])
    )
    assert "--scrub-fd 0.5 mm" in problems[0] and "raise --scrub-fd" in problems[0]
    assert "sub-02" in problems[1] and "has 36 volumes, 33 from the first" in problems[1]
    # Without scrubbing the moving run is long enough; the non-steady volumes still count.
    unscrubbed = _problems([moving, settling, middle], BANDS["band-pass"])
    assert [p.split(":")[0] for p in unscrubbed] == ["sub-02"]
    # Preprocessing agrees on every run.
    for subject, n_volumes, fails in (
        (moving, 40, True),
        (settling, 36, True),
        (middle, 38, False),
    ):
        confounds, sample_mask = load_confounds(subject.runs[0].confounds, **SCRUBBING)
        arguments = {"confounds": confounds, "sample_mask": sample_mask, "tr": TR}
        signals = np.random.default_rng(1).standard_normal((n_volumes, 4))
        if fails:
            with pytest.raises(InputError, match="usable volumes"):
                clean_signals(signals, high_pass=0.01, low_pass=0.1, **arguments)
        else:
            clean_signals(signals, high_pass=0.01, low_pass=0.1, **arguments)
            assert sample_mask is not None and sample_mask.size < n_volumes  # censored inside


def test_validation_refuses_a_run_too_short_for_the_band_pass(tmp_path):
    import dataclasses

    from rsxai.cohort import Cohort

    minimum = filter_min_volumes(tr=TR, high_pass=0.01, low_pass=0.1)
    subjects = [_subject(tmp_path, f"{i:02d}", minimum + 5) for i in range(4)]
    subjects.append(_subject(tmp_path, "short", minimum - 1))
    subjects = [dataclasses.replace(s, group="HC") if i % 2 else s for i, s in enumerate(subjects)]
    cohort = Cohort(subjects, positive_label="ALS")
    options = {"min_volumes": 3, "min_per_group": 1, "check_data": False}
    options["confounds_strategy"] = NO_REGRESSORS
    # Without a filter, nothing is wrong.
    cohort.validate(**options)
    with pytest.raises(InputError) as raised:
        cohort.validate(**options, high_pass=0.01, low_pass=0.1)
    (problem,) = raised.value.problems
    assert "sub-short" in problem and str(minimum) in problem
