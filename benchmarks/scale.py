"""Scale: 600 simulated subjects through group ICA and dual regression on 2 cores.

The simulated cohort (``rsxai.simulate.simulate_cohort``: 300 patients and
300 controls, 150 volumes, TR 2 s, 4 mm MNI grid, seed 0) is made once and
kept under ``DATA_DIR/scale-full/data`` (:mod:`benchmarks.scale_cohort`). The
pipeline then runs as a user runs it, from the command line in a fresh process
and a fresh output folder:

    rsxai run DATA OUT --stop-after dual_regression --n-jobs 2 -q

once on all 600 subjects and once on the first 30 patients and first 30
controls of the same cohort (``--participant-label``), for the ratio of
group ICA's peak memory between 60 and 600 subjects.

Memory is that of the whole process tree (the ``rsxai`` process and joblib's
loky workers), sampled every 0.2 s by
:func:`benchmarks.process_sampling.sample_command`: the sum of the processes'
PSS (proportional set size: a page shared by n processes, e.g. of a
memory-mapped file or inherited at fork, counts 1/n in each, so the sum is
what the tree occupies) and, beside it, of their anonymous PSS (without
file-backed pages, which the kernel can drop and read back). Each stage's
window runs from its ``Stage NAME: running.`` line in ``OUT/rsxai.log`` to
the time its marker ``OUT/.rsxai/stages/NAME.json`` was written; the
``input`` phase (start-up, reading and checking every input file, input
checksums) runs from the process start to the first stage, the ``finish``
phase (``provenance.json``, the process's exit with its worker processes)
from the end of the last stage to the process's end. Stage times are
those of ``OUT/provenance.json``. The output folders are deleted afterwards
(unless ``keep_outputs``); the simulated cohort is kept.

``quick`` runs 6 + 6 subjects (and 5 + 5) of 60 volumes at 8 mm with 8
components, 2 ICA restarts and any template match accepted: a smoke run
whose figures mean nothing.

Run alone: ``python -m benchmarks.scale [--quick]``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from datetime import datetime
from pathlib import Path

from benchmarks.measurement import benchmark_parser, emit
from benchmarks.process_sampling import sample_command, window_peaks
from benchmarks.scale_cohort import SIZES, first_of_each_group, prepare_scale_cohort

#: Issue 8: peak memory of the 600-subject run, 4 GB (10^9 bytes) in MiB.
MEMORY_TARGET_MIB = 4e9 / 2**20
#: Issue 3: group ICA's peak memory at 600 subjects over that at 60.
RATIO_TARGET = 1.5
STAGE_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+\s+Stage (\w+): running\.\s*$"
)


def rsxai_command() -> list[str]:
    """The ``rsxai`` console script of this Python environment (as a user calls it)."""
    script = Path(sys.executable).with_name("rsxai")
    if script.exists():
        return [str(script)]
    return [
        sys.executable,
        "-c",
        "import sys; from rsxai.cli import main; sys.exit(main())",
    ]


def _folder_bytes(folder: Path) -> int:
    return sum(
        (Path(root) / name).stat().st_size for root, _, names in os.walk(folder) for name in names
    )


def stage_windows(out_dir: Path, start: float) -> dict[str, tuple[float, float]]:
    """Each stage run by the process started at ``start``: (begin, end) in s since ``start``.

    Begin: the stage's ``running.`` line in the run's log (millisecond
    timestamps, local time as :mod:`logging` writes them); end: when its
    stage marker was written (the last thing a finished stage writes).
    """
    from rsxai.outputs import output_path

    windows = {}
    for line in output_path(out_dir, "log").read_text().splitlines():
        match = STAGE_LINE.match(line)
        if match is None:
            continue
        begin = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp() - start
        if begin < -1.0:  # an earlier run into the same folder
            continue
        marker = output_path(out_dir, "stage_marker", stage=match[2])
        windows[match[2]] = (begin, marker.stat().st_mtime - start)
    return windows


def phase_table(measured: dict, out_dir: Path, phases: dict[str, tuple[float, float]]) -> list:
    """One row per phase: seconds (provenance.json's for the stages), window, peak memory."""
    import json

    from rsxai.outputs import output_path

    stages = json.loads(output_path(out_dir, "provenance").read_text())["stages"]
    rows = []
    for name, (begin, end) in phases.items():
        seconds = stages.get(name, {}).get("seconds", end - begin)
        rows.append(
            {
                "phase": name,
                "seconds": seconds,
                "begin": begin,
                "end": end,
                **window_peaks(measured["samples"], begin, end),
            }
        )
    return rows


def measured_run(bids_dir: Path, out_dir: Path, flags: list[str]) -> dict:
    """``rsxai run bids_dir out_dir FLAGS`` in a fresh folder, process tree sampled."""
    from rsxai.grid import Grid
    from rsxai.outputs import output_path

    if out_dir.exists():
        shutil.rmtree(out_dir)  # nothing may be reused: every stage is measured
    out_dir.mkdir(parents=True)
    command = [*rsxai_command(), "run", str(bids_dir), str(out_dir), *flags]
    load_before = [round(value, 2) for value in os.getloadavg()]
    measured = sample_command(command, log_dir=out_dir.with_name(out_dir.name + "-logs"))
    measured["load_average"] = {
        "before": load_before,
        "after": [round(value, 2) for value in os.getloadavg()],
    }
    measured["n_voxels"] = Grid.from_img(output_path(out_dir, "mask")).n_voxels
    windows = stage_windows(out_dir, measured["start"])
    first = min(begin for begin, _ in windows.values())
    phases = {"input": (0.0, first), **windows}
    phases["finish"] = (max(end for _, end in windows.values()), measured["seconds"])
    measured["phases"] = phase_table(measured, out_dir, phases)
    measured["output_bytes"] = _folder_bytes(out_dir)
    return measured


def run(
    data_dir: str | Path,
    *,
    quick: bool = False,
    n_jobs: int = 2,
    keep_outputs: bool = False,
) -> dict:
    """Simulate (once), then the measured runs at the small and the full cohort size."""
    kind = "quick" if quick else "full"
    size = SIZES[kind]
    bids_dir = prepare_scale_cohort(data_dir, quick=quick, n_jobs=n_jobs)
    base_flags = [
        "--stop-after",
        "dual_regression",
        "--n-jobs",
        str(n_jobs),
        "--voxel-size",
        f"{size['voxel_size']:g}",
        *size["extra_flags"],
        "-q",
    ]
    small_labels = first_of_each_group(bids_dir, size["small_per_group"])
    runs = []
    for labels in (small_labels, None):
        n_subjects = len(labels) if labels else 2 * size["n_per_group"]
        out_dir = bids_dir.parent / f"out-{n_subjects}"
        flags = base_flags + (["--participant-label", *labels] if labels else [])
        measured = measured_run(bids_dir, out_dir, flags)
        shown = [item for item in measured["command"] if item not in (labels or [])]
        if labels:
            shown.insert(shown.index("--participant-label") + 1, f"<{len(labels)} labels>")
        runs.append(
            {
                "n_subjects": n_subjects,
                "command": ["rsxai", *shown[len(rsxai_command()) :]],
                "seconds": measured["seconds"],
                "peak_pss_mb": measured["peak_pss_mb"],
                "peak_anon_mb": measured["peak_anon_mb"],
                "peak_rss_mb": measured["peak_rss_mb"],
                "main_peak_rss_mb": measured["main_peak_rss_mb"],
                "max_processes": measured["max_processes"],
                "sampler_cpu_seconds": measured["sampler_cpu_seconds"],
                "load_average": measured["load_average"],
                "n_voxels": measured["n_voxels"],
                "phases": measured["phases"],
                "output_bytes": measured["output_bytes"],
                "samples": measured["samples"],
            }
        )
        if not keep_outputs:
            shutil.rmtree(out_dir)
    small, large = runs
    ica = {row["phase"]: row for row in large["phases"]}["ica"]
    ica_small = {row["phase"]: row for row in small["phases"]}["ica"]
    return {
        "quick": quick,
        "cohort": {
            "bids_dir": str(bids_dir),
            "n_volumes": size["n_volumes"],
            "voxel_size": size["voxel_size"],
            "input_bytes": _folder_bytes(bids_dir),
        },
        "n_jobs": n_jobs,
        "interval": 0.2,
        "runs": runs,
        "memory_target_mb": MEMORY_TARGET_MIB,
        "ica_peak_ratio": ica["pss_mb"] / ica_small["pss_mb"],
        "ica_anon_ratio": ica["anon_mb"] / ica_small["anon_mb"],
        "run_peak_ratio": large["peak_pss_mb"] / small["peak_pss_mb"],
    }


def table_cell(value: float) -> str:
    """A peak (MiB or processes) for the table; a dash for a window without samples."""
    return "-" if value != value else f"{value:,.0f}"  # NaN: no sample in the window


def _ratio(value: float) -> str:
    if value != value:  # NaN: a stage shorter than the sampling interval (quick runs)
        return "n/a (stage shorter than the sampling interval)"
    return f"{value:.2f}x"


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section for :func:`run`'s result."""
    small, large = result["runs"]
    cohort = result["cohort"]
    n = large["n_subjects"]
    lines = [
        f"## Scale: {n} subjects through group ICA and dual regression on "
        f"{result['n_jobs']} cores",
        "",
        f"Simulated cohort (`simulate_cohort`, seed 0): {n // 2} patients + {n // 2} controls, "
        f"{cohort['n_volumes']} volumes, TR 2 s, {cohort['voxel_size']:g} mm; "
        f"{cohort['input_bytes'] / 1e9:.1f} GB of gzipped fMRIPrep-style NIfTI. The pipeline "
        "runs from the command line as a user runs it, in a fresh process and a fresh output "
        f"folder: `{' '.join(large['command'][:2])} DATA OUT "
        f"{' '.join(large['command'][4:])}`; "
        f"for {small['n_subjects']} subjects the same with `--participant-label` naming the "
        f"first {small['n_subjects'] // 2} patients and first {small['n_subjects'] // 2} "
        "controls of the same cohort.",
        "",
        f"- Memory: the process tree (the `rsxai` process and joblib's loky workers; at most "
        f"{large['max_processes']} processes), sampled every {result['interval']:g} s: sum of "
        "the processes' PSS (proportional set size: a page shared by n processes counts 1/n "
        "in each, so the sum is what the tree occupies) and of their anonymous PSS (without "
        "file-backed pages such as memory-mapped `.npy` files, which the kernel can drop). "
        "A peak shorter than the interval can be missed. The sampling itself took "
        f"{large['sampler_cpu_seconds']:.0f} s of CPU time during the {n}-subject run.",
        "- Phases: `input` = start-up, reading and checking every input file and the input "
        "checksums (until the first stage starts); each stage from its `running.` line in "
        "`rsxai.log` to its stage marker (stage seconds from `provenance.json`); `finish` = "
        "writing `provenance.json` and the exit of the process and its workers.",
        "- Input files were read shortly after being written or read by an earlier run, so "
        "most come from the page cache.",
        f"- Common brain mask (voxels in every subject's mask): {small['n_voxels']:,} voxels "
        f"at {small['n_subjects']} subjects, {large['n_voxels']:,} at {n}.",
        "- Load average (1, 5, 15 min) before and after each run (after includes the run): "
        + "; ".join(
            f"{item['n_subjects']} subjects {item['load_average']['before']} -> "
            f"{item['load_average']['after']}"
            for item in (small, large)
        )
        + ". A load above the number of cores means other work shared them: times are "
        "then pessimistic.",
        "",
        "| subjects | phase | time (s) | per subject (s) | peak PSS (MiB) | "
        "peak anonymous PSS (MiB) | processes |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for item in (small, large):
        for row in item["phases"]:
            lines.append(
                f"| {item['n_subjects']} | {row['phase']} | {row['seconds']:.1f} | "
                f"{row['seconds'] / item['n_subjects']:.3f} | {table_cell(row['pss_mb'])} | "
                f"{table_cell(row['anon_mb'])} | {table_cell(row['n_processes'])} |"
            )
        lines.append(
            f"| {item['n_subjects']} | **whole run** | **{item['seconds']:.1f}** | "
            f"**{item['seconds'] / item['n_subjects']:.3f}** | **{item['peak_pss_mb']:.0f}** | "
            f"{item['peak_anon_mb']:.0f} | {item['max_processes']} |"
        )
    target = result["memory_target_mb"]
    lines += [
        "",
        f"- {n} subjects: **{large['seconds'] / 60:.1f} min** in all, "
        f"**{large['seconds'] / n:.2f} s per subject**; peak memory of the process tree "
        f"**{large['peak_pss_mb']:,.0f} MiB** PSS ({large['peak_anon_mb']:,.0f} MiB "
        f"anonymous; the sum of RSS, which counts shared pages once per process, "
        f"{large['peak_rss_mb']:,.0f} MiB; the `rsxai` process alone at most "
        f"{large['main_peak_rss_mb']:,.0f} MiB RSS): "
        + ("within" if large["peak_pss_mb"] <= target else "**above**")
        + f" the target of 4 GB ({target:,.0f} MiB).",
        f"- Group ICA's peak memory at {n} subjects is **{_ratio(result['ica_peak_ratio'])}** "
        f"that at {small['n_subjects']} (anonymous: {_ratio(result['ica_anon_ratio'])}; whole "
        f"run: {_ratio(result['run_peak_ratio'])}); target <= {RATIO_TARGET:g}x.",
        f"- Output folder of the {n}-subject run: {large['output_bytes'] / 1e9:.1f} GB "
        "(mostly the float32 preprocessed data cached for resuming and fold-scope "
        "cross-validation).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(
        __doc__,
        quick_help="6 + 6 small subjects (smoke run)",
        data_dir_help="where the simulated cohort is kept between runs",
        json_output=True,
    )
    parser.add_argument("--n-jobs", type=int, default=2, help="--n-jobs of the runs")
    parser.add_argument(
        "--keep-outputs", action="store_true", help="keep the runs' output folders"
    )
    args = parser.parse_args(argv)
    result = run(
        args.data_dir, quick=args.quick, n_jobs=args.n_jobs, keep_outputs=args.keep_outputs
    )
    emit(result, markdown(result), args.json)


if __name__ == "__main__":
    main()
