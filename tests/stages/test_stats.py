"""The TFCE parameters of the stats stage: options, maps, summary, report, stage key, errors.

``[stats] tfce_h``, ``tfce_e`` and ``tfce_connectivity`` must reach the
permutation GLM (the TFCE map written equals :func:`rsxai.stats.tfce.tfce_transform`
of the t map with those values), be recorded in summary.json, rsxai.toml and
the report's methods, change the stats stage's key, and be refused with a
message naming the option, the allowed values and what was given.
"""

from __future__ import annotations

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rsxai.cli import EXIT_INPUT_ERROR, main
from rsxai.config import load_config_file, resolve_config
from rsxai.exceptions import InputError
from rsxai.grid import mni_brain_mask, mni_grid
from rsxai.outputs import output_path, read_json
from rsxai.stats import tfce_transform

VOXEL_MM = 8.0
CENTRE_MM = np.array([-38.0, -22.0, 56.0])
GROUPS = np.array(["ALS", "HC", "HC", "ALS"] * 4)
CUSTOM = {"H": 1.5, "E": 1.0, "connectivity": 26}
CUSTOM_FLAGS = ["--tfce-h", "1.5", "--tfce-e", "1.0", "--tfce-connectivity", "26"]
FAST = ["--n-permutations", "9", "--contrasts", "patients>controls", "-q"]


def _write_inputs(folder):
    """A 4D stack of 16 subject maps on the 8 mm MNI grid with a planted blob, and its table."""
    affine, shape = mni_grid(VOXEL_MM)
    brain = mni_brain_mask(VOXEL_MM)
    ijk = np.indices(shape).reshape(3, -1).T
    world = (ijk @ affine[:3, :3].T + affine[:3, 3]).reshape(*shape, 3)
    blob = np.exp(-0.5 * (np.linalg.norm(world - CENTRE_MM, axis=-1) / 12.0) ** 2)
    rng = np.random.default_rng(3)
    data = np.zeros((*shape, GROUPS.size), dtype=np.float32)
    data[brain] = rng.standard_normal((int(brain.sum()), GROUPS.size))
    data += (2.0 * blob[..., None] * (GROUPS == "ALS")) * brain[..., None]
    stack = folder / "dr_stage2_ic0001.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), stack)
    subjects = folder / "participants.tsv"
    pd.DataFrame(
        {"participant_id": [f"sub-{i:02d}" for i in range(1, 17)], "group": GROUPS}
    ).to_csv(subjects, sep="\t", index=False)
    return stack, subjects, data


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return _write_inputs(tmp_path_factory.mktemp("tfce"))


def _stats(inputs, out, *flags):
    stack, subjects, _ = inputs
    return main(["stats", str(stack), str(subjects), str(out), *FAST, *flags])


def test_tfce_map_uses_the_given_parameters(inputs, tmp_path):
    data = inputs[2]
    assert _stats(inputs, tmp_path / "custom", *CUSTOM_FLAGS) == 0
    out = tmp_path / "custom"
    mask = np.asarray(nib.load(output_path(out, "mask")).dataobj) != 0
    entry = read_json(output_path(out, "summary"))["stats"]
    result = entry["networks"]["ic0001"]["patients>controls"]
    tfce = np.asarray(nib.load(out / result["maps"]["tfce"]).dataobj)[mask]
    # The reference: scipy's t (float64, not the written float32 map), then TFCE directly.
    maps = data[mask].astype(np.float64)
    patients = GROUPS == "ALS"
    t = stats.ttest_ind(maps[:, patients], maps[:, ~patients], axis=1).statistic
    expected = tfce_transform(
        t,
        mask,
        dh=result["tfce_dh"],
        h=CUSTOM["H"],
        e=CUSTOM["E"],
        connectivity=CUSTOM["connectivity"],
    )
    np.testing.assert_allclose(tfce, expected, rtol=1e-4, atol=1e-4 * expected.max())
    defaults = tfce_transform(t, mask, dh=result["tfce_dh"])
    assert not np.allclose(tfce, defaults, rtol=0.05)  # the parameters did change the map
    # Recorded where a reader looks: summary.json, rsxai.toml, the report's methods.
    assert {k: entry["tfce"][k] for k in CUSTOM} == CUSTOM
    recorded = load_config_file(output_path(out, "config"))["stats"]
    assert (recorded["tfce_h"], recorded["tfce_e"], recorded["tfce_connectivity"]) == (
        1.5,
        1.0,
        26,
    )
    from rsxai.report import ReportFolder
    from rsxai.report.methods import methods_section

    text = methods_section(ReportFolder(out))
    assert "H = 1.5, E = 1.0 and 26-connectivity" in text


def test_default_parameters_are_fsl_s(inputs, tmp_path):
    assert _stats(inputs, tmp_path / "default") == 0
    entry = read_json(output_path(tmp_path / "default", "summary"))["stats"]
    assert {k: entry["tfce"][k] for k in CUSTOM} == {"H": 2.0, "E": 0.5, "connectivity": 6}


def test_recorded_step_rule_is_the_step_used_for_a_one_sided_contrast(inputs, tmp_path):
    # controls>patients: the planted blob is negative, so max(t) is well below max|t|
    # and the two rules give different steps.
    stack, subjects, data = inputs
    out = tmp_path / "down"
    flags = ["--n-permutations", "9", "--contrasts", "controls>patients", "-q"]
    assert main(["stats", str(stack), str(subjects), str(out), *flags]) == 0
    mask = np.asarray(nib.load(output_path(out, "mask")).dataobj) != 0
    entry = read_json(output_path(out, "summary"))["stats"]
    result = entry["networks"]["ic0001"]["controls>patients"]
    # scipy's t in float64: the written float32 map's peak can sit just above the last height.
    maps = data[mask].astype(np.float64)
    patients = GROUPS == "ALS"
    t = stats.ttest_ind(maps[:, ~patients], maps[:, patients], axis=1).statistic
    written = np.asarray(nib.load(out / result["maps"]["t"]).dataobj)[mask]
    np.testing.assert_allclose(written, t, rtol=1e-4, atol=1e-5)
    assert 0 < t.max() < 0.9 * np.abs(t).max()
    assert result["tfce_dh"] == pytest.approx(t.max() / 100, rel=1e-5)
    tfce = np.asarray(nib.load(out / result["maps"]["tfce"]).dataobj)[mask]
    expected = tfce_transform(t, mask, dh=result["tfce_dh"])
    np.testing.assert_allclose(tfce, expected, rtol=1e-3, atol=1e-3 * expected.max())
    # What summary.json and the report's methods say is that rule.
    assert (
        "maximum of t for a one-sided contrast, of |t| for the two-sided one"
        in (entry["tfce"]["dh"])
    )
    from rsxai.report import ReportFolder
    from rsxai.report.methods import methods_section

    text = methods_section(ReportFolder(out))
    assert "maximum (of t for a one-sided contrast, of |t| for the two-sided one" in text


@pytest.mark.parametrize("name", ["tfce_h", "tfce_e", "tfce_connectivity"])
def test_each_parameter_changes_the_stats_stage_key(name):
    from rsxai.pipeline import IMPLEMENTED_STAGES, stage_key

    stage = next(stage for stage in IMPLEMENTED_STAGES if stage.name == "stats")
    other = {"tfce_h": 3.0, "tfce_e": 0.75, "tfce_connectivity": 18}[name]
    inputs = {"data": "d", "design": "g"}
    keys = [
        stage_key(
            stage,
            SimpleNamespace(config=resolve_config(overrides=overrides), stage_keys={}),
            inputs,
        )
        for overrides in ({}, {f"stats.{name}": other})
    ]
    assert keys[0] != keys[1]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stats.tfce_h": 0.0}, "--tfce-h: option stats.tfce_h must be above 0.0; got 0.0."),
        ({"stats.tfce_e": -0.5}, "--tfce-e: option stats.tfce_e must be above 0.0; got -0.5."),
        (
            {"stats.tfce_e": float("inf")},
            "--tfce-e: option stats.tfce_e must be a finite number; got inf.",
        ),
        (
            {"stats.tfce_connectivity": 8},
            "--tfce-connectivity: option stats.tfce_connectivity must be one of 6, 18, 26; got 8.",
        ),
        (
            {"stats.tfce_connectivity": "six"},
            "--tfce-connectivity: option stats.tfce_connectivity must be int; got 'six'.",
        ),
    ],
)
def test_bad_values_are_named(overrides, message):
    with pytest.raises(InputError) as info:
        resolve_config(overrides=overrides)
    assert info.value.problems == [message]


def test_bad_values_in_a_config_file_are_listed_together(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[stats]\ntfce_h = -1.0\ntfce_connectivity = 4\n")
    with pytest.raises(InputError) as info:
        load_config_file(path)
    assert info.value.problems == [
        f"{path}: option stats.tfce_h must be above 0.0; got -1.0.",
        f"{path}: option stats.tfce_connectivity must be one of 6, 18, 26; got 4.",
    ]


def test_bad_flags_are_exit_2_before_any_work(inputs, tmp_path, capsys):
    out = tmp_path / "bad"
    assert _stats(inputs, out, "--tfce-e", "0") == EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert "rsxai: error: --tfce-e: option stats.tfce_e must be above 0.0; got 0.0." in err
    assert "Traceback" not in err and not output_path(out, "summary").exists()
    with pytest.raises(SystemExit) as info:
        _stats(inputs, out, "--tfce-connectivity", "8")
    assert info.value.code == 2
    assert "invalid choice: 8 (choose from 6, 18, 26)" in capsys.readouterr().err
