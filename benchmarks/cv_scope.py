"""The classify stage in fold scope vs cohort scope: time and accuracy, same folds.

In fold scope (``classify.cv_scope = "fold"``, the default) group ICA,
network labelling and dual regression are refitted on the training subjects
of every fold and the held-out subjects are dual-regressed onto those
training maps; in cohort scope (the study's protocol, transductive) the
classifiers use the dual-regression stage's maps, fitted once on everyone.
Issue 5's target: the classify stage in fold scope takes at most twice as
long as in cohort scope.

The cohort is the benchmarks' simulated one (:mod:`benchmarks.cohort`: 30
patients and 30 controls, 150 volumes, 4 mm, preprocessed once and kept).
Its output folder is copied to ``DATA_DIR/full/cv-scope/out`` (the
preprocessed ``.npy`` files hard-linked) and, once and outside any timing,
``rsxai run --stop-after stats`` runs group ICA, dual regression and a small
statistics stage there (reused afterwards; preprocessing is redone there
when the kept one was made under another stage key, e.g. by another rsxai
version).
Then, for each scope, a fresh process runs the classify stage as a user
would (earlier stages reused):

    rsxai run DATA OUT --config cv-scope.toml --cv-scope SCOPE --stop-after classify --n-jobs 2 -q

with the demo's laptop settings (:data:`rsxai.cli.DEMO_SETTINGS`: 5 folds,
200 baseline permutations; every other ``[classify]`` option at its
default: CNN, SVM and logistic regression, 1 FastICA restart per fold), the
same seed and therefore the same folds. The stage's time is
``provenance.json``'s; the process's wall clock (start-up, input checks)
and the stage's peak memory (process-tree PSS, as in :mod:`benchmarks.demo`)
are given beside it. The accuracies of both scopes are read from each run's
``summary.json`` and reported side by side: they differ, and nothing
requires them to be equal (cohort scope lets held-out subjects shape the
features).

``quick``: the quick cohort (5 + 5 subjects, 100 volumes, 6 mm), 8
components, 3 folds, 2 CNN epochs of width 4, 9 baseline permutations: a smoke run
whose figures mean nothing.

Run alone: ``python -m benchmarks.cv_scope [--quick]``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from benchmarks.cohort import prepare_cohort
from benchmarks.demo import _write_config
from benchmarks.measurement import benchmark_parser, emit
from benchmarks.process_sampling import sample_command, window_peaks
from benchmarks.scale import rsxai_command, stage_windows, table_cell

#: Issue 5: classify-stage time in fold scope over that in cohort scope.
RATIO_TARGET = 2.0
SCOPES = ("fold", "cohort")
#: Statistics are not measured here; the stage only has to exist before classify.
STATS_SETTINGS = {"stats.n_permutations": 100, "stats.tfce": False}
QUICK_SETTINGS = {
    "ica.n_components": 8,
    "ica.n_restarts": 2,
    "classify.cv_folds": 3,
    "networks.min_r": -1.0,  # too few subjects for the templates to reach the default
    "classify.baseline_permutations": 9,
    "classify.cnn_epochs": 2,
    "classify.cnn_width": 4,
}
METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "permutation_p_value")


def _link_or_copy(source: str, destination: str) -> None:
    # The preprocessed .npy files are large and never rewritten (the stage is reused):
    # linked. Everything else (logs appended to, JSON rewritten) is copied.
    if source.endswith(".npy"):
        try:
            os.link(source, destination)
            return
        except OSError:  # another file system
            pass
    shutil.copy2(source, destination)


def _prepare_output(cohort, out_dir: Path, config: Path, n_jobs: int) -> None:
    """Everything up to the statistics stage in ``out_dir`` (reused when already there)."""
    if not out_dir.exists():
        temporary = out_dir.with_name("." + out_dir.name + ".tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.copytree(cohort.out_dir, temporary, copy_function=_link_or_copy)
        os.replace(temporary, out_dir)
    sample_command(
        [
            *rsxai_command(),
            "run",
            str(cohort.bids_dir),
            str(out_dir),
            "--config",
            str(config),
            "--stop-after",
            "stats",
            "--n-jobs",
            str(n_jobs),
            "-q",
        ]
    )


def _classify(bids_dir: Path, out_dir: Path, config: Path, scope: str, n_jobs: int) -> dict:
    """One fresh ``rsxai run`` whose only computed stage is classify, in ``scope``."""
    from rsxai.outputs import output_path, read_json

    # The other scope's run left its marker; a stale one of this scope must not be reused.
    output_path(out_dir, "stage_marker", stage="classify").unlink(missing_ok=True)
    measured = sample_command(
        [
            *rsxai_command(),
            "run",
            str(bids_dir),
            str(out_dir),
            "--config",
            str(config),
            "--cv-scope",
            scope,
            "--stop-after",
            "classify",
            "--n-jobs",
            str(n_jobs),
            "-q",
        ]
    )
    stages = read_json(output_path(out_dir, "provenance"))["stages"]
    computed = [name for name, timing in stages.items() if timing.get("status") == "computed"]
    if computed != ["classify"]:
        raise RuntimeError(f"{out_dir}: expected only classify to run, ran {computed}")
    begin, end = stage_windows(out_dir, measured["start"])["classify"]
    classification = read_json(output_path(out_dir, "summary"))["classification"]
    return {
        "scope": scope,
        "stage_seconds": stages["classify"]["seconds"],
        "process_seconds": measured["seconds"],
        "feature_seconds": sum(classification["feature_seconds"]),
        "n_feature_fits": len(classification["feature_seconds"]),
        "cv": classification["cv"],
        "peak_pss_mb": window_peaks(measured["samples"], begin, end)["pss_mb"],
        "metrics": {
            network: {
                model: {key: _value(values.get(key)) for key in METRICS}
                for model, values in models.items()
            }
            for network, models in classification["networks"].items()
        },
    }


def run(data_dir: str | Path, *, quick: bool = False, n_jobs: int = 2) -> dict:
    """Time the classify stage in each scope on the benchmark cohort; accuracies of both."""
    from rsxai.cli import DEMO_SETTINGS

    cohort = prepare_cohort(data_dir, quick=quick, n_jobs=n_jobs)
    settings = {
        "preprocess.voxel_size": cohort.size["voxel_size"],
        **DEMO_SETTINGS,
        **STATS_SETTINGS,
        **(QUICK_SETTINGS if quick else {}),
    }
    root = cohort.out_dir.parent / "cv-scope"
    root.mkdir(exist_ok=True)
    config = root / "cv-scope.toml"
    _write_config(config, settings)
    out_dir = root / "out"
    _prepare_output(cohort, out_dir, config, n_jobs)
    load_before = [round(value, 2) for value in os.getloadavg()]
    runs = {scope: _classify(cohort.bids_dir, out_dir, config, scope, n_jobs) for scope in SCOPES}
    load_after = [round(value, 2) for value in os.getloadavg()]
    return {
        "quick": quick,
        "n_jobs": n_jobs,
        "size": cohort.size,
        "settings": settings,
        "setting_groups": {
            "the demo's (`rsxai.cli.DEMO_SETTINGS`, less what is set below)": {
                key: value for key, value in DEMO_SETTINGS.items() if settings[key] == value
            },
            "statistics made small (not measured here)": dict(STATS_SETTINGS),
            "quick reductions": dict(QUICK_SETTINGS) if quick else {},
        },
        "runs": runs,
        "ratio": runs["fold"]["stage_seconds"] / runs["cohort"]["stage_seconds"],
        "load_average": {"before": load_before, "after": load_after},
    }


def _value(metric) -> list | float | None:
    """A metric of ``summary.json`` as [value, CI low, CI high] (a bare number as itself)."""
    if isinstance(metric, dict):
        return [metric["value"], metric.get("ci_low"), metric.get("ci_high")]
    return metric


def _metric_cell(metric) -> str:
    if metric is None:
        return "n/a"
    if isinstance(metric, list):
        value, low, high = metric
        return f"{value:.2f}" + ("" if low is None else f" [{low:.2f}, {high:.2f}]")
    return f"{metric:.3f}"


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section for :func:`run`'s result."""
    size, runs = result["size"], result["runs"]
    fold, cohort = runs["fold"], runs["cohort"]
    cv = fold["cv"]
    settings = "; ".join(
        f"{group}: " + ", ".join(f"{key} = {value}" for key, value in values.items())
        for group, values in result["setting_groups"].items()
        if values
    )
    ratio = result["ratio"]
    lines = [
        "## Classify stage: fold scope vs cohort scope" + (" (quick smoke run)" * result["quick"]),
        "",
        f"Simulated cohort: {size['n_patients']} patients + {size['n_controls']} controls, "
        f"{size['n_volumes']} volumes, {size['voxel_size']:g} mm (`benchmarks/cohort.py`). "
        "Group ICA, dual regression and a statistics stage were run beforehand (not timed); "
        "each scope is then one fresh process, `rsxai run DATA OUT --config cv-scope.toml "
        f"--cv-scope SCOPE --stop-after classify --n-jobs {result['n_jobs']} -q`, in which "
        f"classify is the only stage computed. Settings: {settings}; voxel size "
        f"{size['voxel_size']:g} mm; every other option at its default. Same seed, so the same "
        f"{cv['n_splits']} stratified folds ({cv['scheme']}, {cv['n_repeats']} repeat) in both "
        "scopes.",
        "",
        "- Fold scope refits group ICA (1 FastICA restart), network labelling and dual "
        "regression on each fold's training subjects; cohort scope uses the dual-regression "
        "stage's maps (transductive: held-out subjects shaped the group maps).",
        "- Stage time: `provenance.json`. Process: the whole command (start-up, input checks, "
        "reused stages). Feature step: the summed time of the feature fits recorded in "
        "`summary.json` (cohort scope: reading the stage's maps). Peak memory: process-tree "
        "PSS during the stage, sampled every 0.2 s.",
        f"- Load average (1, 5, 15 min) before: {result['load_average']['before']}, after: "
        f"{result['load_average']['after']}. A load above the number of cores means other work "
        "shared them: times are then pessimistic, and as the two runs follow each other, "
        "unequal load between them moves the ratio too.",
        "",
        "| scope | classify stage (s) | process (s) | feature step (s, fits) | peak PSS (MiB) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for scope in SCOPES:
        item = runs[scope]
        lines.append(
            f"| {scope} | {item['stage_seconds']:.1f} | {item['process_seconds']:.1f} | "
            f"{item['feature_seconds']:.1f} ({item['n_feature_fits']}) | "
            f"{table_cell(item['peak_pss_mb'])} |"
        )
    verdict = "meets" if ratio <= RATIO_TARGET else "misses"
    lines += [
        "",
        f"Fold scope / cohort scope: **{ratio:.2f}x** ({verdict} the target of "
        f"<= {RATIO_TARGET:g}x).",
        "",
        "Out-of-fold results of both scopes on the same folds, with rsxai's 95 % intervals "
        "(accuracy: Clopper-Pearson; balanced accuracy: beta posterior; ROC AUC: DeLong) and "
        "the permutation p-value of the whole cross-validation where it was run (the CNN has "
        "none at the defaults); `ensemble` combines the networks:",
        "",
        "| network | model | accuracy fold / cohort | balanced accuracy fold / cohort "
        "| ROC AUC fold / cohort | permutation p fold / cohort |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for network, models in fold["metrics"].items():
        for model, values in models.items():
            other = cohort["metrics"].get(network, {}).get(model, {})
            cells = [
                f"{_metric_cell(values[key])} / {_metric_cell(other.get(key))}" for key in METRICS
            ]
            lines.append(f"| {network} | {model} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(
        __doc__,
        quick_help="small cohort (smoke run)",
        data_dir_help="where the simulated cohorts are kept between runs",
        json_output=True,
    )
    parser.add_argument("--n-jobs", type=int, default=2, help="--n-jobs of rsxai run")
    args = parser.parse_args(argv)
    result = run(args.data_dir, quick=args.quick, n_jobs=args.n_jobs)
    emit(result, markdown(result), args.json)


if __name__ == "__main__":
    main()
