"""Hardened input: fuzzed images and tables end in a clear InputError, never in a crash.

Hypothesis writes a valid input file with zero to three faults put in it
(NIfTI: shapes from 0-D to 5-D and zero-length axes, data types nibabel can
and cannot read, NaN / Inf / all-zero data, singular, NaN and shear affines,
odd TR, units, sform / qform codes, scaling and other header fields, flipped
bytes, truncation, empty files, folders named ``*.nii.gz``, non-NIfTI bytes;
tables: missing, renamed and repeated columns, repeated rows, odd cells,
ragged rows, other delimiters, non-UTF-8 bytes, truncation) besides harmless
variations (gzip or not, BOM, CR / CRLF line ends, trailing whitespace), and
feeds it to the readers of user files (``Cohort.from_manifest`` /
``from_bids`` / ``from_path`` then ``validate``, :func:`load_confounds`,
:func:`read_map_stack`) and to the command line (``rsxai run``, ``rsxai stats``).

A file without faults must be read, and read sanely; any other either gives
a sane result or an :class:`~rsxai.exceptions.InputError` whose every line
names the file at fault; the command line exits with 0 or 2, prints no
traceback, and marks nothing as done when it stops on bad input.

Examples are tiny (a 4 x 4 x 4 grid of 45-54 mm voxels covering the MNI box,
10 volumes) and derandomized, so that the run is deterministic and short;
``RSXAI_FUZZ_EXAMPLES=2000`` runs a deeper search locally.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rsxai.cli import EXIT_INPUT_ERROR, main
from rsxai.cohort import Cohort, read_map_stack
from rsxai.exceptions import InputError
from rsxai.grid import MNI_FOV_MAX, MNI_FOV_MIN
from rsxai.outputs import PARTIAL_MARK
from rsxai.preprocess import load_confounds

N_EXAMPLES = int(os.environ.get("RSXAI_FUZZ_EXAMPLES", "0"))


def fuzz_settings(max_examples: int) -> settings:
    """Deterministic, bounded settings.

    Each example writes into its own folder from the session-scoped
    ``tmp_path_factory``, so no function-scoped fixture is shared between
    examples. Only the too_slow health check is suppressed: examples write and
    read files, which a loaded CI machine may make slow.
    """
    return settings(
        max_examples=N_EXAMPLES or max_examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


@dataclass(frozen=True)
class Fuzzed:
    """A fuzzed input file: its bytes (None: a folder of that name), suffix and faults."""

    content: bytes | None
    suffix: str
    faults: tuple[str, ...]

    def write(self, folder: Path, stem: str) -> Path:
        path = folder / (stem + self.suffix)
        if self.content is None:
            path.mkdir()
        else:
            path.write_bytes(self.content)
        return path


def draw_faults(draw, kinds: tuple[str, ...]) -> tuple[str, ...]:
    """None (about a third of the examples) to three distinct faults."""
    n_faults = draw(st.sampled_from([0, 0, 1, 1, 2, 3]))
    return tuple(
        draw(st.lists(st.sampled_from(kinds), min_size=n_faults, max_size=n_faults, unique=True))
    )


# ----------------------------------------------------------------------------- NIfTI files
# A 4 x 4 x 4 grid whose field of view is the MNI box: it passes the MNI-space check.
VOXEL = (MNI_FOV_MAX - MNI_FOV_MIN) / 4
AFFINE = np.diag([*VOXEL, 1.0])
AFFINE[:3, 3] = MNI_FOV_MIN + VOXEL / 2
GRID = (4, 4, 4)
N_VOLUMES = 10
N_STACK = 6
TR = 2.0
VALID_SHAPES = {"bold": (*GRID, N_VOLUMES), "mask": GRID, "stack": (*GRID, N_STACK)}

# NIfTI datatype code and bits per voxel, including types nibabel cannot read.
DTYPES = {
    "binary": (1, 1),
    "uint8": (2, 8),
    "int16": (4, 16),
    "int32": (8, 32),
    "float32": (16, 32),
    "complex64": (32, 64),
    "float64": (64, 64),
    "rgb24": (128, 24),
    "int8": (256, 8),
    "uint16": (512, 16),
    "int64": (1024, 64),
    "float128": (1536, 128),
    "rgba32": (2304, 32),
}
HARMLESS_DTYPES = ["int16", "float32", "float64", "int32"]
ODD_FLOATS = [0.0, -2.0, np.nan, np.inf, -np.inf, 1e30, 1e-30, 2000.0]
NIFTI_FAULTS = (
    "not an image",
    "shape",
    "dtype",
    "values",
    "affine",
    "tr",
    "header",
    "flipped bytes",
    "truncated",
    "not gzipped",
)


def nifti_bytes(
    data: np.ndarray | None,
    dtype: str,
    affine: np.ndarray,
    *,
    shape: tuple[int, ...] | None = None,
    tr: float = TR,
    time_unit: str = "sec",
    fields: dict | None = None,
) -> bytes:
    """A single-file NIfTI-1 image written field by field (no nibabel clean-up).

    ``data`` is written in Fortran order as ``dtype``; None (for types numpy
    lacks) writes zeros for ``shape``.
    """
    shape = np.shape(data) if shape is None else shape
    code, bits = DTYPES[dtype]
    header = nib.Nifti1Header()
    header["datatype"], header["bitpix"] = code, bits
    dim = np.ones(8, dtype=np.int16)
    dim[0] = len(shape)
    dim[1 : 1 + len(shape)] = shape
    header["dim"] = dim
    pixdim = np.ones(8, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        pixdim[1:4] = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    pixdim[4] = tr * {"sec": 1.0, "msec": 1e3}[time_unit]
    header["pixdim"] = pixdim
    header.set_xyzt_units("mm", time_unit)
    header["srow_x"], header["srow_y"], header["srow_z"] = np.asarray(affine)[:3]
    header["sform_code"], header["qform_code"] = 4, 0  # MNI
    header["vox_offset"] = 352
    header["scl_slope"], header["scl_inter"] = 1.0, 0.0
    header["magic"] = b"n+1"
    for key, value in (fields or {}).items():
        header[key] = value
    if data is None:
        block = bytes(int(np.prod(shape, dtype=np.int64)) * bits // 8)
    else:
        with np.errstate(invalid="ignore"):  # NaN or Inf cast to an integer type
            block = np.asarray(data).astype(np.dtype(dtype)).tobytes(order="F")
    return header.binaryblock + b"\x00" * 4 + block


def valid_image(role: str, seed: int = 0, dtype: str = "int16") -> bytes:
    """BOLD (around 1000, TR 2 s), mask (ones) or stack (normal) on the tiny MNI grid."""
    rng = np.random.default_rng(seed)
    shape = VALID_SHAPES[role]
    data = {
        "bold": 1000 + 20 * rng.standard_normal(shape),
        "mask": np.ones(shape),
        "stack": 100 + 20 * rng.standard_normal(shape),
    }[role]
    return nifti_bytes(data, dtype, AFFINE)


def odd_affine(draw) -> np.ndarray:
    affine = AFFINE.copy()
    kind = draw(st.sampled_from(["singular", "nan", "inf", "shear", "zero", "huge", "far"]))
    if kind == "singular":
        affine[:3, 0] = 0.0
    elif kind == "nan":
        affine[draw(st.integers(0, 2)), draw(st.integers(0, 3))] = np.nan
    elif kind == "inf":
        affine[0, 3] = np.inf
    elif kind == "shear":
        affine[0, 1] = 30.0
    elif kind == "zero":
        affine[:3, :3] = 0.0
    elif kind == "huge":
        affine[:3, :3] *= 1e30
    else:
        affine[:3, 3] += 500.0
    return affine


def odd_shape(draw) -> tuple[int, ...]:
    n_dims = draw(st.integers(0, 5))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=n_dims, max_size=n_dims)))
    return (*GRID, *shape[3:]) if n_dims >= 3 and draw(st.booleans()) else shape


HEADER_FIELDS = {
    "bitpix": st.sampled_from([0, 1, 8, 16, 32, 64, 255]),
    "datatype": st.sampled_from([0, 1, 2, 4, 16, 32, 128, 255, 1536, 2304]),
    "dim": st.lists(st.integers(-3, 40), min_size=8, max_size=8),
    "intent_code": st.integers(0, 2000),
    "magic": st.sampled_from([b"ni1", b"n+2", b"xyz", b""]),
    "pixdim": st.lists(st.sampled_from(ODD_FLOATS), min_size=8, max_size=8),
    "qform_code": st.integers(-1, 5),
    "quatern_b": st.sampled_from([0.5, 1.5, np.nan]),
    "scl_inter": st.sampled_from(ODD_FLOATS),
    "scl_slope": st.sampled_from(ODD_FLOATS),
    "sform_code": st.integers(-1, 5),
    "sizeof_hdr": st.sampled_from([0, 540, -1]),
    "vox_offset": st.sampled_from([0.0, 100.0, 348.0, 353.0, 1e9, -16.0, np.nan]),
    "xyzt_units": st.integers(0, 255),
}


@st.composite
def nifti_files(draw, role: str) -> Fuzzed:
    """A valid image for ``role`` ("bold", "mask", "stack") with zero to three faults."""
    faults = draw_faults(draw, NIFTI_FAULTS)
    suffix = draw(st.sampled_from([".nii.gz", ".nii"]))
    if "not an image" in faults:
        content = draw(
            st.sampled_from([b"", None, b"not an image", b"\x1f\x8b\x08\x00", b"\x00" * 348])
            | st.binary(min_size=1, max_size=400)
        )
        return Fuzzed(content, suffix, faults)
    shape = odd_shape(draw) if "shape" in faults else VALID_SHAPES[role]
    dtype = draw(
        st.sampled_from(sorted(DTYPES)) if "dtype" in faults else st.sampled_from(HARMLESS_DTYPES)
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    data = None
    if dtype not in ("binary", "float128", "rgb24", "rgba32"):
        level = {"bold": 1000, "mask": 1, "stack": 100}[role]
        data = np.array(level + rng.standard_normal(shape) * (0 if role == "mask" else 20))
        if "values" in faults:
            value = draw(st.sampled_from([np.nan, np.inf, -np.inf, 0.0, "zeros"]))
            if value == "zeros":
                data[...] = 0.0
            elif data.size:
                data.flat[draw(st.integers(0, data.size - 1))] = value
    fields = {}
    if "header" in faults:
        for key in draw(st.lists(st.sampled_from(sorted(HEADER_FIELDS)), min_size=1, max_size=3)):
            fields[key] = draw(HEADER_FIELDS[key])
    tr = draw(st.sampled_from(ODD_FLOATS)) if "tr" in faults else TR
    content = nifti_bytes(
        data,
        dtype,
        odd_affine(draw) if "affine" in faults else AFFINE,
        shape=shape,
        tr=tr,
        time_unit=draw(st.sampled_from(["sec", "msec"])),
        fields=fields,
    )
    if "flipped bytes" in faults:
        flipped = bytearray(content)
        for _ in range(draw(st.integers(1, 4))):
            flipped[draw(st.integers(0, len(flipped) - 1))] ^= draw(st.integers(1, 255))
        content = bytes(flipped)
    if suffix == ".nii.gz" and "not gzipped" not in faults:
        content = gzip.compress(content, mtime=0)
    if "truncated" in faults:
        content = content[: draw(st.integers(0, len(content) - 1))]
    return Fuzzed(content, suffix, faults)


# ----------------------------------------------------------------------------- tables
ODD_CELLS = [
    "",
    " ",
    "n/a",
    "N/A",
    "NA",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "1e400",
    "-0",
    "1,5",
    "True",
    '"quoted"',
    '"a\tb"',
    '"unterminated',
    "x" * 3000,
    "é",
    "a\x00b",
    "sub-0_1",
    "sub-",
    "../../etc/passwd",
    "/nonexistent/bold.nii.gz",
    " ALS ",
    "HC",
    "control",
    "0",
    "-1",
]
ODD_NAMES = ["", " ", "group ", "Group", "participant_id", "subject", "age", "x" * 300, '"a"']
TABLE_FAULTS = (
    "renamed column",
    "dropped column",
    "repeated column",
    "odd cell",
    "repeated row",
    "ragged row",
    "other delimiter",
    "other encoding",
    "flipped byte",
    "truncated",
)


@st.composite
def table_texts(draw, table: tuple[list[str], list[list[str]]], delimiter: str = "\t") -> Fuzzed:
    """A valid table (header, rows) with zero to three faults and harmless variations."""
    faults = draw_faults(draw, TABLE_FAULTS)
    columns, rows = list(table[0]), [list(row) for row in table[1]]
    if "renamed column" in faults:
        columns[draw(st.integers(0, len(columns) - 1))] = draw(st.sampled_from(ODD_NAMES))
    if "dropped column" in faults:
        index = draw(st.integers(0, len(columns) - 1))
        for line in (columns, *rows):
            del line[index]
    if "repeated column" in faults and columns:
        index = draw(st.integers(0, len(columns) - 1))
        for line in (columns, *rows):
            line.append(line[index])
    if "odd cell" in faults and columns:
        for _ in range(draw(st.integers(1, 3))):
            row = rows[draw(st.integers(0, len(rows) - 1))]
            row[draw(st.integers(0, len(row) - 1))] = draw(st.sampled_from(ODD_CELLS))
    if "repeated row" in faults:
        rows.append(list(rows[draw(st.integers(0, len(rows) - 1))]))
    if "ragged row" in faults:
        row = rows[draw(st.integers(0, len(rows) - 1))]
        if draw(st.booleans()) and row:
            row.pop()
        else:
            row.append(draw(st.sampled_from(["", "extra"])))
    if "other delimiter" in faults:
        delimiter = draw(st.sampled_from([d for d in ("\t", ",", ";", " ") if d != delimiter]))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    # A trailing space or delimiter on every line is harmless.
    trailing = draw(st.sampled_from(["", " ", delimiter]))
    text = end.join(delimiter.join(line) + trailing for line in (columns, *rows))
    text += draw(st.sampled_from([end, ""]))
    text = draw(st.sampled_from(["", "\ufeff"])) + text
    encoding = (
        draw(st.sampled_from(["latin-1", "utf-16"])) if "other encoding" in faults else "utf-8"
    )
    content = text.encode(encoding, errors="replace")
    if "flipped byte" in faults:
        flipped = bytearray(content)
        flipped[draw(st.integers(0, len(flipped) - 1))] = draw(st.integers(128, 255))
        content = bytes(flipped)
    if "truncated" in faults:
        content = content[: draw(st.integers(0, len(content) - 1))]
    return Fuzzed(content, "", faults)


def participants_table(n_per_group: int) -> tuple[list[str], list[list[str]]]:
    rows = [
        [f"sub-{i + 1:02d}", "ALS" if i < n_per_group else "HC", str(40 + i), "MF"[i % 2]]
        for i in range(2 * n_per_group)
    ]
    return ["participant_id", "group", "age", "sex"], rows


CONFOUND_COLUMNS = [
    "trans_x",
    "trans_y",
    "trans_z",
    "rot_x",
    "rot_y",
    "rot_z",
    "white_matter",
    "csf",
    "global_signal",
    "framewise_displacement",
    "trans_x_derivative1",
    "non_steady_state_outlier00",
]


def confounds_table() -> tuple[list[str], list[list[str]]]:
    """fMRIPrep-like confounds: n/a in the first row of FD and the derivative."""
    rng = np.random.default_rng(0)
    rows = []
    for row in range(N_VOLUMES):
        values = [f"{v:.4f}" for v in rng.standard_normal(len(CONFOUND_COLUMNS)) * 0.1]
        values[-1] = "0"
        if row == 0:
            values[-3] = values[-2] = "n/a"
        rows.append(values)
    return list(CONFOUND_COLUMNS), rows


def as_bytes(table: tuple[list[str], list[list[str]]], delimiter: str = "\t") -> bytes:
    columns, rows = table
    return ("\n".join(delimiter.join(line) for line in (columns, *rows)) + "\n").encode()


# ----------------------------------------------------------------------------- checks
def assert_names_a_file(problems: list[str], paths: list[Path], also: tuple[str, ...] = ()):
    """Every problem is one line naming one of ``paths`` (or holding one of ``also``)."""
    assert problems, "an InputError must hold at least one problem"
    for problem in problems:
        assert "\n" not in problem, problem
        assert any(str(path) in problem for path in paths) or any(
            word in problem for word in also
        ), problem


def assert_sane_cohort(cohort: Cohort, faults: tuple[str, ...]) -> None:
    """Two subjects in two groups with 4D runs; exactly the planted ones when nothing is odd."""
    assert cohort.n_subjects == 2 and sorted(cohort.y.tolist()) == [0, 1]
    assert 0.05 <= cohort.tr <= 30
    for subject in cohort:
        assert subject.runs and all(run.n_volumes >= 3 for run in subject.runs)
    if not faults:
        assert cohort.labels == ["01", "02"] and cohort.groups == ["ALS", "HC"]
        assert cohort.positive_label == "ALS" and cohort.y.tolist() == [1, 0]
        assert abs(cohort.tr - TR) < 1e-3
        assert [run.n_volumes for subject in cohort for run in subject.runs] == [N_VOLUMES] * 2


def outcome(faults: tuple[str, ...], error: InputError | None) -> None:
    """Record the outcome; a file without faults must be read."""
    event("input error" if error else "read")
    event(f"{'with' if faults else 'without'} faults")
    assert faults or error is None, f"a valid input was rejected: {error}"


# ----------------------------------------------------------------------------- cohort
VALIDATE = {"min_volumes": 3, "min_per_group": 1}


def manifest_table(bold: str, mask: str) -> tuple[list[str], list[list[str]]]:
    columns = ["subject", "bold", "group", "confounds", "mask", "tr", "age"]
    rows = [
        ["sub-01", bold, "ALS", "sub-01_confounds.tsv", mask, "", "40"],
        [
            "sub-02",
            "sub-02_bold.nii.gz",
            "HC",
            "sub-02_confounds.tsv",
            "sub-02_mask.nii",
            "2",
            "41",
        ],
    ]
    return columns, rows


def write_manifest_cohort(
    folder: Path, bold: Fuzzed, mask: Fuzzed, confounds: Fuzzed, manifest: Fuzzed | None = None
) -> dict:
    """Subject 01 (ALS) with the given files, subject 02 (HC) with valid ones; a manifest.

    Without ``manifest``, a valid one naming the files is written.
    """
    paths = {
        "bold": bold.write(folder, "sub-01_bold"),
        "mask": mask.write(folder, "sub-01_mask"),
        "confounds": confounds.write(folder, "sub-01_confounds.tsv"),
        "manifest": folder / "manifest.tsv",
    }
    (folder / "sub-02_bold.nii.gz").write_bytes(gzip.compress(valid_image("bold", 1), mtime=0))
    (folder / "sub-02_mask.nii").write_bytes(valid_image("mask"))
    (folder / "sub-02_confounds.tsv").write_bytes(as_bytes(confounds_table()))
    if manifest is None:
        content = as_bytes(manifest_table(paths["bold"].name, paths["mask"].name))
    else:
        content = manifest.content
    paths["manifest"].write_bytes(content)
    return paths


VALID_BOLD = Fuzzed(gzip.compress(valid_image("bold"), mtime=0), ".nii.gz", ())
VALID_MASK = Fuzzed(valid_image("mask"), ".nii", ())
VALID_CONFOUNDS = Fuzzed(as_bytes(confounds_table()), "", ())


@fuzz_settings(80)
@given(
    bold=nifti_files("bold"), mask=nifti_files("mask"), confounds=table_texts(confounds_table())
)
def test_validate_fuzzed_run_files(tmp_path_factory, bold, mask, confounds):
    paths = write_manifest_cohort(tmp_path_factory.mktemp("run"), bold, mask, confounds)
    error = None
    try:
        cohort = Cohort.from_manifest(paths["manifest"]).validate(**VALIDATE)
    except InputError as raised:
        error = raised
        # A header TR unlike the other subject's is named by run, not by file.
        assert_names_a_file(error.problems, list(paths.values()), also=("TR differs",))
    faults = bold.faults + mask.faults + confounds.faults
    if error is None:
        assert_sane_cohort(cohort, faults)
    outcome(faults, error)


@fuzz_settings(60)
@given(
    manifest=table_texts(manifest_table("sub-01_bold.nii.gz", "sub-01_mask.nii")),
    suffix=st.sampled_from([".tsv", ".csv", ".txt"]),
)
def test_fuzzed_manifest(tmp_path_factory, manifest, suffix):
    folder = tmp_path_factory.mktemp("manifest")
    write_manifest_cohort(folder, VALID_BOLD, VALID_MASK, VALID_CONFOUNDS, manifest)
    path = (folder / "manifest.tsv").rename(folder / ("manifest" + suffix))
    error = None
    try:
        cohort = Cohort.from_path(path).validate(**VALIDATE)
    except InputError as raised:
        error = raised
        # Paths in the manifest are relative to its folder; an odd cell may name another file.
        named = [folder, "/nonexistent/bold.nii.gz"]
        assert_names_a_file(error.problems, named, also=("TR differs",))
    # A .csv manifest is read with commas, a .txt one with the delimiter sniffed.
    faults = manifest.faults + (("other delimiter",) if suffix == ".csv" else ())
    if error is None:
        assert_sane_cohort(cohort, faults)
    outcome(faults, error)


SIDECARS = [
    b'{"RepetitionTime": 2}',
    b'{"RepetitionTime": 2.0, "SkullStripped": false}',
    b'{"RepetitionTime": "2"}',
    b'{"RepetitionTime": -1}',
    b'{"RepetitionTime": 0}',
    b'{"RepetitionTime": NaN}',
    b'{"RepetitionTime": 1e400}',
    b'{"RepetitionTime": 2000}',
    b'{"RepetitionTime": true}',
    b'{"RepetitionTime": [2]}',
    b'{"RepetitionTime": null}',
    b"[]",
    b"null",
    b"",
    b"{",
    b"\xff\xfe{",
    b"[" * 100_000,
    b'{"a": ' * 50_000,
]
BIDS_BOLD = "sub-{}_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold"
BIDS_MASK = "sub-{}_task-rest_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz"
BIDS_CONFOUNDS = "sub-{}_task-rest_desc-confounds_timeseries.tsv"


def write_bids_tree(folder: Path, participants: bytes, sidecar: bytes) -> dict:
    """A BIDS root with fMRIPrep derivatives of sub-01 and sub-02; sub-01's sidecar as given."""
    root = folder / "bids"
    derivatives = root / "derivatives" / "fmriprep"
    for index, label in enumerate(("01", "02")):
        func = derivatives / f"sub-{label}" / "func"
        func.mkdir(parents=True)
        bold = gzip.compress(valid_image("bold", index), mtime=0)
        (func / (BIDS_BOLD.format(label) + ".nii.gz")).write_bytes(bold)
        (func / BIDS_MASK.format(label)).write_bytes(gzip.compress(valid_image("mask"), mtime=0))
        (func / BIDS_CONFOUNDS.format(label)).write_bytes(as_bytes(confounds_table()))
        (func / (BIDS_BOLD.format(label) + ".json")).write_bytes(
            sidecar if label == "01" else b'{"RepetitionTime": 2}'
        )
    (root / "participants.tsv").write_bytes(participants)
    return {"root": root, "participants": root / "participants.tsv", "derivatives": derivatives}


@fuzz_settings(60)
@given(participants=table_texts(participants_table(1)), sidecar=st.sampled_from(SIDECARS))
def test_fuzzed_participants_and_sidecar(tmp_path_factory, participants, sidecar):
    paths = write_bids_tree(tmp_path_factory.mktemp("bids"), participants.content, sidecar)
    error = None
    try:
        cohort = Cohort.from_bids(paths["root"]).validate(**VALIDATE)
    except InputError as raised:
        error = raised
        named = [paths["participants"], paths["derivatives"]]
        assert_names_a_file(error.problems, named, also=("TR differs",))
    faults = participants.faults + (() if sidecar in SIDECARS[:2] else ("sidecar",))
    if error is None:
        assert_sane_cohort(cohort, faults)
    outcome(faults, error)


# ----------------------------------------------------------------------------- confounds
STRATEGIES = st.fixed_dictionaries(
    {
        "motion": st.sampled_from(["24", "12", "6", "none"]),
        "wm_csf": st.booleans(),
        "global_signal": st.booleans(),
        "scrub_fd": st.sampled_from([None, 0.1, 0.5]),
        "min_contiguous": st.sampled_from([0, 5]),
    }
)


@fuzz_settings(120)
@given(table=table_texts(confounds_table()), strategy=STRATEGIES)
def test_fuzzed_confounds(tmp_path_factory, table, strategy):
    path = table.write(tmp_path_factory.mktemp("confounds"), "sub-01_confounds.tsv")
    error = None
    try:
        confounds, sample_mask = load_confounds(path, **strategy)
    except InputError as raised:
        error = raised
        assert_names_a_file(error.problems, [path])
    else:
        assert confounds.dtype == np.float64 and confounds.ndim == 2
        assert np.isfinite(confounds).all()
        kept = slice(None) if sample_mask is None else sample_mask
        assert np.allclose(confounds[kept].mean(axis=0), 0.0)
        if sample_mask is not None:
            assert 0 < sample_mask.size < confounds.shape[0]
            assert np.all(np.diff(sample_mask) > 0) and sample_mask[-1] < confounds.shape[0]
    # Scrubbing at 0.1 mm may censor every volume of the random motion: not a fault of the file.
    outcome(table.faults + (("scrubbing",) if strategy["scrub_fd"] else ()), error)


# ----------------------------------------------------------------------------- map stacks
@fuzz_settings(80)
@given(
    stack=nifti_files("stack"),
    subjects=table_texts(participants_table(N_STACK // 2)),
    mask=st.none() | nifti_files("mask"),
    suffix=st.sampled_from([".tsv", ".txt"]),
)
def test_fuzzed_map_stack(tmp_path_factory, stack, subjects, mask, suffix):
    folder = tmp_path_factory.mktemp("stack")
    stack_path = stack.write(folder, "dr_stage2_ic0003")
    subjects_path = subjects.write(folder, "subjects" + suffix)
    mask_path = None if mask is None else mask.write(folder, "mask")
    error = None
    try:
        data = read_map_stack(stack_path, subjects_path, mask=mask_path, min_per_group=1)
    except InputError as raised:
        error = raised
        named = [p for p in (stack_path, subjects_path, mask_path) if p is not None]
        assert_names_a_file(error.problems, named)
    else:
        assert data.maps.dtype == np.float32 and np.isfinite(data.maps).all()
        assert data.maps.shape == (N_STACK, data.grid.n_voxels) and data.grid.n_voxels > 0
        assert data.cohort.n_subjects == N_STACK and set(data.cohort.y) == {0, 1}
        if not subjects.faults:
            assert data.cohort.y.tolist() == [1, 1, 1, 0, 0, 0]
    outcome(stack.faults + subjects.faults + (mask.faults if mask else ()), error)


# ----------------------------------------------------------------------------- command line
def run_cli(argv: list[str]) -> tuple[int, str]:
    """``rsxai ARGV`` in this process: exit code and stderr (an exception propagates)."""
    stderr = io.StringIO()
    with (
        contextlib.redirect_stderr(stderr),
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        code = main(argv)
    return code, stderr.getvalue()


def assert_clean_exit(code: int, stderr: str, faults: tuple[str, ...]) -> None:
    event(f"exit {code}")
    assert code in (0, EXIT_INPUT_ERROR), stderr
    assert "Traceback" not in stderr
    assert (code == 0) == ("rsxai: error:" not in stderr), stderr
    assert faults or code == 0, stderr


def partial_files(out: Path) -> list[Path]:
    """Files being written (rsxai.outputs.atomic_path) that were never renamed into place."""
    return [p for p in out.rglob("*") if PARTIAL_MARK in p.name or p.name.endswith(".tmp")]


FAST_RUN = ["--stop-after", "preprocess", "--min-volumes", "3", "--min-per-group", "1"]
FAST_RUN += ["--voxel-size", "10", "--high-pass", "0", "--low-pass", "0", "--motion", "6", "-q"]


@fuzz_settings(10)
@given(bold=nifti_files("bold"), confounds=table_texts(confounds_table()))
def test_cli_run_on_fuzzed_input(tmp_path_factory, bold, confounds):
    folder = tmp_path_factory.mktemp("cli_run")
    paths = write_manifest_cohort(folder, bold, VALID_MASK, confounds)
    out = folder / "out"
    code, stderr = run_cli(["run", str(paths["manifest"]), str(out), *FAST_RUN])
    assert_clean_exit(code, stderr, bold.faults + confounds.faults)
    assert not partial_files(out)
    markers = sorted((out / ".rsxai" / "stages").glob("*.json"))
    if code == EXIT_INPUT_ERROR:
        assert not markers, markers
    else:
        assert [marker.stem for marker in markers] == ["preprocess"]
        recorded = json.loads(markers[0].read_text())["outputs"]
        assert recorded and all((out / relative).is_file() for relative in recorded)


@fuzz_settings(10)
@given(stack=nifti_files("stack"), subjects=table_texts(participants_table(N_STACK // 2)))
def test_cli_stats_on_fuzzed_input(tmp_path_factory, stack, subjects):
    folder = tmp_path_factory.mktemp("cli_stats")
    stack_path = stack.write(folder, "dr_stage2_ic0003")
    subjects_path = subjects.write(folder, "participants.tsv")
    out = folder / "out"
    argv = ["stats", str(stack_path), str(subjects_path), str(out)]
    code, stderr = run_cli([*argv, "--n-permutations", "20", "--min-per-group", "1", "-q"])
    assert_clean_exit(code, stderr, stack.faults + subjects.faults)
    if code == EXIT_INPUT_ERROR:
        # Every input is checked before anything is written.
        assert not out.exists(), sorted(out.rglob("*"))
    else:
        assert (out / "summary.json").is_file() and not partial_files(out)
