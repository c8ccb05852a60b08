"""Tests for GroupICA, MIGP and the ICASSO restarts (rsxai.decomposition) on planted sources."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy import linalg, stats
from sklearn.base import BaseEstimator, clone
from sklearn.decomposition import PCA, FastICA
from sklearn.exceptions import NotFittedError
from threadpoolctl import threadpool_limits

from rsxai.decomposition import GroupICA, dual_regression, estimate_n_components, migp
from rsxai.decomposition.icasso import fastica_restarts, icasso_stability, symmetric_fastica
from rsxai.decomposition.pca_dimension import laplace_log_evidence
from rsxai.exceptions import ICAConvergenceWarning, InputError

N_SOURCES = 5


@pytest.fixture(autouse=True, scope="module")
def single_blas_thread():
    """One BLAS thread: on a small shared machine OpenBLAS threads contend and run 10x slower."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def make_subjects(n_subjects=8, n_volumes=100, n_voxels=2000, noise=2.0, seed=0):
    """Sparse positive sources mixed by subject-specific time courses, plus Gaussian noise.

    Each subject is z-scored per voxel (MIGP normalises every voxel itself, so
    the preprocessing's amplitude-keeping data give the same ICA).
    Returns the planted sources (K, V), the time courses and the subjects.
    """
    rng = np.random.default_rng(seed)
    sources = np.zeros((N_SOURCES, n_voxels))
    for k in range(N_SOURCES):
        support = rng.choice(n_voxels, n_voxels // 10, replace=False)
        sources[k, support] = rng.uniform(1.0, 2.0, support.size)
    timecourses, subjects = [], []
    for _ in range(n_subjects):
        tc = rng.standard_normal((n_volumes, N_SOURCES)) * rng.uniform(0.5, 1.5, N_SOURCES)
        data = tc @ sources + noise * rng.standard_normal((n_volumes, n_voxels))
        data = (data - data.mean(axis=0)) / data.std(axis=0)
        timecourses.append(tc)
        subjects.append(data.astype(np.float32))
    return sources, timecourses, subjects


def test_components_are_the_same_on_z_scored_and_on_amplitude_preserving_data():
    # The preprocessed cache is no longer z-scored (dual regression uses each
    # voxel's amplitude, as FSL's): MIGP normalises each voxel of each subject
    # itself, so group ICA must not change, to float32 rounding.
    sources, _, z_scored = make_subjects(n_subjects=6, n_volumes=80, n_voxels=1500)
    rng = np.random.default_rng(1)
    amplitude = np.exp(rng.uniform(np.log(0.1), np.log(10.0), sources.shape[1]))
    raw = [
        (rng.uniform(0.5, 2.0) * amplitude * s + rng.uniform(0, 1000, s.shape[1])).astype(
            np.float32
        )
        for s in z_scored
    ]
    fits = [GroupICA(n_components=N_SOURCES, n_restarts=3).fit(x) for x in (z_scored, raw)]
    scale = np.abs(fits[0].components_).max()
    np.testing.assert_allclose(fits[1].components_, fits[0].components_, atol=1e-4 * scale)
    np.testing.assert_allclose(
        fits[1].explained_variance_ratio_, fits[0].explained_variance_ratio_, rtol=1e-5
    )
    np.testing.assert_allclose(fits[1].stability_, fits[0].stability_, atol=1e-4)
    # Not trivially: the two inputs differ by far more than rounding.
    assert np.abs(raw[0] - z_scored[0]).max() > 100


def normalised_concatenation(subjects):
    """All subjects demeaned and variance-normalised per voxel, stacked in time (float64)."""
    normalised = [np.asarray(s, dtype=np.float64) for s in subjects]
    return np.vstack([(s - s.mean(axis=0)) / s.std(axis=0) for s in normalised])


def assert_top_space_matches_concatenation_pca(result, subjects):
    """MIGP's top N_SOURCES rows span the exact PCA's, with its eigenvalues (2 %)."""
    concatenated = normalised_concatenation(subjects)
    _, singular_values, right = np.linalg.svd(concatenated, full_matrices=False)
    angles = linalg.subspace_angles(
        result.components[:N_SOURCES].T.astype(np.float64), right[:N_SOURCES].T
    )
    assert np.rad2deg(angles.max()) < 2.0
    np.testing.assert_allclose(
        result.eigenvalues[:N_SOURCES], singular_values[:N_SOURCES] ** 2, rtol=2e-2
    )
    return concatenated


def noise_subjects(n_subjects=8, n_volumes=100, n_voxels=2000, seed=5):
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((n_volumes, n_voxels)).astype(np.float32) for _ in range(n_subjects)
    ]


@pytest.fixture(scope="module")
def planted():
    sources, timecourses, subjects = make_subjects()
    model = GroupICA(N_SOURCES, n_restarts=10, random_state=0).fit(subjects)
    return sources, timecourses, subjects, model


def best_match(planted_maps, estimated_maps):
    """Signed correlation of each planted map with its best (largest |r|) estimate."""
    k = planted_maps.shape[0]
    r = np.corrcoef(np.vstack([planted_maps, estimated_maps]))[:k, k:]
    return r[np.arange(k), np.argmax(np.abs(r), axis=1)], np.argmax(np.abs(r), axis=1)


def test_recovers_every_planted_source_with_positive_sign(planted):
    sources, _, _, model = planted
    r, matched = best_match(sources, model.components_)
    assert np.all(r >= 0.9), r
    assert len(set(matched)) == N_SOURCES  # one component per source
    maps = model.components_
    assert maps.shape == (N_SOURCES, 2000) and maps.dtype == np.float32
    np.testing.assert_allclose(maps.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(maps.std(axis=1), 1, atol=1e-5)
    assert np.all(stats.skew(maps, axis=1) > 0)
    assert model.n_components_ == N_SOURCES
    assert model.n_voxels_ == 2000


def test_mixing_rebuilds_the_group_pca_space(planted):
    *_, model = planted
    k = model.n_components_
    pca_maps = model.migp_components_[:k].astype(np.float64)
    pca_maps -= pca_maps.mean(axis=1, keepdims=True)
    relative = np.linalg.norm(model.mixing_ @ model.components_ - pca_maps) / np.linalg.norm(
        pca_maps
    )
    assert relative < 1e-5
    # Components come in decreasing order of the variance they carry.
    assert np.all(np.diff(np.sum(model.mixing_**2, axis=0)) <= 0)


def test_explained_variance_ratio_is_per_component_and_matches_full_pca(planted):
    _, _, subjects, model = planted
    concatenated = normalised_concatenation(subjects)
    left, singular_values, right = np.linalg.svd(concatenated, full_matrices=False)
    top = (left[:, :N_SOURCES] * singular_values[:N_SOURCES]) @ right[:N_SOURCES]
    # Independent reference: the variance of the exact rank-K PCA reconstruction
    # along each component's map, over the total variance of the data.
    maps = model.components_.astype(np.float64)
    along = np.sum((top @ maps.T) ** 2, axis=0) / np.sum(maps**2, axis=1)
    expected = along / np.sum(concatenated**2)
    np.testing.assert_allclose(model.explained_variance_ratio_, expected, rtol=2e-3)
    assert np.all(np.diff(model.explained_variance_ratio_) <= 0)  # component order
    # The PCA-order fractions are still there, from the MIGP eigenvalues.
    np.testing.assert_allclose(
        model.migp_eigenvalues_[:N_SOURCES] / np.sum(concatenated**2),
        singular_values[:N_SOURCES] ** 2 / np.sum(concatenated**2),
        rtol=2e-3,
    )


@pytest.mark.parametrize(
    ("migp_dim", "default_cap", "expected_m"),
    [(None, None, 199), (12, None, 12), (None, 15 * N_SOURCES, 75), (12, 75, 12)],
)
def test_migp_subspace_matches_full_concatenation_pca(migp_dim, default_cap, expected_m):
    _, _, subjects = make_subjects(seed=1)
    result = migp(subjects, migp_dim, default_cap=default_cap, random_state=3)
    m = result.components.shape[0]
    # Default 2T - 1 (MELODIC's), lowered to default_cap; a given m wins.
    assert m == expected_m
    # Memory bound: the stack is reduced as soon as it holds 2m rows, so it
    # never holds more than 2m - 1 rows plus one piece of a subject (its 100
    # volumes, or at most m of them).
    assert 2 * m <= result.peak_rows <= 2 * m - 1 + min(m, 100)
    concatenated = assert_top_space_matches_concatenation_pca(result, subjects)
    # Rows are orthogonal with squared norms equal to the eigenvalues.
    gram = result.components.astype(np.float64) @ result.components.T.astype(np.float64)
    np.testing.assert_allclose(np.diag(gram), result.eigenvalues, rtol=1e-4)
    off_diagonal = gram - np.diag(np.diag(gram))
    assert np.abs(off_diagonal).max() < 1e-4 * result.eigenvalues[0]
    assert result.n_time_points == 800
    assert result.rank_bound == 8 * 99
    np.testing.assert_allclose(result.total_variance, np.sum(concatenated**2), rtol=1e-6)


def test_migp_reduces_runs_as_long_as_m_one_at_a_time():
    # T = m: each subject brings the stack to exactly 2m rows and is reduced
    # on its own (3m rows, were two subjects stacked), without losing accuracy.
    _, _, subjects = make_subjects(n_subjects=6, n_volumes=40, n_voxels=1500, seed=9)
    result = migp(subjects, 40, random_state=0)
    assert result.peak_rows == 80
    assert_top_space_matches_concatenation_pca(result, subjects)


def test_migp_with_unequal_runs_matches_full_concatenation_pca():
    # Runs of unequal length, some longer than the first (stacked in pieces of
    # the first run's length) and than m (pieces of m rows).
    rng = np.random.default_rng(6)
    _, _, subjects = make_subjects(n_subjects=6, n_volumes=140, n_voxels=1500, seed=6)
    lengths = [40, 140, 25, 90, 140, 60]
    subjects = [s[:n] for s, n in zip(subjects, lengths, strict=True)]
    order = rng.permutation(6)
    result = migp([subjects[i] for i in order], 50, random_state=None)
    assert result.n_time_points == sum(lengths)
    assert result.peak_rows <= 2 * 50 + 50
    concatenated = assert_top_space_matches_concatenation_pca(result, subjects)
    np.testing.assert_allclose(result.total_variance, np.sum(concatenated**2), rtol=1e-6)


def test_migp_normalisation_ignores_each_voxels_offset_and_scale():
    # Voxel by voxel demeaning and variance normalisation: an offset and a
    # scale per voxel (huge ones included, whose float32 squares overflow)
    # change nothing; a constant voxel stays zero.
    _, _, subjects = make_subjects(n_subjects=4, n_volumes=30, n_voxels=400, seed=7)
    rng = np.random.default_rng(7)
    offsets = rng.uniform(-1e3, 1e3, 400).astype(np.float32)
    scales = rng.uniform(0.1, 10.0, 400).astype(np.float32)
    scales[:3] = 1e20
    for subject in subjects:
        subject[:, 10] = 0.0
    changed = [s * scales + offsets for s in subjects]
    for subject in changed:
        subject[:, 10] = 5.0
    reference = migp(subjects, 20, random_state=0)
    result = migp(changed, 20, random_state=0)
    assert np.all(result.components[:, 10] == 0)
    np.testing.assert_allclose(
        np.abs(result.components[:5]), np.abs(reference.components[:5]), atol=2e-3
    )
    assert result.total_variance == reference.total_variance == 4 * 30 * 399


def test_migp_memory_is_one_stack_and_one_subject():
    # Streamed subjects: traced allocations at their peak hold the float32 stack
    # (the m rows of the working matrix and at most m + T rows stacked under
    # it), the subject being read and temporaries of ~1 MB, not float64 copies
    # of a subject.
    n_volumes, n_voxels = 30, 40_000

    def loader(index):
        return lambda: np.random.default_rng(index).standard_normal(
            (n_volumes, n_voxels), dtype=np.float32
        )

    tracemalloc.start()
    try:
        result = migp([loader(i) for i in range(6)], random_state=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    m = 2 * n_volumes - 1
    assert result.components.shape == (m, n_voxels)
    assert result.peak_rows == 2 * m + 1  # two subjects under W's m = 2T - 1 rows
    # tracemalloc counts the stack's whole allocation, 2m + T rows (the pages of
    # rows never written are not resident, but are counted here).
    stack, subject = (2 * m + n_volumes) * n_voxels * 4, n_volumes * n_voxels * 4
    assert peak - subject < stack + 2_000_000, (peak, stack)


def test_group_ica_default_migp_dim_is_melodics_capped_at_15_per_component():
    # T = 40 volumes: MELODIC's default is 2T - 1 = 79 rows. With K = 2
    # components 15 K = 30 is smaller and is used; with K = 6 (90) and with
    # "auto" (no K to scale with) MELODIC's 79; a given migp_dim wins.
    _, _, subjects = make_subjects(n_subjects=3, n_volumes=40, n_voxels=500, seed=8)
    for n_components, migp_dim, expected in ((2, None, 30), (6, None, 79), (2, 50, 50)):
        model = GroupICA(n_components, migp_dim=migp_dim, n_restarts=1).fit(subjects)
        assert model.migp_components_.shape[0] == expected, (n_components, migp_dim)
    assert migp(subjects, default_cap=30).components.shape[0] == 30
    assert migp(subjects, default_cap=500).components.shape[0] == 79
    with pytest.raises(InputError, match=r"default_cap must be None or an integer >= 1; got 0"):
        migp(subjects, default_cap=0)


def test_migp_is_exact_when_everything_fits():
    _, _, subjects = make_subjects(n_subjects=3, n_volumes=40, n_voxels=300, seed=2)
    result = migp(subjects, 200, random_state=0, dtype=np.float64)
    assert result.peak_rows == 120  # never reduced before the end
    concatenated = normalised_concatenation(subjects)
    singular_values = np.linalg.svd(concatenated, compute_uv=False)
    # Rank is 3 * 39 after temporal demeaning; MIGP keeps exactly that many.
    assert result.eigenvalues.size == result.rank_bound == 117
    np.testing.assert_allclose(result.eigenvalues, singular_values[:117] ** 2, rtol=1e-8)


def test_stability_high_for_real_sources_and_low_for_noise(planted):
    *_, model = planted
    assert np.all(model.stability_ > 0.95), model.stability_
    # On one noise cohort the mean stability of 5 components of noise ranges
    # from 0.4 to 1.0 (FastICA restarts agree on directions that are
    # non-Gaussian by chance in a finite sample, even with 20,000 voxels):
    # judged over six cohorts, and only against the planted sources.
    noise_stability = []
    with pytest.warns(ICAConvergenceWarning, match=r"did not converge(.|\n)*stability_"):
        for seed in range(5, 11):
            noise_model = GroupICA(N_SOURCES, n_restarts=10, max_iter=200).fit(
                noise_subjects(seed=seed)
            )
            noise_stability.append(noise_model.stability_)
    assert np.mean(noise_stability) < model.stability_.min() - 0.1, noise_stability
    assert noise_model.icasso_.labels.shape == (10, N_SOURCES)


def test_single_restart_has_nan_stability():
    _, _, subjects = make_subjects(n_subjects=3, n_voxels=500, seed=3)
    model = GroupICA(3, n_restarts=1).fit(subjects)
    assert model.stability_.shape == (3,)
    assert np.all(np.isnan(model.stability_))
    assert model.icasso_ is None
    assert model.n_iter_.shape == (1,)


def test_callables_stream_subjects_and_match_arrays(planted):
    _, _, subjects, model = planted
    calls = []

    def loader(index):
        def load():
            calls.append(index)
            return subjects[index]

        return load

    streamed = GroupICA(N_SOURCES, n_restarts=10, random_state=0).fit(
        [loader(i) for i in range(len(subjects))]
    )
    assert sorted(calls) == list(range(len(subjects)))  # each loaded exactly once
    assert calls == list(streamed.subject_order_)
    np.testing.assert_array_equal(streamed.components_, model.components_)
    np.testing.assert_array_equal(streamed.stability_, model.stability_)


def test_deterministic_across_runs_and_n_jobs(planted):
    _, _, subjects, model = planted
    again = GroupICA(N_SOURCES, n_restarts=10, random_state=0, n_jobs=2).fit(subjects)
    np.testing.assert_array_equal(again.components_, model.components_)
    np.testing.assert_array_equal(again.subject_order_, model.subject_order_)
    assert sorted(model.subject_order_) == list(range(len(subjects)))
    fresh = clone(model)
    assert fresh.get_params() == model.get_params()
    assert not hasattr(fresh, "components_")
    other = GroupICA(N_SOURCES, n_restarts=2, random_state=1).fit(subjects)
    assert not np.array_equal(other.subject_order_, model.subject_order_)


def test_scikit_learn_estimator_api():
    model = GroupICA(7, n_restarts=3, random_state=np.random.default_rng(5))
    assert isinstance(model, BaseEstimator)
    assert repr(GroupICA(7, n_restarts=3)) == "GroupICA(n_components=7, n_restarts=3)"
    params = model.get_params()
    assert set(params) == {
        "n_components",
        "migp_dim",
        "n_restarts",
        "fun",
        "max_iter",
        "tol",
        "random_state",
        "n_jobs",
        "progress",
    }
    assert model.set_params(max_iter=50, fun="exp") is model
    assert (model.max_iter, model.fun) == (50, "exp")
    # clone: a fresh, unfitted copy with equal parameters; the generator is
    # deep-copied, so the copy draws the same seeds without sharing the state.
    twin = clone(model)
    assert twin is not model and type(twin) is GroupICA
    assert {k: v for k, v in twin.get_params().items() if k != "random_state"} == {
        k: v for k, v in model.get_params().items() if k != "random_state"
    }
    assert twin.random_state is not model.random_state
    assert twin.random_state.integers(1000) == model.random_state.integers(1000)
    with pytest.raises(ValueError, match=r"Invalid parameter 'n_component'.*n_components"):
        model.set_params(n_component=3)
    # __init__ stores parameters unchanged and checks nothing: fit does.
    bad = GroupICA("many", n_restarts=0)
    assert (bad.n_components, bad.n_restarts) == ("many", 0)
    with pytest.raises(InputError, match=r"n_components must be .*'many'(.|\n)*n_restarts"):
        bad.fit([np.zeros((3, 4))])
    # scikit-learn's NotFittedError, caught as ValueError and AttributeError.
    for caught in (NotFittedError, ValueError, AttributeError):
        with pytest.raises(caught, match=r"GroupICA instance is not fitted yet; call fit"):
            model.transform(np.zeros((3, 4)))


def test_transform_is_dual_regression_stage_one(planted):
    _, timecourses, subjects, model = planted
    tc = model.transform(subjects[0])
    assert tc.shape == (100, N_SOURCES) and tc.dtype == np.float32
    np.testing.assert_array_equal(tc, dual_regression(model.components_, subjects[0]).timecourses)
    sources = planted[0]
    _, matched = best_match(sources, model.components_)
    for k in range(N_SOURCES):
        assert abs(np.corrcoef(tc[:, matched[k]], timecourses[0][:, k])[0, 1]) > 0.9


def test_auto_dimension_finds_the_planted_sources_and_nothing_in_noise():
    _, _, subjects = make_subjects(seed=4)
    model = GroupICA("auto", n_restarts=2).fit(subjects)
    assert model.n_components_ == N_SOURCES
    assert estimate_n_components(migp(noise_subjects()).eigenvalues, 2000) == 1


def test_laplace_evidence_agrees_with_scikit_learn_mle():
    for seed, rank in enumerate([1, 3, 6]):
        rng = np.random.default_rng(seed)
        data = rng.standard_normal((600, rank)) @ rng.standard_normal((rank, 20))
        data = 0.5 * data + rng.standard_normal((600, 20))
        expected = PCA(n_components="mle").fit(data).n_components_
        spectrum = PCA().fit(data).explained_variance_
        assert int(np.argmax(laplace_log_evidence(spectrum, 600))) == expected == rank
        assert estimate_n_components(spectrum * 123.0, 600) == rank


def whitened_mixture(n_samples=4000, seed=0):
    """Four independent non-Gaussian sources, mixed and whitened: ((4, n) signals, sources)."""
    rng = np.random.default_rng(seed)
    sources = np.vstack(
        [
            rng.laplace(size=n_samples),
            rng.uniform(-1, 1, n_samples),
            rng.exponential(size=n_samples),
            rng.standard_t(5, n_samples),
        ]
    )
    mixed = rng.standard_normal((4, 4)) @ sources
    mixed -= mixed.mean(axis=1, keepdims=True)
    left, _, _ = np.linalg.svd(mixed.T, full_matrices=False)
    return np.ascontiguousarray(left.T * np.sqrt(n_samples)), sources


@pytest.mark.parametrize("fun", ["cube", "logcosh", "exp"])
def test_symmetric_fastica_reproduces_scikit_learn(fun):
    signals, sources = whitened_mixture()
    w_init = np.random.default_rng(1).standard_normal((4, 4))
    reference = FastICA(whiten=False, fun=fun, w_init=w_init, max_iter=400, tol=1e-6)
    reference.fit(signals.T)
    unmixing, n_iter, converged = symmetric_fastica(
        signals, w_init, fun=fun, max_iter=400, tol=1e-6
    )
    assert converged and n_iter == reference.n_iter_ < 400
    np.testing.assert_allclose(unmixing, reference.components_, atol=1e-8)
    np.testing.assert_allclose(unmixing @ unmixing.T, np.eye(4), atol=1e-10)
    # float32 products (as GroupICA runs it) reach the same optimum.
    unmixing32, _, converged32 = symmetric_fastica(
        signals.astype(np.float32), w_init, fun=fun, max_iter=400, tol=1e-4
    )
    assert converged32
    # Rows are defined up to sign (the convergence test ignores it).
    signs = np.sign(np.sum(unmixing32 * reference.components_, axis=1))[:, None]
    np.testing.assert_allclose(signs * unmixing32, reference.components_, atol=1e-3)
    # And the optimum is the planted sources (laplace, uniform, exponential, t(5)).
    r = np.corrcoef(np.vstack([sources, unmixing32 @ signals]))[:4, 4:]
    assert np.all(np.abs(r).max(axis=1) > 0.99), r


def test_fastica_restarts_report_non_convergence_and_do_not_depend_on_n_jobs():
    signals, _ = whitened_mixture(n_samples=2000, seed=3)
    gaussian = np.random.default_rng(0).standard_normal((4, 2000))
    seeds = [11, 12, 13]
    unmixings, n_iter, converged = fastica_restarts(signals.astype(np.float32), seeds)
    assert unmixings.shape == (3, 4, 4) and np.all(converged) and np.all(n_iter < 500)
    _, n_iter_noise, converged_noise = fastica_restarts(
        gaussian.astype(np.float32), seeds, max_iter=50
    )
    assert not np.any(converged_noise) and np.all(n_iter_noise == 50)
    parallel, _, _ = fastica_restarts(signals.astype(np.float32), seeds, n_jobs=2)
    np.testing.assert_array_equal(parallel, unmixings)


def test_migp_leaves_constant_voxels_at_zero():
    _, _, subjects = make_subjects(n_subjects=3, n_volumes=40, n_voxels=300, seed=7)
    subjects = [s.copy() for s in subjects]
    for s in subjects:
        s[:, 10] = 5.0  # e.g. a voxel outside one subject's field of view
    result = migp(subjects, 20, random_state=0)
    assert np.all(np.isfinite(result.components))
    np.testing.assert_array_equal(result.components[:, 10], 0.0)
    np.testing.assert_allclose(result.total_variance, 3 * 40 * 299)


def test_icasso_groups_repeated_components_and_picks_the_cleanest_run():
    rng = np.random.default_rng(0)
    truth = linalg.qr(rng.standard_normal((6, 6)))[0]
    runs = []
    for noise in (0.05, 0.01, 0.08, 0.05):
        estimate = truth + noise * rng.standard_normal(truth.shape)
        signs = rng.choice([-1.0, 1.0], size=(6, 1))
        runs.append(signs * estimate[rng.permutation(6)])  # order and sign are arbitrary
    result = icasso_stability(np.stack(runs))
    assert result.best_run == 1
    for cluster in range(6):
        assert np.sum(result.labels == cluster) == 4  # one member per run
        assert np.all(np.sum(result.labels == cluster, axis=1) == 1)
    assert np.all(result.quality_index > 0.9)
    random_runs = np.stack([linalg.qr(rng.standard_normal((6, 6)))[0] for _ in range(4)])
    assert icasso_stability(random_runs).quality_index.mean() < 0.5


@pytest.mark.filterwarnings(
    "ignore:FastICA did not converge:rsxai.exceptions.ICAConvergenceWarning"
)
def test_errors_name_parameter_range_and_value():
    _, _, subjects = make_subjects(n_subjects=2, n_volumes=20, n_voxels=200, seed=6)
    with pytest.raises(InputError, match=r"n_components must be between 1 and 38 .*got 50"):
        GroupICA(50, n_restarts=1).fit(subjects)
    for bad in (0, -3, 2.5, "five", True):
        with pytest.raises(InputError, match=r"n_components must be an integer >= 1 or 'auto'"):
            GroupICA(bad).fit(subjects)
    with pytest.raises(InputError, match=r"between 1 and migp_dim=4; got 5"):
        GroupICA(5, migp_dim=4).fit(subjects)
    with pytest.raises(InputError, match=r"fun must be one of 'cube', 'logcosh', 'exp'"):
        GroupICA(3, fun="tanh").fit(subjects)
    with pytest.raises(InputError, match=r"subjects\[1\] has 150 voxels but the first .* 200"):
        GroupICA(3).fit([subjects[0], subjects[1][:, :150]])
    with_nan = subjects[1].copy()
    with_nan[0, 0] = np.nan
    with pytest.raises(InputError, match=r"subjects\[1\] contains 1 NaN"):
        GroupICA(3).fit([subjects[0], with_nan])
    with_infinities = subjects[1].copy()
    with_infinities[:2, 5] = [np.inf, -np.inf]  # a mean of NaN
    with_infinities[3, 7] = np.inf  # a mean of inf
    with pytest.raises(InputError, match=r"subjects\[1\] contains 3 NaN or infinite"):
        GroupICA(3).fit([subjects[0], with_infinities])
    with pytest.raises(InputError, match=r"single 2D array"):
        GroupICA(3).fit(subjects[0])
    with pytest.raises(InputError, match=r"subjects is empty"):
        GroupICA(3).fit([])
    with pytest.raises(NotFittedError):
        GroupICA(3).transform(subjects[0])
    model = GroupICA(3, n_restarts=2).fit(subjects)
    with pytest.raises(InputError, match=r"X must have shape \(n_volumes, 200\)"):
        model.transform(subjects[0][:, :100])
