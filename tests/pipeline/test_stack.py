"""`rsxai stats` and `rsxai classify` on a user's 4D stack of subject maps.

A planted group difference must be found where it was planted and nowhere
else, nothing must be found without one, t must be scipy's two-sample t,
the classification must report the external-maps scope, and bad inputs must
give exit code 2 with every problem listed at once.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rsxai.cli import EXIT_INPUT_ERROR, main
from rsxai.cohort.map_stack import network_name
from rsxai.grid import mni_brain_mask, mni_grid
from rsxai.outputs import output_path, read_json

VOXEL_MM = 8.0
CENTRE_MM = np.array([-38.0, -22.0, 56.0])  # left sensorimotor cortex
RADIUS_MM = 16.0
EFFECT = 2.0  # patients minus controls inside the sphere, in noise SDs
N_PER_GROUP = 8
FAST_STATS = ["--n-permutations", "99", "-q"]
FAST_CLASSIFY = ["--models", "svm", "logistic", "--cv-folds", "3"]
FAST_CLASSIFY += ["--baseline-permutations", "19", "-q"]


def _world(shape, affine):
    ijk = np.indices(shape).reshape(3, -1).T
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).reshape(*shape, 3)


def _groups():
    # Interleaved, not sorted: a stack read in the wrong order would lose the effect.
    return np.array(["ALS", "HC", "HC", "ALS"] * (N_PER_GROUP // 2))


def write_inputs(folder, *, effect=EFFECT, radius=RADIUS_MM, seed=0):
    """A 4D stack on the 8 mm MNI grid (zero outside the brain, as FSL writes) and its table."""
    affine, shape = mni_grid(VOXEL_MM)
    brain = mni_brain_mask(VOXEL_MM)
    sphere = brain & (np.linalg.norm(_world(shape, affine) - CENTRE_MM, axis=-1) <= radius)
    groups = _groups()
    rng = np.random.default_rng(seed)
    data = np.zeros((*shape, groups.size), dtype=np.float32)
    data[brain] = rng.standard_normal((int(brain.sum()), groups.size))
    data[sphere] += effect * (groups == "ALS")
    stack = folder / "dr_stage2_ic0003.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), stack)
    table = pd.DataFrame(
        {
            "participant_id": [f"sub-{i:02d}" for i in range(1, groups.size + 1)],
            "group": groups,
            "age": rng.uniform(40, 70, groups.size).round(1),
        }
    )
    subjects = folder / "participants.tsv"
    table.to_csv(subjects, sep="\t", index=False)
    return {"stack": stack, "subjects": subjects, "data": data, "sphere": sphere, "brain": brain}


def _run(command, inputs, out, *flags):
    return main([command, str(inputs["stack"]), str(inputs["subjects"]), str(out), *flags])


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    inputs = write_inputs(folder)
    # One in-brain voxel zero in one subject: the default mask must leave it out.
    hole = tuple(np.argwhere(inputs["brain"] & ~inputs["sphere"])[0])
    inputs["data"][(*hole, 5)] = 0.0
    nib.save(nib.Nifti1Image(inputs["data"], mni_grid(VOXEL_MM)[0]), inputs["stack"])
    out = folder / "results"
    assert _run("stats", inputs, out, *FAST_STATS) == 0
    return inputs, out, hole


def test_default_network_name_and_mask(planted):
    inputs, out, hole = planted
    assert network_name(inputs["stack"]) == ("ic0003", [])
    assert network_name(inputs["stack"].with_name("network-visual_x.nii.gz"))[0] == "visual"
    mask = np.asarray(nib.load(output_path(out, "mask")).dataobj) != 0
    expected = inputs["brain"].copy()
    expected[hole] = False
    np.testing.assert_array_equal(mask, expected)
    summary = read_json(output_path(out, "summary"))
    assert summary["input_maps"]["mask_rule"].startswith("voxels non-zero in every volume")
    assert summary["input_maps"]["n_voxels"] == expected.sum()
    assert summary["subjects"]["positive_label"] == "ALS"  # guessed: HC is a control name
    assert summary["subjects"]["groups"] == {"ALS": N_PER_GROUP, "HC": N_PER_GROUP}
    participants = pd.read_csv(output_path(out, "participants"), sep="\t")
    assert participants["group"].tolist() == _groups().tolist()
    assert "[stats]" in output_path(out, "config").read_text()
    assert read_json(output_path(out, "dataset_description"))["DatasetType"] == "derivative"


def test_t_map_equals_scipy(planted):
    inputs, out, _ = planted
    mask = np.asarray(nib.load(output_path(out, "mask")).dataobj) != 0
    t_path = output_path(
        out, "stat_map", network="ic0003", contrast="patientsGTcontrols", stat="t"
    )
    t = np.asarray(nib.load(t_path).dataobj)[mask]
    maps = inputs["data"][mask]  # (n_voxels, n_subjects)
    patients = _groups() == "ALS"
    expected = stats.ttest_ind(maps[:, patients], maps[:, ~patients], axis=1).statistic
    np.testing.assert_allclose(t, expected, rtol=1e-4, atol=1e-5)


def test_planted_effect_found_at_its_place(planted):
    _, out, _ = planted
    entry = read_json(output_path(out, "summary"))["stats"]["networks"]["ic0003"]
    found = entry["patients>controls"]
    assert found["n_permutations"] == 99 and found["inference"] == "TFCE"
    assert found["n_fwe_significant_voxels"] > 0 and found["min_p_fwe"] < 0.05
    assert np.linalg.norm(np.array(found["peak_mni"]) - CENTRE_MM) <= RADIUS_MM
    logp = np.asarray(
        nib.load(out / found["maps"]["logpFWEtfce"]).dataobj  # -log10 FWE p
    )
    significant = logp > -np.log10(0.05)
    # TFCE spreads support a little: allow one voxel around the sphere.
    near = np.linalg.norm(
        _world(significant.shape, mni_grid(VOXEL_MM)[0]) - CENTRE_MM, axis=-1
    ) <= RADIUS_MM + VOXEL_MM * np.sqrt(3)
    assert significant.any() and not (significant & ~near).any()
    clusters = pd.read_csv(out / found["clusters"], sep="\t")
    assert len(clusters) == found["n_clusters"] >= 1
    assert entry["controls>patients"]["n_fwe_significant_voxels"] == 0


def test_nothing_found_without_effect(tmp_path):
    inputs = write_inputs(tmp_path, effect=0.0, seed=1)
    out = tmp_path / "results"
    flags = ["--covariates", "age", "--contrasts", "two-sided", *FAST_STATS]
    assert _run("stats", inputs, out, *flags) == 0
    summary = read_json(output_path(out, "summary"))
    assert summary["stats"]["covariates"] == ["age"]
    entry = summary["stats"]["networks"]["ic0003"]["two-sided"]
    assert entry["n_fwe_significant_voxels"] == 0 and entry["n_clusters"] == 0
    assert entry["min_p_fwe"] >= 0.05


def test_classify_writes_external_scope(tmp_path):
    # A wider effect than the stats tests': linear models on 16 subjects need it.
    inputs = write_inputs(tmp_path, radius=24.0)
    out = tmp_path / "results"
    assert _run("classify", inputs, out, "--network-name", "motor", *FAST_CLASSIFY) == 0
    summary = read_json(output_path(out, "summary"))
    cv = summary["classification"]["cv"]
    assert cv["cv_scope"] == "external maps" and cv["transductive"] is None
    assert "cannot know" in cv["description"] and cv["n_splits"] == 3
    # Run times are provenance's, not results: summary.json has none.
    assert "feature_seconds" not in summary["classification"]
    timing = read_json(output_path(out, "provenance"))["stages"]["classify"]
    assert timing["status"] == "computed" and timing["seconds"] >= 0
    assert len(timing["feature_seconds"]) == 1  # the maps as given: one feature step
    labels = [f"sub-{i:02d}" for i in range(1, 2 * N_PER_GROUP + 1)]
    truth = dict(zip(labels, (_groups() == "ALS").astype(int).tolist(), strict=True))
    for model in ("svm", "logistic"):
        predictions = pd.read_csv(
            output_path(out, "cls_predictions", network="motor", model=model),
            sep="\t",
            dtype={"subject": str},
        )
        subjects = ("sub-" + predictions["subject"]).tolist()
        assert sorted(subjects) == labels  # each subject predicted once, out of fold
        assert predictions["y_true"].tolist() == [truth[label] for label in subjects]
        metrics = read_json(output_path(out, "cls_metrics", network="motor", model=model))
        assert metrics["cv"]["cv_scope"] == "external maps"
        assert metrics["permutation"]["n_permutations"] == 19
        assert metrics["accuracy"]["value"] >= 0.8  # a strong planted difference
    heldout = nib.load(output_path(out, "cls_heldout_maps", network="motor"))
    assert heldout.shape[-1] == 2 * N_PER_GROUP
    assert "cv_scope" not in output_path(out, "config").read_text()


def test_classify_cnn_writes_fold_models(tmp_path):
    inputs = write_inputs(tmp_path)
    out = tmp_path / "results"
    flags = ["--models", "cnn", "--cnn-epochs", "2", "--cv-folds", "3", "-q"]
    assert _run("classify", inputs, out, *flags) == 0
    for fold in range(3):
        assert output_path(out, "cls_weights", network="ic0003", repeat=0, fold=fold).is_file()
    curves = pd.read_csv(output_path(out, "cls_training", network="ic0003"), sep="\t")
    assert sorted(curves["fold"].unique()) == [0, 1, 2] and curves["epoch"].max() <= 2
    metrics = read_json(output_path(out, "cls_metrics", network="ic0003", model="cnn"))
    assert metrics["cv"]["cv_scope"] == "external maps" and metrics["permutation"] is None


def _messages(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_every_problem_listed_at_once(tmp_path, capsys):
    inputs = write_inputs(tmp_path)
    data = inputs["data"].copy()
    data[10, 10, 10, 3] = np.nan
    nib.save(nib.Nifti1Image(data, mni_grid(VOXEL_MM)[0]), inputs["stack"])
    table = pd.read_csv(inputs["subjects"], sep="\t").iloc[:-1]
    table.loc[2, "group"] = "n/a"
    table.to_csv(inputs["subjects"], sep="\t", index=False)
    affine, shape = mni_grid(6.0)
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(shape, dtype=np.uint8), affine), mask)
    out = tmp_path / "results"
    code = _run("stats", inputs, out, "--mask", str(mask), *FAST_STATS)
    err = _messages(capsys)
    assert code == EXIT_INPUT_ERROR
    assert "has 16 volumes but SUBJECTS" in err and "has 15 rows" in err
    assert "line 4: sub-03 has no value in column 'group'" in err
    assert "NaN or infinite values in 1 volume(s) (volume 3)" in err
    assert "is on a different grid" in err
    assert err.count("rsxai: error:") == 4
    assert not out.exists()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("3d", "is 3D (shape 24x28x24); give a 4D stack"),
        ("unreadable", "not a readable NIfTI image"),
        ("single group", "every subject is in group 'ALS'; rsxai compares two groups"),
        ("unknown covariate", "--covariates: weight not in"),
        ("output is input folder", "rsxai never writes beside its inputs"),
    ],
)
def test_bad_input_is_exit_2(tmp_path, capsys, case, message):
    inputs = write_inputs(tmp_path)
    out, flags = tmp_path / "results", list(FAST_STATS)
    if case == "3d":
        nib.save(nib.Nifti1Image(inputs["data"][..., 0], mni_grid(VOXEL_MM)[0]), inputs["stack"])
    elif case == "unreadable":
        inputs["stack"].write_bytes(b"not a nifti at all")
    elif case == "single group":
        table = pd.read_csv(inputs["subjects"], sep="\t").assign(group="ALS")
        table.to_csv(inputs["subjects"], sep="\t", index=False)
    elif case == "unknown covariate":
        flags += ["--covariates", "weight"]
    else:
        out = tmp_path
    code = _run("stats", inputs, out, *flags)
    assert code == EXIT_INPUT_ERROR
    assert message in _messages(capsys)
    assert not (tmp_path / "results").exists()


def test_classify_folds_checked_before_work(tmp_path, capsys):
    inputs = write_inputs(tmp_path)
    out = tmp_path / "results"
    code = _run("classify", inputs, out, "--models", "svm", "--cv-folds", "9", "-q")
    assert code == EXIT_INPUT_ERROR
    assert "cv_folds must be between 2 and the size of the smaller group (8)" in _messages(capsys)
    assert not out.exists()


@pytest.mark.parametrize("command", ["stats", "classify"])
def test_help_shows_registry_options(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--mask" in text and "--network-name" in text and "--positive-label" in text
    if command == "stats":
        assert "(default: 5000; config: [stats] n_permutations)" in text
        assert "--covariates" in text and "--cv-folds" not in text
    else:
        assert "(default: 10; config: [classify] cv_folds)" in text
        assert "--cv-scope" not in text and "--n-permutations" not in text
