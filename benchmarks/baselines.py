"""Permutation test of the linear baselines: rsxai's Gram-matrix path vs scikit-learn on voxels.

One network's maps of 60 subjects (30 per group), seeded Gaussian noise with
a weak group difference planted in 1,000 voxels, 29,000 voxels (the 4 mm
brain mask), float32; outer CV: ``StratifiedKFold(10, shuffle=True,
random_state=0)``. For each baseline (linear SVM, L2 logistic regression):

- rsxai: :func:`rsxai.classify.baselines.permutation_scores` with
  ``LinearBaseline(kind)`` defaults (6 relative Cs, 5 inner folds) and 1,000
  label permutations within folds plus the observed labels, ``n_jobs=2``;
- scikit-learn: the same procedure for the observed labels only, on the
  voxels, ``make_pipeline(StandardScaler(), GridSearchCV(LinearSVC(max_iter=10_000)
  or LogisticRegression(solver="liblinear"), {"C": Cs / p}, cv=StratifiedKFold(5,
  shuffle=True, random_state=0)))`` per outer fold, one process; a
  permutation test this way costs 1,001 such runs (extrapolated, not run).

The predictions of the two must agree; the largest difference of their
outer-test decision values is reported (scikit-learn at its default
tolerance).

Run alone: ``python -m benchmarks.baselines [--quick]``.
"""

from __future__ import annotations

import warnings

import numpy as np

from benchmarks.measurement import benchmark_parser, timed

FULL = {"n_voxels": 29_000, "n_permutations": 1000, "n_jobs": 2}
QUICK = {"n_voxels": 2_000, "n_permutations": 99, "n_jobs": 2}
N_PER_GROUP = 30
N_FOLDS = 10
N_SIGNAL_VOXELS = 1_000
EFFECT = 0.35  # group mean difference in the signal voxels, in noise standard deviations


def simulated_maps(n_voxels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Maps (2 x N_PER_GROUP, n_voxels) float32 and labels (0 control, 1 patient)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], N_PER_GROUP)
    maps = rng.normal(size=(y.size, n_voxels))
    maps[:, : min(N_SIGNAL_VOXELS, n_voxels)] += EFFECT * y[:, None]
    return maps.astype(np.float32), y


def sklearn_cross_validation(kind: str, X: np.ndarray, y: np.ndarray, folds) -> np.ndarray:
    """Outer-test decision values of the scikit-learn pipeline on the voxels; shape (n,)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from rsxai.classify import DEFAULT_CS

    decision = np.empty(y.size)
    for train, test in folds:
        # LinearBaseline's C unit: the number of non-constant voxels in the training fold.
        unit = np.count_nonzero(X[train].std(axis=0) > 0)
        estimator = (
            LinearSVC(max_iter=10_000) if kind == "svm" else LogisticRegression(solver="liblinear")
        )
        search = GridSearchCV(
            estimator,
            {"C": np.asarray(DEFAULT_CS) / unit},
            cv=StratifiedKFold(5, shuffle=True, random_state=0),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # liblinear's ConvergenceWarning at large C
            model = make_pipeline(StandardScaler(), search).fit(X[train], y[train])
        decision[test] = model.decision_function(X[test])
    return decision


def compare(
    n_voxels: int = FULL["n_voxels"],
    n_permutations: int = FULL["n_permutations"],
    n_jobs: int = FULL["n_jobs"],
    *,
    kinds: tuple[str, ...] = ("svm", "logistic"),
    seed: int = 0,
) -> dict:
    """Time the permutation test and one scikit-learn cross-validation for each kind."""
    from sklearn.model_selection import StratifiedKFold

    from rsxai.classify import LinearBaseline, permutation_scores

    X, y = simulated_maps(n_voxels, seed)
    folds = list(StratifiedKFold(N_FOLDS, shuffle=True, random_state=0).split(X, y))
    results = {}
    for kind in kinds:
        ours, seconds = timed(
            lambda kind=kind: permutation_scores(
                LinearBaseline(kind), X, y, folds, n_permutations=n_permutations, n_jobs=n_jobs
            )
        )
        reference, reference_seconds = timed(
            lambda kind=kind: sklearn_cross_validation(kind, X, y, folds)
        )
        results[kind] = {
            "seconds": seconds,
            "observed_accuracy": ours["observed"]["accuracy"],
            "p_accuracy": ours["p_value"]["accuracy"],
            "null_mean_accuracy": float(ours["null"]["accuracy"].mean()),
            "sklearn_one_run_seconds": reference_seconds,
            "sklearn_extrapolated_seconds": reference_seconds * (n_permutations + 1),
            "predictions_agree": float(np.mean((reference > 0) == (ours["decision"] > 0))),
            "max_abs_decision_difference": float(np.max(np.abs(reference - ours["decision"]))),
        }
    return {
        "n_subjects": int(y.size),
        "n_voxels": n_voxels,
        "n_folds": N_FOLDS,
        "n_permutations": n_permutations,
        "n_jobs": n_jobs,
        "kinds": results,
    }


def run(*, quick: bool = False) -> dict:
    """:func:`compare` at the benchmark size (or the quick one)."""
    return compare(**(QUICK if quick else FULL))


_NAMES = {"svm": "linear SVM", "logistic": "L2 logistic regression"}


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section for a :func:`compare` result."""
    lines = [
        "## Linear baselines: permutation test of the whole cross-validation",
        "",
        f"{result['n_subjects']} subjects (two groups of {N_PER_GROUP}) x "
        f"{result['n_voxels']:,} voxels (float32 noise, group difference of {EFFECT:g} SD in "
        f"{N_SIGNAL_VOXELS:,} voxels); {result['n_folds']}-fold stratified outer CV; in each "
        "training fold: standardisation, C chosen among 6 by 5-fold stratified inner CV, fit.",
        "",
        f"- rsxai: `permutation_scores(LinearBaseline(kind), ..., n_permutations="
        f"{result['n_permutations']}, n_jobs={result['n_jobs']})`, observed labels included "
        "(one Gram matrix per outer fold, batched Newton solver).",
        "- scikit-learn: `make_pipeline(StandardScaler(), GridSearchCV(LinearSVC(max_iter=10_000) "
        'or LogisticRegression(solver="liblinear"), same C grid, same inner folds))` on the '
        "voxels, observed labels only, one process; the permutation test would be "
        f"{result['n_permutations'] + 1:,} such runs (extrapolated).",
        "",
        "| baseline | rsxai permutation test (s) | scikit-learn, one run (s) "
        "| scikit-learn, extrapolated (s) | observed accuracy | permutation p "
        "| predictions agree | max abs decision difference |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, item in result["kinds"].items():
        lines.append(
            f"| {_NAMES[kind]} | {item['seconds']:.1f} | {item['sklearn_one_run_seconds']:.1f} "
            f"| {item['sklearn_extrapolated_seconds']:,.0f} | {item['observed_accuracy']:.3f} "
            f"| {item['p_accuracy']:.3f} | {item['predictions_agree']:.0%} "
            f"| {item['max_abs_decision_difference']:.1e} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__, quick_help="2,000 voxels, 99 permutations")
    args = parser.parse_args(argv)
    print(markdown(run(quick=args.quick)))


if __name__ == "__main__":
    main()
