"""How exact is MIGP's group PCA at each internal dimension m, and what does m cost?

:class:`rsxai.decomposition.group_ica.GroupICA` keeps ``m = min(2 T - 1, 15 K)`` MIGP rows by
default (MELODIC keeps ``2 T - 1``). This benchmark measures what that choice
gives up: the top-``K`` group PCA space of MIGP against the exact PCA of the
temporal concatenation of all subjects, at MELODIC's ``m``, at the default and
at smaller ones, for two run lengths.

The cohort is synthetic and harder than the simulator's (whose few strong
networks MIGP finds at any ``m``): on the 4 mm MNI brain mask, each subject is
``sum_i a_si(t) S_i + sum_j b_sj(t) U_sj + noise``, with 100 shared smooth
maps ``S_i`` of power-law amplitudes ``i^-1/2``, 30 smooth maps ``U_sj`` of
the subject's own (artefacts that MIGP must not keep in place of shared
signal), AR(1) time courses and white noise three times the first map's
amplitude. Its group spectrum is flat (``lambda_20 / lambda_1`` about 0.08)
and has about 1,900 true dimensions. The exact PCA is found by block
subspace iteration over all subjects' normalised data (kept in memory:
60 x 300 x 29,398 float32 is 2.1 GB), with a Rayleigh-Ritz step; the table
gives how far its top spaces still moved over the last passes.

Run alone: ``python -m benchmarks.migp_dimension [--quick]`` (about 7 minutes
on one core; the exact PCA is most of it).
"""

from __future__ import annotations

import time

import numpy as np
from scipy import linalg, ndimage
from threadpoolctl import threadpool_limits

from benchmarks.measurement import benchmark_parser, emit

FULL = {"n_subjects": 60, "run_lengths": (150, 300), "voxel_size": 4.0}
QUICK = {"n_subjects": 8, "run_lengths": (30, 60), "voxel_size": 8.0}
N_COMPONENTS = 20  # K, GroupICA's default
N_SHARED, N_OWN = 100, 30
EXACT_BLOCK, EXACT_MAX_ITERATIONS, EXACT_CHECK_EVERY = 150, 200, 10
EXACT_TOLERANCE_DEGREES = 0.01


def _smooth_maps(rng: np.random.Generator, mask: np.ndarray, n_maps: int) -> np.ndarray:
    """``n_maps`` smooth blob maps of unit SD on the mask, shape (n_maps, V), float32."""
    maps = np.empty((n_maps, int(mask.sum())), dtype=np.float32)
    for index in range(n_maps):
        field = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.5)[mask]
        field = np.where(np.abs(field) > 1.5 * field.std(), field, 0.1 * field)
        maps[index] = field / field.std()
    return maps


def _ar1(rng: np.random.Generator, n_volumes: int, n_series: int) -> np.ndarray:
    """AR(1) series (rho 0.5) of unit variance, shape (n_volumes, n_series), float32."""
    shocks = rng.standard_normal((n_volumes, n_series))
    series = np.empty_like(shocks)
    series[0] = shocks[0]
    for t in range(1, n_volumes):
        series[t] = 0.5 * series[t - 1] + np.sqrt(0.75) * shocks[t]
    return series.astype(np.float32)


def hard_cohort(n_subjects: int, n_volumes: int, mask: np.ndarray, seed: int = 0) -> list:
    """The synthetic subjects, each (n_volumes, V) float32, z-scored per voxel."""
    shared = _smooth_maps(np.random.default_rng(seed), mask, N_SHARED)
    amplitudes = (np.arange(1, N_SHARED + 1) ** -0.5).astype(np.float32)
    subjects = []
    for index in range(n_subjects):
        rng = np.random.default_rng([seed, index])
        data = (_ar1(rng, n_volumes, N_SHARED) * amplitudes) @ shared
        data += (0.6 * _ar1(rng, n_volumes, N_OWN)) @ _smooth_maps(rng, mask, N_OWN)
        data += 3.0 * rng.standard_normal(data.shape, dtype=np.float32)
        data -= data.mean(axis=0)
        data /= data.std(axis=0)
        subjects.append(data)
    return subjects


def exact_top_space(subjects: list) -> tuple[np.ndarray, np.ndarray, dict]:
    """Top spatial eigenvectors of ``sum_s X_s' X_s`` by block subspace iteration.

    Block subspace iteration with Rayleigh-Ritz every few passes, until the
    Ritz top-K and top-50 spaces move less than ``EXACT_TOLERANCE_DEGREES``
    between checks (or ``EXACT_MAX_ITERATIONS`` passes). The leading columns
    of the iterated block itself converge only at the rate of neighbouring
    eigenvalues (nearly equal in a flat spectrum); the Ritz vectors converge
    at the rate of ``lambda_(block + 1) / lambda_d``.

    Returns
    -------
    vectors : ndarray of shape (EXACT_BLOCK, V), float64
    eigenvalues : ndarray of shape (EXACT_BLOCK,)
    last_move_degrees : dict
        Largest principal angle between the top-K and top-50 Ritz spaces of
        the last two checks, keyed by dimension: how converged the reference is.
    """
    n_voxels = subjects[0].shape[1]
    block = np.linalg.qr(np.random.default_rng(1).standard_normal((n_voxels, EXACT_BLOCK)))[0]
    block = block.astype(np.float32)

    def apply(vectors: np.ndarray) -> np.ndarray:
        product = np.zeros(vectors.shape, dtype=np.float64)
        for data in subjects:
            product += data.T @ (data @ vectors)
        return product

    previous, moved = None, {}
    for iteration in range(1, EXACT_MAX_ITERATIONS + 1):
        applied = apply(block)
        if iteration % EXACT_CHECK_EVERY == 0:
            # Rayleigh-Ritz on the current block: block' C block from C block.
            ritz_values, ritz_vectors = np.linalg.eigh(block.T.astype(np.float64) @ applied)
            vectors = (block.astype(np.float64) @ ritz_vectors[:, ::-1]).T
            if previous is not None:
                moved = {
                    dims: float(
                        np.rad2deg(
                            linalg.subspace_angles(vectors[:dims].T, previous[:dims].T).max()
                        )
                    )
                    for dims in (N_COMPONENTS, 50)
                }
                if max(moved.values()) < EXACT_TOLERANCE_DEGREES:
                    break
            previous = vectors
        block = np.linalg.qr(applied)[0].astype(np.float32)
    return vectors, ritz_values[::-1], moved


def _compare(result, exact: np.ndarray, exact_values: np.ndarray, n_dims: int) -> dict:
    angles = linalg.subspace_angles(
        result.components[:n_dims].T.astype(np.float64), exact[:n_dims].T
    )
    return {
        "max_angle_degrees": float(np.rad2deg(angles.max())),
        "mean_cos2": float(np.mean(np.cos(angles) ** 2)),
        "eigenvalue_error": float(
            np.max(np.abs(result.eigenvalues[:n_dims] / exact_values[:n_dims] - 1))
        ),
    }


def _label(m: int, melodic_m: int, default_m: int) -> str:
    names = ["MELODIC's 2T - 1"] if m == melodic_m else []
    names += ["rsxai's default"] if m == default_m else []
    return ", ".join(names) or f"{m / N_COMPONENTS:g} K"


def run(*, quick: bool = False, run_lengths: tuple[int, ...] | None = None) -> dict:
    """MIGP against the exact PCA at each run length and m, on one BLAS thread.

    One thread throughout: on a shared 2-core machine, BLAS threads waiting
    for each other made even the small quick run take minutes.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _run(quick, run_lengths)


def _run(quick: bool, run_lengths: tuple[int, ...] | None) -> dict:
    from rsxai.decomposition import MIGP_DIM_PER_COMPONENT, migp
    from rsxai.grid import mni_brain_mask

    size = QUICK if quick else FULL
    mask = mni_brain_mask(size["voxel_size"])
    default_m = MIGP_DIM_PER_COMPONENT * N_COMPONENTS
    rows = []
    for n_volumes in run_lengths or size["run_lengths"]:
        subjects = hard_cohort(size["n_subjects"], n_volumes, mask)
        started = time.perf_counter()
        exact, exact_values, moved = exact_top_space(subjects)
        exact_seconds = time.perf_counter() - started
        melodic_m = 2 * n_volumes - 1
        candidates = sorted(
            {melodic_m, min(melodic_m, default_m), 10 * N_COMPONENTS, 5 * N_COMPONENTS},
            reverse=True,
        )
        loaders = [lambda data=data: data for data in subjects]
        for m in [value for value in candidates if value <= melodic_m]:
            started = time.process_time()
            result = migp(loaders, m, random_state=0)
            row = {
                "n_volumes": n_volumes,
                "m": m,
                "label": _label(m, melodic_m, min(melodic_m, default_m)),
                "cpu_seconds": time.process_time() - started,
                "peak_rows": result.peak_rows,
                "exact_seconds": exact_seconds,
                "exact_last_move_degrees": moved,
                "variance_top_k": float(exact_values[:N_COMPONENTS].sum() / result.total_variance),
                "k": _compare(result, exact, exact_values, N_COMPONENTS),
            }
            if m > 50:
                row["d50"] = _compare(result, exact, exact_values, 50)
            rows.append(row)
        del subjects
    return {
        "n_subjects": size["n_subjects"],
        "n_voxels": int(mask.sum()),
        "voxel_size": size["voxel_size"],
        "quick": quick,
        "rows": rows,
    }


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section for :func:`run`'s result."""
    rows = result["rows"]
    lines = [
        "## MIGP's internal dimension m: accuracy against the exact group PCA",
        "",
        f"Synthetic hard cohort (see `benchmarks/migp_dimension.py`): {result['n_subjects']} "
        f"subjects x {result['n_voxels']:,} voxels ({result['voxel_size']:g} mm), 100 shared "
        "networks of power-law amplitudes, 30 maps of each subject's own, white noise; "
        f"the top K = {N_COMPONENTS} components explain "
        f"{100 * rows[0]['variance_top_k']:.0f} % of the variance. Largest principal angle "
        "between MIGP's and the exact concatenation PCA's top-K (and top-50) spaces; "
        "largest relative error of their eigenvalues; MIGP's CPU time (one BLAS thread).",
        "",
        "| volumes | m | | top-K angle (deg) | top-K eigenvalue error | top-50 angle (deg) "
        "| MIGP CPU (s) | rows at once |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        d50 = f"{row['d50']['max_angle_degrees']:.1f}" if "d50" in row else "—"
        lines.append(
            f"| {row['n_volumes']} | {row['m']} | {row['label']} | "
            f"{row['k']['max_angle_degrees']:.2f} | {100 * row['k']['eigenvalue_error']:.1f} % | "
            f"{d50} | {row['cpu_seconds']:.1f} | {row['peak_rows']} |"
        )
    moved_k = max(row["exact_last_move_degrees"][N_COMPONENTS] for row in rows)
    moved_50 = max(row["exact_last_move_degrees"][50] for row in rows)
    lines += [
        "",
        f"The exact PCA (block subspace iteration with Rayleigh-Ritz, block {EXACT_BLOCK}) "
        f"moved at most {moved_k:.1e} degrees (top K) and {moved_50:.1e} degrees (top 50) "
        f"over its last {EXACT_CHECK_EVERY} passes.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(
        __doc__, quick_help="8 subjects of 30 and 60 volumes at 8 mm", json_output=True
    )
    parser.add_argument(
        "--run-lengths",
        type=int,
        nargs="+",
        default=None,
        help="volumes per subject to measure (default: 150 300; quick: 30 60)",
    )
    args = parser.parse_args(argv)
    result = run(quick=args.quick, run_lengths=args.run_lengths)
    emit(result, markdown(result), args.json)


if __name__ == "__main__":
    main()
