"""The simulated cohort: layout, determinism, and that what was planted is really there."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import signal, stats

from rsxai._version import __version__
from rsxai.exceptions import InputError
from rsxai.grid import Grid, mni_brain_mask, mni_grey_matter, mni_grid
from rsxai.simulate import (
    DEFAULT_EFFECTS,
    NETWORK_NAMES,
    Effect,
    load_ground_truth,
    simulate_cohort,
)
from rsxai.simulate.dataset import confounds_table
from rsxai.simulate.signals import motion_artefact, motion_parameters, network_timecourses

SPACE = "space-MNI152NLin2009cAsym"
MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
MOTION_24 = [
    f"{m}{s}" for m in MOTION for s in ("", "_derivative1", "_power2", "_derivative1_power2")
]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """3 + 3 subjects, 8 mm, 150 volumes (5 minutes) at TR 2 s."""
    out = tmp_path_factory.mktemp("cohort")
    return simulate_cohort(
        out, n_patients=3, n_controls=3, n_volumes=150, voxel_size=8, seed=3, progress=False
    )


@pytest.fixture(scope="module")
def effect_pair(tmp_path_factory):
    """20 + 20 subjects with the default effects and the same cohort with none (null)."""
    kwargs = dict(n_patients=20, n_controls=20, n_volumes=30, voxel_size=8, seed=5)
    planted = simulate_cohort(tmp_path_factory.mktemp("planted"), progress=False, **kwargs)
    null = simulate_cohort(tmp_path_factory.mktemp("null"), null=True, progress=False, **kwargs)
    return planted, null


def _func(cohort, label, suffix):
    return cohort.fmriprep_dir / f"sub-{label}" / "func" / f"sub-{label}_task-rest_{suffix}"


def _bold(cohort, label):
    """(BOLD in the subject's mask as (T, V) float64, the mask, the confounds table)."""
    img = nib.load(_func(cohort, label, f"{SPACE}_desc-preproc_bold.nii.gz"))
    mask = np.asarray(
        nib.load(_func(cohort, label, f"{SPACE}_desc-brain_mask.nii.gz")).dataobj
    ).astype(bool)
    confounds = pd.read_csv(_func(cohort, label, "desc-confounds_timeseries.tsv"), sep="\t")
    return np.asarray(img.dataobj)[mask].T.astype(np.float64), mask, confounds


def _residuals(data, regressors):
    """Residuals of ordinary least squares on an intercept and the regressors."""
    basis, _ = np.linalg.qr(np.column_stack([np.ones(len(data)), regressors]))
    return data - basis @ (basis.T @ data)


def _true_maps(cohort):
    """(ground truth, subjects' true maps in the MNI brain mask (S, V, K), patient flags)."""
    truth = load_ground_truth(cohort.ground_truth_dir)
    mask = mni_brain_mask(truth.parameters["voxel_size"])
    maps = np.stack([truth.load_subject(s)[0][mask] for s in cohort.subjects])
    patients = np.array([g == "ALS" for g in cohort.groups])
    return truth, maps, patients


def test_layout_and_file_names(cohort):
    root = cohort.bids_root
    labels = [f"{i:03d}" for i in range(1, 7)]
    assert cohort.subjects == tuple(labels)
    expected = {
        "dataset_description.json",
        "participants.tsv",
        "participants.json",
        "derivatives/fmriprep/dataset_description.json",
        "ground_truth/networks.nii.gz",
        "ground_truth/networks.tsv",
        "ground_truth/effects.nii.gz",
        "ground_truth/effects.tsv",
        "ground_truth/parameters.json",
    }
    for label in labels:
        func = f"derivatives/fmriprep/sub-{label}/func/sub-{label}_task-rest_"
        expected |= {
            f"{func}{SPACE}_desc-preproc_bold.nii.gz",
            f"{func}{SPACE}_desc-preproc_bold.json",
            f"{func}{SPACE}_desc-brain_mask.nii.gz",
            f"{func}desc-confounds_timeseries.tsv",
            f"ground_truth/subjects/sub-{label}_maps.nii.gz",
            f"ground_truth/subjects/sub-{label}_timecourses.tsv",
        }
    written = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert written == expected  # nothing missing, no temporary file left behind

    raw = json.loads((root / "dataset_description.json").read_text())
    assert (raw["BIDSVersion"], raw["DatasetType"]) == ("1.9.0", "raw") and raw["Name"]
    derived = json.loads((cohort.fmriprep_dir / "dataset_description.json").read_text())
    assert derived["DatasetType"] == "derivative"
    assert derived["GeneratedBy"][0] == {"Name": "rsxai simulate", "Version": __version__}
    sidecar = json.loads(_func(cohort, "001", f"{SPACE}_desc-preproc_bold.json").read_text())
    assert sidecar == {"RepetitionTime": 2.0, "TaskName": "rest", "SkullStripped": False}
    assert set(json.loads((root / "participants.json").read_text())) == {
        "participant_id",
        "group",
        "age",
        "sex",
    }


def test_images_are_on_the_mni_grid_with_tr_in_header(cohort):
    affine, shape = mni_grid(8)
    bold = nib.load(_func(cohort, "002", f"{SPACE}_desc-preproc_bold.nii.gz"))
    assert bold.shape == (*shape, 150)
    assert bold.get_data_dtype() == np.float32
    assert bold.header.get_zooms() == (8.0, 8.0, 8.0, 2.0)
    assert bold.header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_allclose(bold.affine, affine)
    mask_img = nib.load(_func(cohort, "002", f"{SPACE}_desc-brain_mask.nii.gz"))
    assert mask_img.get_data_dtype() == np.uint8 and mask_img.shape == shape

    data = np.asarray(bold.dataobj)
    mask = np.asarray(mask_img.dataobj).astype(bool)
    assert not data[~mask].any()  # zero outside the subject's mask
    assert (data[mask] > 0).all()
    # Baseline from a few hundred to about 1000.
    mean = data[mask].mean(axis=1)
    assert mean.min() > 400 and mean.max() < 1200
    # Each subject's mask is the MNI brain mask less a few of its edge voxels.
    brain = mni_brain_mask(8)
    assert not (mask & ~brain).any()
    assert 0 < (brain & ~mask).sum() < 0.05 * brain.sum()


def test_confounds_follow_fmriprep(cohort):
    data, _, confounds = _bold(cohort, "004")
    assert len(confounds) == 150
    expected = ["framewise_displacement", *MOTION_24]
    for base in ("global_signal", "white_matter", "csf"):
        expected += [base + s for s in ("", "_derivative1", "_power2", "_derivative1_power2")]
    assert sorted(confounds.columns) == sorted(expected)
    # fMRIPrep writes n/a where a value is undefined: the first row of derivatives and FD.
    first_row = _func(cohort, "004", "desc-confounds_timeseries.tsv").read_text().split("\n")[1]
    first = dict(zip(confounds.columns, first_row.split("\t"), strict=True))
    assert first["framewise_displacement"] == "n/a" and first["trans_x_derivative1"] == "n/a"
    assert first["trans_x"] != "n/a"
    assert confounds.iloc[1:].notna().all().all()

    motion = confounds[MOTION].to_numpy()
    delta = np.abs(np.diff(motion, axis=0))
    power_fd = delta[:, :3].sum(axis=1) + 50.0 * delta[:, 3:].sum(axis=1)
    np.testing.assert_allclose(
        confounds["framewise_displacement"][1:], power_fd, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(confounds["rot_y_power2"], confounds["rot_y"] ** 2, rtol=1e-4)
    np.testing.assert_allclose(
        confounds["csf_derivative1"][1:], np.diff(confounds["csf"]), rtol=1e-3, atol=2e-3
    )
    np.testing.assert_allclose(confounds["global_signal"], data.mean(axis=1), rtol=1e-5)
    # Realistic head motion: sub-millimetre on average, parameters start at zero.
    assert 0.01 < confounds["framewise_displacement"].mean() < 1.0
    np.testing.assert_allclose(motion[0], 0.0, atol=1e-9)


def test_participants_groups_and_covariates(effect_pair):
    planted, _ = effect_pair
    table = pd.read_csv(planted.bids_root / "participants.tsv", sep="\t")
    assert list(table.columns) == ["participant_id", "group", "age", "sex"]
    assert table["participant_id"].tolist() == [f"sub-{s}" for s in planted.subjects]
    assert table["group"].value_counts().to_dict() == {"ALS": 20, "HC": 20}
    assert table["group"].tolist() == list(planted.groups)
    # Groups are permuted over labels, not patients first.
    assert table["group"].tolist() != ["ALS"] * 20 + ["HC"] * 20
    assert table["age"].between(35, 85).all() and set(table["sex"]) <= {"F", "M"}
    assert 50 < table["age"].mean() < 74


def test_same_seed_same_cohort_regardless_of_n_jobs(tmp_path):
    kwargs = dict(n_patients=2, n_controls=1, n_volumes=30, voxel_size=8, progress=False)
    one = simulate_cohort(tmp_path / "one", seed=7, n_jobs=1, **kwargs)
    two = simulate_cohort(tmp_path / "two", seed=7, n_jobs=2, **kwargs)
    other = simulate_cohort(tmp_path / "other", seed=8, n_jobs=1, **kwargs)
    assert one.groups == two.groups
    for label in one.subjects:
        a, _, conf_a = _bold(one, label)
        b, _, conf_b = _bold(two, label)
        c, _, _ = _bold(other, label)
        np.testing.assert_array_equal(a, b)
        pd.testing.assert_frame_equal(conf_a, conf_b)
        assert a.shape != c.shape or not np.allclose(a, c)
    truth_one, truth_two = (
        load_ground_truth(one.ground_truth_dir),
        load_ground_truth(two.ground_truth_dir),
    )
    np.testing.assert_array_equal(
        truth_one.load_subject("001")[0], truth_two.load_subject("sub-001")[0]
    )


def test_ground_truth_shapes(cohort):
    truth = load_ground_truth(cohort.ground_truth_dir)
    affine, shape = mni_grid(8)
    assert truth.network_names == list(NETWORK_NAMES) and len(NETWORK_NAMES) == 9
    assert truth.networks.shape == (*shape, 9)
    assert truth.effects.shape == (*shape, len(DEFAULT_EFFECTS))
    np.testing.assert_allclose(truth.affine, affine)
    assert truth.effect_table.columns.tolist() == [
        "index",
        "network",
        "center_x",
        "center_y",
        "center_z",
        "radius_mm",
        "strength",
        "sign",
    ]
    assert truth.effect_table["network"].tolist() == [e.network for e in DEFAULT_EFFECTS]
    assert truth.parameters["seed"] == 3 and truth.parameters["rsxai_version"] == __version__
    assert truth.parameters["grid"]["shape"] == list(shape)
    maps, timecourses = truth.load_subject("sub-005")
    assert maps.shape == (*shape, 9)
    assert timecourses.shape == (150, 9) and timecourses.columns.tolist() == list(NETWORK_NAMES)
    np.testing.assert_allclose(timecourses.std(ddof=1), 1.0, rtol=1e-3)
    with pytest.raises(InputError, match="sub-099"):
        truth.load_subject("099")


def test_networks_sit_on_their_anatomy(cohort):
    truth = load_ground_truth(cohort.ground_truth_dir)
    networks = truth.networks
    grid = Grid(mni_brain_mask(8), truth.affine)
    xyz = grid.world_coordinates()
    maps = networks[grid.mask]  # (V, K)

    # Landmarks from the anatomical literature (not the simulator's own
    # centres): the network must dominate within 8 mm of each.
    landmarks = {
        "sensorimotor": [(-37, -21, 58), (37, -21, 58)],  # precentral hand knob
        "visual": [(-8, -88, 4), (8, -88, 4)],  # calcarine sulcus, V1
        "default_mode": [(0, -52, 28)],  # posterior cingulate
        "auditory": [(-44, -22, 8), (46, -20, 8)],  # Heschl's gyrus
        "salience": [(-34, 20, 0), (36, 20, 0)],  # anterior insula
        "cerebellar": [(-32, -66, -30), (32, -66, -30)],  # crus I
        "frontoparietal_left": [(-44, 26, 34)],  # left middle frontal gyrus
        "frontoparietal_right": [(44, 26, 34)],
        "dorsal_attention": [(-26, -8, 56)],  # frontal eye field
    }
    for name, points in landmarks.items():
        for point in points:
            near = np.linalg.norm(xyz - np.asarray(point), axis=1) <= 8.0
            best = maps[near].max(axis=0)
            assert NETWORK_NAMES[int(best.argmax())] == name, (name, point, best)
            assert best.max() > 0.3
    # The sensorimotor peak is within 15 mm of the hand knob or the SMA.
    peak = xyz[maps[:, NETWORK_NAMES.index("sensorimotor")].argmax()]
    distances = [
        np.linalg.norm(peak - np.asarray(p)) for p in [(-37, -21, 58), (37, -21, 58), (0, -6, 62)]
    ]
    assert min(distances) <= 15.0
    # Whole networks lie in their lobes: visual in occipital and posterior
    # lingual cortex (y < -45), cerebellar below the tentorium.
    visual = maps[:, NETWORK_NAMES.index("visual")]
    assert visual[xyz[:, 1] < -45].sum() > 0.95 * visual.sum()
    cerebellar = maps[:, NETWORK_NAMES.index("cerebellar")]
    assert cerebellar[xyz[:, 2] < -10].sum() > 0.95 * cerebellar.sum()

    # Peak 1, non-negative, restricted to grey matter inside the brain.
    np.testing.assert_allclose(networks.max(axis=(0, 1, 2)), 1.0)
    assert networks.min() >= 0
    in_network = networks.max(axis=-1) > 0
    assert not (in_network & ~mni_brain_mask(8)).any()
    assert (mni_grey_matter(8)[in_network] >= 0.2).all()
    # Nine networks together reach most of the cortex, but not the whole brain.
    assert in_network.mean() > 0.01 and in_network.sum() < 0.75 * mni_brain_mask(8).sum()


def test_subject_maps_vary_around_the_group_maps(cohort):
    truth = load_ground_truth(cohort.ground_truth_dir)
    controls = [s for s, g in zip(cohort.subjects, cohort.groups, strict=True) if g == "HC"]
    mask = mni_brain_mask(8)
    group = truth.networks[mask]
    for label in controls:
        maps = truth.load_subject(label)[0][mask]
        assert not np.allclose(maps, group)
        for k in range(len(NETWORK_NAMES)):
            assert np.corrcoef(maps[:, k], group[:, k])[0, 1] > 0.8  # small variations
            ratio = maps[:, k].sum() / group[:, k].sum()
            assert 0.4 < ratio < 1.6


def test_timecourses_are_band_limited_and_mildly_correlated(cohort):
    truth = load_ground_truth(cohort.ground_truth_dir)
    for label in cohort.subjects:
        series = truth.load_subject(label)[1].to_numpy()
        freqs, power = signal.periodogram(series, fs=1 / 2.0, axis=0)
        band = (freqs >= 0.01) & (freqs <= 0.1)
        assert (power[band].sum(axis=0) / power.sum(axis=0)).min() > 0.8
        off_diagonal = np.abs(np.corrcoef(series.T)[np.triu_indices(9, 1)])
        assert 0.05 < off_diagonal.mean() < 0.3 and off_diagonal.max() < 0.4
    # The band is defined in Hz, whatever the TR.
    for tr in (0.72, 3.0):
        series = network_timecourses(int(600 / tr), 4, tr, np.random.default_rng(0))
        freqs, power = signal.periodogram(series, fs=1 / tr, axis=0)
        band = (freqs >= 0.01) & (freqs <= 0.1)
        assert (power[band].sum(axis=0) / power.sum(axis=0)).min() > 0.85


def test_motion_artefact_lies_in_the_span_of_the_24_motion_regressors():
    rng = np.random.default_rng(0)
    motion = motion_parameters(120, 2.0, rng)
    patterns = rng.normal(0.0, 50.0, size=(200, 6)).astype(np.float32)
    slice_fraction = rng.uniform(0, 1, 200).astype(np.float32)
    baseline = rng.uniform(500, 1000, 200).astype(np.float32)
    artefact = motion_artefact(motion, patterns, slice_fraction, baseline).astype(np.float64)
    table = confounds_table(motion, np.zeros(120), np.zeros(120), np.zeros(120))
    regressors = table[MOTION_24].fillna(0.0).to_numpy()
    total = ((artefact - artefact.mean(axis=0)) ** 2).sum()
    assert (_residuals(artefact, regressors) ** 2).sum() < 1e-8 * total
    # The six parameters alone leave the within-volume (derivative) part.
    assert (_residuals(artefact, regressors[:, ::4]) ** 2).sum() > 1e-4 * total


def test_motion_artefacts_in_the_bold_follow_the_motion_regressors(cohort):
    excess = {}
    for label in cohort.subjects:
        data, _, confounds = _bold(cohort, label)
        n = len(data)
        # High-pass below 0.01 Hz (discrete cosines) plus the tissue signals.
        n_cosines = int(2 * n * 2.0 * 0.01)
        time = np.arange(n) + 0.5
        cosines = np.column_stack([np.cos(np.pi * k * time / n) for k in range(1, n_cosines + 1)])
        nuisance = np.column_stack([cosines, confounds[["white_matter", "csf"]]])
        motion = confounds[MOTION_24].fillna(0.0).to_numpy()
        # The same regressors shifted by half the run: same spectra, wrong times.
        shifted = np.roll(motion, n // 2, axis=0)
        before = _residuals(data, nuisance).var(axis=0)
        after = _residuals(data, np.column_stack([nuisance, motion])).var(axis=0)
        after_null = _residuals(data, np.column_stack([nuisance, shifted])).var(axis=0)
        # Where motion moves most intensity (the voxels of largest variance).
        edge = before >= np.percentile(before, 90)
        removed = 1 - after[edge].sum() / before[edge].sum()
        removed_null = 1 - after_null[edge].sum() / before[edge].sum()
        excess[confounds["framewise_displacement"].mean()] = removed - removed_null
    # The more the head moves, the more of the signal is motion.
    assert max(excess.values()) > 0.2
    assert stats.spearmanr(list(excess), list(excess.values())).statistic > 0.5


def test_bold_correlates_with_network_timecourse_where_the_network_is(cohort):
    truth = load_ground_truth(cohort.ground_truth_dir)
    for label in cohort.subjects:
        data, mask, confounds = _bold(cohort, label)
        n = len(data)
        span = np.linspace(-1, 1, n)
        nuisance = np.column_stack(
            [span, span**2, confounds[["white_matter", "csf", *MOTION_24]].fillna(0.0)]
        )
        clean = stats.zscore(_residuals(data, nuisance), axis=0)
        maps, timecourses = truth.load_subject(label)
        maps = maps[mask]
        correlation = stats.zscore(timecourses.to_numpy(), axis=0).T @ clean / n  # (K, V)
        match = np.corrcoef(np.vstack([correlation, maps.T]))[:9, 9:]
        # Each network's correlation map resembles its own true map most.
        assert (match.argmax(axis=1) == np.arange(9)).all(), label
        for k in range(9):
            core = maps[:, k] >= 0.5 * maps[:, k].max()
            assert correlation[k, core].mean() > 0.12  # chance: SD about 0.09 per voxel
            assert abs(correlation[k, maps[:, k] == 0].mean()) < 0.05


def test_planted_effect_is_where_it_was_planted(effect_pair):
    planted, null = effect_pair
    truth, maps, patients = _true_maps(planted)
    _, null_maps, _ = _true_maps(null)
    grid = Grid(mni_brain_mask(8), truth.affine)
    xyz = grid.world_coordinates()
    weights, factors = [], {}
    for _, row in truth.effect_table.iterrows():
        center = row[["center_x", "center_y", "center_z"]].to_numpy(float)
        # The documented shape, written out independently: 1 at the centre,
        # 1/2 at radius_mm, cut beyond three radii.
        ratio = np.linalg.norm(xyz - center, axis=1) / row["radius_mm"]
        weights.append(np.where(ratio <= 3, 2.0 ** (-(ratio**2)), 0.0))
        change = row["sign"] * row["strength"] * weights[-1]
        factors[row["network"]] = factors.get(row["network"], 1.0) * (1 + change)
    for e, row in truth.effect_table.iterrows():
        k = NETWORK_NAMES.index(row["network"])
        weight = weights[e]
        change = row["sign"] * row["strength"] * weight
        group = truth.networks[grid.mask, k]
        np.testing.assert_allclose(truth.effects[grid.mask, e], group * change, atol=1e-6)

        # Same seed with and without effects: controls identical, patients
        # multiplied by (1 + sign * strength * w) of every effect in that network.
        subject = maps[..., k].T  # (V, S)
        baseline = null_maps[..., k].T
        np.testing.assert_array_equal(subject[:, ~patients], baseline[:, ~patients])
        np.testing.assert_allclose(
            subject[:, patients],
            baseline[:, patients] * factors[row["network"]][:, None],
            atol=1e-5,
        )

        inside = weight >= 0.5
        # The patients-minus-controls difference of the region means is the
        # planted change, within sampling error, and is detectable with 20 + 20
        # (p < 0.05 for this one pre-specified region, even at 8 mm where
        # partial volume weakens the sensorimotor effect).
        region = subject[inside].mean(axis=0)
        observed = region[patients].mean() - region[~patients].mean()
        error = np.sqrt(region[patients].var(ddof=1) / 20 + region[~patients].var(ddof=1) / 20)
        expected = (group * change)[inside].mean()
        assert abs(observed - expected) < 3 * error
        assert abs(observed) > 2 * error
        # Elsewhere in the network (where every effect changes the map by < 1.5 %)
        # there is only chance.
        outside = (np.max(weights, axis=0) < 0.02) & (group >= 0.2)
        assert outside.sum() >= 5
        relative = (subject[outside] / group[outside, None]).mean(axis=0)
        assert abs(stats.ttest_ind(relative[patients], relative[~patients]).statistic) < 3
    other = [k for k, name in enumerate(NETWORK_NAMES) if name not in {"sensorimotor", "visual"}]
    np.testing.assert_array_equal(maps[..., other], null_maps[..., other])


def test_null_cohort_has_no_group_difference(effect_pair):
    _, null = effect_pair
    truth, maps, patients = _true_maps(null)
    assert truth.effects.shape[-1] == 0 and len(truth.effect_table) == 0
    assert not (null.ground_truth_dir / "effects.nii.gz").exists()
    assert truth.parameters["null"] is True and truth.parameters["effects"] == []
    grid = Grid(mni_brain_mask(8), truth.affine)
    xyz = grid.world_coordinates()
    for effect in DEFAULT_EFFECTS:
        k = NETWORK_NAMES.index(effect.network)
        inside = np.linalg.norm(xyz - np.asarray(effect.center_mm), axis=1) <= effect.radius_mm
        region = maps[:, inside, k].mean(axis=1)
        assert abs(stats.ttest_ind(region[patients], region[~patients]).statistic) < 3
    # Over all in-network voxels, group differences are what chance gives:
    # about 5 % of voxels at p < 0.05 (smoothness makes this vary; allow 15 %).
    in_network = truth.networks[grid.mask] > 0.2  # (V, K)
    values = maps[:, in_network]  # (S, n)
    p = stats.ttest_ind(values[patients], values[~patients], axis=0).pvalue
    assert (p < 0.05).mean() < 0.15


def test_other_voxel_size_and_tr(tmp_path):
    cohort = simulate_cohort(
        tmp_path, n_patients=1, n_controls=1, n_volumes=80, tr=0.8, voxel_size=6, progress=False
    )
    affine, shape = mni_grid(6)
    bold = nib.load(_func(cohort, "001", f"{SPACE}_desc-preproc_bold.nii.gz"))
    assert bold.shape == (*shape, 80) and bold.header.get_zooms() == (6.0, 6.0, 6.0, 0.8)
    np.testing.assert_allclose(bold.affine, affine)
    truth = load_ground_truth(cohort.ground_truth_dir)
    series = truth.load_subject("001")[1].to_numpy()
    freqs, power = signal.periodogram(series, fs=1 / 0.8, axis=0)
    band = (freqs >= 0.01) & (freqs <= 0.1)
    assert (power[band].sum(axis=0) / power.sum(axis=0)).mean() > 0.8
    grid = Grid(mni_brain_mask(6), affine)
    peak = grid.world_coordinates()[grid.from_img_data(truth.networks[..., 1]).argmax()]
    assert peak[1] < -70  # visual peak in the occipital pole


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_volumes": 10}, r"n_volumes must be an integer >= 20; got 10"),
        ({"n_volumes": 25, "tr": 2.0}, r"lasts 50 s.*n_volumes >= 30"),
        (
            {"voxel_size": 0},
            r"voxel_size must be a number of mm from 1.5 to 10 \(2, 3 and 4 are usual\); got 0\.",
        ),
        ({"voxel_size": -4.0}, r"voxel_size .* got -4.0"),
        ({"tr": 6.0}, r"tr must be a number of seconds from 0.1 to 4.5; got 6.0"),
        ({"n_patients": 0}, r"n_patients must be an integer >= 1; got 0"),
        ({"n_controls": 2.5}, r"n_controls must be an integer >= 1; got 2.5"),
        ({"seed": -1}, r"seed must be an integer >= 0"),
        ({"n_jobs": 0}, r"n_jobs must be a non-zero integer"),
        ({"null": "yes"}, r"null must be True or False; got 'yes'"),
        ({"patient_label": "HC"}, r"patient_label and control_label must differ"),
        ({"patient_label": "ALS patients"}, r"patient_label must be .*'ALS patients'"),
        ({"effects": DEFAULT_EFFECTS[0]}, r"effects must be a tuple or list of Effect"),
        (
            {"effects": (Effect("motor", (-38, -26, 54)),)},
            r"effects\[0\]\.network must be one of sensorimotor, visual, .*; got 'motor'",
        ),
        (
            {"effects": (Effect("visual", (0, 0, 150)),)},
            r"effects\[0\]: center_mm \(0.0, 0.0, 150.0\) lies outside the MNI152 brain",
        ),
        (
            {"effects": (Effect("visual", (-38, -26, 54)),)},
            r"effects\[0\]: the visual network reaches only 0.00 of its peak.*calcarine",
        ),
        (
            {"effects": (Effect("visual", (10, -88, 6), strength=1.5, sign=2),)},
            r"strength must be a fraction in \(0, 1\]; got 1.5(.|\n)*sign must be -1 or 1",
        ),
        ({"effects": ("sensorimotor",)}, r"effects\[0\]: must be an rsxai.simulate.Effect"),
    ],
)
def test_bad_parameters_are_named(tmp_path, kwargs, message):
    arguments = dict(n_patients=1, n_controls=1, n_volumes=30, voxel_size=8, progress=False)
    arguments.update(kwargs)
    with pytest.raises(InputError, match=message):
        simulate_cohort(tmp_path / "out", **arguments)
    assert not (tmp_path / "out").exists()  # nothing written


def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(InputError) as error:
        simulate_cohort(tmp_path, n_patients=0, tr=-1, voxel_size=0, progress=False)
    assert {p.split(" ")[0] for p in error.value.problems} == {"n_patients", "tr", "voxel_size"}


def test_out_dir_must_not_hold_other_data(tmp_path, cohort):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty and does not hold an rsxai simulated"):
        simulate_cohort(tmp_path, n_patients=1, n_controls=1, voxel_size=8, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    # An earlier simulated cohort with subjects the new one would not replace.
    with pytest.raises(InputError, match="sub-003"):
        simulate_cohort(
            cohort.bids_root,
            n_patients=1,
            n_controls=1,
            n_volumes=30,
            voxel_size=8,
            progress=False,
        )


def test_earlier_simulation_is_replaced(tmp_path):
    kwargs = dict(n_patients=1, n_controls=1, n_volumes=30, voxel_size=8, progress=False)
    first = simulate_cohort(tmp_path, seed=1, **kwargs)
    first_bold = _bold(first, "001")[0]
    second = simulate_cohort(tmp_path, seed=2, null=True, **kwargs)
    assert not np.array_equal(first_bold, _bold(second, "001")[0])
    assert load_ground_truth(second.ground_truth_dir).effects.shape[-1] == 0
    assert not (tmp_path / "ground_truth" / "effects.nii.gz").exists()
