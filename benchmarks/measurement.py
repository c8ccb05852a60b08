"""Timing, peak memory in a child process, and a description of the machine.

Peak memory is the peak resident set size (``VmHWM`` on Linux, else
``ru_maxrss``) of a fresh Python process that runs one measured function:
everything the process touched, imported libraries included. The child also
reports its resident size just before the timed call (after its imports and
set-up), so that the memory the work itself needed can be told apart from
the libraries' fixed cost.

A command that starts worker processes (``rsxai run --n-jobs 2``: joblib's
loky workers) is measured by :func:`sample_command` instead: the memory of
the whole process tree, sampled every few tenths of a second.

:func:`benchmark_parser` is the command line the benchmarks share
(``--quick``, ``--data-dir``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rsxai", "numpy", "scipy", "scikit-learn", "nilearn", "nibabel", "joblib")


def benchmark_parser(
    docstring: str,
    *,
    quick_help: str,
    data_dir_help: str | None = None,
    json_output: bool = False,
    prog: str | None = None,
) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick`` and, if it keeps data, ``--data-dir``.

    Parameters
    ----------
    docstring : str
        The benchmark module's docstring; its first line describes it in ``--help``.
    quick_help : str
        ``--help`` text of ``--quick``: what the smoke run makes smaller.
    data_dir_help : str or None, default=None
        ``--help`` text of ``--data-dir`` (its default is appended); None: the
        benchmark keeps no data and takes no ``--data-dir``. Its default is
        ``rsxai-benchmarks`` in the system's temporary folder.
    json_output : bool, default=False
        Add ``--json PATH`` (also write the full result there; see :func:`emit`).
    prog : str or None, default=None
        Program name in the usage line; None: argparse's (the script's name).

    Returns
    -------
    argparse.ArgumentParser
        Add the benchmark's own options to it, then ``parse_args``.
    """
    parser = argparse.ArgumentParser(prog=prog, description=docstring.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    if data_dir_help is not None:
        parser.add_argument(
            "--data-dir",
            default=str(Path(tempfile.gettempdir()) / "rsxai-benchmarks"),
            help=f"{data_dir_help} (default: %(default)s)",
        )
    if json_output:
        parser.add_argument("--json", default=None, help="also write the full result here")
    return parser


def emit(result: dict, text: str, json_path: str | None = None) -> None:
    """Print a benchmark's markdown ``text``; with ``json_path``, write ``result`` there first."""
    if json_path:
        Path(json_path).write_text(json.dumps(result))
    print(text)


def current_rss_mb() -> float:
    """Resident set size of this process now, in MiB (Linux ``/proc``; else the peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    On Linux, ``VmHWM`` of ``/proc/self/status``: it starts afresh at
    ``exec``, whereas ``ru_maxrss`` survives it and so would report the
    parent's resident size at ``fork`` when that is larger than the child's.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def timed(function: Callable[[], object]) -> tuple[object, float]:
    """Call ``function()``; return its result and the wall-clock seconds it took."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def run_in_child(target: str, blas_threads: int | None = None, **kwargs) -> dict:
    """Run ``module:function(**kwargs)`` in a fresh Python process; return its dict.

    The function must return a JSON-serialisable dict; ``peak_rss_mb`` (the
    child's peak resident size at exit) is added to it. ``blas_threads``
    sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS``
    in the child (None: the environment's, i.e. the libraries' default).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    if blas_threads is not None:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(blas_threads)
    with tempfile.TemporaryDirectory(prefix="rsxai-bench-") as folder:
        arguments = Path(folder) / "arguments.json"
        output = Path(folder) / "result.json"
        arguments.write_text(json.dumps({"target": target, "kwargs": kwargs}))
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks.measurement", str(arguments), str(output)],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"benchmark child {target} failed (exit {completed.returncode}):\n"
                f"{completed.stderr[-4000:]}"
            )
        return json.loads(output.read_text())


def _child_main(arguments_path: str, output_path: str) -> None:
    request = json.loads(Path(arguments_path).read_text())
    module_name, _, function_name = request["target"].partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    result = dict(function(**request["kwargs"]))
    result["peak_rss_mb"] = peak_rss_mb()
    Path(output_path).write_text(json.dumps(result))


def _children_by_parent() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process in ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        # The command name (field 2) may hold spaces and parentheses; the parent pid
        # is the second field after its closing parenthesis.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (Linux ``/proc``), root first."""
    children = _children_by_parent()
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def process_memory_kib(pid: int) -> dict[str, int] | None:
    """``Rss``, ``Pss`` and ``Pss_Anon`` of one process in KiB, or None when it has ended.

    From ``/proc/PID/smaps_rollup``. PSS (proportional set size) charges each
    page shared by n processes 1/n to each of them, so the PSS of the
    processes of a tree add up to the memory the tree occupies, whereas their
    RSS count shared pages (libraries, memory-mapped files, pages inherited at
    fork) once per process. ``Pss_Anon`` leaves out file-backed pages, which
    the kernel can drop and read back (memory-mapped ``.npy`` files, the
    libraries' code).
    """
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss", "Pss_Anon"):
            values[name] = int(rest.split()[0])
    if "Rss" not in values:  # a zombie: its memory is already released
        return None
    values.setdefault("Pss", values["Rss"])
    values.setdefault("Pss_Anon", values["Pss"])
    return values


def sample_command(
    command: Sequence[str],
    *,
    interval: float = 0.2,
    rescan: float = 1.0,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    log_dir: str | Path | None = None,
) -> dict:
    """Run ``command`` to its end, sampling its process tree's memory every ``interval`` s.

    Each sample sums, over the command's process and all its descendants
    (e.g. joblib's loky workers), the PSS, the RSS and the anonymous PSS of
    :func:`process_memory_kib`. A peak shorter than ``interval`` can be
    missed, and so can a process that lives less than ``rescan`` seconds;
    ``main_peak_rss_mb`` (``VmHWM`` of the command's own process, as last
    read) is exact for that process alone. The sampling takes CPU time
    (reported) from whatever else runs on the machine.

    Parameters
    ----------
    command : sequence of str
        The command line.
    interval : float
        Seconds between samples.
    rescan : float
        Seconds between look-ups of the process tree in ``/proc``.
    cwd, env
        As for :class:`subprocess.Popen`.
    log_dir : str or Path, optional
        Folder for the command's ``stdout.txt`` and ``stderr.txt`` (default:
        a temporary folder, removed afterwards).

    Returns
    -------
    dict
        ``command``, ``start`` (epoch seconds), ``seconds`` (wall clock),
        ``interval``, ``samples`` (dict of equal-length lists: ``time`` in s
        since ``start``, ``pss_mb``, ``rss_mb``, ``anon_mb``, ``n_processes``),
        ``peak_pss_mb``, ``peak_rss_mb``, ``peak_anon_mb``, ``max_processes``,
        ``main_peak_rss_mb``, ``sampler_cpu_seconds`` (this process's CPU time
        while sampling) and ``stdout`` (the command's output).

    Raises
    ------
    RuntimeError
        When the command exits with a non-zero code (with its last output).
    """
    samples: dict[str, list] = {
        key: [] for key in ("time", "pss_mb", "rss_mb", "anon_mb", "n_processes")
    }
    with tempfile.TemporaryDirectory(prefix="rsxai-bench-cmd-") as folder:
        logs = Path(log_dir or folder)
        logs.mkdir(parents=True, exist_ok=True)
        main_peak_kib = 0
        with open(logs / "stdout.txt", "w") as stdout, open(logs / "stderr.txt", "w") as stderr:
            start = time.time()
            process = subprocess.Popen(
                list(command), cwd=cwd, env=env, stdout=stdout, stderr=stderr
            )
            cpu_start = time.process_time()
            tree: list[int] = []
            next_scan = 0.0
            while True:
                tick = time.perf_counter()
                finished = process.poll() is not None
                if not finished and tick >= next_scan:
                    # Scanning /proc costs more than sampling a few processes; workers
                    # are long-lived, so the tree is looked up less often.
                    tree, next_scan = process_tree(process.pid), tick + rescan
                totals = {"Rss": 0, "Pss": 0, "Pss_Anon": 0}
                n_processes = 0
                for pid in [] if finished else tree:
                    memory = process_memory_kib(pid)
                    if memory is None:
                        continue
                    n_processes += 1
                    for key in totals:
                        totals[key] += memory[key]
                if not finished:
                    main_peak_kib = max(main_peak_kib, _vm_hwm_kib(process.pid))
                if n_processes:
                    samples["time"].append(round(time.time() - start, 3))
                    samples["pss_mb"].append(totals["Pss"] / 2**10)
                    samples["rss_mb"].append(totals["Rss"] / 2**10)
                    samples["anon_mb"].append(totals["Pss_Anon"] / 2**10)
                    samples["n_processes"].append(n_processes)
                if finished:
                    break
                time.sleep(max(0.0, interval - (time.perf_counter() - tick)))
            seconds = time.time() - start
            sampler_cpu = time.process_time() - cpu_start
        output = (logs / "stdout.txt").read_text()
        if process.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed (exit {process.returncode}):\n"
                f"{(logs / 'stderr.txt').read_text()[-4000:]}"
            )
    return {
        "command": list(command),
        "start": start,
        "seconds": seconds,
        "interval": interval,
        "samples": samples,
        "peak_pss_mb": max(samples["pss_mb"], default=float("nan")),
        "peak_rss_mb": max(samples["rss_mb"], default=float("nan")),
        "peak_anon_mb": max(samples["anon_mb"], default=float("nan")),
        "max_processes": max(samples["n_processes"], default=0),
        "main_peak_rss_mb": main_peak_kib / 2**10,
        "sampler_cpu_seconds": sampler_cpu,
        "stdout": output,
    }


def window_peaks(samples: dict[str, list], start: float, end: float) -> dict:
    """Largest PSS, RSS, anonymous PSS and process count among samples with start <= time <= end.

    ``samples`` as in :func:`sample_command`'s result; times in seconds since its start.
    """
    chosen = [i for i, t in enumerate(samples["time"]) if start <= t <= end]
    peaks = {"n_samples": len(chosen)}
    for key in ("pss_mb", "rss_mb", "anon_mb", "n_processes"):
        peaks[key] = max((samples[key][i] for i in chosen), default=float("nan"))
    return peaks


def _vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def machine_description() -> dict:
    """CPU model, cores, RAM, load, OS, Python, BLAS and package versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        ram_gib = float("nan")
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        from threadpoolctl import threadpool_info

        blas = sorted(
            {
                f"{info['internal_api']} {info.get('version')} ({info['num_threads']} threads)"
                for info in threadpool_info()
                if info.get("user_api") == "blas"
            }
        )
    except ImportError:
        blas = []
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": round(ram_gib, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "blas": blas,
        "versions": versions,
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


if __name__ == "__main__":
    _child_main(*sys.argv[1:3])
