"""Input messages say the real problem: what the path is, and one line per file per problem."""

from __future__ import annotations

import os

import numpy as np
import pytest

from rsxai.cli import EXIT_INPUT_ERROR, main
from rsxai.cohort import Cohort
from rsxai.exceptions import InputError
from tests.fixtures.fmriprep import default_groups, write_bold, write_mask

CHECKS = {"min_volumes": 10, "min_per_group": 3}
STRATEGY = {"motion": "24", "wm_csf": True}
MOTION = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
# The columns of STRATEGY, in fMRIPrep's names and load_confounds' order.
COLUMNS = [
    *(
        f"{base}{suffix}"
        for suffix in ("", "_derivative1", "_power2", "_derivative1_power2")
        for base in MOTION
    ),
    "white_matter",
    "csf",
]
N_VOLUMES = 20


def _write_confounds(path, *, missing: str = "n/a", leading: int = 1, seed: int = 0):
    """A confounds table with the 26 columns of STRATEGY.

    With ``leading=1`` the first row of the derivatives holds ``missing``, as
    fMRIPrep writes it; with more, the first ``leading`` rows of every column do.
    """
    columns = COLUMNS
    values = np.random.default_rng(seed).standard_normal((N_VOLUMES, len(columns)))
    lines = ["\t".join(columns)]
    for row in range(N_VOLUMES):
        cells = [
            missing if row < leading and (leading > 1 or "derivative" in column) else f"{v:.5f}"
            for column, v in zip(columns, values[row], strict=True)
        ]
        lines.append("\t".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def _manifest(tmp_path, *, bold=None, confounds=None):
    """A manifest of 6 subjects; ``bold``/``confounds`` map a label to another path."""
    rows = ["subject,bold,group,confounds,mask,tr"]
    for index, (label, group) in enumerate(default_groups(3).items()):
        folder = tmp_path / "data" / label
        write_bold(folder / "bold.nii.gz", n_volumes=N_VOLUMES, seed=index)
        write_mask(folder / "mask.nii.gz")
        _write_confounds(folder / "confounds.tsv", seed=index)
        bold_path = (bold or {}).get(label, folder / "bold.nii.gz")
        confounds_path = (confounds or {}).get(label, folder / "confounds.tsv")
        rows.append(f"{label},{bold_path},{group},{confounds_path},{folder / 'mask.nii.gz'},2.0")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _problems(manifest, **options):
    with pytest.raises(InputError) as caught:
        Cohort.from_manifest(manifest).validate(**CHECKS, **options)
    return caught.value.problems


def test_a_directory_as_bold_is_named_a_directory(tmp_path):
    folder = tmp_path / "a_folder.nii.gz"
    folder.mkdir()
    problems = _problems(_manifest(tmp_path, bold={"02": folder}))
    assert problems == [
        f"sub-02: BOLD file {folder} is a directory, not a file. Check the path, or re-run "
        "fMRIPrep for this subject (or copy the file again), or exclude the subject."
    ]


def test_a_device_as_bold_is_not_a_regular_file(tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero on this system")
    problems = _problems(_manifest(tmp_path, bold={"03": "/dev/zero"}))
    assert len(problems) == 1
    assert problems[0].startswith(
        "sub-03: BOLD file /dev/zero is not a regular file (a character device)."
    )


def test_a_symlink_loop_is_named(tmp_path):
    loop = tmp_path / "loop.nii.gz"
    loop.symlink_to(loop)
    problems = _problems(_manifest(tmp_path, bold={"01": loop}))
    assert len(problems) == 1
    assert problems[0].startswith(f"sub-01: BOLD file {loop} is a symbolic link loop")


def test_empty_files_are_named_empty(tmp_path):
    empty_bold, empty_confounds = tmp_path / "empty.nii.gz", tmp_path / "empty.tsv"
    empty_bold.touch()
    empty_confounds.touch()
    manifest = _manifest(tmp_path, bold={"04": empty_bold}, confounds={"05": empty_confounds})
    assert _problems(manifest) == [
        f"sub-04: BOLD file {empty_bold} is empty (0 bytes). Check the path, or re-run fMRIPrep "
        "for this subject (or copy the file again), or exclude the subject.",
        f"sub-05: confounds file {empty_confounds} is empty (0 bytes). Check the path, or re-run "
        "fMRIPrep for this subject (or copy the file again), or exclude the subject.",
    ]
    empty_manifest = tmp_path / "empty.csv"
    empty_manifest.touch()
    with pytest.raises(InputError, match=r"empty\.csv is empty \(0 bytes\)"):
        Cohort.from_manifest(empty_manifest)


def test_an_unreadable_file_is_named_unreadable(tmp_path):
    manifest = _manifest(tmp_path)
    confounds = tmp_path / "data" / "06" / "confounds.tsv"
    confounds.chmod(0)
    try:
        try:
            confounds.open("rb").close()
        except PermissionError:
            pass
        else:
            pytest.skip("this user reads files without read permission (root)")
        problems = _problems(manifest)
    finally:
        confounds.chmod(0o644)
    assert problems == [
        f"sub-06: confounds file {confounds} cannot be read (permission denied). Check the path, "
        "or re-run fMRIPrep for this subject (or copy the file again), or exclude the subject."
    ]


def test_first_row_missing_is_accepted_as_n_a_or_nan(tmp_path):
    manifest = _manifest(tmp_path)
    for missing in ("n/a", "NaN", ""):
        for label in ("01", "04"):
            _write_confounds(tmp_path / "data" / label / "confounds.tsv", missing=missing)
        validated = Cohort.from_manifest(manifest).validate(**CHECKS, confounds_strategy=STRATEGY)
        assert validated.subjects[0].runs[0].n_volumes == N_VOLUMES


def test_leading_missing_rows_give_one_line_per_file_alike_for_n_a_and_nan(tmp_path):
    manifest = _manifest(tmp_path)
    results = {}
    for missing in ("n/a", "NaN"):
        for label in ("01", "02", "03"):
            path = tmp_path / "data" / label / "confounds.tsv"
            _write_confounds(path, missing=missing, leading=3)
        results[missing] = _problems(manifest, confounds_strategy=STRATEGY)
    # One rule for both spellings: the same lines, one per file (not one per column).
    assert results["n/a"] == results["NaN"]
    assert len(results["n/a"]) == 3
    confounds = tmp_path / "data" / "01" / "confounds.tsv"
    assert results["n/a"][0] == (
        f"sub-01: confounds file {confounds}: column(s) 'trans_x', 'trans_y', 'trans_z', "
        "'rot_x', 'rot_y', 'rot_z', 'trans_x_derivative1', 'trans_y_derivative1' and 18 more "
        "have missing (n/a, NaN or empty) or infinite values at volume(s) [0, 1, 2]; only "
        "the first volume (row) may be missing (it takes the second volume's value, as in "
        "nilearn). Check the file or choose a strategy without these columns."
    )


def test_subjects_sharing_one_bold_file_are_named(tmp_path):
    shared = tmp_path / "data" / "01" / "bold.nii.gz"
    # A second spelling of the same file (through "..") is the same file.
    other = tmp_path / "data" / "02" / ".." / "01" / "bold.nii.gz"
    manifest = _manifest(tmp_path, bold={"03": shared, "05": other, "06": shared})
    assert _problems(manifest) == [
        f"sub-01, sub-03, sub-05, sub-06: their BOLD series are one file ({shared}); each run "
        "needs its own series. Correct the bold paths (e.g. the manifest rows) of these "
        "subjects."
    ]


def test_a_manifest_of_one_bold_file_stops_with_exit_2(tmp_path, capsys):
    shared = tmp_path / "data" / "01" / "bold.nii.gz"
    manifest = _manifest(tmp_path, bold={label: shared for label in default_groups(3)})
    out = tmp_path / "out"
    code = main(["run", str(manifest), str(out), "-q", "--min-volumes", "10"])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT_ERROR
    assert "sub-01, sub-02, sub-03, sub-04, sub-05, sub-06: their BOLD series are one file" in err


def test_a_file_without_read_permission_is_named_even_when_root_could_read_it(
    tmp_path, monkeypatch
):
    # As root, chmod 000 does not stop reading; os.access (the permission bits) still says
    # the file is not meant to be read, and so does the message.
    manifest = _manifest(tmp_path)
    mask = tmp_path / "data" / "02" / "mask.nii.gz"
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: real_access(path, mode) and str(path) != str(mask)
    )
    assert _problems(manifest) == [
        f"sub-02: mask file {mask} cannot be read (permission denied). Check the path, or "
        "re-run fMRIPrep for this subject (or copy the file again), or exclude the subject."
    ]
