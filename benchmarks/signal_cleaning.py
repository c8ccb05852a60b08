"""rsxai ``clean_signals`` against ``nilearn.signal.clean`` on one subject.

Both clean the same float32 BOLD-like series (a baseline, a linear drift,
slow autocorrelated fluctuations and white noise per voxel; seeded) with a
linear detrend, a 0.01-0.1 Hz Butterworth band-pass (TR 2 s), 24 confound
regressors (random walks, like motion parameters and their derivatives) and
z-scoring (``standardize="zscore_sample"``): nilearn's
``clean(signals, detrend=True, standardize="zscore_sample", confounds=...,
low_pass=0.1, high_pass=0.01, t_r=2, filter="butterworth")`` on the float64
array (its usual input) and rsxai's ``clean_signals(signals, tr=2,
confounds=...)`` on the float32 one, with one BLAS thread. Each timing is the best of ``repeats``
calls; the difference is the largest absolute difference between the two
cleaned arrays (both z-scored, so in units of one standard deviation).

Run alone: ``python -m benchmarks.signal_cleaning [--quick]``.
"""

from __future__ import annotations

import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks.measurement import benchmark_parser, timed

TR = 2.0
N_CONFOUNDS = 24
FULL = {"n_voxels": 29_000, "n_volumes": 120, "repeats": 3}
QUICK = {"n_voxels": 3_000, "n_volumes": 120, "repeats": 1}


def bold_like(n_volumes: int, n_voxels: int, seed: int = 0) -> np.ndarray:
    """Seeded BOLD-like series of shape (n_volumes, n_voxels), float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_volumes, dtype=np.float64)[:, None]
    baseline = rng.uniform(500, 1500, n_voxels)
    drift = rng.normal(0, 0.2, n_voxels) * t
    slow = np.cumsum(rng.normal(0, 1, (n_volumes, n_voxels)), axis=0)
    noise = rng.normal(0, 2, (n_volumes, n_voxels))
    return (baseline + drift + slow + noise).astype(np.float32)


def compare(
    n_voxels: int = FULL["n_voxels"],
    n_volumes: int = FULL["n_volumes"],
    *,
    n_confounds: int = N_CONFOUNDS,
    repeats: int = FULL["repeats"],
    seed: int = 0,
) -> dict:
    """Time both cleanings on the same data and compare their results.

    Returns
    -------
    dict
        ``n_voxels``, ``n_volumes``, ``n_confounds``, ``repeats``,
        ``rsxai_seconds``, ``nilearn_seconds`` (best of ``repeats``),
        ``speedup`` (nilearn / rsxai) and ``max_abs_difference``.
    """
    from nilearn.signal import clean

    from rsxai.preprocess import clean_signals

    signals = bold_like(n_volumes, n_voxels, seed)
    confounds = np.cumsum(
        np.random.default_rng(seed + 1).normal(size=(n_volumes, n_confounds)), axis=0
    )
    signals64 = signals.astype(np.float64)

    def ours():
        return clean_signals(signals, tr=TR, confounds=confounds, high_pass=0.01, low_pass=0.1)

    def theirs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return clean(
                signals64,
                detrend=True,
                standardize="zscore_sample",
                confounds=confounds,
                low_pass=0.1,
                high_pass=0.01,
                t_r=TR,
                filter="butterworth",
            )

    our_times, their_times = [], []
    with threadpool_limits(limits=1, user_api="blas"):  # one core each, as in every benchmark
        for _ in range(repeats):
            cleaned, seconds = timed(ours)
            our_times.append(seconds)
            reference, seconds = timed(theirs)
            their_times.append(seconds)
    return {
        "n_voxels": n_voxels,
        "n_volumes": n_volumes,
        "n_confounds": n_confounds,
        "repeats": repeats,
        "rsxai_seconds": min(our_times),
        "nilearn_seconds": min(their_times),
        "speedup": min(their_times) / min(our_times),
        "max_abs_difference": float(np.max(np.abs(cleaned - reference))),
    }


def run(*, quick: bool = False) -> dict:
    """:func:`compare` at the benchmark size (or the quick one)."""
    return compare(**(QUICK if quick else FULL))


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section for a :func:`compare` result."""
    return "\n".join(
        [
            "## Signal cleaning: rsxai `clean_signals` vs `nilearn.signal.clean`",
            "",
            f"One subject: {result['n_voxels']:,} voxels x {result['n_volumes']} volumes "
            f"(TR {TR:g} s), linear detrend, 0.01-0.1 Hz Butterworth band-pass, "
            f"{result['n_confounds']} confounds, z-score; nilearn on float64 input, rsxai on "
            f"float32; best of {result['repeats']} call(s), one process, one BLAS thread.",
            "",
            "| | time (s) |",
            "| --- | ---: |",
            f"| rsxai `clean_signals` | {result['rsxai_seconds']:.3f} |",
            f"| nilearn `signal.clean` | {result['nilearn_seconds']:.3f} |",
            "",
            f"rsxai is **{result['speedup']:.1f}x faster**; largest absolute difference between "
            f"the two cleaned arrays: {result['max_abs_difference']:.1e} (z units; rsxai "
            "returns float32).",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__, quick_help="3,000 voxels, one call each")
    args = parser.parse_args(argv)
    print(markdown(run(quick=args.quick)))


if __name__ == "__main__":
    main()
