"""Run every benchmark and rewrite BENCHMARKS.md: ``python -m benchmarks [--quick]``.

With ``--quick`` everything runs on small data as a smoke test (a few
minutes, much of it making the small cohorts the first time) and the report
is printed instead of replacing BENCHMARKS.md, unless ``--output`` is given.
The full run ends with the 600-subject scale run: the first time, simulating
that cohort takes about an hour on 2 cores and ~10 GB of disk under
``--data-dir`` (kept for the next run), and the run itself another ~10 GB
while it lasts.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from benchmarks import (
    attribution,
    baselines,
    cnn_training,
    cv_scope,
    demo,
    group_ica,
    migp_dimension,
    migp_memory,
    network_maps,
    permutation_stats,
    scale,
    signal_cleaning,
)
from benchmarks.measurement import REPO_ROOT, benchmark_parser, machine_description


def _machine_section(before: dict, after_load: list[float], seconds: float) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in before["versions"].items())
    # The load after includes the benchmarks' own processes; the load before is other work.
    busy = before["load_average"][0] > 0.5 * before["usable_cores"]
    lines = [
        "## Machine",
        "",
        f"- CPU: {before['cpu']}; {before['logical_cores']} logical cores "
        f"({before['usable_cores']} usable); RAM {before['ram_gib']} GiB",
        f"- {before['os']}, Python {before['python']}; BLAS: {', '.join(before['blas']) or '?'}",
        f"- {versions}",
        f"- Load average (1, 5, 15 min) before: {before['load_average']}, after: {after_load} "
        "(after includes the benchmarks' own processes)"
        + (
            " — the 1-minute load was above half the cores when they started (processes "
            "running then, or that had just ended: the average decays over minutes), so "
            "times may be pessimistic."
            if busy
            else "."
        ),
        f"- All benchmarks together took {seconds / 60:.1f} min.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(
        __doc__,
        quick_help="small smoke run (a few minutes)",
        data_dir_help="where the simulated cohorts are kept between runs",
        prog="python -m benchmarks",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="report file (default: BENCHMARKS.md at the repository root; with --quick, "
        "standard output)",
    )
    args = parser.parse_args(argv)
    argv_used = sys.argv[1:] if argv is None else list(argv)
    command = "python -m benchmarks" + "".join(f" {item}" for item in argv_used)

    started = time.perf_counter()
    machine = machine_description()
    sections = [
        signal_cleaning.markdown(signal_cleaning.run(quick=args.quick)),
        group_ica.markdown(group_ica.run(args.data_dir, quick=args.quick)),
        network_maps.markdown(network_maps.run(args.data_dir, quick=args.quick)),
        migp_memory.markdown(migp_memory.run(quick=args.quick)),
        migp_dimension.markdown(migp_dimension.run(quick=args.quick)),
        permutation_stats.markdown(permutation_stats.run(quick=args.quick)),
        baselines.markdown(baselines.run(quick=args.quick)),
        cnn_training.markdown(cnn_training.run(quick=args.quick)),
        attribution.markdown(attribution.run(quick=args.quick)),
        cv_scope.markdown(cv_scope.run(args.data_dir, quick=args.quick)),
        demo.markdown(demo.run(args.data_dir, quick=args.quick)),
        # Last: the longest, and its 600-subject cohort needs the most disk.
        scale.markdown(scale.run(args.data_dir, quick=args.quick)),
    ]
    seconds = time.perf_counter() - started
    header = [
        "# Benchmarks" + (" (quick smoke run: small data, figures not meaningful)" * args.quick),
        "",
        "Written by `python -m benchmarks` (the `benchmarks/` folder of this repository); "
        "every figure below comes from that one run. Each benchmark also runs alone, e.g. "
        "`python -m benchmarks.group_ica`, and with `--quick` on small data.",
        "",
        f"- Command: `{command}` (from the repository root, in the project's virtual environment)",
        f"- Date: {machine['date']}",
        "",
    ]
    report = (
        "\n".join(header)
        + "\n"
        + _machine_section(machine, [round(v, 2) for v in os.getloadavg()], seconds)
        + "\n"
        + "\n".join(sections)
    )
    output = args.output or (None if args.quick else str(REPO_ROOT / "BENCHMARKS.md"))
    if output is None:
        print(report)
        return
    path = Path(output)
    temporary = path.with_name("." + path.name + ".tmp")
    temporary.write_text(report)
    os.replace(temporary, path)
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
