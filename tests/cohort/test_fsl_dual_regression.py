"""`rsxai run` on a finished FSL dual_regression folder instead of rs-fMRI.

The folder is written as FSL writes it (dr_stage2_subjectNNNNN, dr_stage2_icNNNN,
mask, and MELODIC's melodic_IC beside it) from planted network maps in a
shuffled component order with a planted group effect in the sensorimotor
component. The later stages must pick the right components, find the effect
where it was planted, classify in the external-maps scope, and bad folders
must be refused with every problem named.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from rsxai.cli import EXIT_INPUT_ERROR, main
from rsxai.cohort import is_fsl_dual_regression, read_fsl_dual_regression
from rsxai.grid import Grid, mni_grey_matter
from rsxai.outputs import output_path, read_json
from rsxai.pipeline import FSL_GIVEN
from rsxai.simulate import NETWORK_NAMES, group_network_maps

VOXEL_MM = 8.0
EFFECT_CENTRE = np.array([-38.0, -26.0, 54.0])  # left hand knob, a planted SMN blob
EFFECT_RADIUS = 16.0
N_PER_GROUP = 8
# Component k of the "FSL run" is planted network ORDER[k]: not the simulator's order.
ORDER = np.random.default_rng(7).permutation(len(NETWORK_NAMES))
FAST = ["--n-permutations", "99", "--models", "svm", "--cv-folds", "3"]
FAST += ["--baseline-permutations", "19", "--stop-after", "classify", "-q"]


def _groups():
    return np.array(["ALS", "HC", "HC", "ALS"] * (N_PER_GROUP // 2))


def write_fsl_folder(root, *, effect=1.5, seed=0):
    """An FSL dual_regression folder, its subjects table and melodic_IC, on the 8 mm grid."""
    grid = Grid.mni(VOXEL_MM)
    coords = grid.world_coordinates()
    grey = mni_grey_matter(VOXEL_MM)[grid.mask]
    planted, _ = group_network_maps(coords, grey)  # (V, N), each peak 1
    group = planted.T[ORDER]  # (K, V)
    rng = np.random.default_rng(seed)
    groups = _groups()
    smn = ORDER.tolist().index(NETWORK_NAMES.index("sensorimotor"))
    sphere = np.linalg.norm(coords - EFFECT_CENTRE, axis=1) <= EFFECT_RADIUS
    folder = root / "groupICA.dr"
    folder.mkdir()
    subject_maps = []
    for i, name in enumerate(groups):
        gains = 1.0 + 0.15 * rng.standard_normal((len(group), 1))
        maps = gains * group + 0.3 * rng.standard_normal(group.shape)
        if name == "ALS":
            maps[smn, sphere] -= effect * group[smn, sphere].clip(0.2)
        subject_maps.append(maps.astype(np.float32))
        nib.save(grid.to_img(maps), folder / f"dr_stage2_subject{i:05d}.nii.gz")
    stacked = np.stack(subject_maps)  # (S, K, V)
    for k in range(len(group)):
        nib.save(grid.to_img(stacked[:, k]), folder / f"dr_stage2_ic{k:04d}.nii.gz")
    nib.save(grid.mask_img(), folder / "mask.nii.gz")
    melodic = root / "melodic_IC.nii.gz"
    nib.save(grid.to_img(group), melodic)
    table = root / "subjects.tsv"
    pd.DataFrame(
        {"participant_id": [f"sub-{i:02d}" for i in range(len(groups))], "group": groups}
    ).to_csv(table, sep="\t", index=False)
    return {
        "folder": folder,
        "subjects": table,
        "melodic": melodic,
        "grid": grid,
        "stacked": stacked,
        "smn": smn,
        "visual": ORDER.tolist().index(NETWORK_NAMES.index("visual")),
    }


def _run(inputs, out, *flags):
    return main(
        ["run", str(inputs["folder"]), str(out), "--subjects", str(inputs["subjects"]), *flags]
    )


@pytest.fixture(scope="module")
def fsl_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsl")
    inputs = write_fsl_folder(root)
    out = root / "results"
    assert _run(inputs, out, "--group-maps", str(inputs["melodic"]), *FAST) == 0
    return inputs, out


def test_folder_is_recognised_and_read(fsl_run):
    inputs, _ = fsl_run
    assert is_fsl_dual_regression(inputs["folder"])
    assert not is_fsl_dual_regression(inputs["folder"].parent)
    folder = read_fsl_dual_regression(inputs["folder"], inputs["subjects"])
    assert folder.n_components == len(NETWORK_NAMES)
    assert folder.cohort.labels == [f"{i:02d}" for i in range(2 * N_PER_GROUP)]
    grid = folder.grid()
    np.testing.assert_array_equal(grid.mask, inputs["grid"].mask)
    np.testing.assert_allclose(folder.mean_maps(grid), inputs["stacked"].mean(0), atol=1e-5)
    np.testing.assert_array_equal(folder.component_maps(3, grid), inputs["stacked"][:, 3])


def test_networks_are_the_planted_components(fsl_run):
    inputs, out = fsl_run
    networks = read_json(output_path(out, "summary"))["networks"]
    assert networks["sensorimotor"]["component"] == inputs["smn"]
    assert networks["visual"]["component"] == inputs["visual"]
    assert networks["sensorimotor"]["r"] > 0.5
    # The stack is FSL's maps of that component, subjects in the table's order.
    stack = inputs["grid"].from_img_data(
        np.asarray(nib.load(out / networks["sensorimotor"]["subject_maps"]).dataobj)
    )
    np.testing.assert_allclose(stack, inputs["stacked"][:, inputs["smn"]], atol=1e-6)
    order = pd.read_csv(out / networks["sensorimotor"]["subject_order"], sep="\t")
    assert order["group"].tolist() == _groups().tolist()
    stages = json.loads((out / "provenance.json").read_text())["stages"]
    assert stages["preprocess"]["status"] == stages["ica"]["status"] == FSL_GIVEN
    assert stages["dual_regression"]["status"] == "computed"


def test_planted_effect_found_and_classified_as_external_maps(fsl_run):
    _, out = fsl_run
    summary = read_json(output_path(out, "summary"))
    smn = summary["stats"]["networks"]["sensorimotor"]
    found = smn["controls>patients"]
    assert found["n_fwe_significant_voxels"] > 0
    assert np.linalg.norm(np.array(found["peak_mni"]) - EFFECT_CENTRE) <= EFFECT_RADIUS
    assert smn["patients>controls"]["n_fwe_significant_voxels"] == 0
    visual = summary["stats"]["networks"]["visual"]
    assert all(visual[c]["n_fwe_significant_voxels"] == 0 for c in visual)
    metrics = json.loads(
        (out / "classification" / "network-sensorimotor" / "model-svm_metrics.json").read_text()
    )
    assert metrics["cv"]["cv_scope"] == "external maps"
    assert summary["network_maps_source"]["kind"] == "FSL dual_regression"


def test_mean_maps_stand_in_for_missing_group_maps(fsl_run, tmp_path):
    inputs, _ = fsl_run
    out = tmp_path / "out"
    assert _run(inputs, out, "--stop-after", "dual_regression", "-q") == 0
    networks = read_json(output_path(out, "summary"))["networks"]
    assert networks["sensorimotor"]["component"] == inputs["smn"]
    assert networks["visual"]["component"] == inputs["visual"]


def _expect_input_error(capsys, inputs, out, *flags, says, before_writing=True):
    assert _run(inputs, out, *flags, "--stop-after", "dual_regression", "-q") == EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for text in says:
        assert text in err, err
    # Checks of the folder and table come before anything is written.
    assert (out / "summary.json").exists() != before_writing


def test_missing_subject_file_is_named(fsl_run, tmp_path, capsys):
    inputs, _ = fsl_run
    broken = dict(inputs, folder=tmp_path / "copy.dr")
    broken["folder"].mkdir()
    for path in inputs["folder"].iterdir():
        if path.name != "dr_stage2_subject00004.nii.gz":
            (broken["folder"] / path.name).write_bytes(path.read_bytes())
    _expect_input_error(
        capsys, broken, tmp_path / "out", says=["dr_stage2_subject00004 (sub-04)", "missing"]
    )


def test_table_longer_than_the_folder_and_wrong_group_maps(fsl_run, tmp_path, capsys):
    inputs, _ = fsl_run
    table = pd.read_csv(inputs["subjects"], sep="\t")
    extra = pd.concat([table, table.iloc[[0]].assign(participant_id="sub-99")])
    longer = tmp_path / "longer.tsv"
    extra.to_csv(longer, sep="\t", index=False)
    _expect_input_error(
        capsys, dict(inputs, subjects=longer), tmp_path / "a", says=["dr_stage2_subject00016"]
    )
    few = tmp_path / "few_IC.nii.gz"
    nib.save(inputs["grid"].to_img(inputs["stacked"][0, :3]), few)
    _expect_input_error(
        capsys,
        inputs,
        tmp_path / "b",
        "--group-maps",
        str(few),
        says=["has 3 maps", "--group-maps"],
    )
    _expect_input_error(
        capsys,
        inputs,
        tmp_path / "c",
        "--force-component",
        f"visual={len(NETWORK_NAMES) + 5}",
        says=["visual"],
        before_writing=False,
    )


def test_subjects_table_is_required(fsl_run, tmp_path, capsys):
    inputs, _ = fsl_run
    code = main(["run", str(inputs["folder"]), str(tmp_path / "out"), "-q"])
    assert code == EXIT_INPUT_ERROR
    assert "--subjects" in capsys.readouterr().err


def test_report_methods_describe_the_fsl_input(fsl_run):
    _, out = fsl_run
    assert main(["report", str(out), "-q"]) == 0
    text = (out / "report.html").read_text()
    assert "finished FSL dual_regression run" in text
    assert "cleaned run by run" not in text  # rsxai's preprocessing did not happen
