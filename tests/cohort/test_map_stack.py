"""read_map_stack on broken stacks and masks: one clear problem per file, never a crash.

Each case was found by fuzzing (tests/test_input_fuzz.py) and once raised
another exception than InputError, or split a problem over several lines.
"""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from rsxai.cohort import read_map_stack
from rsxai.exceptions import InputError
from rsxai.grid import mni_grid

N_SUBJECTS = 6


@pytest.fixture
def inputs(tmp_path):
    affine, shape = mni_grid(10.0)
    rng = np.random.default_rng(0)
    data = (5 + rng.standard_normal((*shape, N_SUBJECTS))).astype(np.float32)
    stack = tmp_path / "dr_stage2_ic0003.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), stack)
    subjects = tmp_path / "participants.tsv"
    rows = [f"sub-{i:02d}\t{'ALS' if i <= 3 else 'HC'}" for i in range(1, N_SUBJECTS + 1)]
    subjects.write_text("\n".join(["participant_id\tgroup", *rows]) + "\n")
    return {"stack": stack, "subjects": subjects, "affine": affine, "shape": shape}


def _problems(inputs, **options):
    with pytest.raises(InputError) as error:
        read_map_stack(inputs["stack"], inputs["subjects"], min_per_group=1, **options)
    assert all("\n" not in problem for problem in error.value.problems)
    return error.value.problems


def _rewrite_header(path, **fields):
    content = gzip.decompress(path.read_bytes())
    header = nib.Nifti1Header(content[:348])
    for key, value in fields.items():
        header[key] = value
    path.write_bytes(gzip.compress(header.binaryblock + content[348:]))


def test_valid_inputs_are_read(inputs):
    data = read_map_stack(inputs["stack"], inputs["subjects"], min_per_group=1)
    assert data.maps.shape == (N_SUBJECTS, data.grid.n_voxels) and data.network == "ic0003"
    assert data.cohort.y.tolist() == [1, 1, 1, 0, 0, 0]


def test_mask_beside_an_unreadable_stack(inputs, tmp_path):
    # The mask was reshaped to the shape of a stack that could not be opened (AttributeError).
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(inputs["shape"], np.uint8), inputs["affine"]), mask)
    inputs["stack"].write_bytes(b"")
    problems = _problems(inputs, mask=mask)
    assert len(problems) == 1
    assert problems[0].startswith(f"STACK {inputs['stack']}: not a readable NIfTI image")


def test_data_type_nibabel_cannot_read(inputs):
    # nibabel's HeaderDataError ("data code 1 not supported") escaped.
    _rewrite_header(inputs["stack"], datatype=1, bitpix=1)
    problems = _problems(inputs)
    assert problems == [
        f"STACK {inputs['stack']}: not a readable NIfTI image (data code 1 not supported). Give "
        "a NIfTI (.nii or .nii.gz) image, e.g. FSL dual_regression's dr_stage2_ic0003.nii.gz."
    ]


@pytest.mark.parametrize("length", [0, -4])
def test_axis_of_length_zero_or_less(inputs, length):
    # nibabel reads such data as a 1D array: data.shape[3] raised IndexError.
    _rewrite_header(inputs["stack"], dim=[4, 19, 23, length, N_SUBJECTS, 1, 1, 1])
    problems = _problems(inputs)
    assert problems == [
        f"STACK {inputs['stack']} has shape 19x23x{length}x{N_SUBJECTS}: an axis of length 0 "
        "or less holds no map. Give the 4D stack of subject maps."
    ]


def test_truncated_stack_is_one_line(inputs):
    # nibabel's "Expected N bytes ... - could the file be damaged?" spans two lines.
    stack = inputs["stack"].with_name("dr_stage2_ic0003.nii")
    stack.write_bytes(gzip.decompress(inputs["stack"].read_bytes())[:-1000])
    inputs["stack"] = stack
    problems = _problems(inputs)
    assert len(problems) == 1 and problems[0].startswith(f"STACK {stack} is truncated or corrupt")


def test_header_claiming_more_than_memory(inputs):
    # Reading 32000 x 32000 x 2000 x 6 float32 values raised MemoryError.
    _rewrite_header(inputs["stack"], dim=[4, 32000, 32000, 2000, N_SUBJECTS, 1, 1, 1])
    problems = _problems(inputs)
    assert problems[-1] == (
        f"STACK {inputs['stack']}: its header describes 32000x32000x2000x6 values, more than fit "
        "in memory. Check the file, or give the maps on a coarser grid."
    )


def test_mask_of_rgb_values(inputs, tmp_path):
    # Comparing RGB records with 0 raised TypeError.
    mask = tmp_path / "mask.nii.gz"
    rgb = np.ones(inputs["shape"], dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, inputs["affine"]), mask)
    problems = _problems(inputs, mask=mask)
    assert problems == [
        f"MASK {mask} stores [('R', 'u1'), ('G', 'u1'), ('B', 'u1')] values, not 0/1 numbers. "
        "Give a 3D mask of 0 and 1 (e.g. dual_regression's mask.nii.gz)."
    ]


def test_unusable_affine(inputs):
    # A NaN affine passed the MNI-space check (NaN compares False).
    _rewrite_header(inputs["stack"], srow_x=[np.nan, 0, 0, -90], qform_code=0)
    assert _problems(inputs) == [
        f"STACK {inputs['stack']} has an unusable affine (non-finite values, or voxel axes that "
        "do not span 3D space), so it cannot be placed in MNI space. Give the maps as FSL wrote "
        "them."
    ]
