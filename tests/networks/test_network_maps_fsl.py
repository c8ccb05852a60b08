"""The path of ``rsxai run`` (prepare_subject, then NetworkMaps) against FSL's dual_regression.

FSL's ``dual_regression`` regresses its input (FEAT's cleaned data,
grand-mean scaled to 10,000, not variance-normalised) on the group maps, then
on the variance-normalised stage-1 time courses. These tests feed BOLD runs
whose voxels differ in amplitude through rsxai's preprocessing and
NetworkMaps and compare with that script written out in NumPy.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
from nilearn.signal import clean as nilearn_clean
from threadpoolctl import threadpool_limits

from rsxai.grid import Grid
from rsxai.networks import NetworkMaps, builtin_templates
from rsxai.preprocess import prepare_subject
from tests.decomposition.test_dual_regression import fsl_dual_regression_reference

TR = 2.0
N_VOLUMES = 100
NAMES = ["auditory", "visual", "default_mode", "sensorimotor"]


@pytest.fixture(autouse=True, scope="module")
def single_blas_thread():
    """One BLAS thread: on a small shared machine OpenBLAS threads contend and run 10x slower."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def grid():
    return Grid.mni(8)


@pytest.fixture(scope="module")
def planted(grid):
    """Group maps (built-in templates), voxel amplitudes over a factor of 100, a BOLD writer."""
    templates = builtin_templates(grid)
    maps = np.stack([templates.maps[templates.names.index(n)] for n in NAMES])
    rng = np.random.default_rng(0)
    baseline = rng.uniform(600.0, 1400.0, grid.n_voxels)
    amplitude = np.exp(rng.uniform(np.log(0.1), np.log(10.0), grid.n_voxels))

    def fluctuation(seed: int) -> np.ndarray:
        local = np.random.default_rng(seed)
        timecourses = local.standard_normal((N_VOLUMES, len(NAMES)))
        return timecourses @ maps + 0.5 * local.standard_normal((N_VOLUMES, grid.n_voxels))

    def write(path, values: np.ndarray):
        img = grid.to_img(baseline + values)
        img.header.set_zooms((*grid.voxel_size, TR))
        nib.save(img, path)
        return path

    return maps, amplitude, fluctuation, write


def feat_style_input(path, grid: Grid) -> np.ndarray:
    """What FSL's dual_regression reads: the cleaned run, grand-mean scaled, not z-scored.

    nilearn's cleaning (detrend, band-pass; checked equal to rsxai's in
    tests/preprocess) without its z-scoring, then FEAT's grand-mean scaling:
    one factor making the median in-mask intensity 10,000.
    """
    raw = grid.from_img_data(np.asarray(nib.load(path).dataobj)).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cleaned = nilearn_clean(
            raw, detrend=True, standardize=False, low_pass=0.1, high_pass=0.01, t_r=TR
        )
    return cleaned * 10000.0 / np.median(raw[raw != 0])


def fitted_on_group_maps(grid, maps, tmp_path, **params) -> NetworkMaps:
    """NetworkMaps on imported group maps (as FSL's dual_regression is given them)."""
    path = tmp_path / "melodic_IC.nii.gz"
    nib.save(grid.to_img(maps), path)
    return NetworkMaps(grid, networks=NAMES, group_maps=path, **params).fit([])


def test_default_path_matches_fsl_dual_regression_on_amplitude_differences(
    grid, planted, tmp_path
):
    maps, amplitude, fluctuation, write = planted
    bold = write(tmp_path / "sub-01_bold.nii.gz", amplitude * fluctuation(1))
    series = prepare_subject([(bold, None)], grid, tr=TR)  # the preprocess stage's cache
    model = fitted_on_group_maps(grid, maps, tmp_path)
    ours = model.dual_regress(series)

    fsl_input = feat_style_input(bold, grid)
    ref_tc, ref_maps, _, _ = fsl_dual_regression_reference(model.components_, fsl_input)
    scale = np.abs(ref_maps).max()
    np.testing.assert_allclose(ours.maps, ref_maps, atol=1e-4 * scale)
    # Up to their temporal means, which stage 2 removes (and which follow each
    # voxel's temporal mean: nilearn leaves a trace of it after filtering, FEAT
    # adds it back).
    ours_tc, ref_tc = ours.timecourses - ours.timecourses.mean(0), ref_tc - ref_tc.mean(0)
    np.testing.assert_allclose(ours_tc, ref_tc, atol=1e-4 * np.abs(ref_tc).max())
    rows = [model.network_components_[name] for name in NAMES]
    np.testing.assert_allclose(model.transform([series])[0], ref_maps[rows], atol=1e-4 * scale)
    # The voxel-wise amplitudes are in the maps: a voxel's map follows its amplitude.
    visual = model.network_components_["visual"]
    strong = maps[visual] > 0.5 * maps[visual].max()
    log_maps = np.log(np.abs(ours.maps[visual, strong]))
    assert np.corrcoef(np.log(amplitude[strong]), log_maps)[0, 1] > 0.8


def test_doubled_voxel_amplitude_doubles_its_map_unless_variance_normalised(
    grid, planted, tmp_path
):
    maps, amplitude, fluctuation, write = planted
    voxel = int(np.argmax(maps[NAMES.index("sensorimotor")]))
    values = amplitude * fluctuation(2)
    doubled = values.copy()
    doubled[:, voxel] *= 2.0  # twice the fluctuation about the same baseline
    subjects = [
        prepare_subject([(write(tmp_path / f"{name}_bold.nii.gz", v), None)], grid, tr=TR)
        for name, v in (("once", values), ("twice", doubled))
    ]
    ratio = {}
    for variance_normalise in (False, True):
        model = fitted_on_group_maps(grid, maps, tmp_path, variance_normalise=variance_normalise)
        out = model.transform(subjects)[:, NAMES.index("sensorimotor")]
        ratio[variance_normalise] = out[1, voxel] / out[0, voxel]
    # FSL's behaviour (the default): the subject with twice the amplitude has twice the map.
    assert ratio[False] == pytest.approx(2.0, rel=0.02)
    # Z-scored voxels (variance_normalise): the amplitude is gone, both maps are the same.
    assert ratio[True] == pytest.approx(1.0, rel=0.02)
