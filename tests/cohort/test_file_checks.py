"""Cohort.validate and the per-file checks: every problem named, with its file and fix."""

from __future__ import annotations

import dataclasses
import gzip
import json

import nibabel as nib
import numpy as np
import pytest

from rsxai.cohort import Cohort, Subject
from rsxai.cohort.file_checks import check_mask
from rsxai.cohort.nifti_scan import header_tr, mni_placement, scan_image_data
from rsxai.exceptions import InputError
from rsxai.grid import MNI_FOV_MAX, MNI_FOV_MIN, mni_grid
from tests.fixtures.fmriprep import (
    VOXEL_MM,
    default_groups,
    make_fmriprep_tree,
    write_bold,
    write_mask,
)

CHECKS = {"min_volumes": 10, "min_per_group": 3}


@pytest.fixture
def tree(tmp_path):
    return make_fmriprep_tree(tmp_path / "ds", default_groups(3), extras=False)


def _problems(cohort, **options):
    with pytest.raises(InputError) as error:
        cohort.validate(**{**CHECKS, **options})
    return error.value.problems


def _only_problem(cohort, **options):
    problems = _problems(cohort, **options)
    assert len(problems) == 1, problems
    return problems[0]


def test_clean_cohort_validates(tree):
    cohort = Cohort.from_bids(tree.root)
    validated = cohort.validate(**CHECKS)
    assert validated is not cohort and validated.warnings == []
    assert validated.tr == 2.0
    assert [r.n_volumes for s in validated for r in s.runs] == [20] * 6
    assert validated.labels == cohort.labels and validated.groups == cohort.groups
    # The input cohort is left as it was.
    assert cohort.subjects[0].runs[0].n_volumes is None


def test_parallel_checks_match_serial(tree):
    tree.bold("02").write_bytes(b"not an image")
    cohort = Cohort.from_bids(tree.root)
    assert _problems(cohort, n_jobs=2, progress=True) == _problems(cohort, n_jobs=1)


def test_missing_file(tree):
    cohort = Cohort.from_bids(tree.root)
    tree.bold("03").unlink()
    problem = _only_problem(cohort)
    assert problem == (
        f"sub-03: BOLD file {tree.bold('03')} does not exist. Check the path, or re-run fMRIPrep "
        "for this subject (or copy the file again), or exclude the subject."
    )


def test_truncated_gzip_is_found_only_by_reading_the_data(tree):
    path = tree.bold("02")
    content = path.read_bytes()
    path.write_bytes(content[: len(content) * 2 // 3])
    cohort = Cohort.from_bids(tree.root)
    # The header is intact: without reading the data the file looks fine.
    assert cohort.validate(**CHECKS, check_data=False).subjects[1].runs[0].n_volumes == 20
    problem = _only_problem(cohort)
    assert problem.startswith(f"sub-02: {path} is truncated or corrupt (")
    assert "re-run fMRIPrep for this subject" in problem


def test_corrupt_gzip_checksum(tree):
    path = tree.bold("04")
    content = bytearray(path.read_bytes())
    content[-6] ^= 0xFF  # inside the CRC-32 trailer: the data decompress but do not check out
    path.write_bytes(bytes(content))
    problem = _only_problem(Cohort.from_bids(tree.root))
    assert problem.startswith(f"sub-04: {path} is truncated or corrupt (") and "CRC" in problem


@pytest.mark.parametrize(
    "content",
    [gzip.compress(np.random.default_rng(0).bytes(2000)), b"subject,bold\n01,x.nii.gz\n"],
    ids=["bad-header", "not-nifti"],
)
def test_unreadable_image(tree, content):
    tree.bold("05").write_bytes(content)
    problem = _only_problem(Cohort.from_bids(tree.root))
    assert problem.startswith(f"sub-05: BOLD file {tree.bold('05')} is not a readable NIfTI image")


def test_3d_image(tree):
    nib.save(nib.load(tree.mask("01")), tree.bold("01"))
    problem = _only_problem(Cohort.from_bids(tree.root))
    assert "is 3D (shape 19x23x19); rs-fMRI must be 4D (x, y, z, time)" in problem


def test_too_few_volumes(tree):
    problems = _problems(Cohort.from_bids(tree.root), min_volumes=50)
    assert len(problems) == 6
    assert problems[0] == (
        f"sub-01: {tree.bold('01')} has 20 volumes, fewer than min_volumes=50; ICA and dual "
        "regression need a longer series. Exclude the subject or lower min_volumes "
        "(--min-volumes)."
    )


def test_different_trs_between_subjects(tree):
    write_bold(tree.bold("02"), tr=2.5)
    tree.sidecar("02").write_text(json.dumps({"RepetitionTime": 2.5}))
    problem = _only_problem(Cohort.from_bids(tree.root))
    assert problem.startswith("The TR differs between runs: 2 s: sub-01, sub-03, sub-04, sub-05")
    assert "2.5 s: sub-02." in problem and "--exclude-label" in problem


def test_tr_within_tolerance_is_one_tr(tree):
    tree.sidecar("02").write_text(json.dumps({"RepetitionTime": 2.0004}))
    validated = Cohort.from_bids(tree.root).validate(**CHECKS)
    assert validated.tr == pytest.approx(2.0, abs=1e-3) and validated.warnings == []


def test_sidecar_tr_disagreeing_with_header_is_a_warning(tree):
    write_bold(tree.bold("03"), tr=3.0)
    validated = Cohort.from_bids(tree.root).validate(**CHECKS)
    assert validated.subjects[2].runs[0].tr == 2.0
    assert validated.warnings == [
        f"sub-03: the TR given for {tree.bold('03')} (sidecar or manifest: 2 s) differs from its "
        "NIfTI header's (3 s); 2 s is used. Check which one is right."
    ]


def test_header_tr_in_milliseconds(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", default_groups(3), with_sidecar=False)
    for label in ("01", "02", "03", "04", "05", "06"):
        write_bold(tree.bold(label), tr=1.5, time_unit="msec")
    cohort = Cohort.from_bids(tree.root)
    assert cohort.subjects[0].runs[0].tr is None
    validated = cohort.validate(**CHECKS)
    assert validated.tr == pytest.approx(1.5)
    assert header_tr(nib.load(tree.bold("01")).header) == pytest.approx(1.5)


def test_no_tr_anywhere(tmp_path):
    tree = make_fmriprep_tree(tmp_path / "ds", default_groups(3), with_sidecar=False)
    write_bold(tree.bold("06"), tr=0.0)
    problem = _only_problem(Cohort.from_bids(tree.root))
    assert problem.startswith(f"sub-06: {tree.bold('06')} has no usable TR")
    assert "Add RepetitionTime" in problem


def test_different_grids_are_a_warning(tree):
    affine, shape = mni_grid(9.0)
    write_bold(tree.bold("04"), affine=affine, shape=shape)
    write_mask(tree.mask("04"), affine, shape)
    validated = Cohort.from_bids(tree.root).validate(**CHECKS)
    assert validated.warnings == [
        "The BOLD series are on 2 different voxel grids (19x23x19 voxels of 10x10x10 mm: sub-01, "
        "sub-02, sub-03, sub-05, sub-06; 21x25x21 voxels of 9x9x9 mm: sub-04). Every image will "
        "be resampled to the analysis grid."
    ]


def test_image_far_from_mni_space(tree):
    affine, shape = mni_grid(VOXEL_MM)
    shifted = affine.copy()
    # e.g. scanner coordinates; the 10 mm grid is centred 2 mm from the MNI box in y.
    shifted[:3, 3] += [0.0, 120.0, 60.0]
    write_bold(tree.bold("01"), affine=shifted, shape=shape)
    write_mask(tree.mask("01"), shifted, shape)
    problem = _only_problem(Cohort.from_bids(tree.root))
    assert problem.startswith(
        f"sub-01: {tree.bold('01')} does not look like it is in MNI space: its field of view is "
        "centred 136 mm from the MNI brain box's centre"
    )
    assert "fMRIPrep --output-spaces MNI152NLin2009cAsym" in problem


def test_image_covering_little_of_mni_space(tree):
    affine = np.diag([VOXEL_MM] * 3 + [1.0])
    affine[:3, 3] = (MNI_FOV_MIN + MNI_FOV_MAX) / 2 - 30  # centred, but 7 x 7 x 7 cm only
    write_bold(tree.bold("02"), affine=affine, shape=(7, 7, 7))
    write_mask(tree.mask("02"), affine, (7, 7, 7))
    problem = _only_problem(Cohort.from_bids(tree.root))
    assert "does not look like it is in MNI space" in problem and "covers 5% of it" in problem


def test_nan_and_inf_values(tree):
    write_bold(tree.bold("05"), dtype=np.float32)
    img = nib.load(tree.bold("05"))
    data = img.get_fdata(dtype=np.float32)
    data[3, 4, 5, 3] = np.nan
    data[9, 10, 9, 3] = np.nan
    data[9, 10, 9, 7] = np.inf
    nib.save(nib.Nifti1Image(data, img.affine, img.header), tree.bold("05"))
    cohort = Cohort.from_bids(tree.root)
    problem = _only_problem(cohort)
    assert problem.startswith(
        f"sub-05: {tree.bold('05')} contains 2 NaN and 1 infinite values in 2 of 20 volumes "
        "(first: volume 3)"
    )
    assert "nan_to_num" in problem
    # Values are only seen when the data are read.
    cohort.validate(**CHECKS, check_data=False)


def test_all_zero_image(tree):
    img = nib.load(tree.bold("06"))
    nib.save(
        nib.Nifti1Image(np.zeros(img.shape, np.int16), img.affine, img.header), tree.bold("06")
    )
    problem = _only_problem(Cohort.from_bids(tree.root))
    assert problem == (
        f"sub-06: {tree.bold('06')} is all zeros: the image is empty; re-run fMRIPrep for this "
        "subject (or copy the file again), or exclude the subject."
    )


def test_mask_on_another_grid_and_empty_mask(tree):
    write_mask(tree.mask("01"), *mni_grid(9.0))
    affine, shape = mni_grid(VOXEL_MM)
    nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), affine), tree.mask("02"))
    problems = _problems(Cohort.from_bids(tree.root))
    assert problems == [
        f"sub-01: mask {tree.mask('01')} is on a different grid (shape 21x25x21) from its BOLD "
        "series (shape 19x23x19, or a different affine). Give the mask written with this BOLD "
        "series (same space and resolution).",
        f"sub-02: mask {tree.mask('02')} is empty (no voxel inside the brain); re-run fMRIPrep "
        "for this subject (or copy the file again), or exclude the subject.",
    ]


def test_confounds_with_wrong_number_of_rows(tree):
    lines = tree.confounds("03").read_text().splitlines()
    tree.confounds("03").write_text("\n".join(lines[:-2]) + "\n")
    problem = _only_problem(Cohort.from_bids(tree.root))
    assert problem == (
        f"sub-03: confounds file {tree.confounds('03')} has 18 rows but its BOLD series has 20 "
        "volumes; there must be one row per volume. Give the confounds of this very series "
        "(same task, session and run)."
    )


def _by_hand(tree, groups: dict[str, str], positive_label="ALS"):
    base = Cohort.from_bids(tree.root).subjects
    runs = {subject.label: subject.runs for subject in base}
    subjects = [
        Subject(label, group, runs.get(label, base[0].runs)) for label, group in groups.items()
    ]
    return Cohort(subjects, positive_label=positive_label, source="my cohort")


def test_group_problems(tree):
    one_group = _by_hand(tree, {"01": "ALS", "02": "ALS", "03": "ALS"})
    assert "my cohort: only one group ('ALS') with positive_label='ALS'" in _only_problem(
        one_group
    )
    small = _by_hand(tree, {"01": "ALS", "02": "ALS", "03": "HC", "04": "HC", "05": "HC"})
    assert _only_problem(small) == (
        "my cohort: group 'ALS' has 2 subject(s), fewer than min_per_group=3; cross-validation "
        "and permutation statistics need more. Add subjects or lower min_per_group "
        "(--min-per-group)."
    )
    groups = {"01": "ALS", "02": "ALS", "03": "ALS", "04": "HC", "05": "HC", "06": "PLS"}
    problems = _problems(_by_hand(tree, groups), min_per_group=1)
    assert problems == [
        "my cohort: groups 'HC', 'PLS' besides the positive label 'ALS'; rsxai compares exactly "
        "two groups. Exclude the subjects of the extra groups (--exclude-label)."
    ]
    groups["06"] = ""
    problem = _only_problem(_by_hand(tree, groups), min_per_group=1)
    assert problem.startswith("sub-06: no group label ('group')")


def test_duplicate_and_unsafe_labels(tree):
    groups = {"01": "ALS", "02": "ALS", "03": "ALS", "04": "HC", "05": "HC", "06": "HC"}
    cohort = _by_hand(tree, groups)
    subjects = [
        *cohort.subjects,
        cohort.subjects[0],
        dataclasses.replace(cohort.subjects[1], label="../x"),
    ]
    problems = _problems(Cohort(subjects, positive_label="ALS", source="my cohort"))
    assert problems == [
        "my cohort: subject label '../x' is not a BIDS label (letters and digits only after "
        "'sub-'; no '_', '-', '.', '/' or spaces). Rename the subject.",
        "my cohort: subject(s) listed more than once: sub-01. Keep one entry per subject.",
        # sub-../x was made from sub-02, file and all; sub-01 listed twice is said above.
        f"sub-02, sub-../x: their BOLD series are one file ({tree.bold('02')}); each run needs "
        "its own series. Correct the bold paths (e.g. the manifest rows) of these subjects.",
    ]


def test_every_problem_is_reported_at_once(tree):
    cohort = Cohort.from_bids(tree.root)
    tree.bold("01").unlink()
    nib.save(nib.load(tree.mask("02")), tree.bold("02"))
    tree.confounds("03").write_text("a\n1\n")
    img = nib.load(tree.bold("04"))
    nib.save(
        nib.Nifti1Image(np.zeros(img.shape, np.int16), img.affine, img.header), tree.bold("04")
    )
    problems = _problems(cohort, min_per_group=4)
    starts = [problem.split(": ")[0] for problem in problems]
    assert starts == [cohort.source] * 2 + ["sub-01", "sub-02", "sub-03", "sub-04"]
    assert "group 'ALS' has 3 subject(s), fewer than min_per_group=4" in problems[0]
    assert "group 'HC' has 3 subject(s)" in problems[1]
    assert "does not exist" in problems[2] and "is 3D" in problems[3]
    assert "has 1 rows" in problems[4] and "all zeros" in problems[5]


def test_runs_are_named_by_session_and_run(tmp_path):
    tree = make_fmriprep_tree(
        tmp_path / "ds", default_groups(3), sessions=("1", "2"), extras=False
    )
    cohort = Cohort.from_bids(tree.root, multi_run="concatenate")
    tree.bold("02", "2").unlink()
    problem = _only_problem(cohort)
    assert problem.startswith(f"sub-02 ses-2: BOLD file {tree.bold('02', '2')} does not exist")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_scan_image_data_matches_numpy(tmp_path, suffix):
    rng = np.random.default_rng(3)
    data = rng.integers(-100, 100, size=(6, 5, 4, 9)).astype(np.float32)
    data[rng.random(data.shape) < 0.01] = np.nan
    data[0, 0, 0, 8] = -np.inf
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(2.0, 0.5)
    nib.save(img, tmp_path / f"x{suffix}")
    loaded = nib.load(tmp_path / f"x{suffix}")
    reference = loaded.get_fdata()
    scan = scan_image_data(loaded)
    assert scan.n_nan == np.isnan(reference).sum() > 0
    assert scan.n_inf == np.isinf(reference).sum() == 1
    expected = np.flatnonzero((~np.isfinite(reference)).reshape(-1, 9, order="F").any(axis=0))
    assert scan.bad_volumes == expected.tolist()
    assert not scan.all_zero
    zeros = nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.int16), np.eye(4))
    nib.save(zeros, tmp_path / f"z{suffix}")
    assert scan_image_data(nib.load(tmp_path / f"z{suffix}")).all_zero


def test_mni_placement():
    affine, shape = mni_grid(4.0)  # 46 x 55 x 46 voxels: the MNI box plus half a voxel around
    distance, coverage = mni_placement(affine, shape)
    assert distance == pytest.approx(0.0, abs=1e-9) and coverage == pytest.approx(1.0)
    shifted = affine.copy()
    shifted[:3, 3] += [30.0, 40.0, 0.0]
    distance, coverage = mni_placement(shifted, shape)
    # Overlap of [-62, 122] x [-88, 132] x [-74, 110] with the MNI box, by hand.
    assert distance == pytest.approx(50.0)
    assert coverage == pytest.approx((152 * 178 * 180) / (180 * 216 * 180))


# Regressions found by fuzzing (tests/test_input_fuzz.py): each once crashed or misled.
def _rewrite_header(path, **fields):
    """Set raw header fields of a .nii.gz in place, leaving nibabel no chance to fix them."""
    content = gzip.decompress(path.read_bytes())
    header = nib.Nifti1Header(content[:348])
    for key, value in fields.items():
        header[key] = value
    path.write_bytes(gzip.compress(header.binaryblock + content[348:]))


def test_undefined_time_unit_code_is_taken_as_seconds(tree):
    # xyzt_units 7 + 80: codes NIfTI does not define; nibabel's get_xyzt_units raises KeyError.
    _rewrite_header(tree.bold("01"), xyzt_units=87)
    assert header_tr(nib.load(tree.bold("01")).header) == pytest.approx(2.0)
    assert Cohort.from_bids(tree.root).validate(**CHECKS).tr == pytest.approx(2.0)


@pytest.mark.parametrize(
    "srow_x", [[np.nan, 0, 0, -90], [0, 0, 0, -90]], ids=["not-finite", "singular"]
)
def test_unusable_affine(tree, srow_x):
    # A NaN affine once passed the MNI check (NaN compares False) and reached preprocessing.
    _rewrite_header(tree.bold("02"), srow_x=srow_x, qform_code=0)
    problems = _problems(Cohort.from_bids(tree.root))
    assert problems[0] == (
        f"sub-02: {tree.bold('02')} has an unusable affine (non-finite values, or voxel axes "
        "that do not span 3D space), so it cannot be placed in MNI space. Give the image as "
        "written by fMRIPrep."
    )


def test_header_claiming_huge_data_is_reported_not_allocated(tree):
    # Reading what such headers claim raised MemoryError (BOLD scan and mask data).
    huge = [4, 32000, 32000, 2000, 30000, 1, 1, 1]
    _rewrite_header(tree.bold("03"), dim=huge)
    _rewrite_header(tree.mask("04"), dim=[3, *huge[1:4], 1, 1, 1, 1])
    problems = _problems(Cohort.from_bids(tree.root))
    assert any(
        p.startswith(f"sub-03: {tree.bold('03')} is truncated or corrupt (the data end after")
        for p in problems
    )
    assert f"sub-04: mask {tree.mask('04')} is on a different grid (shape 32000x32000x2000)" in (
        "\n".join(problems)
    )


def test_axis_of_length_zero_or_less(tree):
    # A 0-volume series was "4D ... must be 4D"; a negative length crashed the data scan.
    for label, length in (("01", 0), ("02", -5)):
        _rewrite_header(tree.bold(label), dim=[4, 19, 23, 19, length, 1, 1, 1])
    problems = _problems(Cohort.from_bids(tree.root))
    for label, shape in (("01", "19x23x19x0"), ("02", "19x23x19x-5")):
        assert (
            f"sub-{label}: {tree.bold(label)} has shape {shape}: an axis of length 0 or less "
            "holds no data; re-run fMRIPrep" in "\n".join(problems)
        )


def test_mask_of_rgb_values(tree):
    # np.any on RGB records raised TypeError.
    affine, shape = mni_grid(VOXEL_MM)
    rgb = np.zeros(shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, affine), tree.mask("05"))
    problem = _only_problem(Cohort.from_bids(tree.root))
    assert problem.startswith(
        f"sub-05: mask {tree.mask('05')} stores [('R', 'u1'), ('G', 'u1'), ('B', 'u1')] values, "
        "not 0/1 numbers."
    )


def test_error_texts_stay_on_one_line(tree):
    # nibabel's "Expected N bytes ... \n - could the file be damaged?" split a problem in two.
    mask = tree.mask("06").with_name(tree.mask("06").name.removesuffix(".gz"))
    nib.save(nib.load(tree.mask("06")), mask)
    mask.write_bytes(mask.read_bytes()[:-100])
    problems = check_mask(
        mask,
        prefix="sub-06",
        bold_affine=mni_grid(VOXEL_MM)[0],
        bold_shape=(19, 23, 19),
        check_data=True,
    )
    assert len(problems) == 1 and "\n" not in problems[0]
    assert problems[0].startswith(f"sub-06: mask {mask} is truncated or corrupt (")


def test_confounds_are_checked_as_preprocessing_reads_them(tree):
    # Trailing tabs shifted every column in pandas; the strategy's columns are checked early.
    path = tree.confounds("01")
    path.write_text("".join(line + "\t\n" for line in path.read_text().splitlines()))
    validated = Cohort.from_bids(tree.root).validate(**CHECKS)
    assert validated.subjects[0].runs[0].n_volumes == 20
    problems = _problems(Cohort.from_bids(tree.root), confounds_strategy={"motion": "6"})
    # The fixture's tables have trans_x and rot_x only: every run lacks four columns, one line.
    assert len(problems) == 6 and all("are missing; motion='6' need(s)" in p for p in problems)
    assert problems[0].startswith(
        f"sub-01: confounds file {path}: column(s) 'trans_y', 'trans_z', 'rot_y', 'rot_z' are "
    )
