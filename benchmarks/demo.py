"""The demo end to end: ``rsxai demo OUT`` timed stage by stage, with its peak memory.

``rsxai demo OUT`` simulates 30 patients and 30 controls (4 mm, 150
volumes) into ``OUT/data`` and runs every stage into ``OUT/results`` with
its laptop-sized settings (:data:`rsxai.cli.DEMO_SETTINGS`) and
``--n-jobs 2``. It runs here as a user runs it: the command line, a fresh
process, a fresh folder (so the cohort is simulated too and nothing is
reused), removed afterwards.

Memory is that of the whole process tree (the ``rsxai`` process and joblib's
loky workers), sampled every 0.2 s (see :mod:`benchmarks.scale`). Phases:
``simulate`` from the process start to when ``OUT/data/participants.tsv``
(written last) appeared; ``input`` from there to the first stage; each stage
from its ``running.`` line in the log to its stage marker (stage seconds
from ``provenance.json``); ``report`` from ``provenance.json`` to
``report.html``; ``finish`` from there to the process's end (the printed
summary, the exit of the process and its workers).

``rsxai demo`` has no size options, so ``quick`` runs what it runs on a small
cohort instead: ``rsxai simulate`` (6 + 6 subjects, 60 volumes, 8 mm) then
``rsxai run --config`` with the demo's settings made smaller
(:data:`QUICK_SETTINGS`: 8 components, 100 permutations, 3 folds, 2 CNN
epochs, ...). A smoke run whose figures mean nothing.

Run alone: ``python -m benchmarks.demo [--quick]``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmarks.measurement import benchmark_parser, emit
from benchmarks.process_sampling import sample_command, window_peaks
from benchmarks.scale import phase_table, rsxai_command, stage_windows, table_cell

QUICK_SIMULATION = ["--n-patients", "6", "--n-controls", "6", "--n-volumes", "60"]
#: Dotted configuration keys that make the demo's run small (quick mode only).
QUICK_SETTINGS = {
    "preprocess.voxel_size": 8.0,
    "ica.n_components": 8,
    "networks.min_r": -1.0,  # too few subjects for the templates to reach the default
    "stats.n_permutations": 100,
    "classify.cv_folds": 3,
    "classify.baseline_permutations": 9,
    "classify.cnn_epochs": 2,
    "classify.cnn_width": 4,
    "explain.smoothgrad_samples": 2,
    "explain.ig_steps": 2,
    "explain.n_sanity_subjects": 2,
    "explain.n_faithfulness_subjects": 2,
    "explain.faithfulness_steps": 3,
}


def _write_config(path: Path, settings: dict) -> None:
    """A TOML configuration file from dotted keys (``section.option``)."""
    import tomli_w

    tables: dict[str, dict] = {}
    for key, value in settings.items():
        section, _, option = key.partition(".")
        tables.setdefault(section, {})[option] = value
    path.write_text(tomli_w.dumps(tables))


def _phases(measured: dict, data_dir: Path, results_dir: Path) -> dict[str, tuple[float, float]]:
    """Phase windows of the run ``measured``, in s since its start."""
    from rsxai.outputs import output_path

    start = measured["start"]
    windows = stage_windows(results_dir, start)
    first = min(begin for begin, _ in windows.values())
    phases = {}
    simulated = (data_dir / "participants.tsv").stat().st_mtime - start
    if 0 < simulated < first:  # simulated by this command (rsxai demo)
        phases["simulate"] = (0.0, simulated)
        phases["input"] = (simulated, first)
    else:
        phases["input"] = (0.0, first)
    phases.update(windows)
    report = output_path(results_dir, "report")
    if report.exists():
        provenance = output_path(results_dir, "provenance").stat().st_mtime - start
        phases["report"] = (provenance, report.stat().st_mtime - start)
    phases["finish"] = (max(end for _, end in phases.values()), measured["seconds"])
    return phases


def run(data_dir: str | Path, *, quick: bool = False, n_jobs: int = 2) -> dict:
    """Run the demo (or, with ``quick``, its small stand-in) once; times and peak memory."""
    from rsxai.cli import DEMO_SETTINGS

    Path(data_dir).mkdir(parents=True, exist_ok=True)
    load_before = [round(value, 2) for value in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="demo-", dir=data_dir) as folder:
        root = Path(folder)
        demo_dir = root / "demo"
        data, results = demo_dir / "data", demo_dir / "results"
        if quick:
            settings = {**DEMO_SETTINGS, **QUICK_SETTINGS}
            voxel = f"{QUICK_SETTINGS['preprocess.voxel_size']:g}"
            tail = ["--n-jobs", str(n_jobs), "-q"]
            config = root / "demo.toml"
            _write_config(config, settings)
            simulation = sample_command(
                [
                    *rsxai_command(),
                    "simulate",
                    str(data),
                    *QUICK_SIMULATION,
                    "--voxel-size",
                    voxel,
                    "--n-jobs",
                    str(n_jobs),
                    "-q",
                ],
                log_dir=root / "simulate-logs",
            )
            measured = sample_command(
                [
                    *rsxai_command(),
                    "run",
                    str(data),
                    str(results),
                    "--config",
                    str(config),
                    "--n-jobs",
                    str(n_jobs),
                    "-q",
                ],
                log_dir=root / "run-logs",
            )
            phases = [
                {
                    "phase": "simulate",
                    "seconds": simulation["seconds"],
                    "begin": 0.0,
                    "end": simulation["seconds"],
                    **window_peaks(simulation["samples"], 0.0, simulation["seconds"]),
                },
                *phase_table(measured, results, _phases(measured, data, results)),
            ]
            seconds = simulation["seconds"] + measured["seconds"]
            peaks = {
                key: max(simulation[key], measured[key])
                for key in ("peak_pss_mb", "peak_anon_mb", "peak_rss_mb", "max_processes")
            }
            commands = [
                ["rsxai", "simulate", "DATA", *QUICK_SIMULATION, "--voxel-size", voxel, *tail],
                ["rsxai", "run", "DATA", "OUT", "--config", "demo.toml", *tail],
            ]
        else:
            settings = dict(DEMO_SETTINGS)
            measured = sample_command(
                [*rsxai_command(), "demo", str(demo_dir), "--n-jobs", str(n_jobs), "-q"],
                log_dir=root / "demo-logs",
            )
            phases = phase_table(measured, results, _phases(measured, data, results))
            seconds = measured["seconds"]
            peaks = {
                key: measured[key]
                for key in ("peak_pss_mb", "peak_anon_mb", "peak_rss_mb", "max_processes")
            }
            commands = [["rsxai", "demo", "OUT", "--n-jobs", str(n_jobs), "-q"]]
        report_written = (results / "report.html").exists()
    load_after = [round(value, 2) for value in os.getloadavg()]
    return {
        "quick": quick,
        "n_jobs": n_jobs,
        "settings": settings,
        "commands": commands,
        "seconds": seconds,
        **peaks,
        "main_peak_rss_mb": measured["main_peak_rss_mb"],
        "sampler_cpu_seconds": measured["sampler_cpu_seconds"],
        "phases": phases,
        "report_written": report_written,
        "load_average": {"before": load_before, "after": load_after},
        "interval": measured["interval"],
    }


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section for :func:`run`'s result."""
    commands = " then ".join(f"`{' '.join(command)}`" for command in result["commands"])
    settings = ", ".join(f"{key} = {value}" for key, value in result["settings"].items())
    if result["quick"]:
        what = (
            "`rsxai demo` has no size options, so this quick run stands in for it: "
            f"{commands}, with the demo's settings made small ({settings})."
        )
    else:
        what = (
            f"{commands}: simulates 30 patients + 30 controls (150 volumes, 4 mm) and runs "
            f"every stage with the demo's settings ({settings}), in a fresh folder, so nothing "
            "is reused."
        )
    lines = [
        "## The demo end to end" + (" (quick stand-in)" * result["quick"]),
        "",
        what,
        "",
        "- Memory: sum of the PSS of the process tree (the `rsxai` process and joblib's loky "
        f"workers), sampled every {result['interval']:g} s, as in the scale benchmark (the "
        f"sampling took {result['sampler_cpu_seconds']:.0f} s of CPU time).",
        "- Phases: `simulate` until `participants.tsv` is written; `input` until the first "
        "stage starts; each stage from its `running.` line in `rsxai.log` to its stage "
        "marker (seconds from `provenance.json`); `report` from `provenance.json` to "
        "`report.html`; `finish` = the printed summary and the exit of the process and its "
        "workers.",
        f"- Load average (1, 5, 15 min) before: {result['load_average']['before']}, after: "
        f"{result['load_average']['after']} (after includes the demo). A load above the "
        "number of cores means other work shared them: times are then pessimistic.",
        "",
        "| phase | time (s) | peak PSS (MiB) | peak anonymous PSS (MiB) | processes |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in result["phases"]:
        lines.append(
            f"| {row['phase']} | {row['seconds']:.1f} | {table_cell(row['pss_mb'])} | "
            f"{table_cell(row['anon_mb'])} | {table_cell(row['n_processes'])} |"
        )
    lines += [
        f"| **whole demo** | **{result['seconds']:.1f}** | **{result['peak_pss_mb']:.0f}** | "
        f"{result['peak_anon_mb']:.0f} | {result['max_processes']} |",
        "",
        f"The demo took **{result['seconds'] / 60:.1f} min** end to end with peak memory "
        f"**{result['peak_pss_mb']:,.0f} MiB** (process-tree PSS; sum of RSS "
        f"{result['peak_rss_mb']:,.0f} MiB)"
        + ("" if result["report_written"] else "; **no report.html was written**")
        + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(
        __doc__,
        quick_help="small stand-in (smoke run)",
        data_dir_help="where the demo's temporary folder is made",
        json_output=True,
    )
    parser.add_argument("--n-jobs", type=int, default=2, help="--n-jobs of the demo")
    args = parser.parse_args(argv)
    result = run(args.data_dir, quick=args.quick, n_jobs=args.n_jobs)
    emit(result, markdown(result), args.json)


if __name__ == "__main__":
    main()
